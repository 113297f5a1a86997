"""Log hygiene: the logs of a full round trip never hold key or ciphertext bytes, connection
strings or function keys.

Everything is captured at DEBUG (root, azure.*, urllib3, the devhost access log, the service)
while a client with a recognizable fake function key generates keys, uploads them, scores
(binary and JSON), deletes them, and sends requests the service refuses: malformed JSON, wrong
key ids, storage credentials in the body and in the query, a bundle carrying a secret key, a
truncated ciphertext. The captured text is then searched for fragments of every secret.
Once in process (client and server logs together), once against ``python -m devhost`` in its
own process (its whole output), as configured by its command line and with everything at DEBUG.
"""

from __future__ import annotations

import ast
import base64
import binascii
import http.client
import io
import json
import logging
import re
import sys
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
import requests
from conftest import running_app

from bench.load import ServerProcesses
from client import ScoringClient
from devhost.azurite import ACCOUNT_KEY
from scoring import protocol
from scoring.ckks import runtime
from scoring.keys import PREAMBLE, SECTION, key_id_of
from scoring.protocol import ScoreRequest, WireForm

FUNCTION_KEY = "fnkey-LOGCHECK-3c9e1a7f5b2d4f6a8c0e1b3d5f7a9c2e"
CONTAINER = "logkeys"
LOGGERS = ("", "azure", "azure.core", "azure.storage", "azure.storage.blob",
           "azure.core.pipeline.policies.http_logging_policy", "azure.storage.blob._shared.policies",
           "azure.identity", "urllib3", "requests", "devhost", "hosts", "scoring", "client")
# python -m devhost with every logger at DEBUG: devhost's main() quiets "azure" to WARNING;
# this keeps it at DEBUG so that the SDK's own HTTP logging is in the output too.
DEBUG_DEVHOST = (
    "import logging, sys; "
    "logging.basicConfig(level=logging.DEBUG, format='%(asctime)s %(levelname)s %(name)s: %(message)s'); "
    "logging.Logger.setLevel = lambda self, level: None; "  # no module may quiet itself: all at DEBUG
    "import devhost.host as h; raise SystemExit(h.main(sys.argv[1:]))"
)


# -- what must not appear ------------------------------------------------------------------
def fragments(label: str, blob: bytes, count: int = 6) -> list[tuple[str, str]]:
    """Needles for ``blob``: at several offsets, 24 characters of its base64 (standard and
    URL-safe, aligned so they occur inside the base64 of the whole blob), 24 hex digits
    (lower and upper case), the ``repr`` of 12 bytes as a log of ``%r`` would show them, and
    the same bytes decoded as Latin-1."""
    needles = []
    last = max(0, len(blob) - 18)
    for offset in sorted({(last * k // (count - 1)) // 3 * 3 for k in range(count)}):
        piece = blob[offset:offset + 18]
        if len(set(piece)) < 8:  # low entropy (zero padding): could match by chance
            continue
        needles += [(f"{label} base64@{offset}", base64.b64encode(piece).decode()),
                    (f"{label} base64url@{offset}", base64.urlsafe_b64encode(piece).decode()),
                    (f"{label} hex@{offset}", piece[:12].hex()),
                    (f"{label} HEX@{offset}", piece[:12].hex().upper()),
                    (f"{label} latin-1@{offset}", piece[:12].decode("latin-1"))]
        if not set(piece[:12]) & {0x22, 0x27, 0x5C}:  # quotes and backslash: repr escapes vary
            needles.append((f"{label} repr@{offset}", repr(piece[:12])[2:-1]))
    assert needles, f"{label}: no usable fragment"
    return needles


B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{24,}")
HEX_RUN = re.compile(r"[0-9a-fA-F]{24,}")
BYTES_LITERAL = re.compile(r"b'(?:[^'\\\n]|\\.)*'" + r'|b"(?:[^"\\\n]|\\.)*"')
WINDOW = 12


def decoded_tokens(text: str) -> set[bytes]:
    """Every byte string the text may carry: base64 runs (both alphabets, every alignment),
    hex runs (both alignments) and Python bytes literals (what ``%r`` of bytes prints)."""
    found: set[bytes] = set()
    for run in set(B64_RUN.findall(text)):
        run = run.replace("-", "+").replace("_", "/")
        for shift in range(4):
            part = run[shift:]
            part = part[:len(part) // 4 * 4]
            try:
                found.add(base64.b64decode(part))
            except (binascii.Error, ValueError):
                pass
    for run in set(HEX_RUN.findall(text)):
        for shift in range(2):
            part = run[shift:]
            found.add(bytes.fromhex(part[:len(part) // 2 * 2]))
    for literal in set(BYTES_LITERAL.findall(text)):
        try:
            found.add(ast.literal_eval(literal))
        except (ValueError, SyntaxError):
            pass
    return {token for token in found if len(token) >= WINDOW}


def leaks(text: str, needles: list[tuple[str, str]], blobs: dict[str, bytes] | None = None) -> list[str]:
    """What of the secrets ``text`` shows: a needle verbatim, or any 12 bytes of a blob as
    base64, hex or a bytes literal anywhere in it (not only at the sampled offsets)."""
    found = [label for label, needle in needles if needle in text]
    if blobs:
        for token in decoded_tokens(text):
            windows = [token[k:k + WINDOW] for k in range(0, len(token) - WINDOW + 1, WINDOW)]
            windows = [w for w in windows if len(set(w)) >= 8]  # not zero padding
            found += [f"{label} (decoded from the text)" for label, blob in blobs.items()
                      if any(w in blob for w in windows)]
    return list(dict.fromkeys(found))


@contextmanager
def captured_logs():
    """Every record of every logger at DEBUG, formatted with its exception text, as one string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        logging.disable(disabled)


# -- the traffic -----------------------------------------------------------------------------
def raw_request(url: str, method: str, target: str, body: bytes = b"", headers: dict | None = None) -> int:
    """A request through http.client, which logs nothing: whatever is logged is the server's."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def exercise(url: str, connection_string: str, rows: np.ndarray, expected: np.ndarray
             ) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
    """A full round trip and refused requests; returns needles of every secret involved, and
    the secret byte strings themselves (keys, ciphertexts, bodies)."""
    client = ScoringClient(url, function_key=FUNCTION_KEY, binary=True)
    exchanged: list = []
    client.session.hooks["response"].append(lambda r, *a, **k: exchanged.append(r))
    keys = client.generate_keys()
    key_id = client.upload_keys()

    record = client.encrypt(rows[0])
    reply = client.score(record)
    np.testing.assert_allclose(client.decrypt(reply), expected[0], atol=1e-5)
    json_client = ScoringClient(url, function_key=FUNCTION_KEY, keys=keys, binary=False)
    json_client.session.hooks["response"].append(lambda r, *a, **k: exchanged.append(r))
    json_record = json_client.encrypt(rows[1])
    json_reply = json_client.score(json_record)
    np.testing.assert_allclose(json_client.decrypt(json_reply), expected[1], atol=1e-5)

    score_url = f"{url}/api/score/{key_id}"
    auth = {"x-functions-key": FUNCTION_KEY}
    binary_body, binary_type = protocol.encode_request(ScoreRequest(record.ciphertexts, record.model_hash),
                                                       WireForm.BINARY), protocol.BINARY_TYPE
    json_body, json_type = protocol.encode_request(ScoreRequest(json_record.ciphertexts, json_record.model_hash),
                                                   WireForm.JSON), protocol.JSON_TYPE
    statuses = {
        "malformed JSON": requests.post(score_url, data=b"{not json", timeout=30,
                                        headers={**auth, "content-type": "application/json"}).status_code,
        "unknown key id": requests.post(f"{url}/api/score/{'0f' * 32}", data=binary_body, timeout=30,
                                        headers={**auth, "content-type": binary_type}).status_code,
        "malformed key id": requests.post(f"{url}/api/score/not-a-key-id", data=binary_body, timeout=30,
                                          headers={**auth, "content-type": binary_type}).status_code,
        "truncated ciphertext": requests.post(score_url, data=binary_body[:len(binary_body) // 2], timeout=30,
                                              headers={**auth, "content-type": binary_type}).status_code,
        "conn_str in the body": requests.post(
            score_url, data=json.dumps({**json.loads(json_body), "conn_str": connection_string}), timeout=30,
            headers={**auth, "content-type": json_type}).status_code,
        "conn_str in the query": raw_request(
            url, "POST", f"/api/score/{key_id}?conn_str={quote(connection_string, safe='')}&code={FUNCTION_KEY}",
            json_body, {"content-type": json_type}),
        "function key in the query": raw_request(url, "GET", f"/api/model?code={FUNCTION_KEY}"),
    }
    secret = runtime().save(keys.secret_key)
    bundle = keys.public_bundle()
    with_secret = bundle[:PREAMBLE.size + 8] + SECTION.pack(b"SKEY", len(secret)) + secret
    statuses["bundle holding a secret key"] = requests.put(
        f"{url}/api/keys/{key_id_of(with_secret)}", data=with_secret, headers=auth, timeout=30).status_code
    proofs: list[str] = []
    answer = keys.answer_challenge
    keys.answer_challenge = lambda blob: proofs.append(answer(blob)) or proofs[-1]
    assert client.delete_keys() is True
    statuses["delete again"] = 404 if client.delete_keys() is False else 204
    statuses["delete without proof"] = requests.delete(f"{url}/api/keys/{key_id}", headers=auth, timeout=30).status_code
    assert statuses == {"malformed JSON": 400, "unknown key id": 404, "malformed key id": 400,
                        "truncated ciphertext": 400, "conn_str in the body": 400, "conn_str in the query": 400,
                        "function key in the query": 200, "bundle holding a secret key": 422,
                        "delete again": 404, "delete without proof": 403}, statuses

    needles = [("account key", ACCOUNT_KEY), ("account key (URL-quoted)", quote(ACCOUNT_KEY, safe="")),
               ("connection string", connection_string), ("function key", FUNCTION_KEY),
               ("SharedKey authorization", "SharedKey "), ("secret key section", "SKEY"),
               *[(f"deletion proof {i}", proof) for i, proof in enumerate(proofs)]]
    blobs = {"secret key": secret, "packed secret key": keys.to_bytes(), "key bundle": bundle,
             "bundle holding a secret key": with_secret,
             "account key": base64.b64decode(ACCOUNT_KEY)}
    for name, ciphertexts in (("request ciphertext", record.ciphertexts + json_record.ciphertexts),
                              ("response ciphertext", reply.ciphertexts + json_reply.ciphertexts)):
        blobs.update({f"{name} {i}": blob for i, blob in enumerate(ciphertexts)})
    for i, response in enumerate(exchanged):  # the bodies as they went over the wire
        if response.request.body:
            blobs[f"request body {i}"] = bytes(response.request.body)
        if len(response.content) > 1000:
            blobs[f"response body {i}"] = response.content
    for label, blob in blobs.items():
        needles += fragments(label, blob, count=6 if "key" in label else 3)
    return needles, blobs


# -- tests -----------------------------------------------------------------------------------
def test_the_checker_finds_each_kind_of_leak(keys):
    blob = keys.public_bundle()
    needles, blobs = fragments("bundle", blob), {"bundle": blob}
    assert leaks("nothing to see", needles, blobs) == []
    innocent = (f"PUT /api/keys/{keys.key_id} 201; x-ms-request-id 528bf8ca-e5f8-11f1-b07e-02fc00000001; "
                f"{base64.b64encode(bytes(range(40))).decode()} {bytes(range(40))!r}")
    assert leaks(innocent, needles, blobs) == []
    for whole in (base64.b64encode(blob).decode(), blob.hex(), repr(blob),
                  json.dumps({"body": base64.b64encode(blob).decode()})):
        assert leaks(f"x={whole}", needles), whole[:20]
    piece = blob[50_001:50_041]  # 40 bytes away from every sampled offset, misaligned for base64
    assert leaks(f"x={piece!r} {base64.b64encode(piece).decode()}", needles) == []
    for shown in (repr(piece), base64.b64encode(piece).decode(), base64.urlsafe_b64encode(piece).decode(),
                  "id" + base64.b64encode(piece).decode(), piece.hex(), "f" + piece.hex().upper()):
        assert leaks(f"body: {shown}.", needles, blobs) == ["bundle (decoded from the text)"], shown


def test_logs_of_a_full_round_trip_hold_no_secrets(azurite, digits_model_path, digits, digits_estimator, capfd):
    rows = digits[0][1500:1502]
    with running_app(azurite, digits_model_path, container=CONTAINER) as host, captured_logs() as logs:
        needles, blobs = exercise(host.url, azurite.connection_string, rows, digits_estimator.decision_function(rows))
    out, err = capfd.readouterr()
    text = logs.getvalue() + out + err

    # the capture did see the round trip, from every layer
    for expected in ("devhost: PUT /api/keys/", "devhost: POST /api/score/", "devhost: DELETE /api/keys/",
                     "azure.core.pipeline.policies.http_logging_policy:", "urllib3.connectionpool:",
                     "refused with 400 credentials_refused", "refused with 422", "scoring.service:"):
        assert expected in text, f"{expected!r} is not in the captured logs"
    # what the owner counts disclosure by: each answer's records, with the key id's first 12 digits
    assert len(re.findall(r"scoring\.service: scored 1 record\(s\) for key [0-9a-f]{12} ", text)) >= 2
    assert leaks(text, needles, blobs) == []


@pytest.mark.parametrize("debug", [False, True], ids=["devhost-cli", "devhost-cli-all-debug"])
def test_devhost_process_logs_hold_no_secrets(azurite, digits_model_path, digits, digits_estimator, debug):
    rows = digits[0][1502:1504]
    env = {"SCORING_STORAGE": azurite.connection_string, "SCORING_KEYS_CONTAINER": CONTAINER,
           "SCORING_MODEL_PATH": str(digits_model_path)}
    server = ServerProcesses(env, launcher=[sys.executable, "-c", DEBUG_DEVHOST] if debug else None)
    try:
        server.start()
        needles, blobs = exercise(server.url, azurite.connection_string, rows, digits_estimator.decision_function(rows))
    finally:
        server.stop()
    text = server.output()
    server.close()

    assert "POST /api/score/" in text and "refused with 400" in text
    if debug:
        assert "azure.core.pipeline.policies.http_logging_policy" in text and "DEBUG" in text
    assert leaks(text, needles, blobs) == []
