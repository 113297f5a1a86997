"""``make bench`` (``python -m bench``): measure both paths, the load, Spark and the peer; print
the figures the README quotes and write them to bench/results.json.

With ../shared present (or SCORING_MODEL_PATH / MNIST_DIR set) it uses the original
tutorial's model on the 10,000-image MNIST test set; otherwise the digits model on held-out
digits. It measures:

* one record: client key generation, encryption and decryption; server compute (the bare
  product, and with model privacy computed on the request path); the server's whole request
  (codec, checks, bundle from the cache, product, a prepared masked zero, encoding) as a host
  runs it, paced as a client would send; bytes on the wire; accuracy on every image;
* the per-core throughput of the single path, every masked zero included;
* batches in coefficient lanes: server records/s per batch size, end to end over HTTP,
  bytes per record, accuracy on every image;
* over HTTP through the local host and Azurite: score and encrypt+score+decrypt p50/p99, and
  where batches start to pay (measured, and the client's rule);
* the load table (python -m bench.load: 1, 4 and 16 concurrent clients against the local host
  with one worker process per core, and how the workers shared the requests);
* Spark (python -m bench.spark: score_dataframe on local[2] against the plain client);
* the peer encrypted-inference 0.9 on the same model and images (from .venv-peer).
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
import tenseal.sealapi as seal

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))
BATCH_SIZES = (1, 512, 4096, 8192)


def timed(fn, repeat: int) -> list[float]:
    """Milliseconds per call, ``repeat`` calls after one warm-up."""
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e3)
    return samples


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0].replace("``", ""),
                                     epilog="Every figure in the README comes from this command's output.")
    parser.add_argument("--quick", action="store_true",
                        help="a short run (about two minutes): fewer samples, accuracy on 500 single records and "
                             "one batch, a 4-second load table, no peer and no Spark")
    parser.add_argument("--no-peer", action="store_true", help="skip encrypted-inference 0.9 (about 30 s per image)")
    parser.add_argument("--no-load", action="store_true", help="skip the load table")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark benchmark")
    parser.add_argument("--peer-images", type=int, default=int(os.environ.get("BENCH_PEER_IMAGES", "3")),
                        help="images for the peer (default 3)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json", help="where to write JSON")
    return parser.parse_args(argv)


def workload() -> tuple[str, str, np.ndarray, np.ndarray]:
    model = os.environ.get("SCORING_MODEL_PATH") or (
        str(SHARED / "models" / "sklearn_mnist_model.pkl") if (SHARED / "models").exists() else "")
    mnist = os.environ.get("MNIST_DIR") or (str(SHARED / "data" / "mnist") if (SHARED / "data").exists() else "")
    if model and mnist:
        from client.datasets import load_mnist_test

        X, y = load_mnist_test(mnist)
        return model, "tutorial model on the MNIST test set", X, y
    from client.datasets import load_digits_scaled, train_digits_model
    from scoring.estimators import from_estimator
    from scoring.model import export_model

    path = export_model(from_estimator(train_digits_model()), ROOT / "models" / "digits.model.json")
    X, y = load_digits_scaled()
    return str(path), "digits model on held-out digits (../shared absent)", X[1500:], y[1500:]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from client.keys import SecretKeys
    from scoring.loading import load_model
    from scoring.service import ScoringService
    from scoring.settings import Settings

    model_path, label, X, y = workload()
    print(f"workload: {label}; {platform.machine()}, {os.cpu_count()} cores"
          + ("; quick run" if args.quick else ""), flush=True)
    results: dict = {"workload": label, "quick": args.quick}

    started = time.perf_counter()
    service = ScoringService(Settings(model_path=model_path))
    service.load()
    results["model_load_and_encode_ms"] = (time.perf_counter() - started) * 1e3
    model = load_model(model_path)
    info = service.describe()
    keys = SecretKeys.generate(info.parameters)
    results.update(single_path(service, keys, X, quick=args.quick))
    results.update(accuracy(service, keys, model, X, y, quick=args.quick))
    results.update(batch_server(service, keys, model, X, quick=args.quick))
    results.update(http(model_path, X, quick=args.quick))
    if not args.no_load:
        results.update(load_table(quick=args.quick))
    if not (args.no_spark or args.quick):
        results.update(spark())
    if not (args.no_peer or args.quick):
        results.update(peer(model_path, X, model, results, args.peer_images))

    print_table(results)
    args.output.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


def single_path(service, keys, X, *, quick: bool) -> dict:
    """One record: client costs, server compute, the whole server request paced as a client sends, bytes."""
    from client.keys import SecretKeys
    from scoring import protocol
    from scoring.protocol import ScoreRequest, WireForm
    from scoring.service import ScoringService
    from scoring.settings import Settings

    info, loaded = service.describe(), service.loaded
    encoding, kernel = info.record_encoding(), loaded.single
    repeat = 60 if quick else 300
    out: dict = {"key_generation_ms": statistics.median(timed(lambda: SecretKeys.generate(info.parameters), 20)),
                 "packed_secret_key_bytes": len(keys.to_bytes())}
    bundle = keys.public_bundle()
    record = keys.encrypt_record(encoding, X[0])
    out["encrypt_ms"] = statistics.median(timed(lambda: keys.encrypt_record(encoding, X[0]), repeat))
    rt, chunk = kernel.rt, encoding.chunks(X[0])[0]
    out["encode_ms"] = statistics.median(timed(lambda: rt.encode_coefficients(chunk, encoding.input_scale), repeat))
    sample = rt.load(seal.Ciphertext(), record[0])
    out["pack_ms"] = statistics.median(timed(lambda: rt.save_packed(sample), repeat)) - statistics.median(
        timed(lambda: rt.save_body(sample), repeat))  # what packing adds to SEAL's save
    from scoring.ckks import canonical_ciphertext
    from scoring.kernels.masking import readable_bits

    out["unpack_check_ms"] = statistics.median(timed(lambda: canonical_ciphertext(
        rt, record[0], scale=encoding.input_scale, seeded_ok=True, packed_ok=True), repeat))
    chunks = [kernel.rt.load(seal.Ciphertext(), c) for c in record]
    service.check_upload(keys.key_id, bundle)
    from scoring.keys import load_bundle

    encryptor = load_bundle(bundle).encryptor
    out["server_kernel_bare_ms"] = statistics.median(timed(lambda: kernel.evaluate(chunks, None), repeat))
    out["server_masked_zero_ms"] = statistics.median(timed(lambda: kernel.masked_zero(encryptor, 0), repeat))
    out["server_kernel_protected_inline_ms"] = statistics.median(timed(
        lambda: kernel.evaluate(chunks, [kernel.masked_zero(encryptor, p) for p in range(kernel.layout.n_products)]),
        repeat))
    bodies = {form: protocol.encode_request(ScoreRequest(record, info.model_hash), form) for form in WireForm}

    def request(form: WireForm) -> bytes:
        parsed, parsed_form = protocol.read_request(bodies[form], form.content_type, service.limits)
        return protocol.encode_response(service.score(keys.key_id, bundle, parsed), parsed_form)

    pools = loaded.pools
    paced = {}
    for form in WireForm:
        request(form)
        samples = []
        for _ in range(repeat):
            deadline = time.monotonic() + 0.05  # as a client's own encryption and decryption give the pool time
            while pools.size(keys.key_id) == 0 and time.monotonic() < deadline:
                time.sleep(0.0005)
            started = time.perf_counter()
            request(form)
            samples.append((time.perf_counter() - started) * 1e3)
        paced[form] = samples
    out.update(server_request_binary_ms=statistics.median(paced[WireForm.BINARY]),
               server_request_binary_p99_ms=percentile(paced[WireForm.BINARY], 99),
               server_request_json_ms=statistics.median(paced[WireForm.JSON]))
    # Per core: back to back with no pool, so each request pays for its own masked zero.
    bare = ScoringService(Settings(model_path=service.settings.model_path, zero_pool_depth=0))
    bare.load(single=kernel)
    count = 100 if quick else 400
    cpu = time.process_time()
    for _ in range(count):
        parsed, _ = protocol.read_request(bodies[WireForm.BINARY], protocol.BINARY_TYPE, bare.limits)
        bare.score(keys.key_id, bundle, parsed)
    out["single_path_cpu_ms_per_request"] = (time.process_time() - cpu) * 1e3 / count
    out["single_path_requests_per_core_s"] = 1e3 / out["single_path_cpu_ms_per_request"]
    reply = protocol.decode_response(request(WireForm.BINARY), protocol.BINARY_TYPE)
    out["decrypt_ms"] = statistics.median(timed(lambda: keys.decrypt_scores(encoding, reply.ciphertexts), repeat))
    plain = seal.Plaintext()
    keys.decryptor().decrypt(rt.load(seal.Ciphertext(), reply.ciphertexts[0]), plain)
    out["decode_ms"] = statistics.median(timed(lambda: rt.decode_coefficients(plain), repeat))
    out.update(key_bundle_bytes=len(bundle), request_binary_bytes=len(bodies[WireForm.BINARY]),
               request_json_bytes=len(bodies[WireForm.JSON]), response_binary_bytes=len(request(WireForm.BINARY)),
               response_json_bytes=len(request(WireForm.JSON)), noise_bound=info.encryption.noise_bound,
               readable_bits=readable_bits(int(rt.moduli[0]), info.encryption.output_scale),
               bundle_cache_entry_bytes=cached_bundle_bytes(info.parameters))
    return out


def cached_bundle_bytes(parameters, count: int = 32) -> float:
    """Resident memory one parsed bundle (public key and encryptor) holds in the service's cache."""
    import resource

    from client.keys import SecretKeys
    from scoring.keys import load_bundle

    bundles = [SecretKeys.generate(parameters).public_bundle() for _ in range(count)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kept = [load_bundle(b) for b in bundles]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    del kept
    return grown * 1024 / count


def accuracy(service, keys, model, X, y, *, quick: bool) -> dict:
    """Every image (500 in a quick run) through the single path, against plaintext."""
    from scoring.protocol import ScoreRequest

    info = service.describe()
    encoding = info.record_encoding()
    count = 500 if quick else len(X)
    plain = model.decision_function(X[:count])
    worst, agree, started = 0.0, 0, time.perf_counter()
    for i in range(count):
        response = service.score(keys.key_id, keys.public_bundle(),
                                 ScoreRequest(keys.encrypt_record(encoding, X[i]), info.model_hash))
        scores = keys.decrypt_scores(encoding, response.ciphertexts)
        worst = max(worst, float(np.abs(scores - plain[i]).max()))
        agree += int(np.argmax(scores) == np.argmax(plain[i]))
        if i and i % 2500 == 0:
            print(f"  single-path accuracy: {i}/{count} records", flush=True)
    return {"accuracy_records": count, "argmax_agreement": agree, "max_abs_error": worst,
            "plaintext_accuracy": float((plain.argmax(axis=1) == y[:count]).mean()),
            "accuracy_seconds": time.perf_counter() - started}


def batch_server(service, keys, model, X, *, quick: bool) -> dict:
    """Batches in coefficient lanes, server only: records/s per batch size; accuracy on every image."""
    from scoring import protocol
    from scoring.protocol import ScoreRequest, WireForm

    info = service.describe()
    lanes = info.lane_encoding()
    if lanes is None:
        return {"batch": "not offered for this model"}
    out: dict = {}
    for size in BATCH_SIZES:
        batch = np.resize(X, (size, X.shape[1]))
        body = protocol.encode_request(ScoreRequest(keys.encrypt_columns(lanes, batch), info.model_hash, size),
                                       WireForm.BINARY)

        def request() -> bytes:
            parsed, form = protocol.read_request(body, protocol.BINARY_TYPE, service.limits)
            return protocol.encode_response(service.score(keys.key_id, keys.public_bundle(), parsed), form)

        samples = timed(request, 1 if quick else 3)
        out[f"batch_server_records_per_s_{size}"] = size / (statistics.median(samples) / 1e3)
        out[f"batch_bytes_up_per_record_{size}"] = len(body) / size
        out[f"batch_bytes_down_per_record_{size}"] = len(request()) / size
    started = time.perf_counter()
    columns = keys.encrypt_columns(lanes, X[:lanes.max_records])
    out["batch_client_encrypt_s_per_full_batch_one_process"] = time.perf_counter() - started
    del columns
    worst, agree, count = 0.0, 0, (lanes.max_records if quick else len(X))
    for start in range(0, count, lanes.max_records):
        batch = X[start:min(start + lanes.max_records, count)]
        response = service.score(keys.key_id, keys.public_bundle(),
                                 ScoreRequest(keys.encrypt_columns(lanes, batch), info.model_hash, len(batch)))
        scores = keys.decrypt_columns(lanes, response.ciphertexts, len(batch))
        plain = model.decision_function(batch)
        worst = max(worst, float(np.abs(scores - plain).max()))
        agree += int((scores.argmax(axis=1) == plain.argmax(axis=1)).sum())
    out.update(batch_argmax_agreement=agree, batch_records=count, batch_max_abs_error=worst,
               batch_noise_bound=info.batch.noise_bound)
    return out


def http(model_path: str, X: np.ndarray, *, quick: bool) -> dict:
    """Over HTTP through the local host (one worker process) and Azurite, client included, warm."""
    from client import ScoringClient
    from devhost import Azurite, LocalFunctionsHost, ensure_installed

    requests_count = 60 if quick else 300
    ensure_installed(ROOT)
    out: dict = {"http_requests": requests_count}
    with Azurite(port=0) as azurite:
        os.environ.update(SCORING_STORAGE=azurite.connection_string, SCORING_KEYS_CONTAINER="benchkeys",
                          SCORING_MODEL_PATH=model_path)
        host = LocalFunctionsHost(ROOT, port=0, load_local_settings=False)
        host.start()
        try:
            with ScoringClient(host.url, progress=False) as client:
                record = client.encrypt(X[0])
                client.score(record)  # warm: keys uploaded, model loaded, bundle cached
                round_trip = timed(lambda: client.score(record), requests_count)
                full = timed(lambda: client.decrypt(client.score(client.encrypt(X[1]))), requests_count)
                out.update(http_score_p50_ms=percentile(round_trip, 50), http_score_p99_ms=percentile(round_trip, 99),
                           http_encrypt_score_decrypt_p50_ms=percentile(full, 50),
                           http_encrypt_score_decrypt_p99_ms=percentile(full, 99))
                lanes = client.describe_model().lane_encoding()
                if lanes is not None:
                    client.score_batches(X[:2])  # warm
                    sizes = (1, 8192) if quick else (1, 512, 4096, 8192, 16384)
                    for size in sizes:
                        batch = np.resize(X, (size, X.shape[1]))
                        samples = timed(lambda: client.score_batches(batch), 1 if quick or size > 8192 else 2)
                        out[f"batch_e2e_records_per_s_{size}"] = size / (statistics.median(samples) / 1e3)
                    out.update(crossover(lanes, out))
                client.delete_keys()
        finally:
            host.stop()
    return out


def crossover(lanes, measured: dict) -> dict:
    """Where batches start to pay, measured here, beside where the client's rule switches.

    A batch costs about the same whatever its size up to 8,192 records (one ciphertext per
    feature), so the measured crossover is the time of a one-record batch over the time of
    one single request, both end to end over HTTP on this machine.
    """
    from client.batches import batch_pays_off

    batch_ms = 1e3 / measured["batch_e2e_records_per_s_1"]
    single_ms = measured["http_encrypt_score_decrypt_p50_ms"]
    rule = next(n for n in range(2, 8193) if batch_pays_off(n, lanes) or n == 8192)
    return {"crossover_measured_records": math.ceil(batch_ms / single_ms), "crossover_client_rule_records": rule}


def load_table(*, quick: bool) -> dict:
    from bench.load import load_table as run

    runs = run(clients=(1, 4, 16), seconds=4.0 if quick else 15.0)
    return {"load": runs}


def spark() -> dict:
    """python -m bench.spark in this run: its own table and var/bench-spark.json; the headline here."""
    try:
        import pyspark  # noqa: F401 - the optional extra
    except ImportError as exc:
        return {"spark": f"not run ({exc})"}
    from bench.spark import main as spark_main

    output = ROOT / "var" / "bench-spark.json"
    spark_main(["--output", str(output)])
    figures = json.loads(output.read_text())
    return {"spark_rows_per_s": figures["spark_rows_per_s"], "spark_plain_rows_per_s": figures["plain_rows_per_s"],
            "spark_vs_plain": figures["spark_vs_plain"]}


def peer(model_path: str, X: np.ndarray, model, ours: dict, count: int) -> dict:
    """The peer encrypted-inference 0.9 on the same model and images, in its own venv."""
    import subprocess
    import tempfile

    python = ROOT / ".venv-peer" / "bin" / "python"
    if not python.exists() or count <= 0:
        return {"peer": "not run (make bench creates .venv-peer with encrypted-inference==0.9)"}
    from scoring.loading import load_model
    from scoring.model import export_model

    with tempfile.TemporaryDirectory() as folder:
        artifact = export_model(load_model(model_path), Path(folder) / "model.json")
        np.save(Path(folder) / "images.npy", X[:count])
        print(f"  peer: encrypted-inference 0.9 on {count} image(s), about 30 s each", flush=True)
        done = subprocess.run([str(python), str(ROOT / "bench" / "peer.py"), str(artifact),
                               str(Path(folder) / "images.npy"), str(count)],
                              capture_output=True, text=True, check=True, timeout=60 * (count + 2))
    result = json.loads(done.stdout)
    scores = np.array(result.pop("scores"))
    plain = model.decision_function(X[:count])
    result.update(images=count, max_abs_error=float(np.abs(scores - plain).max()),
                  argmax_agreement=int((scores.argmax(axis=1) == plain.argmax(axis=1)).sum()))
    ratios = {"peer_server_ratio": result["server_s"] * 1e3 / ours["server_request_binary_ms"],
              "peer_keys_ratio": result["public_keys_bytes"] / ours["key_bundle_bytes"]}
    if "batch_server_records_per_s_8192" in ours:
        ratios["peer_batch_ratio"] = result["server_s"] * ours["batch_server_records_per_s_8192"]
    return {"peer_" + key: value for key, value in result.items()} | ratios


TARGETS = [
    ("server_kernel_bare_ms", "single: server compute, bare product (ms)", "", None),
    ("server_masked_zero_ms", "single: one masked encryption of zero (ms)", "", None),
    ("server_kernel_protected_inline_ms", "single: product + masked zero inline (ms)", "", None),
    ("server_request_binary_ms", "single: server whole request, p50 (ms)", "<= 1", lambda v: v <= 1),
    ("server_request_binary_p99_ms", "single: server whole request, p99 (ms)", "", None),
    ("server_request_json_ms", "single: server whole JSON request, p50 (ms)", "", None),
    ("single_path_cpu_ms_per_request", "single: CPU per request, masked zero included", "", None),
    ("single_path_requests_per_core_s", "single: requests/s per core", ">= 227", lambda v: v >= 227),
    ("request_binary_bytes", "single: request bytes (binary)", "<= 70 KB", lambda v: v <= 70_000),
    ("request_json_bytes", "single: request bytes (JSON)", "", None),
    ("response_binary_bytes", "single: response bytes (binary)", "<= 135 KB", lambda v: v <= 135_000),
    ("response_json_bytes", "single: response bytes (JSON)", "", None),
    ("key_bundle_bytes", "key bundle bytes", "<= 140 KB", lambda v: v <= 140_000),
    ("packed_secret_key_bytes", "packed secret keys (to_bytes) bytes", "<= 4 KB", lambda v: v <= 4096),
    ("bundle_cache_entry_bytes", "service memory per cached key bundle (bytes)", "", None),
    ("key_generation_ms", "client key generation (ms)", "", None),
    ("encrypt_ms", "client encryption, one record (ms)", "", None),
    ("decrypt_ms", "client decryption, one record (ms)", "", None),
    ("encode_ms", "client: encode one chunk (FFT + SEAL's encoder, ms)", "", None),
    ("decode_ms", "client: decode one result (FFT, ms)", "", None),
    ("pack_ms", "client: packing one ciphertext, beyond SEAL's save (ms)", "", None),
    ("unpack_check_ms", "server: unpack and check one packed ciphertext (ms)", "", None),
    ("noise_bound", "server noise on every score, +- (single)", "", None),
    ("readable_bits", "bits one readable coefficient can carry, log2(q/(2w+1))", "", None),
    ("max_abs_error", "single: max |encrypted - plaintext|", "<= 1e-5", lambda v: v <= 1e-5),
    ("argmax_agreement", "single: argmax agreement", "all", None),
    ("plaintext_accuracy", "plaintext accuracy", "", None),
    ("http_score_p50_ms", "single: HTTP score p50 (ms)", "", None),
    ("http_score_p99_ms", "single: HTTP score p99 (ms)", "", None),
    ("http_encrypt_score_decrypt_p50_ms", "single: encrypt+HTTP+decrypt p50 (ms)", "<= 5", lambda v: v <= 5),
    ("http_encrypt_score_decrypt_p99_ms", "single: encrypt+HTTP+decrypt p99 (ms)", "<= 10", lambda v: v <= 10),
    *[(f"batch_server_records_per_s_{size}", f"batch {size:>5}: server records/s", *(
        (">= 10,000", lambda v: v >= 10_000) if size == 8192 else ("", None))) for size in BATCH_SIZES],
    ("batch_client_encrypt_s_per_full_batch_one_process", "batch: client encryption of a full batch, 1 process (s)",
     "", None),
    *[(f"batch_e2e_records_per_s_{size}", f"batch {size:>5}: end-to-end records/s", *(
        (">= 4,000", lambda v: v >= 4_000) if size == 8192 else ("", None))) for size in (1, 512, 4096, 8192, 16384)],
    ("crossover_measured_records", "batches pay from (records, measured, loopback)", "", None),
    ("crossover_client_rule_records", "client batches from (records, its rule)", "", None),
    ("batch_bytes_up_per_record_8192", "batch 8192: bytes up per record", "<= 6 KB", lambda v: v <= 6144),
    ("batch_bytes_down_per_record_8192", "batch 8192: bytes down per record", "", None),
    ("batch_max_abs_error", "batch: max |encrypted - plaintext|", "<= 1e-5", lambda v: v <= 1e-5),
    ("batch_argmax_agreement", "batch: argmax agreement", "all", None),
    ("spark_rows_per_s", "Spark: score_dataframe rows/s, local[2]", "", None),
    ("spark_plain_rows_per_s", "Spark: the plain client, one process, rows/s", "", None),
    ("spark_vs_plain", "Spark / plain client", ">= 0.8", lambda v: v >= 0.8),
    ("peer_server_s", "peer 0.9: server per image (s)", "", None),
    ("peer_server_ratio", "peer / ours, server time per image", "", None),
    ("peer_batch_ratio", "peer / ours in full batches, per image", "", None),
    ("peer_public_keys_bytes", "peer 0.9: public keys bytes", "", None),
    ("peer_request_bytes", "peer 0.9: request bytes", "", None),
    ("peer_response_bytes", "peer 0.9: response bytes", "", None),
    ("peer_max_abs_error", "peer 0.9: max |encrypted - plaintext|", "", None),
]


def print_table(results: dict) -> None:
    print(f"\n{'measure':<56} {'value':>14}  {'target':<10} met")
    for key, title, target, check in TARGETS:
        if key not in results:
            continue
        value = results[key]
        met = "" if check is None else ("yes" if check(value) else "NO")
        if key.endswith("argmax_agreement"):
            total = results["batch_records" if key.startswith("batch") else "accuracy_records"]
            met = "yes" if value == total else "NO"
            shown = f"{value:,}/{total:,}"
        elif isinstance(value, float) and value < 1e-2:
            shown = f"{value:.3g}"
        elif isinstance(value, float):
            shown = f"{value:,.2f}"
        else:
            shown = f"{value:,}"
        print(f"{title:<56} {shown:>14}  {target:<10} {met}")
    if isinstance(results.get("load"), list):
        from bench.load import print_table as print_load

        print_load(results["load"])
    for key in ("batch", "peer", "spark"):  # why a part did not run
        if key in results and not isinstance(results[key], (int, float)):
            print(f"{key}: {results[key]}")


if __name__ == "__main__":
    sys.exit(main())
