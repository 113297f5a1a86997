"""The attacker over HTTP, on both paths: a client that crafts its own keys and ciphertexts,
talks to function_app.py served on 127.0.0.1 (with Azurite), and decrypts every coefficient
of every answer.

Each test gives the attacker what it could have (its own secret, its own noise, the served
model's public description) and, where it makes the assertion stronger, more: the true bias.
The kernel-level tests in ``test_privacy.py`` show each attack succeeding against the old
behaviour (no masking, no flooding); these show the served service refusing it end to end:

* a one-record batch, every lane filled, by the library's encryption or with noise of the
  attacker's choosing (none), reveals that record's scores and nothing correlated with W;
* a key with secret 0 is refused however it reaches storage; a key with a sparse secret that
  passes the checks, with noiseless queries, still reads one weight column per answer, to the
  documented precision, on the single path and in a batch's declared lane;
* every coefficient not disclosed (single-path non-outputs, batch lanes at and beyond the
  declared records) is uniform modulo q.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests
import tenseal.sealapi as seal
from azure.storage.blob import BlobServiceClient
from scipy import stats

from attacker import crafted_keys, decrypt_all, exact_query, monomial
from client import ScoringClient, ServiceError
from client.keys import SecretKeys
from scoring import protocol
from scoring.ckks import runtime
from scoring.keys import key_id_of
from scoring.protocol import RECORDS_HEADER, ModelDescription, ScoreRequest, WireForm

CONTAINER = "httpkeys"  # the http_app fixture's container


@pytest.fixture(scope="module")
def info(http_app) -> ModelDescription:
    return ModelDescription.from_dict(requests.get(f"{http_app.url}/api/model", timeout=30).json())


def ternary_secret(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1, 2, size=runtime().degree)


@pytest.fixture(scope="module")
def quiet_keys(http_app) -> SecretKeys:
    """An attacker's key: a proper ternary secret (it passes every check) and no noise at all."""
    keys = crafted_keys(ternary_secret(21))
    assert upload(http_app, keys).status_code in (200, 201)
    return keys


@pytest.fixture(scope="module")
def library_keys(http_app) -> SecretKeys:
    keys = SecretKeys.generate()
    assert upload(http_app, keys).status_code in (200, 201)
    return keys


def upload(http_app, keys: SecretKeys) -> requests.Response:
    return requests.put(f"{http_app.url}/api/keys/{keys.key_id}", data=keys.public_bundle(), timeout=30)


def score(http_app, keys: SecretKeys, request: ScoreRequest) -> tuple[requests.Response, list[np.ndarray]]:
    """POST a crafted request; every coefficient of every result, exactly, in integer units."""
    response = requests.post(f"{http_app.url}/api/score/{keys.key_id}",
                             data=protocol.encode_request(request, WireForm.BINARY),
                             headers={"Content-Type": WireForm.BINARY.content_type}, timeout=60)
    assert response.status_code == 200, response.text
    results = protocol.decode_response(response.content, response.headers["Content-Type"]).ciphertexts
    rt = runtime()
    return response, [decrypt_all(keys, rt.load(seal.Ciphertext(), blob)) for blob in results]


def uniform_modulo_q(values: np.ndarray) -> float:
    """The p-value of a Kolmogorov-Smirnov test that residues are uniform in [0, q)."""
    q = float(runtime().moduli[0])
    return float(stats.kstest(np.mod(values.astype(np.float64), q) / q, "uniform").pvalue)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1])


def served_weights(info: ModelDescription, estimator) -> np.ndarray:
    """What the kernels multiply by: the weights acting on features divided by their bounds."""
    return estimator.coef_ * info.input_bounds


# -- the batch path: one declared record, every lane filled ----------------------------------------


@pytest.mark.parametrize("noise", ["library", "chosen"])
def test_a_one_record_batch_reveals_that_record_and_nothing_correlated_with_w(
        http_app, info, digits_estimator, library_keys, quiet_keys, noise):
    lanes = info.lane_encoding()
    degree = info.parameters.poly_modulus_degree
    X = np.random.default_rng(31).uniform(-1, 1, size=(degree, info.n_features))  # scaled into [-1, 1]
    if noise == "library":  # the project's own encryption: fresh noise the attacker knows nothing of
        keys = library_keys
        columns = tuple(keys.encrypt_coefficients(column, lanes.input_scale) for column in X.T)
    else:  # noise of the attacker's choosing: none
        keys = quiet_keys
        columns = tuple(exact_query(keys, np.rint(column * lanes.input_scale).astype(np.int64), lanes.input_scale)
                        for column in X.T)
    response, results = score(http_app, keys, ScoreRequest(columns, info.model_hash, records=1))
    assert response.headers[RECORDS_HEADER] == "1"
    scores = np.column_stack(results) / lanes.output_scale  # (lanes, outputs)

    expected = digits_estimator.decision_function(X[:1] * info.input_bounds)[0]
    assert np.abs(scores[0] - expected).max() <= info.batch.noise_bound + 1e-6  # the declared record

    design = np.column_stack([X, np.ones(degree)])[1:]  # every other lane, least squares for (W, b)
    solved, *_ = np.linalg.lstsq(design, scores[1:], rcond=None)
    explained = 1 - np.var(scores[1:] - design @ solved) / np.var(scores[1:])
    assert explained < 0.02  # no linear map of the records explains the other lanes
    assert abs(correlation(solved[:-1].T, served_weights(info, digits_estimator))) < 0.2  # 640 weights: 5 sd
    for output in results:
        assert uniform_modulo_q(output[1:]) > 1e-6  # every undisclosed lane: uniform modulo q


def test_undisclosed_lanes_are_uniform_and_declared_lanes_are_scores(http_app, info, digits_estimator,
                                                                      library_keys, digits):
    lanes = info.lane_encoding()
    X = digits[0][:300]
    columns = library_keys.encrypt_columns(lanes, X)
    response, results = score(http_app, library_keys, ScoreRequest(columns, info.model_hash, records=200))
    assert response.headers[RECORDS_HEADER] == "200"
    scores = np.column_stack(results) / lanes.output_scale
    np.testing.assert_allclose(scores[:200], digits_estimator.decision_function(X[:200]), atol=1e-5)
    truth = digits_estimator.decision_function(X[200:])  # the 100 records sent beyond the declared 200
    assert max(abs(correlation(scores[200:300, c], truth[:, c])) for c in range(info.n_outputs)) < 0.5  # 5 sd
    for output in results:
        assert uniform_modulo_q(output[200:]) > 1e-6


# -- the single path: every coefficient but the outputs ------------------------------------------


def test_every_coefficient_of_a_single_answer_but_its_scores_is_uniform(http_app, info, digits_estimator,
                                                                        quiet_keys, digits):
    encoding = info.record_encoding()
    x = digits[0][1600]
    chunks = tuple(exact_query(quiet_keys, np.rint(chunk * encoding.input_scale).astype(np.int64),
                               encoding.input_scale) for chunk in encoding.chunks(x))
    response, results = score(http_app, quiet_keys, ScoreRequest(chunks, info.model_hash))
    assert response.headers[RECORDS_HEADER] == "1"
    scores = encoding.scores([r / encoding.output_scale for r in results])
    np.testing.assert_allclose(scores, digits_estimator.decision_function(x[None])[0], atol=1e-5)
    for product, result in enumerate(results):
        others = np.delete(result, encoding.layout.output_positions(product))
        assert uniform_modulo_q(others) > 1e-6


# -- crafted keys: a secret of 0 is refused; a sparse one gains nothing ----------------------------


def test_a_secret_of_zero_is_refused_even_when_written_straight_to_storage(http_app, azurite, info, digits):
    zero = crafted_keys(np.zeros(runtime().degree, dtype=np.int64))
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.get_blob_client(CONTAINER, zero.key_id).upload_blob(zero.public_bundle(), overwrite=True)
    chunks = zero.encrypt_record(info.record_encoding(), digits[0][1600])
    response = requests.post(f"{http_app.url}/api/score/{zero.key_id}",
                             data=protocol.encode_request(ScoreRequest(chunks, info.model_hash), WireForm.BINARY),
                             headers={"Content-Type": WireForm.BINARY.content_type}, timeout=60)
    assert response.status_code == 422
    assert response.json()["error"] == "keys_rejected"
    assert "visibly malformed: its secret is 0" in response.json()["message"]
    assert RECORDS_HEADER not in response.headers


@pytest.mark.parametrize("path", ["single", "batch"])
def test_a_sparse_secret_and_noiseless_queries_read_one_weight_column_per_answer(
        http_app, info, digits_estimator, path):
    """Issue 10's packing attack over HTTP: with the secret X (sparse, yet it passes the key
    checks) and no encryption noise, a query with x_i = 1 and x_j = K would read columns i and j
    at once from noiseless answers. The served noise caps every readable coefficient at
    log2(q / (2w + 1)) bits, so column j comes back to that precision and column i is lost."""
    attacker = crafted_keys(monomial(runtime().degree))
    assert upload(http_app, attacker).status_code in (200, 201)  # it passes every key check
    if path == "single":
        input_scale, output_scale = info.encryption.input_scale, info.encryption.output_scale
        noise_bound = info.encryption.noise_bound
    else:
        input_scale, output_scale = info.batch.input_scale, info.batch.output_scale
        noise_bound = info.batch.noise_bound
    weights = np.rint(served_weights(info, digits_estimator) * (output_scale / input_scale))  # integers served
    bias = np.rint(digits_estimator.intercept_ * output_scale)  # given to the attacker, to be generous
    q = float(runtime().moduli[0])
    spacing = 2 ** int(np.floor(np.log2(q / 4 / np.abs(weights).max())))  # no wrap-around
    noise = noise_bound * output_scale  # the served half-width, in integer units
    assert spacing > 4 * np.abs(weights).max()  # column i fits below column j, were there no noise

    def ask(i: int, j: int) -> np.ndarray:
        """Integer scores, minus the bias, for the query x_i = 1, x_j = spacing."""
        degree = runtime().degree
        if path == "single":
            plain = np.zeros(degree, dtype=np.int64)
            plain[i], plain[j] = 1, spacing  # features i, j of the first chunk
            request = ScoreRequest((exact_query(attacker, plain, input_scale),), info.model_hash)
            _, results = score(http_app, attacker, request)
            return results[0][info.record_encoding().layout.output_positions(0)] - bias
        lane0 = {i: 1, j: spacing}
        columns = tuple(exact_query(attacker, np.array([lane0.get(f, 0)]), input_scale)
                        for f in info.lane_encoding().features)
        _, results = score(http_app, attacker, ScoreRequest(columns, info.model_hash, records=1))
        return np.array([output[0] for output in results]) - bias

    outputs = info.record_encoding().layout.outputs_in(0) if path == "single" else range(info.n_outputs)
    pairs = [(2 * k + 10, 2 * k + 11) for k in range(4)]  # away from digits' all-zero border columns
    read_i, true_i = [], []
    for i, j in pairs:
        answer = ask(i, j)
        column_j = np.rint(answer / spacing)
        assert np.abs(column_j - weights[list(outputs), j]).max() <= noise / spacing + 1  # j, to the cap
        read_i.append(answer - column_j * spacing)
        true_i.append(weights[list(outputs), i])
    read_i, true_i = np.concatenate(read_i), np.concatenate(true_i)
    assert np.median(np.abs(read_i - true_i)) > 20 * np.median(np.abs(true_i))  # column i is lost


# -- the owner's caps: records per batch here, records per caller in front -------------------------


def test_the_owner_caps_the_records_one_batch_may_disclose(azurite, digits_model_path, digits, digits_estimator,
                                                           library_keys):
    from conftest import running_app

    with running_app(azurite, digits_model_path, container="cappedkeys", SCORING_BATCH_MAX_RECORDS="500") as app:
        info = ModelDescription.from_dict(requests.get(f"{app.url}/api/model", timeout=30).json())
        assert info.batch.max_records == 500
        X = digits[0][:1200]
        with ScoringClient(app.url, batch_threshold=1, processes=1, progress=False) as client:
            seen = []
            client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
            np.testing.assert_array_equal(client.predict(X), digits_estimator.predict(X))
            assert [r.headers[RECORDS_HEADER] for r in seen if "/api/score/" in r.url] == ["500", "500", "200"]
        assert upload(app, library_keys).status_code in (200, 201)
        columns = library_keys.encrypt_columns(info.lane_encoding(), X[:500])  # 8,192 lanes whatever is declared
        response = requests.post(f"{app.url}/api/score/{library_keys.key_id}",
                                 data=protocol.encode_request(ScoreRequest(columns, info.model_hash, records=501),
                                                              WireForm.BINARY),
                                 headers={"Content-Type": WireForm.BINARY.content_type}, timeout=60)
        assert response.status_code == 400 and RECORDS_HEADER not in response.headers
        assert response.json()["message"] == "a batch holds at most 500 records, not 501"


def test_the_api_management_policy_counts_the_header_the_service_sends():
    """docs/apim/score-policy.xml: a per-subscription quota whose counter rises by each 200's
    X-Records-Disclosed, the function key kept out of callers' hands, concurrency bounded."""
    import xml.etree.ElementTree as ET
    from pathlib import Path

    root = ET.parse(Path(__file__).parents[1] / "docs" / "apim" / "score-policy.xml").getroot()
    quota = root.find("inbound/quota-by-key")
    assert quota is not None and int(quota.get("calls")) > 0
    assert quota.get("renewal-period") == "0" or int(quota.get("renewal-period")) >= 300  # APIM's minimum
    assert "context.Subscription.Id" in quota.get("counter-key")
    assert quota.get("increment-condition") == "@(context.Response.StatusCode == 200)"
    count = quota.get("increment-count")
    assert f'GetValueOrDefault("{RECORDS_HEADER}", "8192")' in count and count.startswith("@(int.Parse(")
    key = root.find("inbound/set-header[@name='x-functions-key']/value")
    assert key is not None and key.text == "{{scoring-function-key}}"  # a named value, not a key
    limit = root.find("backend/limit-concurrency")
    assert limit is not None and limit.find("forward-request") is not None
    assert "context.Subscription.Id" in limit.get("key") and int(limit.get("max-count")) >= 1


class QuotaGateway(BaseHTTPRequestHandler):
    """What docs/apim/score-policy.xml makes API Management do, as a stand-in (API Management
    cannot run here): callers present a subscription key under the API's own suffix; each 200
    from the score route adds its X-Records-Disclosed to the subscription's counter; a caller
    at its quota gets API Management's 403."""

    backend = ""
    quota = 0
    counters: dict[str, int] = {}

    def _forward(self) -> None:
        subscription = self.headers.get("Ocp-Apim-Subscription-Key")
        if subscription is None:
            return self._reply(401, {"statusCode": 401, "message": "Access denied due to missing subscription key."})
        if self.counters.get(subscription, 0) >= self.quota:
            return self._reply(403, {"statusCode": 403, "message": "Out of call volume quota."}, {"Retry-After": "60"})
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept", "x-key-proof")}
        path = "/api/" + self.path.removeprefix("/scoring/")
        answer = requests.request(self.command, self.backend + path, data=body, headers=headers, timeout=60)
        if answer.status_code == 200 and "/score/" in path:
            self.counters[subscription] = self.counters.get(subscription, 0) + int(
                answer.headers.get(RECORDS_HEADER, "8192"))
        self.send_response(answer.status_code)
        for name in ("Content-Type", RECORDS_HEADER):
            if name in answer.headers:
                self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def _reply(self, status: int, document: dict, headers: dict | None = None) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def log_message(self, *args):
        pass


def test_a_caller_behind_the_quota_is_stopped_once_its_records_are_spent(http_app, digits, digits_estimator):
    QuotaGateway.backend, QuotaGateway.quota, QuotaGateway.counters = http_app.url, 300, {}
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), QuotaGateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    session = requests.Session()
    session.headers["Ocp-Apim-Subscription-Key"] = "caller-a"
    try:
        with ScoringClient(f"http://127.0.0.1:{gateway.server_port}", route_prefix="scoring", session=session,
                           batch_threshold=1, processes=1, progress=False) as client:
            X = digits[0][:250]
            np.testing.assert_array_equal(client.predict(X), digits_estimator.predict(X))  # 250 disclosed
            client.predict(X[:1])  # 251: still under the quota, which is checked on arrival
            client.predict(X[:60])  # 311: counted when it leaves
            with pytest.raises(ServiceError) as refused:
                client.predict(X[:1])
            assert refused.value.status == 403 and "Out of call volume quota" in str(refused.value)
        assert QuotaGateway.counters == {"caller-a": 311}
    finally:
        gateway.shutdown()


# -- junk says nothing about whether someone's key id exists ----------------------------------------


@pytest.mark.parametrize("proof", [None, "", "not hex", "0" * 31, "A" * 32])
def test_a_junk_delete_is_refused_alike_whether_or_not_the_bundle_exists(http_app, library_keys, proof):
    absent = key_id_of(b"a bundle nobody uploaded")
    headers = {} if proof is None else {"X-Key-Proof": proof}
    answers = [requests.delete(f"{http_app.url}/api/keys/{key_id}", headers=headers, timeout=30)
               for key_id in (library_keys.key_id, absent)]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json() and answers[0].json()["error"] == "proof_required"
    assert upload(http_app, library_keys).status_code == 200  # still stored: 200 "already there"


def test_a_junk_score_request_is_refused_before_the_key_id_is_looked_up(http_app, library_keys):
    absent = key_id_of(b"a bundle nobody uploaded")
    answers = [requests.post(f"{http_app.url}/api/score/{key_id}", data=b'{"version": 2, "ciphertexts": ["AAAA"]}',
                             headers={"Content-Type": "application/json"}, timeout=30)
               for key_id in (library_keys.key_id, absent)]
    assert [a.status_code for a in answers] == [422, 422] and answers[0].json() == answers[1].json()


def test_a_captured_deletion_proof_cannot_be_replayed(http_app, azurite):
    """Someone who saw the owner's DELETE (its X-Key-Proof) cannot delete the bundle again once
    it is uploaded again: each challenge's nonce serves one deletion."""
    owner = ScoringClient(http_app.url)
    owner.upload_keys()
    sent = []
    owner.session.hooks["response"].append(lambda r, *a, **k: sent.append(r))
    assert owner.delete_keys() is True
    proof = next(r.request.headers["X-Key-Proof"] for r in sent if r.request.method == "DELETE")
    owner.upload_keys()
    replayed = requests.delete(f"{http_app.url}/api/keys/{owner.keys.key_id}", headers={"X-Key-Proof": proof},
                               timeout=30)
    assert replayed.status_code == 403 and replayed.json()["error"] == "proof_required"
    assert upload(http_app, owner.keys).status_code == 200  # still stored
    requests.post(f"{http_app.url}/api/keys/{owner.keys.key_id}/challenge", timeout=30)  # a new challenge...
    again = requests.delete(f"{http_app.url}/api/keys/{owner.keys.key_id}", headers={"X-Key-Proof": proof},
                            timeout=30)
    assert again.status_code == 403  # ...is a new nonce: the old answer does not fit it
    assert owner.delete_keys() is True


def test_the_direct_upload_refuses_what_the_service_refuses_and_needs_the_services_container(azurite, monkeypatch):
    from keystore.blobs import upload_bundle
    from keystore.connection import ConfigurationError
    from scoring.errors import KeysRejected

    zero = crafted_keys(np.zeros(runtime().degree, dtype=np.int64))
    with pytest.raises(KeysRejected, match="visibly malformed: its secret is 0"):
        upload_bundle(zero.public_bundle(), connection_string=azurite.connection_string, container=CONTAINER)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert not service.get_blob_client(CONTAINER, zero.key_id).exists()  # nothing was sent
    monkeypatch.setenv("SCORING_STORAGE", azurite.connection_string)
    monkeypatch.delenv("SCORING_KEYS_CONTAINER", raising=False)
    with pytest.raises(ConfigurationError, match="SCORING_KEYS_CONTAINER"):
        upload_bundle(SecretKeys.generate().public_bundle(), setting="SCORING_STORAGE")
