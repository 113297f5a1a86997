"""The container: score.py under the Azure ML inference server, over HTTP, with Azurite; the Dockerfile.

Each server here is the real azmlinfsrv (its own entry point, bound to 127.0.0.1 by
``demo.serve_aml``; the ``azmlinfsrv`` command always binds 0.0.0.0) running the real
score.py in a subprocess of its own process group, stopped when its fixture ends.

Tests marked ``needs_client_change`` need ScoringClient to speak to the container's single
URL (the change described in docs/aml.md, "ScoringClient"); they are skipped until it is in.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import ROOT

from client import ScoringClient
from client.keys import SecretKeys
from devhost.processes import free_port, start_child, stop_child
from keystore.blobs import upload_bundle
from scoring import protocol
from scoring.ckks import runtime
from scoring.keys import PREAMBLE, SECTION, key_id_of
from scoring.model import ModelError
from scoring.protocol import ModelDescription, ScoreRequest, WireForm

pytest.importorskip("azureml_inference_server_http", reason="needs requirements-aml.txt installed")

CONTAINER = "amlkeys"
START_TIMEOUT = 60.0


# -- the server ------------------------------------------------------------------------------


class AmlServer:
    """``python -m demo.serve_aml --model-dir DIR`` on a free port; ``stop()`` ends its process group."""

    def __init__(self, model_dir: Path, log_path: Path, **settings: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SCORING_", "AZUREML_", "AML_", "GUNICORN_"))}
        env.update(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/score"
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = start_child(
                [sys.executable, "-m", "demo.serve_aml", "--model-dir", str(model_dir), "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> AmlServer:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"azmlinfsrv did not start:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        stop_child(self.process, timeout=15, name="azmlinfsrv")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, digits_model_path) -> Path:
    """A folder laid out as Azure ML mounts a registered model: <name>/<version>/<file>."""
    root = tmp_path_factory.mktemp("azureml-models")
    (root / "digits" / "1").mkdir(parents=True)
    shutil.copy(digits_model_path, root / "digits" / "1" / digits_model_path.name)
    return root


@pytest.fixture(scope="module")
def aml(azurite, model_dir, tmp_path_factory):
    server = AmlServer(model_dir, tmp_path_factory.mktemp("aml") / "server.log",
                       SCORING_STORAGE=azurite.connection_string, SCORING_KEYS_CONTAINER=CONTAINER)
    yield server.wait_ready()
    server.stop()


def store(azurite, bundle: bytes) -> str:
    return upload_bundle(bundle, connection_string=azurite.connection_string, container=CONTAINER)


# -- requests as any HTTP client makes them ------------------------------------------------------


def describe(url: str) -> ModelDescription:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return ModelDescription.from_dict(response.json())


def message(info: ModelDescription, keys: SecretKeys, x: np.ndarray) -> ScoreRequest:
    return ScoreRequest(keys.encrypt_record(info.record_encoding(), x), info.model_hash)


def encode(request: ScoreRequest, *, binary: bool = True) -> tuple[bytes, str]:
    form = WireForm.BINARY if binary else WireForm.JSON
    return protocol.encode_request(request, form), form.content_type


def envelope(key_id: str, data: ScoreRequest | dict, bundle: bytes | None = None, **extra) -> bytes:
    if isinstance(data, ScoreRequest):
        data = protocol.message_document(data)
    document = {"key_id": key_id, "data": data, **extra}
    if bundle is not None:
        document["keys"] = base64.b64encode(bundle).decode()
    return json.dumps(document).encode()


def post(url: str, body: bytes, content_type: str = "application/json", *, key_id: str | None = None,
         params: dict | None = None) -> requests.Response:
    headers = {"content-type": content_type} | ({"x-key-id": key_id} if key_id is not None else {})
    return requests.post(url, data=body, headers=headers, params=params, timeout=30)


def scores(info: ModelDescription, keys: SecretKeys, response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["X-Records-Disclosed"] == "1"
    reply = protocol.decode_response(response.content, response.headers["content-type"])
    assert reply.model_hash == info.model_hash
    return keys.decrypt_scores(info.record_encoding(), reply.ciphertexts)


def assert_error(response: requests.Response, status: int, code: str, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == code, body
    if message is not None:
        assert body["message"] == message
    return body


# -- the model description and the round trips ---------------------------------------------------


def test_get_on_score_describes_the_model_as_the_function_does(aml, service):
    assert requests.get(aml.url, timeout=30).json() == service.describe().to_dict()
    assert requests.get(aml.url.removesuffix("score"), timeout=10).text == "Healthy"
    assert f"Listening at: http://127.0.0.1:{aml.port} " in aml.log()  # loopback only, not 0.0.0.0


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_with_keys_in_the_containers_storage(aml, azurite, keys, digits, digits_estimator, binary):
    info, rows = describe(aml.url), digits[0][1500:1503]
    store(azurite, keys.public_bundle())
    for x, expected in zip(rows, digits_estimator.decision_function(rows)):
        body, content_type = encode(message(info, keys, x), binary=binary)
        response = post(aml.url, body, content_type, key_id=keys.key_id)
        assert response.headers["content-type"].startswith(content_type)
        np.testing.assert_allclose(scores(info, keys, response), expected, atol=1e-5)


def test_round_trip_in_the_tutorials_shape_with_keys_inline_or_stored(aml, azurite, digits, digits_estimator):
    info, x = describe(aml.url), digits[0][1510]
    expected = digits_estimator.decision_function(x[None])[0]
    inline = SecretKeys.generate(info.parameters)  # never stored anywhere
    response = post(aml.url, envelope(inline.key_id, message(info, inline, x), inline.public_bundle()))
    np.testing.assert_allclose(scores(info, inline, response), expected, atol=1e-5)
    stored = SecretKeys.generate(info.parameters)
    store(azurite, stored.public_bundle())
    response = post(aml.url, envelope(stored.key_id, message(info, stored, x)))
    np.testing.assert_allclose(scores(info, stored, response), expected, atol=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_client_with_keys_uploaded_to_storage(aml, azurite, digits, digits_estimator, binary):
    client = ScoringClient(aml.url, binary=binary)
    client.upload_keys_to_blob(connection_string=azurite.connection_string, container=CONTAINER)
    seen = []
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    rows = digits[0][1500:1510]
    np.testing.assert_array_equal(client.predict(rows), digits_estimator.predict(rows))
    np.testing.assert_allclose(client.decision_function(rows), digits_estimator.decision_function(rows), atol=1e-5)
    np.testing.assert_allclose(client.predict_proba(rows), digits_estimator.predict_proba(rows), atol=1e-5)
    posts = [r for r in seen if r.request.method == "POST"]
    assert posts and all(r.url == aml.url and r.request.headers["x-key-id"] == client.keys.key_id for r in posts)
    assert all(r.request.body[:4] == b"HESQ" for r in posts) if binary else all(
        r.request.body[:1] == b"{" and b'"keys"' not in r.request.body for r in posts)


def test_client_sends_keys_inline_when_none_are_stored(aml, digits, digits_estimator):
    client = ScoringClient(aml.url)  # only the URL differs from the function's client
    rows = digits[0][1520:1525]
    np.testing.assert_array_equal(client.predict(rows), digits_estimator.predict(rows))
    np.testing.assert_allclose(client.predict_proba(rows), digits_estimator.predict_proba(rows), atol=1e-5)
    with pytest.raises(NotImplementedError, match="upload_keys_to_blob"):
        client.upload_keys()


# -- errors: the same statuses and bodies as the function -----------------------------------------


def test_the_cli_predicts_against_the_container_and_has_nothing_to_clean_up(aml, digits, digits_estimator, tmp_path,
                                                                            capsys):
    from client.cli import main

    X = digits[0][1500:1505]
    np.save(tmp_path / "rows.npy", X)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "rows.npy"), "--endpoint", aml.url]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(label) for label in digits_estimator.predict(X)]
    assert "Traceback" not in err and "5 record(s) scored encrypted" in err


def test_malformed_json_is_400_in_both_forms(aml, keys):
    expected = "body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    assert_error(post(aml.url, b"{not json"), 400, "bad_request", expected)
    assert_error(post(aml.url, b"{not json", key_id=keys.key_id), 400, "bad_request", expected)


def test_unknown_key_id_is_404_in_both_forms(aml, keys, digits):
    info, unknown = describe(aml.url), "0f" * 32
    body, content_type = encode(message(info, keys, digits[0][1500]))
    for response in (post(aml.url, body, content_type, key_id=unknown),
                     post(aml.url, envelope(unknown, message(info, keys, digits[0][1500])))):
        error = assert_error(response, 404, "keys_not_found")
        assert error["message"].startswith(f"no key bundle is stored under key id {unknown}; "
                                           "upload the public keys first")


def test_bundle_holding_a_secret_key_is_422(aml, keys, digits):
    info = describe(aml.url)
    secret = runtime().save(keys.secret_key)
    bundle = keys.public_bundle()[:PREAMBLE.size + 8] + SECTION.pack(b"SKEY", len(secret)) + secret
    error = assert_error(post(aml.url, envelope(key_id_of(bundle), message(info, keys, digits[0][1500]), bundle)),
                         422, "keys_rejected")
    assert "holds a secret key" in error["message"]


def test_inline_bundle_must_hash_to_its_key_id(aml, keys, digits):
    info, other = describe(aml.url), "ab" * 32
    error = assert_error(post(aml.url, envelope(other, message(info, keys, digits[0][1500]), keys.public_bundle())),
                         422, "keys_rejected")
    assert "does not hash to its key id" in error["message"]


def test_ciphertext_for_other_parameters_is_422(aml, azurite, keys, digits):
    import tenseal.sealapi as seal

    from scoring.ckks import SealRuntime
    from scoring.parameters import CkksParameters

    info = describe(aml.url)
    store(azurite, keys.public_bundle())
    rt = SealRuntime(CkksParameters(4096, (seal.CoeffModulus.Create(4096, [60])[0].value(),)))
    foreign = rt.save_canonical(seal.Encryptor(rt.context, seal.KeyGenerator(rt.context).secret_key())
                                .encrypt_symmetric(rt.encode_coefficients(digits[0][1500],
                                                                          info.encryption.input_scale)))
    body, content_type = encode(ScoreRequest((foreign,), info.model_hash))
    assert_error(post(aml.url, body, content_type, key_id=keys.key_id), 422, "ciphertext_rejected",
                 "ciphertext 0: 32946 bytes of fields do not match the served parameters")


def test_credentials_in_a_request_are_refused(aml, keys, digits):
    info = describe(aml.url)
    data = message(info, keys, digits[0][1500])
    connection = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"
    body, content_type = encode(data)
    refused = [
        post(aml.url, envelope(keys.key_id, data, conn_str=connection, container="hekeys")),  # the tutorial's request
        post(aml.url, envelope(keys.key_id, data, sas_token="sv=2024&sig=x")),
        post(aml.url, envelope(keys.key_id, {"version": 2, "ciphertexts": [], "note": connection})),
        post(aml.url, body, content_type, key_id=keys.key_id, params={"conn_str": "x"}),
        requests.get(aml.url, params={"account_key": "x"}, timeout=30),
    ]
    for response in refused:
        error = assert_error(response, 400, "credentials_refused", protocol.CREDENTIALS_MESSAGE)
        assert "must never carry storage credentials" in error["message"]


def test_malformed_key_id_is_400(aml, keys, digits):
    expected = "key id must be 64 lowercase hex characters (the SHA-256 of the key bundle)"
    data = message(describe(aml.url), keys, digits[0][1500])
    assert_error(post(aml.url, b"{}", key_id="not-a-key-id"), 400, "bad_request", expected)
    assert_error(post(aml.url, envelope("../" + keys.key_id, data)), 400, "bad_request", expected)


def test_a_request_must_say_which_keys_and_be_well_formed(aml, keys, digits):
    info = describe(aml.url)
    body, _ = encode(message(info, keys, digits[0][1500]))
    assert "x-key-id header" in assert_error(post(aml.url, body, "application/octet-stream"), 400, "bad_request")[
        "message"]
    assert_error(post(aml.url, b"hello", "text/plain"), 415, "unsupported_media_type")
    assert_error(post(aml.url, b'{"key_id": "%s", "data": {}, "data": {}}' % keys.key_id.encode()), 400,
                 "bad_request", "JSON object repeats a field")
    assert_error(post(aml.url, envelope(keys.key_id, {"version": 2, "ciphertexts": ["??"]})), 400, "bad_request",
                 "ciphertext 0 is not valid base64")
    assert_error(post(aml.url, envelope(keys.key_id, "text")), 400, "bad_request")
    assert_error(post(aml.url, envelope(keys.key_id, {}, bundle=None, extra=1)), 400, "bad_request",
                 "unknown field(s) extra; expected key_id, data and optionally keys")


def test_oversized_bodies_are_413(aml, keys):
    largest = describe(aml.url).limits.largest
    body = b"x" * (largest + 1)
    assert_error(post(aml.url, body, "application/octet-stream", key_id=keys.key_id), 413, "payload_too_large")
    with socket.create_connection(("127.0.0.1", aml.port), timeout=30) as conn:  # refused before it is sent
        conn.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n")
        reply = b"".join(iter(lambda: conn.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.1 413") and b'"error": "payload_too_large"' in reply


# -- the tutorial's model, no storage -------------------------------------------------------------


@pytest.fixture(scope="module")
def tutorial_aml(tutorial_model_path, tmp_path_factory):
    """The pickle as Azure ML mounts it, read where it lies (SCORING_MODEL_PATH relative to the folder)."""
    server = AmlServer(tutorial_model_path.parent, tmp_path_factory.mktemp("aml-tutorial") / "server.log",
                       SCORING_MODEL_PATH=tutorial_model_path.name)
    yield server.wait_ready()
    server.stop()


@pytest.fixture(scope="module")
def tutorial_estimator(tutorial_model_path):
    import joblib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pickled by scikit-learn 0.22.1
        return joblib.load(tutorial_model_path)


def test_tutorial_model_without_storage(tutorial_aml, tutorial_estimator, mnist, keys):
    X, _ = mnist
    info = describe(tutorial_aml.url)
    assert (info.n_features, info.n_outputs, info.estimator) == (784, 10, "LogisticRegression")
    for x, expected in zip(X[:3], tutorial_estimator.decision_function(X[:3])):
        response = post(tutorial_aml.url, envelope(keys.key_id, message(info, keys, x), keys.public_bundle()))
        np.testing.assert_allclose(scores(info, keys, response), expected, atol=1e-5)
    body, content_type = encode(message(info, keys, X[0]))
    assert_error(post(tutorial_aml.url, body, content_type, key_id=keys.key_id), 404, "keys_not_found")
    assert "no key storage is configured" in tutorial_aml.log()


def test_tutorial_model_through_the_client(tutorial_aml, tutorial_estimator, mnist):
    X, _ = mnist
    client = ScoringClient(tutorial_aml.url)
    np.testing.assert_array_equal(client.predict(X[:5]), tutorial_estimator.predict(X[:5]))


# -- start-up ---------------------------------------------------------------------------------


def test_a_folder_without_one_model_fails_the_start(tmp_path):
    (tmp_path / "models" / "a").mkdir(parents=True)
    for name in ("a/one.pkl", "two.pkl"):
        (tmp_path / "models" / name).write_bytes(b"")
    server = AmlServer(tmp_path / "models", tmp_path / "server.log")
    try:
        assert server.process.wait(timeout=START_TIMEOUT) != 0
    finally:
        server.stop()
    assert "must hold one model file (.json, .pkl, .joblib); found a/one.pkl, two.pkl" in server.log()
    assert "Worker failed to boot" in server.log()


def test_model_is_found_in_azureml_model_dir(tmp_path, monkeypatch):
    from hosts.aml import find_model, host_settings

    nested = tmp_path / "m" / "1"
    nested.mkdir(parents=True)
    (nested / "model.pkl").write_bytes(b"")
    assert find_model(tmp_path) == nested / "model.pkl"
    (tmp_path / "model.model.json").write_text("{}")
    assert find_model(tmp_path) == tmp_path / "model.model.json"  # the exported artifact wins
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ModelError, match="found model.model.json, other.json. Set SCORING_MODEL_PATH"):
        find_model(tmp_path)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SCORING_MODEL_PATH", "m/1/model.pkl")
    for name in ("SCORING_STORAGE", "SCORING_KEYS_CONTAINER"):
        monkeypatch.delenv(name, raising=False)
    assert host_settings().scoring.model_path == str(nested / "model.pkl")
    monkeypatch.delenv("SCORING_MODEL_PATH")
    with pytest.raises(ModelError, match="must hold one model file"):
        host_settings()
    monkeypatch.delenv("AZUREML_MODEL_DIR")
    with pytest.raises(ModelError, match="set AZUREML_MODEL_DIR"):
        host_settings()


def test_the_container_follows_the_same_rule_for_storage_and_its_container(monkeypatch):
    from hosts.aml import host_settings
    from keystore.connection import ConfigurationError

    monkeypatch.setenv("SCORING_MODEL_PATH", "/m.json")
    monkeypatch.delenv("SCORING_STORAGE", raising=False)
    monkeypatch.setenv("SCORING_KEYS_CONTAINER", "hekeys")
    with pytest.raises(ConfigurationError, match="SCORING_KEYS_CONTAINER is set but SCORING_STORAGE is not"):
        host_settings()
    monkeypatch.setenv("SCORING_STORAGE", "UseDevelopmentStorage=true")
    monkeypatch.delenv("SCORING_KEYS_CONTAINER")
    with pytest.raises(ConfigurationError, match="SCORING_KEYS_CONTAINER is not set"):
        host_settings()
    monkeypatch.delenv("SCORING_STORAGE")
    monkeypatch.setenv("SCORING_STORAGE__serviceUri", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("SCORING_STORAGE__credential", "managedidentity")
    monkeypatch.setenv("SCORING_STORAGE__clientId", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("SCORING_KEYS_CONTAINER", "hekeys")
    storage = host_settings().storage
    assert (storage.service_uri, storage.client_id) == ("https://acct.blob.core.windows.net",
                                                        "11111111-2222-3333-4444-555555555555")


# -- the Dockerfile -------------------------------------------------------------------------------

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-aml.txt)")
    return found


def test_dockerfile_passes_hadolint():
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines, 1):  # every ignored rule says why, in the comment just above
        if "hadolint ignore=" in line:
            above = lines[number - 2] if number > 1 else ""
            assert above.startswith("#") and "hadolint" not in above, f"Dockerfile:{number}: an ignore without a reason"


def test_hadolint_finds_faults():
    bad = "FROM python:latest\nRUN pip install flask\nCMD python app.py\n"
    result = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout


def test_dockerfile_serves_score_py_as_non_root_with_a_healthcheck():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n.*CMD .*127\.0\.0\.1:5001/", text, re.MULTILINE)
    assert re.search(r'^CMD \["azmlinfsrv", "--entry_script", "/app/score\.py", "--port", "5001"\]', text, re.MULTILINE)
    assert "pip install --no-cache-dir -r requirements-aml.txt" in text
    assert "hadolint" not in (ROOT / "requirements-aml.txt").read_text()  # the lint tool stays out of the image


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, for the patterns used here: the last match wins, ``!`` re-includes."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").strip("/")
        anywhere = pattern.startswith("**/")
        pattern = pattern.removeprefix("**/")
        spans = [(i, j) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)] if anywhere else [
            (0, j) for j in range(1, len(parts) + 1)]
        if any(re.fullmatch(re.escape(pattern).replace(r"\*", "[^/]*"), "/".join(parts[i:j])) for i, j in spans):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_tests_tools_and_settings_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for kept_out in ("tests/test_aml.py", ".venv/bin/python", ".tools/azurite/x", "local.settings.json",
                     "models/digits.model.json", ".git/config", "scoring/__pycache__/service.cpython-311.pyc"):
        assert docker_ignored(kept_out, patterns), kept_out
    copied = re.findall(r"^COPY (.+) \S+$", DOCKERFILE.read_text(), re.MULTILINE)
    for source in " ".join(copied).split() + ["scoring/service.py", "hosts/aml.py"]:
        assert not docker_ignored(source.rstrip("/"), patterns), source


@pytest.mark.parametrize("body,fragment", [
    (b"[" * 50_000, "nested too deeply"),
    (b'{"key_id": ' + b"1" * 5000 + b"}", "not valid JSON"),
    (b'{"key_id": "a", "key_id": "b"}', "repeats a field"),
    (b'{"key_id": "' + b"a" * 64 + b'", "data": {}, "keys": 7}', "must be a base64 string"),
])
def test_the_tutorial_shape_is_parsed_as_strictly_as_the_core(body, fragment):
    from hosts.aml import parse_envelope
    from scoring.errors import BadRequest

    with pytest.raises(BadRequest, match=fragment):
        parse_envelope(body, "application/json")
