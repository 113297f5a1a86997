"""The wire format: golden files byte for byte, both forms, and strict refusals."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from client.keys import load_secret_key
from scoring import protocol
from scoring.errors import BadRequest, CredentialsRefused, UnsupportedMediaType
from scoring.service import ScoringService, Settings

GOLDEN = Path(__file__).parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.fixture(scope="module")
def golden_keys():
    return load_secret_key(GOLDEN / "secret.key")


@pytest.fixture(scope="module")
def golden_service():
    return ScoringService(Settings(model_path=str(GOLDEN / "model.json")))


def read(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


@pytest.mark.parametrize("response", [False, True])
def test_golden_files_decode_and_reencode_byte_for_byte(response):
    stem = "response" if response else "request"
    as_binary = protocol.decode(read(f"{stem}.bin"), protocol.BINARY_TYPE, response=response)
    as_json = protocol.decode(read(f"{stem}.json"), protocol.JSON_TYPE, response=response)
    assert as_binary == as_json
    assert as_binary.model_hash == EXPECTED["model_hash"]
    assert protocol.encode(as_binary, binary=True, response=response)[0] == read(f"{stem}.bin")
    assert protocol.encode(as_json, binary=False, response=response)[0] == read(f"{stem}.json")


def test_golden_bytes_on_the_wire():
    assert read("request.bin")[:8] == b"HESQ\x01\x01\x01\x00"  # magic, version 1, hash flag, 1 ciphertext
    assert read("response.bin")[:8] == b"HESP\x01\x01\x01\x00"
    document = json.loads(read("request.json"))
    assert sorted(document) == ["ciphertexts", "model_hash", "version"] and document["version"] == 1


def test_golden_keys_and_model_are_what_expected_says(golden_keys, golden_service):
    assert golden_keys.key_id == EXPECTED["key_id"] == hashlib.sha256(read("keys.bundle")).hexdigest()
    assert golden_service.describe()["model_hash"] == EXPECTED["model_hash"]


@pytest.mark.parametrize("suffix,content_type", [("bin", protocol.BINARY_TYPE), ("json", protocol.JSON_TYPE)])
def test_golden_response_decrypts_to_the_expected_scores(golden_keys, golden_service, suffix, content_type):
    from helpers import decrypt_response

    scores = decrypt_response(golden_service, golden_keys, read(f"response.{suffix}"), content_type)
    np.testing.assert_allclose(scores, EXPECTED["scores"], atol=1e-5)


@pytest.mark.parametrize("suffix,content_type", [("bin", protocol.BINARY_TYPE), ("json", protocol.JSON_TYPE)])
def test_golden_request_scores_to_the_expected_scores(golden_keys, golden_service, suffix, content_type):
    from helpers import decrypt_response

    out, out_type = golden_service.score(EXPECTED["key_id"], read("keys.bundle"), read(f"request.{suffix}"),
                                         content_type)
    assert out_type == content_type
    np.testing.assert_allclose(decrypt_response(golden_service, golden_keys, out, out_type), EXPECTED["scores"],
                               atol=1e-5)


def json_body(**fields) -> bytes:
    return json.dumps(fields).encode()


CT = base64.b64encode(b"x").decode()


@pytest.mark.parametrize("body,message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json_body(version=2, ciphertexts=[CT]), "version 2 is not supported"),
    (json_body(version="1", ciphertexts=[CT]), "version must be an integer"),
    (json_body(ciphertexts=[CT]), "missing field"),
    (json_body(version=1), "missing field"),
    (json_body(version=1, ciphertexts=[CT], extra=1), "unknown field"),
    (json_body(version=1, ciphertexts="abc"), "list of base64 strings"),
    (json_body(version=1, ciphertexts=[]), "1 to 4096 ciphertexts"),
    (json_body(version=1, ciphertexts=["not base64!"]), "not valid base64"),
    (json_body(version=1, ciphertexts=[CT], model_hash="xyz"), "model_hash must be"),
    (b'{"version": 1, "version": 1, "ciphertexts": []}', "repeats a field"),
])
def test_malformed_json_requests_say_what_is_wrong(body, message):
    with pytest.raises(BadRequest, match=message):
        protocol.decode(body, "application/json; charset=utf-8", response=False)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:5], "shorter than its frame"),
    (lambda b: b"HESX" + b[4:], "does not start with HESQ"),
    (lambda b: b[:4] + b"\x09" + b[5:], "version 9"),
    (lambda b: b[:5] + b"\x05" + b[6:], "unknown flags"),
    (lambda b: b[:-1], "truncated in ciphertext 0"),
    (lambda b: b + b"\x00", "bytes after its last ciphertext"),
    (lambda b: b[:6] + b"\x00\x00" + b[8:], "1 to 4096"),
])
def test_malformed_binary_requests_say_what_is_wrong(mutate, message):
    with pytest.raises(BadRequest, match=message):
        protocol.decode(mutate(read("request.bin")), protocol.BINARY_TYPE, response=False)


def test_unknown_content_type_is_415():
    with pytest.raises(UnsupportedMediaType):
        protocol.decode(read("request.json"), "text/plain", response=False)


def test_content_type_may_be_omitted():
    assert protocol.decode(read("request.bin"), None, response=False) == protocol.decode(
        read("request.json"), None, response=False)


@pytest.mark.parametrize("body", [
    json_body(version=1, ciphertexts=[CT], conn_str="DefaultEndpointsProtocol=https;AccountName=a"),
    json_body(version=1, ciphertexts=[CT], account_key="abc"),
    json_body(version=1, ciphertexts=[CT], model_hash="AccountKey=abc"),
])
def test_requests_carrying_storage_credentials_are_refused(body):
    with pytest.raises(CredentialsRefused, match="never carry storage credentials"):
        protocol.decode(body, protocol.JSON_TYPE, response=False)
