"""The batch path: many records per request, in coefficient lanes."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import requests
import tenseal.sealapi as seal

from client import ScoringClient
from client.batches import batch_pays_off, full_batches, in_executor
from client.datasets import load_digits_scaled
from client.workers import EncryptionPool
from scoring import protocol
from scoring.ckks import runtime
from scoring.encoding import LaneEncoding
from scoring.errors import BadRequest, CiphertextRejected, PayloadTooLarge
from scoring.kernels.lanes import LaneKernel
from scoring.keys import load_bundle
from scoring.model import LinearModel, export_model
from scoring.protocol import ScoreRequest, WireForm
from scoring.service import ScoringService
from scoring.settings import Settings
from helpers import score_bytes


def run_lanes(kernel: LaneKernel, keys, X) -> np.ndarray:
    rt = kernel.rt
    columns = [rt.load(seal.Ciphertext(), b) for b in keys.encrypt_columns(kernel.encoding, X)]
    results = kernel.evaluate(columns, load_bundle(keys.public_bundle()).encryptor, len(X))
    return keys.decrypt_columns(kernel.encoding, tuple(rt.save_canonical(r) for r in results), len(X))


def test_random_affine_map_in_lanes(keys):
    rng = np.random.default_rng(5)
    coef = rng.normal(size=(4, 30)) / 5
    coef[:, 7] = 0.0
    model = LinearModel(coef, rng.normal(size=4), "regressor", input_bound=2.0)
    kernel = LaneKernel(model, runtime())
    assert kernel.encoding.features == tuple(range(30))  # every feature is sent: zero columns stay hidden
    X = rng.uniform(-2, 2, size=(300, 30))
    np.testing.assert_allclose(run_lanes(kernel, keys, X), model.decision_function(X), atol=1e-5)
    skipping = LaneKernel(model, runtime(), skip_zero_features=True)
    assert 7 not in skipping.encoding.features and len(skipping.encoding.features) == 29
    np.testing.assert_allclose(run_lanes(skipping, keys, X), model.decision_function(X), atol=1e-5)


def test_a_full_batch_fills_every_lane(keys):
    rng = np.random.default_rng(6)
    model = LinearModel(rng.normal(size=(2, 5)), rng.normal(size=2), "regressor")
    kernel = LaneKernel(model, runtime())
    X = rng.uniform(-1, 1, size=(kernel.encoding.max_records, 5))
    assert kernel.encoding.max_records == 8192
    np.testing.assert_allclose(run_lanes(kernel, keys, X), model.decision_function(X), atol=1e-5)


def test_results_are_rerandomized(keys):
    model = LinearModel(np.ones((1, 3)), np.zeros(1), "regressor")
    kernel = LaneKernel(model, runtime())
    rt = kernel.rt
    columns = [rt.load(seal.Ciphertext(), b) for b in keys.encrypt_columns(kernel.encoding, np.eye(3))]
    encryptor = load_bundle(keys.public_bundle()).encryptor
    first, second = (rt.save_body(kernel.evaluate(columns, encryptor, 3)[0]) for _ in range(2))
    assert first != second
    # Without re-randomization the result's second part would be sum_j w_j * c1_j, which the
    # client could solve for the weights; with it, it is fresh:
    c1 = [rt.ciphertext_polys(rt.save_body(c), 2)[1] for c in columns]
    assert not np.array_equal(rt.ciphertext_polys(first, 2)[1], sum(c1) % rt.moduli[0])


@pytest.fixture(scope="module")
def small_cap_service(digits_model_path):
    # digits: 64 features; a seeded binary batch is about 4.2 MB, seeded JSON about 5.6 MB
    return ScoringService(Settings(model_path=str(digits_model_path), max_batch_request_bytes=5_000_000))


def batch_request(service, keys, X, *, binary=True, records=None) -> tuple[bytes, str]:
    info = service.describe()
    blobs = keys.encrypt_columns(info.lane_encoding(), X)
    form = WireForm.BINARY if binary else WireForm.JSON
    return protocol.encode_request(ScoreRequest(blobs, info.model_hash, records or len(X)), form), form.content_type


def test_service_scores_a_batch(service, keys, digits, digits_estimator):
    X = digits[0][1500:1700]
    out, out_type = score_bytes(service, keys.key_id, keys.public_bundle(), *batch_request(service, keys, X))
    reply = protocol.decode_response(out, out_type)
    assert reply.records == 200 and reply.disclosed == 200 and len(reply.ciphertexts) == 10
    scores = keys.decrypt_columns(service.describe().lane_encoding(), reply.ciphertexts, 200)
    np.testing.assert_allclose(scores, digits_estimator.decision_function(X), atol=1e-5)
    assert (scores.argmax(axis=1) == digits_estimator.predict(X)).all()


def test_batch_over_the_cap_is_413_naming_the_functions_limits(small_cap_service, keys, digits):
    body, content_type = batch_request(small_cap_service, keys, digits[0][:10], binary=False)
    with pytest.raises(PayloadTooLarge, match="below Azure Functions' 100 MB request limit"):
        score_bytes(small_cap_service, keys.key_id, keys.public_bundle(), body, content_type)
    body, content_type = batch_request(small_cap_service, keys, digits[0][:10], binary=True)
    score_bytes(small_cap_service, keys.key_id, keys.public_bundle(), body, content_type)  # the compact form fits


def test_batch_refusals(service, keys, digits):
    body, content_type = batch_request(service, keys, digits[0][:3], records=9000)
    with pytest.raises(BadRequest, match="at most 8192 records"):
        score_bytes(service, keys.key_id, keys.public_bundle(), body, content_type)
    info = service.describe()
    blobs = keys.encrypt_columns(info.lane_encoding(), digits[0][:3])[:-1]
    with pytest.raises(CiphertextRejected, match=r"takes 64 ciphertexts \(one per feature\), not 63"):
        service.score(keys.key_id, keys.public_bundle(), ScoreRequest(blobs, info.model_hash, 3))


def test_the_description_names_zero_weight_columns_only_when_the_owner_chooses(tmp_path, keys):
    coef = np.ones((2, 6))
    coef[:, 2] = 0.0
    path = export_model(LinearModel(coef, np.zeros(2), "regressor"), tmp_path / "sparse.json")
    hidden = ScoringService(Settings(model_path=str(path))).describe()
    assert hidden.batch.features is None and hidden.to_dict()["batch"]["features"] is None
    assert hidden.lane_encoding().features == tuple(range(6))
    named = ScoringService(Settings(model_path=str(path), batch_skip_zero_features=True)).describe()
    assert named.batch.features == (0, 1, 3, 4, 5)


def test_wide_model_has_no_batch_path(tmp_path, keys):
    model = LinearModel(np.full((1, 20_000), 1e-4), np.zeros(1), "regressor")
    service = ScoringService(Settings(model_path=str(export_model(model, tmp_path / "wide.json"))))
    assert service.describe().batch is None  # 20,000 ciphertexts would be 1.3 GB
    with pytest.raises(BadRequest, match="no batch path"):
        service.score(keys.key_id, keys.public_bundle(), ScoreRequest((b"x",), model.model_hash, 2))


def test_when_batches_pay():
    encoding = LaneEncoding(tuple(range(784)), 8192, 784, 10, np.ones(784), 2.0 ** 27, 2.0 ** 50)
    assert not batch_pays_off(1, encoding) and not batch_pays_off(50, encoding)
    assert batch_pays_off(8192, encoding)
    assert not batch_pays_off(10_000, None)


def test_full_batches_fill_across_chunk_boundaries():
    chunks = [np.full((n, 2), n, dtype=float) for n in (3, 0, 5, 4, 1)]
    sizes: list[int] = []
    blocks = list(full_batches(iter(chunks), 4, sizes))
    assert [len(b) for b in blocks] == [4, 4, 4, 1] and sizes == [3, 0, 5, 4, 1]
    np.testing.assert_array_equal(np.concatenate(blocks), np.concatenate(chunks))


@pytest.mark.parametrize("seed", range(5))
def test_blocks_and_cuts_round_trip_any_chunking(seed):
    """Random chunk sizes (empty, tiny, several blocks long): blocks are full but the last, the
    records come out in order, and cutting per-block results back gives each chunk its own."""
    from client.batches import cut

    rng = np.random.default_rng(seed)
    counts = rng.choice([0, 1, 2, 3, 7, 16, 40], size=30)
    records = np.arange(int(counts.sum()) * 2, dtype=float).reshape(-1, 2)
    chunks = np.split(records, np.cumsum(counts)[:-1])
    sizes: list[int] = []
    blocks = list(full_batches(iter(chunks), 8, sizes))
    assert all(len(b) == 8 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 8
    np.testing.assert_array_equal(np.concatenate(blocks), records)
    scores, out = [], []
    for block in blocks:  # a "score" per record: its first feature, as one output
        scores.append(block[:, :1])
        out.extend(cut(scores, sizes, 1, done=False))
    out.extend(cut(scores, sizes, 1, done=True))
    assert [len(o) for o in out] == list(counts)
    for chunk, result in zip(chunks, out):
        np.testing.assert_array_equal(result, chunk[:, :1])


def test_parallel_encryption_in_worker_processes(keys, digits, digits_estimator, service):
    encoding = service.describe().lane_encoding()
    pool = EncryptionPool(keys, processes=2)
    try:
        X = digits[0][1500:1520]
        blobs = pool.encrypt(encoding.columns(X), encoding.input_scale)
        assert len(pool._workers) == 2
    finally:
        pool.close()
    assert len(blobs) == 64 and not pool._workers
    response = service.score(keys.key_id, keys.public_bundle(), ScoreRequest(blobs, service.describe().model_hash, 20))
    scores = keys.decrypt_columns(encoding, response.ciphertexts, 20)
    assert (scores.argmax(axis=1) == digits_estimator.predict(X)).all()


def test_client_streams_full_batches_over_http(http_app, digits, digits_estimator):
    X = np.vstack([digits[0][1500:]] * 40)[:10_000]  # one full batch, then the rest
    with ScoringClient(http_app.url, batch_threshold=1, progress=False, processes=2) as client:
        seen = []
        client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
        labels = client.predict(X)
        np.testing.assert_array_equal(labels, digits_estimator.predict(X))
        batches = [r for r in seen if "/api/score/" in r.url]
        assert len(batches) == 2 and all(r.content[:4] == b"HESP" for r in batches)
        assert [r.headers["X-Records-Disclosed"] for r in batches] == ["8192", "1808"]
        assert len(batches[0].request.body) / 8192 < 6_000  # bytes per record, up (64 features)
        assert len(batches[0].content) / 8192 < 200  # bytes per record, down
        np.testing.assert_allclose(client.predict_proba(X[:300]), digits_estimator.predict_proba(X[:300]),
                                   atol=1e-5)


def test_score_stream_yields_one_result_per_chunk_in_order(http_app, digits, digits_estimator):
    X = digits[0][1500:]
    chunks = [X[:100], X[100:100], X[100:250], X[250:]]
    with ScoringClient(http_app.url, batch_threshold=1, progress=False, processes=1) as client:
        results = list(client.score_stream(iter(chunks), output="label"))
    assert [len(r) for r in results] == [100, 0, 150, len(X) - 250]
    np.testing.assert_array_equal(np.concatenate(results), digits_estimator.predict(X))


def test_batch_request_with_a_bad_record_count_over_http(http_app):
    response = requests.post(f"{http_app.url}/api/score/{'ab' * 32}", data=b'{"version": 2, "ciphertexts": '
                             b'["AAAA"], "records": 0}', headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400 and "records must be between 1 and" in response.json()["message"]


def test_a_batch_is_refused_like_a_record(service, digits):
    encoding = service.describe().lane_encoding()
    X = digits[0][:5].copy()
    X[3, 7] = 2.0
    with pytest.raises(ValueError, match="record 3 feature 7 is 2, its bound 1"):
        encoding.columns(X)
    with pytest.raises(ValueError, match="takes 64 features"):
        encoding.columns(X[:, :10])


PLAIN_SCRIPT = """
import numpy as np
from client import ScoringClient
from client.datasets import load_digits_scaled
X = np.vstack([load_digits_scaled()[0]] * 6)[:10_000]
client = ScoringClient({url!r}, processes=2, progress=False)
labels = client.predict(X)
np.save("labels.npy", labels)
print("labels", len(labels))
client.delete_keys()
"""


def test_a_plain_script_without_a_main_guard_scores_batches_in_worker_processes(http_app, tmp_path,
                                                                               digits_estimator):
    """Issue 10: the spawned encryption workers re-ran the caller's script (BrokenProcessPool)."""
    script = tmp_path / "score_everything.py"
    script.write_text(textwrap.dedent(PLAIN_SCRIPT.format(url=http_app.url)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("labels 10000") == 1  # the script ran once, not once per worker
    X = np.vstack([load_digits_scaled()[0]] * 6)[:10_000]
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), digits_estimator.predict(X))


def _daemon_probe(queue) -> None:
    from client.batches import default_processes

    queue.put((in_executor(), default_processes()))


def test_inside_a_daemonic_process_the_client_encrypts_in_process():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_daemon_probe, args=(queue,), daemon=True)
    process.start()
    assert queue.get(timeout=60) == (True, 1)
    process.join(timeout=30)
    assert not in_executor()
