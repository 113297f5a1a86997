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
from scoring import protocol
from scoring.ckks import runtime
from scoring.keys import PREAMBLE, SECTION, key_id_of
from scoring.protocol import ScoreRequest, WireForm


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
    body = protocol.encode_request(ScoreRequest(record.ciphertexts, record.model_hash), WireForm.BINARY)
    content_type = protocol.BINARY_TYPE
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

    from scoring.ckks import SealRuntime
    from scoring.parameters import CkksParameters

    client.upload_keys()
    rt = SealRuntime(CkksParameters(4096, (seal.CoeffModulus.Create(4096, [60])[0].value(),)))
    info = client.describe_model()
    foreign = rt.save_canonical(seal.Encryptor(rt.context, seal.KeyGenerator(rt.context).secret_key())
                                .encrypt_symmetric(rt.encode_coefficients(digits[0][1500], info.encryption.input_scale)))
    body = protocol.encode_request(ScoreRequest((foreign,), info.model_hash), WireForm.BINARY)
    response = post(http_app, f"score/{client.keys.key_id}", body, protocol.BINARY_TYPE)
    assert response.status_code == 422
    assert response.json() == {"error": "ciphertext_rejected", "message":
                               "ciphertext 0: 32946 bytes of fields do not match the served parameters"}


def test_client_raises_service_errors_with_status_and_code(http_app):
    client = ScoringClient(http_app.url)
    with pytest.raises(ServiceError) as caught:
        client.transport.request("POST", f"{client.transport.url}/score/zz", data=b"{}")
    assert caught.value.status == 400 and caught.value.code == "bad_request"


def test_client_refuses_records_the_model_cannot_take(client):
    with pytest.raises(ValueError, match="takes 64 features"):
        client.encrypt(np.zeros(10))
    with pytest.raises(ValueError, match=r"feature 0 is 16, its bound 1"):
        client.encrypt(np.full(64, 16.0))


def test_a_wrong_method_and_an_unknown_route_are_404_as_on_azure(http_app):
    for response in (requests.get(f"{http_app.url}/api/score/{'a' * 64}", timeout=10),
                     requests.get(f"{http_app.url}/api/nothing", timeout=10)):
        assert (response.status_code, response.content) == (404, b"")
    health = requests.get(f"{http_app.url}/api/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


class FlakyModel(BaseHTTPRequestHandler):
    """Answers GET /api/model with 503 (Retry-After: 0) twice, then with a description."""

    calls = 0
    description: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).calls += 1
        if type(self).calls <= 2:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(type(self).description).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_client_retries_503_honouring_retry_after(service):
    FlakyModel.description = service.describe().to_dict()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ScoringClient(f"http://127.0.0.1:{server.server_port}", retries=3)
        assert client.describe_model() == service.describe() and FlakyModel.calls == 3
    finally:
        server.shutdown()


# -- keys as Azure enforces them, and what the README tells users to do ---------------------------

HOST_KEY, SCORE_KEY, MASTER_KEY = "host-key-for-a-client", "key-of-the-score-function-only", "the-master-key"


@pytest.fixture(scope="module")
def keyed_app(azurite, digits_model_path):
    """The app with function keys enforced, as in Azure: a host key, a function key of score."""
    from conftest import ROOT, app_env
    from devhost import LocalFunctionsHost

    keys = {"master": MASTER_KEY, "host": {"client-a": HOST_KEY}, "functions": {"score": {"default": SCORE_KEY}}}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in app_env(azurite, digits_model_path, "keyedkeys").items():
            patch.setenv(name, value)
        with LocalFunctionsHost(ROOT, port=0, load_local_settings=False, keys=keys) as host:
            yield host


def test_a_host_key_works_on_every_route_as_the_readme_documents(keyed_app, digits, digits_estimator):
    client = ScoringClient(keyed_app.url, function_key=HOST_KEY)
    rows = digits[0][1500:1503]
    np.testing.assert_array_equal(client.predict(rows), digits_estimator.predict(rows))  # model, keys, score
    assert client.delete_keys() is True  # challenge and delete


def test_a_function_key_works_only_on_its_own_function(keyed_app, digits):
    owner = ScoringClient(keyed_app.url, function_key=HOST_KEY)
    record = owner.encrypt(digits[0][1500])
    owner.upload_keys()
    scoring_only = ScoringClient(keyed_app.url, function_key=SCORE_KEY, keys=owner.keys)
    scoring_only._model = owner.describe_model()
    scoring_only.mark_uploaded()
    assert scoring_only.decrypt(scoring_only.score(record)).shape == (10,)  # its own function: allowed
    for method, path in (("GET", "model"), ("PUT", f"keys/{owner.keys.key_id}"),
                         ("POST", f"keys/{owner.keys.key_id}/challenge")):
        response = requests.request(method, f"{keyed_app.url}/api/{path}", headers={"x-functions-key": SCORE_KEY},
                                    timeout=30)
        assert (response.status_code, response.content) == (401, b""), path
    assert owner.delete_keys() is True


def test_without_a_key_every_route_but_health_is_401(keyed_app):
    for method, path in (("GET", "model"), ("POST", f"score/{'a' * 64}"), ("DELETE", f"keys/{'a' * 64}")):
        response = requests.request(method, f"{keyed_app.url}/api/{path}", timeout=30)
        assert (response.status_code, response.content) == (401, b""), path
    wrong = requests.get(f"{keyed_app.url}/api/model", headers={"x-functions-key": "guess"}, timeout=30)
    assert wrong.status_code == 401
    assert requests.get(f"{keyed_app.url}/api/health", timeout=30).json() == {"status": "ok"}


# -- what each response reveals, and who may delete ------------------------------------------------


def test_every_score_response_says_how_many_records_it_disclosed(http_app, digits):
    client = ScoringClient(http_app.url, batch_threshold=5, processes=1, progress=False)
    seen = []
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    client.predict(digits[0][1500:1501])
    client.predict(digits[0][1500:1507])
    scores = [r for r in seen if "/api/score/" in r.url]
    assert [r.headers["X-Records-Disclosed"] for r in scores] == ["1", "7"]
    client.delete_keys()


def test_a_stranger_who_knows_a_key_id_cannot_delete_it(http_app, azurite, digits):
    owner = ScoringClient(http_app.url)
    owner.upload_keys()
    key_id = owner.keys.key_id
    stranger = ScoringClient(http_app.url)
    response = requests.delete(f"{http_app.url}/api/keys/{key_id}", timeout=30)
    assert response.status_code == 403 and response.json()["error"] == "proof_required"
    challenge = requests.post(f"{http_app.url}/api/keys/{key_id}/challenge", timeout=30).json()["challenge"]
    with pytest.raises(ValueError, match="made for other keys"):  # only the secret key opens it
        stranger.keys.answer_challenge(__import__("base64").b64decode(challenge))
    response = requests.delete(f"{http_app.url}/api/keys/{key_id}", headers={"X-Key-Proof": "0" * 32}, timeout=30)
    assert response.status_code == 403
    assert stored_blob(azurite, key_id) == owner.keys.public_bundle()  # nothing stored is lost
    np.testing.assert_equal(owner.decrypt(owner.score(owner.encrypt(digits[0][1500]))).shape, (10,))
    assert owner.delete_keys() is True and stored_blob(azurite, key_id) is None


def test_a_visibly_malformed_public_key_is_refused_saying_why(http_app):
    from attacker import crafted_keys

    zero = crafted_keys(np.zeros(8192, dtype=np.int64))
    response = requests.put(f"{http_app.url}/api/keys/{zero.key_id}", data=zero.public_bundle(), timeout=30)
    assert response.status_code == 422 and "visibly malformed: its secret is 0" in response.json()["message"]


# -- executors: no upload, a pinned model ------------------------------------------------------


def test_upload_false_never_uploads_and_fails_on_a_missing_bundle(http_app, azurite, digits):
    driver = ScoringClient(http_app.url)
    driver.upload_keys()
    executor = ScoringClient(http_app.url, keys=driver.keys, upload=False)
    executor.predict(digits[0][1500:1502])
    assert driver.delete_keys() is True
    executor = ScoringClient(http_app.url, keys=driver.keys, upload=False)  # a straggler task, later
    with pytest.raises(ServiceError) as caught:
        executor.predict(digits[0][1500:1502])
    assert caught.value.code == "keys_not_found"
    assert stored_blob(azurite, driver.keys.key_id) is None  # not uploaded again


def test_a_pinned_model_hash_refuses_another_model(http_app, digits):
    from client import ModelChanged

    client = ScoringClient(http_app.url, expect_model_hash="0" * 64)
    with pytest.raises(ModelChanged, match="refusing to mix two models' scores"):
        client.predict(digits[0][1500:1501])


@pytest.mark.parametrize("method,suffix", [("POST", "/challenge"), ("DELETE", ""), ("PUT", ""), ("POST", "")])
def test_every_keyed_route_refuses_credentials_in_the_query(http_app, keys, method, suffix):
    route = "score" if (method, suffix) == ("POST", "") else "keys"
    response = requests.request(method, f"{http_app.url}/api/{route}/{keys.key_id}{suffix}?sas_token=abc", timeout=30)
    assert response.status_code == 400 and response.json()["error"] == "credentials_refused"
