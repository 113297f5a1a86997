"""The registered functions of function_app.py, called in-process, with bundles read from Azurite.

The Azure Functions host cannot run here (Core Tools download a binary), so these tests
do what the host does: build the HttpRequest and resolve the blob bindings themselves,
reading and writing the real Azurite. The HTTP tests run the same app over the wire.
"""

from __future__ import annotations

import json

import azure.functions as func
import numpy as np
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

import function_app
from client.keys import SecretKeys
from scoring.ckks import DEFAULT_PARAMETERS, CkksParameters, SealRuntime
from scoring.keys import PREAMBLE, SECTION
from helpers import decrypt_response, encrypt_request

FUNCTIONS = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}


def call(name: str, *, method: str, route_params: dict | None = None, body: bytes = b"",
         headers: dict | None = None, params: dict | None = None, **bindings) -> func.HttpResponse:
    request = func.HttpRequest(method, f"http://localhost/api/{name}", headers=headers or {}, params=params or {},
                               route_params=route_params or {}, body=body)
    return FUNCTIONS[name](req=request, **bindings)


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
def container(azurite, functions_env):
    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(functions_env)
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


def test_score_with_a_bundle_read_from_azurite(container, keys, digits, digits_estimator):
    from hosts.functions import service

    container.upload_blob(keys.key_id, keys.public_bundle())
    X, _ = digits
    body, content_type = encrypt_request(service(), keys, X[1600])
    response = call("score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": content_type}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == 200 and response.mimetype == content_type
    scores = decrypt_response(service(), keys, response.get_body(), response.mimetype)
    np.testing.assert_allclose(scores, digits_estimator.decision_function(X[1600:1601])[0], atol=1e-5)


def test_unknown_key_id_is_404_saying_to_upload_first(container, keys, digits):
    from hosts.functions import service

    body, content_type = encrypt_request(service(), keys, digits[0][0])
    response = call("score", method="POST", route_params={"key_id": "ab" * 32}, body=body,
                    headers={"content-type": content_type}, bundle=blob_client(container, "ab" * 32))
    assert response.status_code == 404
    assert error_of(response) == {"error": "keys_not_found", "message": (
        f"no key bundle is stored under key id {'ab' * 32}; upload the public keys first "
        f"(ScoringClient.upload_keys(), or PUT /api/keys/{'ab' * 32})")}


@pytest.mark.parametrize("body,status,code,fragment", [
    (b"{not json", 400, "bad_request", "not valid JSON"),
    (b'{"version": 1, "ciphertexts": ["AAAA"], "conn_str": "x"}', 400, "credentials_refused", "never carry"),
    (b'{"version": 1, "ciphertexts": ["AAAA"]}', 422, "ciphertext_rejected", "shorter than a SEAL header"),
])
def test_bad_score_requests_get_their_status_and_message(container, keys, body, status, code, fragment):
    container.upload_blob(keys.key_id, keys.public_bundle(), overwrite=True)
    response = call("score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": "application/json"}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == status
    error = error_of(response)
    assert error["error"] == code and fragment in error["message"]


def test_malformed_key_id_is_400(container):
    response = call("score", method="POST", route_params={"key_id": "..%2Fsecrets"}, body=b"{}",
                    bundle=blob_client(container, "..%2Fsecrets"))
    assert response.status_code == 400 and "64 lowercase hex" in error_of(response)["message"]


@pytest.mark.parametrize("degree,bits,message", [
    (4096, 60, "do not match the served parameters"),
    (8192, None, "made for other encryption parameters"),
])
def test_ciphertext_for_other_parameters_is_422(container, keys, degree, bits, message):
    from hosts.functions import service

    import tenseal.sealapi as seal
    if bits is None:  # same ring degree, another 60-bit prime
        primes = [m.value() for m in seal.CoeffModulus.Create(8192, [60, 60])]
        parameters = CkksParameters(8192, tuple(q for q in primes if q not in DEFAULT_PARAMETERS.coeff_modulus)[:1])
    else:
        parameters = CkksParameters(degree, tuple(m.value() for m in seal.CoeffModulus.Create(degree, [bits])))
    other = SecretKeys.generate(parameters)
    assert isinstance(other.runtime, SealRuntime)
    info = service().describe()
    foreign = other.encrypt_coefficients(np.zeros(64), info["encryption"]["input_scale"])
    from scoring import protocol
    body, content_type = protocol.encode(protocol.ScoreMessage((foreign,), info["model_hash"]), binary=True,
                                         response=False)
    container.upload_blob(keys.key_id, keys.public_bundle(), overwrite=True)
    response = call("score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": content_type}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == 422
    assert error_of(response)["error"] == "ciphertext_rejected" and message in error_of(response)["message"]


def test_request_for_another_model_version_is_409(container, keys, digits):
    from hosts.functions import service

    body, content_type = encrypt_request(service(), keys, digits[0][0], model_hash="0" * 64)
    response = call("score", method="POST", route_params={"key_id": keys.key_id}, body=body,
                    headers={"content-type": content_type}, bundle=blob_client(container, keys.key_id))
    assert response.status_code == 409
    assert service().model.model_hash in error_of(response)["message"]


def test_put_keys_checks_and_stores_idempotently(container, keys):
    stored = Stored()
    response = call("put_keys", method="PUT", route_params={"key_id": keys.key_id}, body=keys.public_bundle(),
                    existing=blob_client(container, keys.key_id), stored=stored)
    assert response.status_code == 201 and stored.value == keys.public_bundle()
    container.upload_blob(keys.key_id, stored.value)  # what the host does with the output binding
    again = Stored()
    response = call("put_keys", method="PUT", route_params={"key_id": keys.key_id}, body=keys.public_bundle(),
                    existing=blob_client(container, keys.key_id), stored=again)
    assert response.status_code == 200 and again.value is None
    assert json.loads(response.get_body()) == {"key_id": keys.key_id, "stored": False,
                                               "bytes": len(keys.public_bundle())}


def test_put_keys_refuses_a_bundle_holding_a_secret_key(container, keys):
    from scoring.ckks import runtime

    secret = runtime().save(keys.secret_key)
    head = keys.public_bundle()[:PREAMBLE.size + 8]
    bundle = head + SECTION.pack(b"SKEY", len(secret)) + secret
    from scoring.keys import key_id_of
    stored = Stored()
    response = call("put_keys", method="PUT", route_params={"key_id": key_id_of(bundle)}, body=bundle,
                    existing=blob_client(container, "ee" * 32), stored=stored)
    assert response.status_code == 422 and stored.value is None
    assert error_of(response)["error"] == "keys_rejected" and "holds a secret key" in error_of(response)["message"]


def test_put_keys_under_the_wrong_id_is_422(container, keys):
    stored = Stored()
    response = call("put_keys", method="PUT", route_params={"key_id": "cd" * 32}, body=keys.public_bundle(),
                    existing=blob_client(container, "ee" * 32), stored=stored)
    assert response.status_code == 422 and stored.value is None


def test_delete_keys_removes_the_blob(container, keys):
    container.upload_blob(keys.key_id, keys.public_bundle(), overwrite=True)
    response = call("delete_keys", method="DELETE", route_params={"key_id": keys.key_id})
    assert response.status_code == 204 and read_blob(container, keys.key_id) is None
    response = call("delete_keys", method="DELETE", route_params={"key_id": keys.key_id})
    assert response.status_code == 404 and error_of(response)["error"] == "keys_not_found"


def test_model_description_has_what_a_client_needs_and_no_weights(functions_env, digits_estimator):
    response = call("model", method="GET")
    assert response.status_code == 200
    document = json.loads(response.get_body())
    assert document["n_features"] == 64 and document["n_outputs"] == 10 and document["classes"] == list(range(10))
    assert document["encryption"]["poly_modulus_degree"] == 8192 and document["encryption"]["layout"]["n_chunks"] == 1
    text = response.get_body().decode()
    assert '"coef"' not in text and "intercept" not in text
    assert repr(float(digits_estimator.coef_[0, 10]))[:10] not in text


def test_health_does_not_load_the_model(functions_env):
    response = call("health", method="GET")
    assert response.status_code == 200
    assert json.loads(response.get_body())["model_loaded"] is False


def test_unconfigured_model_is_503(functions_env, monkeypatch):
    import hosts.functions

    monkeypatch.setenv("SCORING_MODEL_PATH", "/nonexistent/model.json")
    hosts.functions.reset()
    response = call("model", method="GET")
    assert response.status_code == 503 and error_of(response)["error"] == "unavailable"
    assert "/nonexistent" not in response.get_body().decode()
