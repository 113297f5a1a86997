"""client.spark on a real local Spark (local[2], one retry per task) against the local service.

The app runs behind a small recording proxy on 127.0.0.1, so the tests can see every
request the driver and the Spark tasks send (and who uploaded what), fail one of them, or
switch the upstream to a redeployed app mid-job.

Workload: the 10,000 MNIST test images with the original tutorial's model where ../shared is
present, the held-out digits with a digits model otherwise.
"""

from __future__ import annotations

import base64
import functools
import http.client
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from client import SecretKeys
from conftest import MNIST_DIR, TUTORIAL_MODEL, running_app
from scoring.loading import load_model
from scoring.model import LinearModel, export_model, labels_from_scores

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (make install: requirements-spark.txt)")
pd = pytest.importorskip("pandas")

from client.spark import delete_keys, output_schema, score_dataframe  # noqa: E402

JAVA = shutil.which("java") or (Path(os.environ["JAVA_HOME"], "bin", "java").as_posix()
                                if os.environ.get("JAVA_HOME") else None)


# -- a recording proxy in front of the app ---------------------------------------------------


class RecordingProxy:
    """Forwards to ``upstream``; logs (method, path, status); fails or switches on request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.log: list[tuple[str, str, int]] = []
        self.fail_score_numbers: set[int] = set()  # 1-based numbers of score POSTs to fail with 500
        self.switch: tuple[int, str] | None = None  # after this many score POSTs, forward to that URL
        self._scores = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                is_score = self.command == "POST" and "/api/score/" in self.path
                with proxy._lock:
                    number = proxy._scores = proxy._scores + (1 if is_score else 0)
                    upstream = proxy.upstream
                if is_score and number in proxy.fail_score_numbers:
                    self._reply(500, b'{"error": "injected", "message": "a failure injected by the test"}',
                                {"content-type": "application/json"})
                    return
                target = urllib.parse.urlsplit(upstream)
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                self._reply(response.status, data, {k: v for k, v in response.getheaders()
                                                    if k.lower() not in ("transfer-encoding", "connection",
                                                                         "content-length")})
                if is_score and proxy.switch is not None and number >= proxy.switch[0]:
                    with proxy._lock:
                        proxy.upstream = proxy.switch[1]

            def _reply(self, status: int, data: bytes, headers: dict) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with proxy._lock:
                    proxy.log.append((self.command, self.path.split("?")[0], status))

            do_GET = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self, upstream: str) -> None:
        with self._lock:
            self.upstream, self.log, self._scores = upstream, [], 0
            self.fail_score_numbers, self.switch = set(), None

    def requests(self, method: str, route: str) -> list[tuple[str, str, int]]:
        return [entry for entry in self.log if entry[0] == method and f"/api/{route}" in entry[1]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workload(tmp_path_factory, digits, digits_estimator, digits_model_path):
    """(model path, its LinearModel, records, true labels, a name)."""
    if TUTORIAL_MODEL.exists() and MNIST_DIR.exists():
        from client.datasets import load_mnist_test

        X, y = load_mnist_test(MNIST_DIR)
        model = load_model(TUTORIAL_MODEL)
        path = export_model(model, tmp_path_factory.mktemp("spark-models") / "mnist.model.json")
        return path, model, X, y, "tutorial model, 10,000 MNIST test images"
    from scoring.estimators import from_estimator

    X, y = digits
    return digits_model_path, from_estimator(digits_estimator), X[1500:], y[1500:], "digits model, held-out digits"


@pytest.fixture(scope="module")
def app(azurite, workload):
    with running_app(azurite, workload[0], container="sparkkeys") as host:
        yield host


@pytest.fixture(scope="module")
def proxy(app):
    recorder = RecordingProxy(app.url)
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    if JAVA is None:
        pytest.skip("no Java runtime for Spark (java not on PATH, JAVA_HOME unset): "
                    "apt-get install openjdk-17-jre-headless")
    local_dir = tmp_path_factory.mktemp("spark-local")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYSPARK_PYTHON", sys.executable)  # the workers use this venv
        patch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        session = (SparkSession.builder.master("local[2,2]")  # 2 cores; a failed task is tried once more
                   .appName("he-scoring-tests")
                   .config("spark.ui.enabled", "false")
                   .config("spark.local.dir", str(local_dir))
                   .config("spark.sql.shuffle.partitions", "2")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.sql.execution.arrow.maxRecordsPerBatch", "8192")
                   .config("spark.driver.memory", "2g")
                   .getOrCreate())
        session.sparkContext.setLogLevel("ERROR")
        session.local_dir = local_dir
        yield session
        session.stop()


def frame(spark, X: np.ndarray, *, partitions: int = 2):
    """A DataFrame of an ``id`` column and one column per feature, in ``partitions`` slices in order.

    (Arrow's createDataFrame cuts a pandas frame into defaultParallelism = 2 slices; a union of
    such frames makes more without a shuffle.)
    """
    names = [f"f{i}" for i in range(X.shape[1])]
    data = pd.DataFrame(X, columns=names)
    data.insert(0, "id", np.arange(len(X), dtype=np.int64))
    parts = [spark.createDataFrame(data.iloc[rows[0]:rows[-1] + 1])
             for rows in np.array_split(np.arange(len(data)), max(1, partitions // 2))]
    df = functools.reduce(lambda a, b: a.union(b), parts)
    assert df.rdd.getNumPartitions() == partitions
    return df, names


def by_id(rows) -> pd.DataFrame:
    return pd.DataFrame([r.asDict() for r in rows]).sort_values("id").reset_index(drop=True)


def plain_labels(model: LinearModel, X: np.ndarray) -> np.ndarray:
    return labels_from_scores(model.classes, model.decision_function(X))


def spark_error(excinfo) -> str:
    return str(excinfo.value)


# -- the tests ---------------------------------------------------------------------------------


def test_importing_client_does_not_import_pyspark():
    code = "import sys, client, client.scoring_client, client.spark; sys.exit('pyspark' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0


def test_every_record_matches_the_plaintext_model(spark, proxy, app, workload, keys):
    _, model, X, y, name = workload
    proxy.reset(app.url)
    df, names = frame(spark, X)
    scored = score_dataframe(df, proxy.url, keys, features=names, id_col="id", output="label")
    assert [f.name for f in scored.schema.fields] == ["id", "prediction"]
    assert scored.schema["prediction"].dataType.simpleString() == "bigint"
    result = by_id(scored.collect())
    assert len(result) == len(X) and (result["id"] == np.arange(len(X))).all()
    expected = plain_labels(model, X)
    mismatches = int((result["prediction"].to_numpy() != expected).sum())
    assert mismatches == 0, f"{mismatches} of {len(X)} labels differ from the plaintext model ({name})"
    print(f"{name}: {len(X)} of {len(X)} labels equal the plaintext model's; accuracy "
          f"{(result['prediction'].to_numpy() == y).mean():.4f}")
    # One upload from the driver, then one batch per partition (each under 8,192 records), no other PUT.
    assert len(proxy.requests("PUT", "keys/")) == 1
    assert len(proxy.requests("POST", "score/")) == 2


def test_scores_and_probabilities_with_an_array_column(spark, proxy, app, workload, keys):
    _, model, X, _, _ = workload
    proxy.reset(app.url)
    X = X[:700]
    data = pd.DataFrame({"id": np.arange(len(X), dtype=np.int64), "pixels": list(X)})
    df = spark.createDataFrame(data)
    scores = by_id(score_dataframe(df, proxy.url, keys, features="pixels", id_col="id", output="scores",
                                   batch_threshold=1).collect())
    plain = model.decision_function(X)
    columns = [f"score_{i}" for i in range(model.n_outputs)]
    # Batches: encryption and the server's fresh noise, within the documented bound (+-2**-19 each).
    np.testing.assert_allclose(scores[columns].to_numpy(), plain, atol=2 ** -19 * 8)
    proba = by_id(score_dataframe(df, proxy.url, keys, features="pixels", id_col="id", output="proba",
                                  upload=False, batch_threshold=1).collect())
    assert list(proba.columns) == ["id"] + [f"proba_{i}" for i in range(len(model.classes))]
    np.testing.assert_allclose(proba.drop(columns="id").sum(axis=1), 1.0, atol=1e-9)
    assert len(proxy.requests("PUT", "keys/")) == 1  # the first call's; upload=False: the bundle was there


def test_a_failed_task_is_retried_and_the_job_completes(spark, proxy, app, workload, keys):
    _, model, X, _, _ = workload
    proxy.reset(app.url)
    proxy.fail_score_numbers = {2}  # the second batch request of the job answers 500
    X = X[:2000]
    df, names = frame(spark, X, partitions=4)
    scored = score_dataframe(df, proxy.url, keys, features=names, id_col="id", batch_threshold=1)
    result = by_id(scored.collect())
    np.testing.assert_array_equal(result["prediction"].to_numpy(), plain_labels(model, X))
    statuses = [status for _, _, status in proxy.requests("POST", "score/")]
    assert statuses.count(500) == 1 and statuses.count(200) == 4  # 4 partitions, one of them twice
    # The only PUT is the driver's (before the job); the retried task uploaded nothing.
    puts = proxy.requests("PUT", "keys/")
    assert len(puts) == 1 and proxy.log.index(puts[0]) < proxy.log.index(proxy.requests("POST", "score/")[0])


def test_a_straggler_after_the_driver_deleted_the_bundle_fails_and_uploads_nothing(spark, proxy, app, azurite,
                                                                                    workload):
    from azure.storage.blob import BlobServiceClient

    _, _, X, _, _ = workload
    keys = SecretKeys.generate()
    proxy.reset(app.url)
    df, names = frame(spark, X[:500])
    scored = score_dataframe(df, proxy.url, keys, features=names, id_col="id", batch_threshold=1)
    assert len(scored.collect()) == 500  # the job, while the bundle is there
    assert delete_keys(proxy.url, keys)  # the driver cleans up ...
    before = len(proxy.log)
    with pytest.raises(Exception) as failure:  # ... and a straggler (a recomputed partition) runs afterwards
        scored.collect()
    assert "keys_not_found" in spark_error(failure)
    after = proxy.log[before:]
    assert [e for e in after if e[0] == "PUT"] == [] and all(s == 404 for m, p, s in after if "/score/" in p)
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client("sparkkeys", keys.key_id)
    assert not blob.exists()


def test_a_redeploy_mid_job_is_caught_by_the_pinned_hash(spark, proxy, app, azurite, workload, keys, tmp_path):
    _, model, X, _, _ = workload
    redeployed = LinearModel(model.coef, model.intercept + 0.25, model.kind, model.classes, model.proba,
                             model.input_bound, model.estimator)
    path = export_model(redeployed, tmp_path / "redeployed.model.json")
    with running_app(azurite, path, container="sparkkeys") as other:
        proxy.reset(app.url)
        df, names = frame(spark, X[:1200], partitions=4)
        scored = score_dataframe(df, proxy.url, keys, features=names, id_col="id", batch_threshold=1)
        proxy.switch = (1, other.url)  # after the job's first batch, the endpoint serves the new model
        with pytest.raises(Exception) as failure:
            scored.collect()
    message = spark_error(failure)
    assert "ModelChanged" in message and model.model_hash in message and redeployed.model_hash in message
    assert len(proxy.requests("PUT", "keys/")) == 1  # the driver's


def test_keys_are_never_broadcast_nor_written_under_the_local_dir(spark, proxy, app, workload, keys, monkeypatch):
    from pyspark import SparkContext

    _, model, X, _, _ = workload
    proxy.reset(app.url)

    def refuse(self, value):
        raise AssertionError("SparkContext.broadcast was called")

    monkeypatch.setattr(SparkContext, "broadcast", refuse)
    df, names = frame(spark, X[:300])
    scored = score_dataframe(df, proxy.url, keys, features=names, id_col="id")
    result = by_id(scored.collect())
    np.testing.assert_array_equal(result["prediction"].to_numpy(), plain_labels(model, X[:300]))
    packed = keys.to_bytes()
    secrets = [packed, base64.b64encode(packed), packed.hex().encode(), packed[10:74]]
    plan = scored._jdf.queryExecution().toString()  # MapInPandas encrypted_scoring(id, __he_scoring_features)
    assert "encrypted_scoring" in plan and repr(keys.to_bytes())[2:40] not in plan
    assert not any(s.decode("latin-1") in plan for s in secrets)
    found = [str(path) for path in Path(spark.local_dir).rglob("*") if path.is_file()
             and any(s in path.read_bytes() for s in secrets)]
    assert found == [], f"key material written under spark.local.dir: {found}"


def test_output_schemas(service, tmp_path):
    from pyspark.sql.types import LongType, StructField

    from scoring.service import ScoringService
    from scoring.settings import Settings

    info = service.describe()  # the digits classifier: 10 classes
    assert output_schema(info, "label").simpleString() == "struct<prediction:bigint>"
    assert output_schema(info, "scores").fieldNames() == [f"score_{i}" for i in range(10)]
    assert output_schema(info, "proba", id_field=StructField("id", LongType())).fieldNames()[:2] == ["id", "proba_0"]
    with pytest.raises(ValueError, match="name of an output column"):
        output_schema(info, "label", id_field=StructField("prediction", LongType()))
    rng = np.random.default_rng(3)
    named = export_model(LinearModel(rng.normal(size=(1, 4)), np.zeros(1), "classifier", ("no", "yes"),
                                     "binary-logistic"), tmp_path / "binary.json")
    binary = ScoringService(Settings(model_path=str(named))).describe()
    assert output_schema(binary, "label").simpleString() == "struct<prediction:string>"
    assert output_schema(binary, "scores").fieldNames() == ["score"]
    assert output_schema(binary, "proba").fieldNames() == ["proba_0", "proba_1"]
    regressor = export_model(LinearModel(rng.normal(size=(2, 4)), np.zeros(2), "regressor"), tmp_path / "reg.json")
    multi = ScoringService(Settings(model_path=str(regressor))).describe()
    assert output_schema(multi, "label").simpleString() == "struct<prediction_0:double,prediction_1:double>"
    with pytest.raises(ValueError, match="does not offer probabilities"):
        output_schema(multi, "proba")


def test_the_driver_refuses_before_any_job(spark, proxy, app, workload, keys):
    _, model, X, _, _ = workload
    df, names = frame(spark, X[:10])
    with pytest.raises(ValueError, match=f"takes {model.n_features} features, not {model.n_features - 1}"):
        score_dataframe(df, proxy.url, keys, features=names[:-1])
    with pytest.raises(ValueError, match=r"must be numeric: f3 \(string\)"):
        score_dataframe(df.withColumn("f3", df["f3"].cast("string")), proxy.url, keys, features=names)
    with pytest.raises(ValueError, match="output must be one of"):
        score_dataframe(df, proxy.url, keys, features=names, output="labels")
    from client import ModelChanged

    with pytest.raises(ModelChanged):
        score_dataframe(df, proxy.url, keys, features=names, expect_model_hash="0" * 64)
