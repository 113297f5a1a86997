"""``python -m bench.spark``: score_dataframe on local Spark against the plain client, same rows, same machine.

Starts Azurite and the Functions app (``FUNCTIONS_WORKER_PROCESS_COUNT`` workers, 2 by
default as in the sample settings) on 127.0.0.1, then scores the same rows

* with the plain client in one process (``ScoringClient.predict``: one encryption process
  per core, batches overlapped with sending), and
* with ``client.spark.score_dataframe`` on ``local[N]`` (one task per core, each encrypting in
  its own process, overlapped with sending), the DataFrame cached before the clock starts,
  collected to the driver (``toPandas``: ids and labels),

and prints rows per second for both and their ratio (target: Spark >= 80 % of the plain
client). It also measures what the scale arithmetic in docs/spark.md uses: bytes up and down
per record in full batches, one core's encryption and decryption time per full batch, and the
server's compute per full batch (in process, no HTTP).

Workload: the original tutorial's model on the MNIST test images (tiled to ``--rows``) where
../shared is present (or SCORING_MODEL_PATH / MNIST_DIR), the digits model otherwise.

Options: ``--rows`` (default 65,536 = 8 full batches, 4 per task on 2 cores), ``--partitions`` (default: one per
core), ``--features columns|array`` (784 double columns, or one array<double> column),
``--repeat`` (interleaved timed pairs, plain then Spark; medians; default 3), ``--output`` (JSON, default
var/bench-spark.json, git-ignored). Needs Java 17+ and pyspark (``make install``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))
FULL_BATCH = 8192


def workload() -> tuple[str, str, np.ndarray]:
    """(model artifact path, description, records) as tests/test_spark.py and make bench choose them."""
    from scoring.loading import load_model
    from scoring.model import export_model

    pickle = os.environ.get("SCORING_MODEL_PATH") or str(SHARED / "models" / "sklearn_mnist_model.pkl")
    mnist = os.environ.get("MNIST_DIR") or str(SHARED / "data" / "mnist")
    if Path(pickle).exists() and Path(mnist).exists():
        from client.datasets import load_mnist_test

        X, _ = load_mnist_test(mnist)
        path = export_model(load_model(pickle), ROOT / "models" / "bench-spark.model.json")
        return str(path), "tutorial model on the MNIST test images", X
    from client.datasets import load_digits_scaled, train_digits_model
    from scoring.estimators import from_estimator

    path = export_model(from_estimator(train_digits_model()), ROOT / "models" / "digits.model.json")
    return str(path), "digits model on held-out digits (../shared absent)", load_digits_scaled()[0][1500:]


class PlainRun:
    """The plain client in this process, warm; bytes per record from its own requests."""

    def __init__(self, url: str, keys, X: np.ndarray) -> None:
        from client import ScoringClient

        self.X = X
        self.sent: list[tuple[int, int, int]] = []
        self.client = ScoringClient(url, keys=keys, progress=False)
        self.client.session.hooks["response"].append(self._record)
        self.client.predict(X[:FULL_BATCH])  # warm: model described, keys uploaded, worker processes started
        self.sent.clear()
        self.runs = 0

    def _record(self, response, *args, **kwargs) -> None:
        if "/api/score/" in response.url:
            records = int(response.headers.get("X-Records-Disclosed") or 1)
            self.sent.append((len(response.request.body or b""), len(response.content), records))

    def __call__(self) -> np.ndarray:
        self.runs += 1
        return self.client.predict(self.X)

    def figures(self) -> dict:
        full = [s for s in self.sent if s[2] == FULL_BATCH]
        out = {"plain_processes": self.client._processes(), "requests_per_run": len(self.sent) // max(1, self.runs)}
        if full:
            out.update(full_batch_bytes_up=full[0][0], full_batch_bytes_down=full[0][1],
                       bytes_up_per_record=full[0][0] / FULL_BATCH, bytes_down_per_record=full[0][1] / FULL_BATCH)
        return out

    def close(self) -> None:
        self.client.close()


class SparkRun:
    """score_dataframe on local[cores]; the DataFrame cached before any clock starts."""

    def __init__(self, url: str, keys, X: np.ndarray, *, partitions: int, features: str, cores: int,
                 task_processes: int | None) -> None:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        import pandas as pd
        from pyspark.sql import SparkSession

        from client.spark import score_dataframe

        self.score_dataframe, self.url, self.keys = score_dataframe, url, keys
        self.cores, self.features, self.task_processes = cores, features, task_processes
        self.spark = (SparkSession.builder.master(f"local[{cores}]").appName("he-scoring-bench")
                      .config("spark.ui.enabled", "false")
                      .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                      .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(FULL_BATCH))
                      .config("spark.default.parallelism", str(partitions))
                      .config("spark.driver.memory", "4g")
                      .getOrCreate())
        self.spark.sparkContext.setLogLevel("ERROR")
        if features == "array":
            data = pd.DataFrame({"id": np.arange(len(X), dtype=np.int64), "features": list(X)})
            self.feature_arg = "features"
        else:
            self.feature_arg = [f"f{i}" for i in range(X.shape[1])]
            data = pd.DataFrame(X, columns=self.feature_arg)
            data.insert(0, "id", np.arange(len(X), dtype=np.int64))
        # createDataFrame cuts the rows into contiguous slices of whole Arrow batches (8,192 rows);
        # coalesce joins neighbours without a shuffle.
        df = self.spark.createDataFrame(data)
        if df.rdd.getNumPartitions() > partitions:
            df = df.coalesce(partitions)
        self.df = df.cache()
        self.df.count()
        self.sizes = self.df.rdd.glom().map(len).collect()
        warm = self.spark.createDataFrame(data.iloc[:100])  # start the Python workers
        score_dataframe(warm, url, keys, features=self.feature_arg, id_col="id", upload=False).toPandas()

    def __call__(self) -> np.ndarray:
        scored = self.score_dataframe(self.df, self.url, self.keys, features=self.feature_arg, id_col="id",
                                      upload=False, processes=self.task_processes)
        return scored.toPandas().sort_values("id")["prediction"].to_numpy()

    def figures(self) -> dict:
        return {"spark_cores": self.cores, "partitions": len(self.sizes), "partition_rows": self.sizes,
                "spark_batches": sum(math.ceil(size / FULL_BATCH) for size in self.sizes),
                "features_as": self.features}

    def close(self) -> None:
        self.spark.stop()


def timed(run) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    labels = run()
    return time.perf_counter() - started, labels


def per_core_costs(model_path: str, keys, X: np.ndarray) -> dict:
    """One core's client and server work per full batch, in process (what scaling multiplies)."""
    from scoring.protocol import ScoreRequest
    from scoring.service import ScoringService
    from scoring.settings import Settings

    service = ScoringService(Settings(model_path=model_path))
    info = service.describe()
    lanes = info.lane_encoding()
    batch = np.resize(X, (FULL_BATCH, X.shape[1]))
    encrypt, serve, decrypt = [], [], []
    bundle = keys.public_bundle()
    for _ in range(2):
        started = time.perf_counter()
        blobs = keys.encrypt_columns(lanes, batch)
        encrypt.append(time.perf_counter() - started)
        cpu = time.process_time()
        response = service.score(keys.key_id, bundle, ScoreRequest(blobs, info.model_hash, FULL_BATCH))
        serve.append(time.process_time() - cpu)
        started = time.perf_counter()
        keys.decrypt_columns(lanes, response.ciphertexts, FULL_BATCH)
        decrypt.append(time.perf_counter() - started)
    return {"encrypt_s_per_full_batch": statistics.median(encrypt),
            "decrypt_s_per_full_batch": statistics.median(decrypt),
            "server_cpu_s_per_full_batch": statistics.median(serve), "sent_features": len(lanes.features),
            "outputs": info.n_outputs, "noise_bound": info.batch.noise_bound,
            "client_rows_per_core_s": FULL_BATCH / (statistics.median(encrypt) + statistics.median(decrypt)),
            "server_rows_per_core_s": FULL_BATCH / statistics.median(serve)}


def scale(results: dict, rows: float = 100e6, hours: float = 1.0) -> dict:
    """The arithmetic docs/spark.md quotes: 100 million rows in an hour, from the figures above."""
    rate = rows / (hours * 3600)
    out = {"scale_rows": rows, "scale_hours": hours, "scale_rows_per_s": rate,
           "scale_full_batches": math.ceil(rows / FULL_BATCH),
           "scale_executor_cores": math.ceil(rate / results["client_rows_per_core_s"]),
           "scale_server_cores": math.ceil(rate / results["server_rows_per_core_s"]),
           # pessimistic: here the Spark tasks shared their cores with the app and Azurite
           "scale_executor_cores_as_measured": math.ceil(rate / (results["spark_rows_per_s"] / results["spark_cores"]))}
    if "bytes_up_per_record" in results:
        out.update(scale_bytes_up=rows * results["bytes_up_per_record"],
                   scale_bytes_down=rows * results["bytes_down_per_record"],
                   scale_requests=out["scale_full_batches"],
                   scale_mbit_per_s_up=rate * results["bytes_up_per_record"] * 8 / 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8 * FULL_BATCH)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="Spark local[N] (default: all)")
    parser.add_argument("--partitions", type=int, default=None, help="default: one per core")
    parser.add_argument("--features", choices=("columns", "array"), default="columns")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--task-processes", type=int, default=None,
                        help="score_dataframe(processes=): encryption processes per task (default: its cpus)")
    parser.add_argument("--output", type=Path, default=ROOT / "var" / "bench-spark.json")
    args = parser.parse_args(argv)

    from client import SecretKeys
    from devhost import Azurite, LocalFunctionsHost, ensure_installed

    model_path, label, records = workload()
    X = np.resize(records, (args.rows, records.shape[1]))
    cores = args.cores
    print(f"workload: {label}, {len(X):,} rows x {X.shape[1]} features; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; Spark local[{cores}]")
    keys = SecretKeys.generate()
    results: dict = {"workload": label, "cores": os.cpu_count(), "packed_keys_bytes": len(keys.to_bytes())}
    results.update(per_core_costs(model_path, keys, X))
    ensure_installed(ROOT)
    with Azurite(port=0) as azurite:
        os.environ.update(SCORING_STORAGE=azurite.connection_string, SCORING_KEYS_CONTAINER="benchspark",
                          SCORING_MODEL_PATH=model_path)
        os.environ.setdefault("FUNCTIONS_WORKER_PROCESS_COUNT", "2")
        host = LocalFunctionsHost(ROOT, port=0, load_local_settings=False)
        host.start()
        plain = spark = None
        try:
            plain = PlainRun(host.url, keys, X)  # uploads the bundle; the Spark runs use upload=False
            spark = SparkRun(host.url, keys, X, partitions=args.partitions or cores, features=args.features,
                             cores=cores, task_processes=args.task_processes)
            plain_seconds, spark_seconds, agree = [], [], []
            for _ in range(args.repeat):  # interleaved, so that both see the same machine
                seconds, plain_labels = timed(plain)
                plain_seconds.append(seconds)
                seconds, spark_labels = timed(spark)
                spark_seconds.append(seconds)
                agree.append(int((plain_labels == spark_labels).sum()))
            results.update(plain.figures())
            results.update(spark.figures())
            plain.client.delete_keys()
        finally:
            for run in (spark, plain):
                if run is not None:
                    run.close()
            host.stop()
    ratios = [p / s for p, s in zip(plain_seconds, spark_seconds)]
    results.update(rows=len(X), plain_seconds=plain_seconds, spark_seconds=spark_seconds,
                   plain_rows_per_s=len(X) / statistics.median(plain_seconds),
                   spark_rows_per_s=len(X) / statistics.median(spark_seconds),
                   spark_vs_plain_per_pair=ratios, spark_vs_plain=statistics.median(ratios),
                   labels_agree=min(agree), server_workers=int(os.environ["FUNCTIONS_WORKER_PROCESS_COUNT"]))
    results.update(scale(results))
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


def print_table(r: dict) -> None:
    rows = [
        ("plain client, one process (encryption processes), median", f"{r['plain_rows_per_s']:,.0f} rows/s "
                                                              f"({r['plain_processes']})", ""),
        (f"score_dataframe, local[{r['spark_cores']}], partitions of {', '.join(map(str, r['partition_rows']))} rows, "
         f"features as {r['features_as']}",
         f"{r['spark_rows_per_s']:,.0f} rows/s", ""),
        ("Spark / plain (median of the interleaved pairs)", f"{r['spark_vs_plain']:.0%} ("
         + ", ".join(f"{x:.0%}" for x in r["spark_vs_plain_per_pair"]) + ")", ">= 80 %"),
        ("labels equal between the two (each pair)", f"{r['labels_agree']:,} of {r['rows']:,}", "all"),
        ("timed runs (s): plain / Spark", " / ".join([", ".join(f"{s:.1f}" for s in r["plain_seconds"]),
                                                    ", ".join(f"{s:.1f}" for s in r["spark_seconds"])]), ""),
        ("batch requests: plain run / Spark run", f"{r['requests_per_run']} / {r['spark_batches']}", ""),
        ("bytes per record in a full batch, up / down",
         f"{r.get('bytes_up_per_record', float('nan')):,.0f} / {r.get('bytes_down_per_record', float('nan')):,.0f} B",
         ""),
        ("full batch request / response",
         f"{r.get('full_batch_bytes_up', 0):,} / {r.get('full_batch_bytes_down', 0):,} B", ""),
        ("one core per full batch: encrypt / decrypt", f"{r['encrypt_s_per_full_batch']:.2f} / "
                                                       f"{r['decrypt_s_per_full_batch']:.3f} s", ""),
        ("server CPU per full batch (in process)", f"{r['server_cpu_s_per_full_batch']:.2f} s", ""),
        ("rows/s per core: client / server", f"{r['client_rows_per_core_s']:,.0f} / {r['server_rows_per_core_s']:,.0f}",
         ""),
        ("packed secret keys", f"{r['packed_keys_bytes']:,} B", ""),
        (f"100 M rows in {r['scale_hours']:g} h: rows/s, batches", f"{r['scale_rows_per_s']:,.0f}, "
                                                                    f"{r['scale_full_batches']:,}", ""),
        ("  executor cores (client work only / as in the Spark run) / server cores",
         f"{r['scale_executor_cores']} / {r['scale_executor_cores_as_measured']} / {r['scale_server_cores']}", ""),
    ]
    if "scale_bytes_up" in r:
        rows.append(("  bytes up / down", f"{r['scale_bytes_up'] / 1e9:,.0f} GB / "
                                          f"{r['scale_bytes_down'] / 1e9:,.1f} GB "
                                          f"({r['scale_mbit_per_s_up']:,.0f} Mbit/s up)", ""))
    width = max(len(name) for name, _, _ in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<30} {target}")


if __name__ == "__main__":
    raise SystemExit(main())
