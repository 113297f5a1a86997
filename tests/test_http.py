"""The whole round trip over HTTP: ScoringClient -> local Functions host -> function_app.py -> Azurite."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from client import ScoringClient, ServiceError
from client.keys import SecretKeys
from scoring.ckks import runtime
from scoring.keys import PREAMBLE, SECTION, key_id_of


@pytest.fixture()
def client(http_app):
    return ScoringClient(http_app.url, timeout=30)


def stored_blob(azurite, name: str) -> bytes | None:
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("httpkeys")
    try:
        return container.download_blob(name).readall()
    except ResourceNotFoundError:
        return None


@pytest.mark.parametrize("binary", [True, False])
def test_predict_matches_scikit_learn(http_app, digits, digits_estimator, binary):
    X, _ = digits
    rows = X[1500:1510]
    client = ScoringClient(http_app.url, binary=binary)
    np.testing.assert_array_equal(client.predict(rows), digits_estimator.predict(rows))
    np.testing.assert_allclose(client.decision_function(rows), digits_estimator.decision_function(rows), atol=1e-5)
    np.testing.assert_allclose(client.predict_proba(rows), digits_estimator.predict_proba(rows), atol=1e-5)
    client.delete_keys()


def test_keys_are_generated_and_uploaded_on_first_use(client, azurite, digits):
    assert client.predict(digits[0][1500:1501]).shape == (1,)
    assert stored_blob(azurite, client.keys.key_id) == client.keys.public_bundle()
    assert client.delete_keys() is True
    assert stored_blob(azurite, client.keys.key_id) is None
    assert client.delete_keys() is False
    client.predict(digits[0][1500:1501])  # uploads again by itself
    assert stored_blob(azurite, client.keys.key_id) == client.keys.public_bundle()


def test_keys_deleted_behind_the_clients_back_are_uploaded_again(client, azurite, digits):
    client.upload_keys()
    BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        "httpkeys").delete_blob(client.keys.key_id)
    client.predict(digits[0][1500:1501])
    assert stored_blob(azurite, client.keys.key_id) == client.keys.public_bundle()


def test_upload_straight_to_blob_storage(http_app, azurite, digits, digits_estimator):
    client = ScoringClient(http_app.url)
    key_id = client.upload_keys_to_blob(connection_string=azurite.connection_string, container="httpkeys")
    assert stored_blob(azurite, key_id) == client.keys.public_bundle()
    rows = digits[0][1600:1603]
    np.testing.assert_array_equal(client.predict(rows), digits_estimator.predict(rows))


def test_bytes_on_the_wire(client, digits):
    seen = []
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    client.predict(digits[0][1500:1501])
    score = next(r for r in seen if "/api/score/" in r.url)
    assert score.request.headers["content-type"] == "application/octet-stream"
    assert score.request.body[:4] == b"HESQ" and len(score.request.body) <= 70_000
    assert score.headers["content-type"].startswith("application/octet-stream")
    assert score.content[:4] == b"HESP" and len(score.content) <= 135_000
    put = next(r for r in seen if "/api/keys/" in r.url)
    assert put.status_code == 201 and len(put.request.body) <= 140_000
    assert b"AccountKey" not in score.request.body and "code=" not in score.url


def post(http_app, path: str, body: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(f"{http_app.url}/api/{path}", data=body, headers={"content-type": content_type}, timeout=30)


def test_malformed_json_is_400_with_a_json_error(http_app, keys):
    response = post(http_app, f"score/{keys.key_id}", b"{not json")
    assert response.status_code == 400 and response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "bad_request", "message": (
        "body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")}


def test_unknown_key_id_is_404(http_app, client, digits):
    record = client.encrypt(digits[0][1500])
    from scoring import protocol
    body, content_type = protocol.encode(protocol.ScoreMessage(record.ciphertexts, record.model_hash), binary=True,
                                         response=False)
    unknown = "0f" * 32
    response = post(http_app, f"score/{unknown}", body, content_type)
    assert response.status_code == 404
    assert response.json()["error"] == "keys_not_found"
    assert response.json()["message"].startswith(
        f"no key bundle is stored under key id {unknown}; upload the public keys first")


def test_malformed_key_id_is_400(http_app):
    response = post(http_app, "score/not-a-key-id", b"{}")
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request",
                               "message": "key id must be 64 lowercase hex characters (the SHA-256 of the key bundle)"}


def test_bundle_holding_a_secret_key_is_422_and_not_stored(http_app, azurite, keys):
    secret = runtime().save(keys.secret_key)
    bundle = keys.public_bundle()[:PREAMBLE.size + 8] + SECTION.pack(b"SKEY", len(secret)) + secret
    response = requests.put(f"{http_app.url}/api/keys/{key_id_of(bundle)}", data=bundle, timeout=30)
    assert response.status_code == 422 and response.json()["error"] == "keys_rejected"
    assert "holds a secret key" in response.json()["message"]
    assert stored_blob(azurite, key_id_of(bundle)) is None


def test_ciphertext_for_other_parameters_is_422(http_app, client, digits):
    import tenseal.sealapi as seal

    from scoring import protocol
    from scoring.ckks import CkksParameters

    client.upload_keys()
    other = SecretKeys.generate(CkksParameters(4096, (seal.CoeffModulus.Create(4096, [60])[0].value(),)))
    info = client.describe_model()
    foreign = other.encrypt_coefficients(digits[0][1500], info.encoding.input_scale)
    body, content_type = protocol.encode(protocol.ScoreMessage((foreign,), info.model_hash), binary=True,
                                         response=False)
    response = post(http_app, f"score/{client.keys.key_id}", body, content_type)
    assert response.status_code == 422
    assert response.json() == {"error": "ciphertext_rejected", "message":
                               "ciphertext 0: 32946 bytes of fields do not match the served parameters"}


def test_client_raises_service_errors_with_status_and_code(http_app):
    client = ScoringClient(http_app.url)
    with pytest.raises(ServiceError) as caught:
        client._request("POST", "score/zz", data=b"{}")
    assert caught.value.status == 400 and caught.value.code == "bad_request"


def test_client_refuses_records_the_model_cannot_take(client):
    with pytest.raises(ValueError, match="takes 64 features"):
        client.encrypt(np.zeros(10))
    with pytest.raises(ValueError, match=r"feature 0 is 16, its bound 1"):
        client.encrypt(np.full(64, 16.0))


def test_method_not_allowed_and_unknown_route(http_app):
    assert requests.get(f"{http_app.url}/api/score/{'a' * 64}", timeout=10).status_code == 405
    assert requests.get(f"{http_app.url}/api/nothing", timeout=10).status_code == 404
    health = requests.get(f"{http_app.url}/api/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"


class FlakyModel(BaseHTTPRequestHandler):
    """Answers GET /api/model with 503 (Retry-After: 0) twice, then with a description."""

    calls = 0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).calls += 1
        if type(self).calls <= 2:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"model_hash": "h"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_client_retries_503_honouring_retry_after():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ScoringClient(f"http://127.0.0.1:{server.server_port}", retries=3)
        assert client.describe_model().model_hash == "h" and FlakyModel.calls == 3
    finally:
        server.shutdown()
