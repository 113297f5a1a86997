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
from scoring.errors import BadRequest, CredentialsRefused, PayloadTooLarge, UnsupportedMediaType
from scoring.protocol import Limits, ModelDescription, ScoreRequest, ScoreResponse, WireForm
from scoring.service import ScoringService
from scoring.settings import Settings
from helpers import decrypt_response, score_bytes

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


def test_golden_requests_decode_and_reencode_byte_for_byte():
    as_binary, form = protocol.decode_request(read("request.bin"), protocol.BINARY_TYPE)
    as_json, json_form = protocol.decode_request(read("request.json"), protocol.JSON_TYPE)
    assert as_binary == as_json and (form, json_form) == (WireForm.BINARY, WireForm.JSON)
    assert as_binary.model_hash == EXPECTED["model_hash"]
    assert protocol.encode_request(as_binary, WireForm.BINARY) == read("request.bin")
    assert protocol.encode_request(as_json, WireForm.JSON) == read("request.json")


def test_golden_responses_decode_and_reencode_byte_for_byte():
    as_binary = protocol.decode_response(read("response.bin"), protocol.BINARY_TYPE)
    as_json = protocol.decode_response(read("response.json"), protocol.JSON_TYPE)
    assert as_binary == as_json and as_binary.disclosed == 1
    assert protocol.encode_response(as_binary, WireForm.BINARY) == read("response.bin")
    assert protocol.encode_response(as_json, WireForm.JSON) == read("response.json")


def test_golden_bytes_on_the_wire():
    assert read("request.bin")[:8] == b"HESQ\x02\x01\x01\x00"  # magic, version 2, hash flag, 1 ciphertext
    assert read("response.bin")[:8] == b"HESP\x02\x01\x01\x00"
    document = json.loads(read("request.json"))
    assert sorted(document) == ["ciphertexts", "model_hash", "version"] and document["version"] == 2


@pytest.mark.parametrize("name,content_type", [("v1/request.bin", protocol.BINARY_TYPE),
                                               ("v1/request.json", protocol.JSON_TYPE)])
def test_a_version_1_request_is_refused_saying_so(name, content_type):
    with pytest.raises(BadRequest, match="protocol version 1 is not supported: this service speaks version 2, "
                                         "which moved batches from CKKS slots to coefficient lanes"):
        protocol.decode_request(read(name), content_type)


def test_a_version_1_secret_key_file_still_reads_and_decrypts(golden_service):
    legacy = load_secret_key(GOLDEN / "v1" / "secret.key")
    assert legacy.key_id == json.loads(read("v1/expected.json"))["key_id"]
    assert legacy.public_bundle() == read("v1/keys.bundle")
    info = golden_service.describe()
    request = ScoreRequest(legacy.encrypt_record(info.record_encoding(), EXPECTED["x"]), info.model_hash)
    response = golden_service.score(legacy.key_id, legacy.public_bundle(), request)
    np.testing.assert_allclose(legacy.decrypt_scores(info.record_encoding(), response.ciphertexts),
                               EXPECTED["scores"], atol=1e-5)
    with pytest.raises(ValueError, match="cannot be packed"):
        legacy.to_bytes()


def test_golden_keys_and_model_are_what_expected_says(golden_keys, golden_service):
    assert golden_keys.key_id == EXPECTED["key_id"] == hashlib.sha256(read("keys.bundle")).hexdigest()
    assert golden_service.describe().model_hash == EXPECTED["model_hash"]


@pytest.mark.parametrize("suffix,content_type", [("bin", protocol.BINARY_TYPE), ("json", protocol.JSON_TYPE)])
def test_golden_response_decrypts_to_the_expected_scores(golden_keys, golden_service, suffix, content_type):
    scores = decrypt_response(golden_service, golden_keys, read(f"response.{suffix}"), content_type)
    np.testing.assert_allclose(scores, EXPECTED["scores"], atol=1e-5)


@pytest.mark.parametrize("suffix,content_type", [("bin", protocol.BINARY_TYPE), ("json", protocol.JSON_TYPE)])
def test_golden_request_scores_to_the_expected_scores(golden_keys, golden_service, suffix, content_type):
    out, out_type = score_bytes(golden_service, EXPECTED["key_id"], read("keys.bundle"), read(f"request.{suffix}"),
                                content_type)
    assert out_type == content_type
    np.testing.assert_allclose(decrypt_response(golden_service, golden_keys, out, out_type), EXPECTED["scores"],
                               atol=1e-5)


def test_the_model_description_round_trips_typed(golden_service):
    description = golden_service.describe()
    document = json.loads(json.dumps(description.to_dict()))
    assert ModelDescription.from_dict(document) == description
    assert description.classes == ("cat", "dog", "emu") and description.encryption.noise_bound < 1e-5
    with pytest.raises(ValueError, match="protocol version 1"):
        ModelDescription.from_dict({**document, "protocol_version": 1})
    with pytest.raises(ValueError, match="not a model description"):
        ModelDescription.from_dict({**document, "encryption": {}})


def test_the_caps_apply_before_parsing():
    limits = Limits(max_request_bytes=100_000, max_batch_request_bytes=0)
    with pytest.raises(PayloadTooLarge, match="the limit is 100000"):
        protocol.read_request(b"x" * 100_001, protocol.JSON_TYPE, limits)
    limits = Limits(max_request_bytes=80_000, max_batch_request_bytes=1_000_000)
    with pytest.raises(PayloadTooLarge, match="one record needs at most 80000"):
        protocol.read_request(read("request.json"), protocol.JSON_TYPE, limits)


def json_body(**fields) -> bytes:
    return json.dumps(fields).encode()


CT = base64.b64encode(b"x").decode()


@pytest.mark.parametrize("body,message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json_body(version=3, ciphertexts=[CT]), "version 3 is not supported"),
    (json_body(version="2", ciphertexts=[CT]), "version must be an integer"),
    (json_body(ciphertexts=[CT]), "missing field"),
    (json_body(version=2), "missing field"),
    (json_body(version=2, ciphertexts=[CT], extra=1), "unknown field"),
    (json_body(version=2, ciphertexts="abc"), "list of base64 strings"),
    (json_body(version=2, ciphertexts=[]), "1 to 4096 ciphertexts"),
    (json_body(version=2, ciphertexts=["not base64!"]), "not valid base64"),
    (json_body(version=2, ciphertexts=[CT], model_hash="xyz"), "model_hash must be"),
    (b'{"version": 2, "version": 2, "ciphertexts": []}', "repeats a field"),
])
def test_malformed_json_requests_say_what_is_wrong(body, message):
    with pytest.raises(BadRequest, match=message):
        protocol.decode_request(body, "application/json; charset=utf-8")


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:5], "shorter than its frame"),
    (lambda b: b"HESX" + b[4:], "does not start with HESQ"),
    (lambda b: b[:4] + b"\x09" + b[5:], "version 9"),
    (lambda b: b[:4] + b"\x01" + b[5:], "version 1 is not supported"),
    (lambda b: b[:5] + b"\x05" + b[6:], "unknown flags"),
    (lambda b: b[:-1], "truncated in ciphertext 0"),
    (lambda b: b + b"\x00", "bytes after its last ciphertext"),
    (lambda b: b[:6] + b"\x00\x00" + b[8:], "1 to 4096"),
])
def test_malformed_binary_requests_say_what_is_wrong(mutate, message):
    with pytest.raises(BadRequest, match=message):
        protocol.decode_request(mutate(read("request.bin")), protocol.BINARY_TYPE)


def test_unknown_content_type_is_415():
    with pytest.raises(UnsupportedMediaType):
        protocol.decode_request(read("request.json"), "text/plain")


def test_content_type_may_be_omitted():
    assert protocol.decode_request(read("request.bin"), None) == (protocol.decode_request(
        read("request.json"), None)[0], WireForm.BINARY)


@pytest.mark.parametrize("body", [
    json_body(version=2, ciphertexts=[CT], conn_str="DefaultEndpointsProtocol=https;AccountName=a"),
    json_body(version=2, ciphertexts=[CT], account_key="abc"),
    json_body(version=2, ciphertexts=[CT], model_hash="AccountKey=abc"),
])
def test_requests_carrying_storage_credentials_are_refused(body):
    with pytest.raises(CredentialsRefused, match="never carry storage credentials"):
        protocol.decode_request(body, protocol.JSON_TYPE)


def test_a_response_says_how_many_records_it_discloses():
    assert ScoreResponse((b"x",), "a" * 64).disclosed == 1
    assert ScoreResponse((b"x",), "a" * 64, records=5000).disclosed == 5000
