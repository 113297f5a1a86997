"""The batch path: feature-major SIMD, many records per request."""

from __future__ import annotations

import numpy as np
import pytest
import requests
import tenseal.sealapi as seal

from client import ScoringClient
from client.bulk import ColumnEncryptor, bulk_pays_off
from scoring import protocol
from scoring.bulk import BulkEncoding, BulkKernel
from scoring.ckks import runtime
from scoring.errors import BadRequest, CiphertextRejected, PayloadTooLarge
from scoring.keys import load_bundle
from scoring.model import LinearModel
from scoring.service import ScoringService, Settings


def run_bulk(kernel: BulkKernel, keys, X) -> np.ndarray:
    rt = kernel.rt
    columns = [rt.load(seal.Ciphertext(), b) for b in keys.encrypt_columns(kernel.encoding, X)]
    results = kernel.evaluate(columns, load_bundle(keys.public_bundle()).encryptor)
    return keys.decrypt_columns(kernel.encoding, tuple(rt.save_canonical(r) for r in results), len(X))


def test_random_affine_map_in_batches(keys):
    rng = np.random.default_rng(5)
    coef = rng.normal(size=(4, 30)) / 5
    coef[:, 7] = 0.0  # a feature with no weight is not sent
    model = LinearModel(coef, rng.normal(size=4), "regressor", input_bound=2.0)
    kernel = BulkKernel(model, runtime())
    assert 7 not in kernel.encoding.features and len(kernel.encoding.features) == 29
    X = rng.uniform(-2, 2, size=(300, 30))
    np.testing.assert_allclose(run_bulk(kernel, keys, X), model.decision_function(X), atol=1e-4)


def test_results_are_rerandomized(keys):
    model = LinearModel(np.ones((1, 3)), np.zeros(1), "regressor")
    kernel = BulkKernel(model, runtime())
    rt = kernel.rt
    columns = [rt.load(seal.Ciphertext(), b) for b in keys.encrypt_columns(kernel.encoding, np.eye(3))]
    encryptor = load_bundle(keys.public_bundle()).encryptor
    first, second = (rt.save_body(kernel.evaluate(columns, encryptor)[0]) for _ in range(2))
    assert first != second
    # Without re-randomization the result's second part would be sum_j w_j * c1_j, which the
    # client could solve for the weights; with it, it is fresh:
    c1 = [rt.ciphertext_polys(rt.save_body(c), 2)[1] for c in columns]
    assert not np.array_equal(rt.ciphertext_polys(first, 2)[1], sum(c1) % rt.moduli[0])


@pytest.fixture(scope="module")
def small_cap_service(digits_model_path):
    # digits: 61 used features; a seeded binary batch is about 4.0 MB, seeded JSON about 5.4 MB
    return ScoringService(Settings(model_path=str(digits_model_path), max_bulk_request_bytes=5_000_000))


def batch_request(service, keys, X, *, binary=True, records=None):
    info = service.describe()
    encoding = BulkEncoding.from_description(info)
    blobs = keys.encrypt_columns(encoding, X)
    return protocol.encode(protocol.ScoreMessage(blobs, info["model_hash"], records or len(X)), binary=binary,
                           response=False)


def test_service_scores_a_batch(service, keys, digits, digits_estimator):
    X = digits[0][1500:1700]
    body, content_type = batch_request(service, keys, X)
    out, out_type = service.score(keys.key_id, keys.public_bundle(), body, content_type)
    reply = protocol.decode(out, out_type, response=True)
    assert reply.records == 200 and len(reply.ciphertexts) == 10
    scores = keys.decrypt_columns(BulkEncoding.from_description(service.describe()), reply.ciphertexts, 200)
    np.testing.assert_allclose(scores, digits_estimator.decision_function(X), atol=1e-4)
    assert (scores.argmax(axis=1) == digits_estimator.predict(X)).all()


def test_batch_over_the_cap_is_413_naming_the_functions_limits(small_cap_service, keys, digits):
    body, content_type = batch_request(small_cap_service, keys, digits[0][:10], binary=False)
    with pytest.raises(PayloadTooLarge, match="below Azure Functions' 100 MB request limit"):
        small_cap_service.score(keys.key_id, keys.public_bundle(), body, content_type)
    body, content_type = batch_request(small_cap_service, keys, digits[0][:10], binary=True)
    small_cap_service.score(keys.key_id, keys.public_bundle(), body, content_type)  # the compact form fits


def test_batch_refusals(service, keys, digits):
    body, content_type = batch_request(service, keys, digits[0][:3], records=5000)
    with pytest.raises(BadRequest, match="at most 4096 records"):
        service.score(keys.key_id, keys.public_bundle(), body, content_type)
    info = service.describe()
    blobs = keys.encrypt_columns(BulkEncoding.from_description(info), digits[0][:3])[:-1]
    body, content_type = protocol.encode(protocol.ScoreMessage(blobs, info["model_hash"], 3), binary=True,
                                         response=False)
    with pytest.raises(CiphertextRejected, match=r"takes 61 ciphertexts \(one per feature with a nonzero"):
        service.score(keys.key_id, keys.public_bundle(), body, content_type)


def test_wide_model_has_no_batch_path(tmp_path, keys):
    from scoring.model import export_model

    model = LinearModel(np.full((1, 20_000), 1e-4), np.zeros(1), "regressor")
    service = ScoringService(Settings(model_path=str(export_model(model, tmp_path / "wide.json"))))
    assert service.describe()["bulk"] is None  # 20,000 ciphertexts would be 1.3 GB
    body, content_type = protocol.encode(protocol.ScoreMessage((b"x",), model.model_hash, 2), binary=True,
                                         response=False)
    with pytest.raises(BadRequest, match="no batch path"):
        service.score(keys.key_id, keys.public_bundle(), body, content_type)


def test_crossover():
    encoding = BulkEncoding(tuple(range(717)), 4096, 784, 10, np.ones(784), 2.0 ** 30, 2.0 ** 50)
    assert not bulk_pays_off(1, encoding) and not bulk_pays_off(50, encoding)
    assert bulk_pays_off(4096, encoding)
    assert not bulk_pays_off(10_000, None)


def test_parallel_encryption_in_worker_processes(keys, digits, digits_estimator, service):
    encoding = BulkEncoding.from_description(service.describe())
    encryptor = ColumnEncryptor(keys, encoding, processes=2)
    try:
        X = digits[0][1500:1520]
        blobs = encryptor.encrypt(X, parallel=True)
    finally:
        encryptor.close()
    assert len(blobs) == len(encoding.features)
    body, content_type = protocol.encode(protocol.ScoreMessage(blobs, service.describe()["model_hash"], 20),
                                         binary=True, response=False)
    out, out_type = service.score(keys.key_id, keys.public_bundle(), body, content_type)
    scores = keys.decrypt_columns(encoding, protocol.decode(out, out_type, response=True).ciphertexts, 20)
    assert (scores.argmax(axis=1) == digits_estimator.predict(X)).all()


def test_client_streams_batches_over_http(http_app, digits, digits_estimator):
    X = np.vstack([digits[0][1500:]] * 20)[:5000]  # two batches
    with ScoringClient(http_app.url, bulk_threshold=1, progress=False) as client:
        seen = []
        client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
        labels = client.predict(X)
        np.testing.assert_array_equal(labels, digits_estimator.predict(X))
        batches = [r for r in seen if "/api/score/" in r.url]
        assert len(batches) == 2 and all(r.content[:4] == b"HESP" for r in batches)
        assert len(batches[0].request.body) / 4096 < 16_000  # bytes per record, up
        assert len(batches[0].content) / 4096 < 400  # bytes per record, down
        np.testing.assert_allclose(client.predict_proba(X[:300]), digits_estimator.predict_proba(X[:300]),
                                   atol=1e-4)


def test_batch_request_to_a_model_without_batches_over_http(http_app):
    response = requests.post(f"{http_app.url}/api/score/{'ab' * 32}", data=b'{"version": 1, "ciphertexts": '
                             b'["AAAA"], "records": 0}', headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400 and "records must be between 1 and" in response.json()["message"]


def test_a_batch_is_refused_like_a_record(service, digits):
    encoding = BulkEncoding.from_description(service.describe())
    X = digits[0][:5].copy()
    X[3, 7] = 2.0
    with pytest.raises(ValueError, match="record 3 feature 7 is 2, its bound 1"):
        encoding.columns(X)
    with pytest.raises(ValueError, match="takes 64 features"):
        encoding.columns(X[:, :10])
