"""The registered functions of function_app.py, called in-process, with bundles read from Azurite.

The Azure Functions host cannot run here (Core Tools download a binary), so these tests
do what the host does: import the app with its settings in the environment, build the
HttpRequest and resolve the blob bindings themselves, reading and writing the real Azurite.
The HTTP tests run the same app over the wire.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys

import azure.functions as func
import numpy as np
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from client.keys import SecretKeys
from conftest import app_env
from keystore.connection import ConfigurationError
from scoring.ckks import SealRuntime
from scoring.keys import PREAMBLE, SECTION
from scoring.parameters import DEFAULT_PARAMETERS, CkksParameters
from helpers import decrypt_response, encrypt_request

CONTAINER = "fnkeys"


def import_app(monkeypatch, env: dict[str, str]):
    """Import function_app.py afresh with ``env`` as its app settings, as a worker starts it."""
    for name in ("SCORING_STORAGE", "SCORING_KEYS_CONTAINER", "SCORING_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("function_app", None)
    return importlib.import_module("function_app")


@pytest.fixture(scope="module")
def app(azurite, digits_model_path):
    with pytest.MonkeyPatch.context() as patch:
        module = import_app(patch, app_env(azurite, digits_model_path, CONTAINER))
    yield {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()} | {"host": module.host}
    sys.modules.pop("function_app", None)


@pytest.fixture()
def service(app):
    return app["host"].service


def call(app, name: str, *, method: str, route_params: dict | None = None, body: bytes = b"",
         headers: dict | None = None, params: dict | None = None, **bindings) -> func.HttpResponse:
    request = func.HttpRequest(method, f"http://localhost/api/{name}", headers=headers or {}, params=params or {},
                               route_params=route_params or {}, body=body)
    return app[name](req=request, **bindings)


def blob_client(container, name: str):
    """What the SDK-type blob input binding passes: a BlobClient on <container>/<name>."""
    return container.get_blob_client(name)


class Stored(func.Out):
    def __init__(self):
        self.value = None

    def set(self, val):
        self.value = val

    def get(self):
        return self.value


@pytest.fixture()
def container(azurite, app):
    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(CONTAINER)
    if not client.exists():
        client.create_container()
    return client


def read_blob(container, name: str) -> bytes | None:
    try:
        return container.download_blob(name).readall()
    except ResourceNotFoundError:
        return None


def error_of(response: func.HttpResponse) -> dict:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


def test_score_with_a_bundle_read_from_azurite(app, service, container, keys, digits, digits_estimator):
    container.upload_blob(keys.key_id, keys.public_bundle(), overwrite=True)
    X, _ = digits
    body, content_type = encrypt_request(service, keys, X[1600])
    response = call(app, "score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": content_type}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == 200 and response.mimetype == content_type
    assert response.headers["X-Records-Disclosed"] == "1"
    scores = decrypt_response(service, keys, response.get_body(), response.mimetype)
    np.testing.assert_allclose(scores, digits_estimator.decision_function(X[1600:1601])[0], atol=1e-5)


def test_unknown_key_id_is_404_saying_to_upload_first(app, service, container, keys, digits):
    body, content_type = encrypt_request(service, keys, digits[0][0])
    response = call(app, "score", method="POST", route_params={"key_id": "ab" * 32}, body=body,
                    headers={"content-type": content_type}, bundle=blob_client(container, "ab" * 32))
    assert response.status_code == 404
    assert error_of(response) == {"error": "keys_not_found", "message": (
        f"no key bundle is stored under key id {'ab' * 32}; upload the public keys first "
        f"(ScoringClient.upload_keys(), or PUT /api/keys/{'ab' * 32})")}


@pytest.mark.parametrize("body,status,code,fragment", [
    (b"{not json", 400, "bad_request", "not valid JSON"),
    (b'{"version": 2, "ciphertexts": ["AAAA"], "conn_str": "x"}', 400, "credentials_refused", "never carry"),
    (b'{"version": 2, "ciphertexts": ["AAAA"]}', 422, "ciphertext_rejected", "shorter than a SEAL header"),
    (b'{"version": 1, "ciphertexts": ["AAAA"]}', 400, "bad_request", "protocol version 1 is not supported"),
])
def test_bad_score_requests_get_their_status_and_message(app, container, keys, body, status, code, fragment):
    container.upload_blob(keys.key_id, keys.public_bundle(), overwrite=True)
    response = call(app, "score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": "application/json"}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == status
    error = error_of(response)
    assert error["error"] == code and fragment in error["message"]


def test_malformed_key_id_is_400(app, container):
    response = call(app, "score", method="POST", route_params={"key_id": "..%2Fsecrets"}, body=b"{}",
                    bundle=blob_client(container, "..%2Fsecrets"))
    assert response.status_code == 400 and "64 lowercase hex" in error_of(response)["message"]


@pytest.mark.parametrize("degree,bits,message", [
    (4096, 60, "do not match the served parameters"),
    (8192, None, "made for other encryption parameters"),
])
def test_ciphertext_for_other_parameters_is_422(app, service, container, keys, degree, bits, message):
    import tenseal.sealapi as seal

    from scoring import protocol
    from scoring.protocol import ScoreRequest, WireForm

    if bits is None:  # same ring degree, another 60-bit prime
        primes = [m.value() for m in seal.CoeffModulus.Create(8192, [60, 60])]
        parameters = CkksParameters(8192, tuple(q for q in primes if q not in DEFAULT_PARAMETERS.coeff_modulus)[:1])
    else:
        parameters = CkksParameters(degree, tuple(m.value() for m in seal.CoeffModulus.Create(degree, [bits])))
    info = service.describe()
    rt = SealRuntime(parameters)
    foreign = rt.save_canonical(seal.Encryptor(rt.context, seal.KeyGenerator(rt.context).secret_key())
                                .encrypt_symmetric(rt.encode_coefficients(np.zeros(64), info.encryption.input_scale)))
    body = protocol.encode_request(ScoreRequest((foreign,), info.model_hash), WireForm.BINARY)
    container.upload_blob(keys.key_id, keys.public_bundle(), overwrite=True)
    response = call(app, "score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": protocol.BINARY_TYPE}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == 422
    assert error_of(response)["error"] == "ciphertext_rejected" and message in error_of(response)["message"]


def test_request_for_another_model_version_is_409(app, service, container, keys, digits):
    body, content_type = encrypt_request(service, keys, digits[0][0], model_hash="0" * 64)
    response = call(app, "score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": content_type}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == 409
    assert service.describe().model_hash in error_of(response)["message"]


def test_put_keys_checks_and_stores_idempotently(app, container):
    keys = SecretKeys.generate()
    stored = Stored()
    response = call(app, "put_keys", method="PUT", route_params={"key_id": keys.key_id}, body=keys.public_bundle(),
                    existing=blob_client(container, keys.key_id), stored=stored)
    assert response.status_code == 201 and stored.value == keys.public_bundle()
    container.upload_blob(keys.key_id, stored.value)  # what the host does with the output binding
    again = Stored()
    response = call(app, "put_keys", method="PUT", route_params={"key_id": keys.key_id}, body=keys.public_bundle(),
                    existing=blob_client(container, keys.key_id), stored=again)
    assert response.status_code == 200 and again.value is None
    assert json.loads(response.get_body()) == {"key_id": keys.key_id, "stored": False,
                                               "bytes": len(keys.public_bundle())}


def test_put_keys_refuses_a_bundle_holding_a_secret_key(app, container, keys):
    from scoring.ckks import runtime
    from scoring.keys import key_id_of

    secret = runtime().save(keys.secret_key)
    bundle = keys.public_bundle()[:PREAMBLE.size + 8] + SECTION.pack(b"SKEY", len(secret)) + secret
    stored = Stored()
    response = call(app, "put_keys", method="PUT", route_params={"key_id": key_id_of(bundle)}, body=bundle,
                    existing=blob_client(container, "ee" * 32), stored=stored)
    assert response.status_code == 422 and stored.value is None
    assert error_of(response)["error"] == "keys_rejected" and "holds a secret key" in error_of(response)["message"]


def test_put_keys_refuses_a_visibly_malformed_public_key(app, container):
    from attacker import crafted_keys

    zero = crafted_keys(np.zeros(8192, dtype=np.int64))
    stored = Stored()
    response = call(app, "put_keys", method="PUT", route_params={"key_id": zero.key_id}, body=zero.public_bundle(),
                    existing=blob_client(container, zero.key_id), stored=stored)
    assert response.status_code == 422 and stored.value is None
    assert error_of(response) == {"error": "keys_rejected", "message": (
        "key bundle rejected: the public key is visibly malformed: its secret is 0 (the first part is small noise): "
        "8192 of 8192 coefficients are far smaller than uniform values modulo q; make keys with "
        "SecretKeys.generate()")}


def test_put_keys_under_the_wrong_id_is_422(app, container, keys):
    stored = Stored()
    response = call(app, "put_keys", method="PUT", route_params={"key_id": "cd" * 32}, body=keys.public_bundle(),
                    existing=blob_client(container, "ee" * 32), stored=stored)
    assert response.status_code == 422 and stored.value is None


def challenge_for(app, container, keys) -> str:
    response = call(app, "challenge", method="POST", route_params={"key_id": keys.key_id},
                    bundle=blob_client(container, keys.key_id))
    assert response.status_code == 200
    document = json.loads(response.get_body())
    assert document["expires_in"] == 300 and set(document) == {"key_id", "challenge", "expires_in"}
    return keys.answer_challenge(base64.b64decode(document["challenge"]))


def test_delete_keys_needs_proof_of_the_secret_key(app, container):
    owner, stranger = SecretKeys.generate(), SecretKeys.generate()
    container.upload_blob(owner.key_id, owner.public_bundle(), overwrite=True)
    response = call(app, "delete_keys", method="DELETE", route_params={"key_id": owner.key_id})
    assert response.status_code == 403 and error_of(response)["error"] == "proof_required"
    assert "POST /api/keys/{key_id}/challenge" in error_of(response)["message"]
    proof = challenge_for(app, container, owner)
    stolen = json.loads(call(app, "challenge", method="POST", route_params={"key_id": owner.key_id},
                             bundle=blob_client(container, owner.key_id)).get_body())["challenge"]
    with pytest.raises(ValueError, match="made for other keys"):  # a stranger cannot decrypt it
        stranger.answer_challenge(base64.b64decode(stolen))
    assert challenge_for(app, container, owner) == proof  # the stranger's request replaced nothing
    guess = format(int(proof, 16) ^ 1, "032x")
    response = call(app, "delete_keys", method="DELETE", route_params={"key_id": owner.key_id},
                    headers={"X-Key-Proof": guess})
    assert response.status_code == 403 and "does not match" in error_of(response)["message"]
    assert read_blob(container, owner.key_id) == owner.public_bundle()  # nothing stored is lost
    response = call(app, "delete_keys", method="DELETE", route_params={"key_id": owner.key_id},
                    headers={"X-Key-Proof": proof})
    assert response.status_code == 204 and read_blob(container, owner.key_id) is None
    response = call(app, "delete_keys", method="DELETE", route_params={"key_id": owner.key_id},
                    headers={"X-Key-Proof": proof})
    assert response.status_code == 404 and error_of(response)["error"] == "keys_not_found"
    response = call(app, "challenge", method="POST", route_params={"key_id": owner.key_id},
                    bundle=blob_client(container, owner.key_id))
    assert response.status_code == 404


def test_an_expired_challenge_is_replaced_and_its_answer_refused(app, container):
    from keystore.blobs import CHALLENGE_EXPIRES

    owner = SecretKeys.generate()
    container.upload_blob(owner.key_id, owner.public_bundle(), overwrite=True)
    proof = challenge_for(app, container, owner)
    blob = container.get_blob_client(owner.key_id)
    metadata = blob.get_blob_properties().metadata
    blob.set_blob_metadata({**metadata, CHALLENGE_EXPIRES: "1"})  # as if five minutes had passed
    response = call(app, "delete_keys", method="DELETE", route_params={"key_id": owner.key_id},
                    headers={"X-Key-Proof": proof})
    assert response.status_code == 403 and "expired" in error_of(response)["message"]
    fresh = challenge_for(app, container, owner)
    assert fresh != proof
    response = call(app, "delete_keys", method="DELETE", route_params={"key_id": owner.key_id},
                    headers={"X-Key-Proof": fresh})
    assert response.status_code == 204


def test_model_description_has_what_a_client_needs_and_no_weights(app, digits_estimator):
    response = call(app, "model", method="GET")
    assert response.status_code == 200
    document = json.loads(response.get_body())
    assert document["n_features"] == 64 and document["n_outputs"] == 10 and document["classes"] == list(range(10))
    assert document["encryption"]["poly_modulus_degree"] == 8192 and document["encryption"]["layout"]["n_chunks"] == 1
    assert document["batch"]["features"] is None  # which weight columns are zero is not said
    text = response.get_body().decode()
    assert '"coef"' not in text and "intercept" not in text
    assert repr(float(digits_estimator.coef_[0, 10]))[:10] not in text


def test_health_says_only_that_the_app_is_up(app):
    response = call(app, "health", method="GET")
    assert response.status_code == 200 and json.loads(response.get_body()) == {"status": "ok"}


def test_unconfigured_model_is_503(azurite, monkeypatch):
    module = import_app(monkeypatch, app_env(azurite, "/nonexistent/model.json", CONTAINER))
    try:
        response = module.host.describe(func.HttpRequest("GET", "http://localhost/api/model", body=b""))
    finally:
        sys.modules.pop("function_app", None)
    assert response.status_code == 503 and json.loads(response.get_body())["error"] == "unavailable"
    assert "/nonexistent" not in response.get_body().decode()


@pytest.mark.parametrize("drop,set_,message", [
    ("SCORING_KEYS_CONTAINER", {}, "app setting SCORING_KEYS_CONTAINER is not set"),
    ("SCORING_STORAGE", {}, "app setting SCORING_STORAGE is not set"),
    ("SCORING_STORAGE", {"SCORING_STORAGE__accountName": "acct"}, "SCORING_STORAGE__accountName is not supported"),
    ("SCORING_STORAGE", {"SCORING_STORAGE__serviceUri": "https://a.blob.core.windows.net",
                         "SCORING_STORAGE__clientId": "00000000-0000-0000-0000-000000000000"},
     "SCORING_STORAGE__clientId needs SCORING_STORAGE__credential=managedidentity"),
    (None, {"SCORING_KEYS_CONTAINER": "Bad_Name"}, "not a valid container name"),
    (None, {"SCORING_ZERO_POOL_DEPTH": "deep"}, "SCORING_ZERO_POOL_DEPTH must be a int"),
])
def test_settings_no_path_can_honour_fail_the_start_naming_the_setting(azurite, digits_model_path, monkeypatch,
                                                                     drop, set_, message):
    env = app_env(azurite, digits_model_path, CONTAINER)
    env.pop(drop, None)
    env.update(set_)
    with pytest.raises(ConfigurationError, match=message):
        import_app(monkeypatch, env)
    sys.modules.pop("function_app", None)
