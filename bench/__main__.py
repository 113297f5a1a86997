"""``make bench``: measure both paths and the peer; print the figures the README reports.

With ../shared present (or SCORING_MODEL_PATH / MNIST_DIR set) it uses the original
tutorial's model on the MNIST test set; otherwise the digits model on held-out digits.
Measures the single-record path (server compute, bytes, client costs, HTTP latency), the
batch path (images per second, server only and end to end, for batch sizes 1 to 4096),
accuracy against plaintext on every image, and side by side the peer
``encrypted-inference==0.9`` on the same model and images (from ``.venv-peer``, which
``make bench`` creates). Prints a table against the targets and writes bench/results.json.

Environment: BENCH_HTTP_REQUESTS (default 200), BENCH_ACCURACY_RECORDS (default: all),
BENCH_PEER_IMAGES (default 3; the peer needs 20-30 s of server time per image).
"""

from __future__ import annotations

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
SHARED = ROOT.parent / "shared"


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


def workload() -> tuple[str, str, np.ndarray, np.ndarray]:
    model = os.environ.get("SCORING_MODEL_PATH") or (
        str(SHARED / "models" / "sklearn_mnist_model.pkl") if (SHARED / "models").exists() else "")
    mnist = os.environ.get("MNIST_DIR") or (str(SHARED / "data" / "mnist") if (SHARED / "data").exists() else "")
    if model and mnist:
        from demo.data import load_mnist_test

        X, y = load_mnist_test(mnist)
        return model, "tutorial model on the MNIST test set", X, y
    from demo.data import load_digits_scaled, train_digits_model
    from scoring.estimators import from_estimator
    from scoring.model import export_model

    path = export_model(from_estimator(train_digits_model()), ROOT / "models" / "digits.model.json")
    X, y = load_digits_scaled()
    return str(path), "digits model on held-out digits (../shared absent)", X[1500:], y[1500:]


def main() -> int:
    from client.keys import SecretKeys
    from client.scoring_client import ModelInfo
    from scoring import protocol
    from scoring.keys import load_bundle
    from scoring.model import load_model
    from scoring.service import ScoringService, Settings

    model_path, label, X, y = workload()
    print(f"workload: {label}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    results: dict = {"workload": label}

    started = time.perf_counter()
    service = ScoringService(Settings(model_path=model_path))
    kernel = service.kernel
    results["model_load_and_encode_ms"] = (time.perf_counter() - started) * 1e3
    info = ModelInfo(service.describe())
    model = load_model(model_path)

    keygen = timed(lambda: SecretKeys.generate(info.parameters), 20)
    results["bundle_cache_entry_bytes"] = cached_bundle_bytes(info.parameters)
    keys = SecretKeys.generate(info.parameters)
    bundle = keys.public_bundle()
    public = load_bundle(bundle, keys.key_id)
    service.check_upload(keys.key_id, bundle)

    x = X[0]
    record = keys.encrypt_record(info.encoding, x)
    encrypt = timed(lambda: keys.encrypt_record(info.encoding, x), 100)
    chunks = [kernel.rt.load(seal.Ciphertext(), c) for c in record]
    kernel_plain = timed(lambda: kernel.evaluate(chunks, public.encryptor, protect=False), 500)
    kernel_protected = timed(lambda: kernel.evaluate(chunks, public.encryptor, protect=True), 300)
    bodies = {binary: protocol.encode(protocol.ScoreMessage(tuple(record), info.model_hash), binary=binary,
                                      response=False) for binary in (True, False)}
    service_binary = timed(lambda: service.score(keys.key_id, bundle, *bodies[True]), 300)
    service_json = timed(lambda: service.score(keys.key_id, bundle, *bodies[False]), 100)
    replies = {binary: service.score(keys.key_id, bundle, *bodies[binary]) for binary in (True, False)}
    reply_blob = protocol.decode(*replies[True], response=True).ciphertexts[0]
    decrypt = timed(lambda: keys.decrypt_scores(info.encoding, (reply_blob,)), 100)

    results.update({
        "key_generation_ms": statistics.median(keygen),
        "encrypt_ms": statistics.median(encrypt),
        "decrypt_ms": statistics.median(decrypt),
        "server_kernel_unprotected_ms": statistics.median(kernel_plain),
        "server_kernel_protected_ms": statistics.median(kernel_protected),
        "server_request_binary_ms": statistics.median(service_binary),
        "server_request_json_ms": statistics.median(service_json),
        "key_bundle_bytes": len(bundle),
        "request_binary_bytes": len(bodies[True][0]),
        "request_json_bytes": len(bodies[False][0]),
        "response_binary_bytes": len(replies[True][0]),
        "response_json_bytes": len(replies[False][0]),
    })
    results.update(accuracy(service, keys, info, model, X, y))
    results.update(bulk_server(service, keys, info, model, X))
    results.update(http_latency(model_path, X))
    results.update(peer(model_path, X, model, results))

    print_table(results)
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


def accuracy(service, keys, info, model, X, y) -> dict:
    from scoring import protocol

    count = int(os.environ.get("BENCH_ACCURACY_RECORDS", len(X)))
    plain = model.decision_function(X[:count])
    worst, agree, started = 0.0, 0, time.perf_counter()
    for i in range(count):
        chunks = keys.encrypt_record(info.encoding, X[i])
        body, content_type = protocol.encode(protocol.ScoreMessage(chunks, info.model_hash), binary=True,
                                             response=False)
        out, out_type = service.score(keys.key_id, keys.public_bundle(), body, content_type)
        scores = keys.decrypt_scores(info.encoding, protocol.decode(out, out_type, response=True).ciphertexts)
        worst = max(worst, float(np.abs(scores - plain[i]).max()))
        agree += int(np.argmax(scores) == np.argmax(plain[i]))
        if i and i % 2000 == 0:
            print(f"  accuracy: {i}/{count} records", flush=True)
    return {"accuracy_records": count, "argmax_agreement": agree, "max_abs_error": worst,
            "plaintext_accuracy": float((plain.argmax(axis=1) == y[:count]).mean()),
            "accuracy_seconds": time.perf_counter() - started}


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


BATCH_SIZES = (1, 8, 64, 512, 4096)


def bulk_server(service, keys, info, model, X) -> dict:
    """Batch path, server only: images per second per batch size; accuracy on every image."""
    from scoring import protocol

    encoding, out = info.bulk, {}
    if encoding is None:
        return {"bulk": "not offered for this model"}
    for size in BATCH_SIZES:
        batch = np.resize(X, (size, X.shape[1])) if size > len(X) else X[:size]
        body, content_type = protocol.encode(protocol.ScoreMessage(keys.encrypt_columns(encoding, batch),
                                                                   info.model_hash, size), binary=True,
                                             response=False)
        samples = timed(lambda: service.score(keys.key_id, keys.public_bundle(), body, content_type),
                        3 if size >= 512 else 5)
        reply, reply_type = service.score(keys.key_id, keys.public_bundle(), body, content_type)
        out[f"bulk_server_images_per_s_{size}"] = size / (statistics.median(samples) / 1e3)
        out[f"bulk_bytes_up_per_image_{size}"] = len(body) / size
        out[f"bulk_bytes_down_per_image_{size}"] = len(reply) / size
    worst, agree = 0.0, 0
    for start in range(0, len(X), encoding.max_records):
        batch = X[start:start + encoding.max_records]
        body, content_type = protocol.encode(protocol.ScoreMessage(keys.encrypt_columns(encoding, batch),
                                                                   info.model_hash, len(batch)), binary=True,
                                             response=False)
        reply = protocol.decode(*service.score(keys.key_id, keys.public_bundle(), body, content_type),
                                response=True)
        scores = keys.decrypt_columns(encoding, reply.ciphertexts, len(batch))
        plain = model.decision_function(batch)
        worst = max(worst, float(np.abs(scores - plain).max()))
        agree += int((scores.argmax(axis=1) == plain.argmax(axis=1)).sum())
    out.update(bulk_argmax_agreement=agree, bulk_records=len(X), bulk_max_abs_error=worst)
    return out


def http_latency(model_path: str, X: np.ndarray) -> dict:
    """Over HTTP through the local host and Azurite, client included, warm.

    Single path: latency of one record. Batch path: images per second end to end (parallel
    encryption, the request, decryption) per batch size.
    """
    from client import ScoringClient
    from devhost import Azurite, LocalFunctionsHost, ensure_installed

    requests_count = int(os.environ.get("BENCH_HTTP_REQUESTS", "200"))
    ensure_installed(ROOT)
    out: dict = {"http_requests": requests_count}
    with Azurite(port=0) as azurite:
        os.environ.update(SCORING_STORAGE=azurite.connection_string, SCORING_KEYS_CONTAINER="benchkeys",
                          SCORING_MODEL_PATH=model_path)
        host = LocalFunctionsHost(ROOT, port=0, load_local_settings=False)
        host.start()
        try:
            with ScoringClient(host.url, bulk_threshold=1, progress=False) as client:
                record = client.encrypt(X[0])
                client.score(record)  # warm: keys uploaded, model loaded, bundle cached
                round_trip = timed(lambda: client.score(record), requests_count)
                full = timed(lambda: client.decrypt(client.score(client.encrypt(X[1]))), requests_count // 2)
                out.update(http_score_p50_ms=percentile(round_trip, 50), http_score_p99_ms=percentile(round_trip, 99),
                           http_encrypt_score_decrypt_p50_ms=percentile(full, 50),
                           http_encrypt_score_decrypt_p99_ms=percentile(full, 99))
                if client.describe_model().bulk is not None:
                    client.score_batches(np.resize(X, (8192, X.shape[1])))  # warm: worker processes started
                    for size in BATCH_SIZES:
                        batch = np.resize(X, (size, X.shape[1])) if size > len(X) else X[:size]
                        samples = timed(lambda: client.score_batches(batch), 2 if size >= 512 else 3)
                        out[f"bulk_e2e_images_per_s_{size}"] = size / (statistics.median(samples) / 1e3)
                    out.update(crossover(client.describe_model().bulk, out))
                client.delete_keys()
        finally:
            host.stop()
    return out


def crossover(encoding, measured: dict) -> dict:
    """Where batches start to pay, measured here, beside where the client's rule switches.

    A batch costs about the same whatever its size up to 4,096 records (one ciphertext per
    feature), so the measured crossover is the time of a one-record batch over the time of
    one single request, both end to end over HTTP on this machine.
    """
    from client.bulk import bulk_pays_off

    batch_ms = 1e3 / measured["bulk_e2e_images_per_s_1"]
    single_ms = measured["http_encrypt_score_decrypt_p50_ms"]
    rule = next(n for n in range(2, 5000) if bulk_pays_off(n, encoding) or n == 4999)
    return {"crossover_measured_records": math.ceil(batch_ms / single_ms), "crossover_client_rule_records": rule}


def peer(model_path: str, X: np.ndarray, model, ours: dict) -> dict:
    """The peer encrypted-inference 0.9 on the same model and images, in its own venv."""
    import subprocess
    import tempfile

    python = ROOT / ".venv-peer" / "bin" / "python"
    count = int(os.environ.get("BENCH_PEER_IMAGES", "3"))
    if not python.exists() or count <= 0:
        return {"peer": "not run (make bench creates .venv-peer with encrypted-inference==0.9)"}
    from scoring.model import export_model, load_model

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
    batched = {"peer_batch_ratio": result["server_s"] * ours["bulk_server_images_per_s_4096"]} if (
        "bulk_server_images_per_s_4096" in ours) else {}
    return {"peer_" + key: value for key, value in result.items()} | batched | {
        "peer_server_ratio": result["server_s"] * 1e3 / ours["server_request_binary_ms"],
        "peer_keys_ratio": result["public_keys_bytes"] / ours["key_bundle_bytes"]}


TARGETS = [
    ("server_kernel_unprotected_ms", "single: server compute, bare product (ms)", "<= 1", lambda v: v <= 1),
    ("server_kernel_protected_ms", "single: server compute, model privacy (ms)", "<= 4", lambda v: v <= 4),
    ("server_request_binary_ms", "single: server, whole binary request (ms)", "", None),
    ("server_request_json_ms", "single: server, whole JSON request (ms)", "", None),
    ("request_binary_bytes", "single: request bytes (binary)", "<= 70 KB", lambda v: v <= 70_000),
    ("request_json_bytes", "single: request bytes (JSON)", "", None),
    ("response_binary_bytes", "single: response bytes (binary)", "<= 135 KB", lambda v: v <= 135_000),
    ("response_json_bytes", "single: response bytes (JSON)", "", None),
    ("key_bundle_bytes", "key bundle bytes", "<= 140 KB", lambda v: v <= 140_000),
    ("bundle_cache_entry_bytes", "service memory per cached key bundle (bytes)", "", None),
    ("key_generation_ms", "client key generation (ms)", "", None),
    ("encrypt_ms", "client encryption, one record (ms)", "", None),
    ("decrypt_ms", "client decryption, one record (ms)", "", None),
    ("max_abs_error", "single: max |encrypted - plaintext|", "<= 1e-5", lambda v: v <= 1e-5),
    ("argmax_agreement", "single: argmax agreement", "all", None),
    ("plaintext_accuracy", "plaintext accuracy", "", None),
    ("http_score_p50_ms", "single: HTTP score p50 (ms)", "", None),
    ("http_score_p99_ms", "single: HTTP score p99 (ms)", "", None),
    ("http_encrypt_score_decrypt_p50_ms", "single: encrypt+HTTP+decrypt p50 (ms)", "<= 30", lambda v: v <= 30),
    ("http_encrypt_score_decrypt_p99_ms", "single: encrypt+HTTP+decrypt p99 (ms)", "", None),
    *[(f"bulk_server_images_per_s_{size}", f"bulk {size:>4}: server images/s",
       ">= 3,000" if size == 4096 else "", (lambda v: v >= 3000) if size == 4096 else None) for size in BATCH_SIZES],
    *[(f"bulk_e2e_images_per_s_{size}", f"bulk {size:>4}: end-to-end images/s",
       ">= 1,000" if size == 4096 else "", (lambda v: v >= 1000) if size == 4096 else None) for size in BATCH_SIZES],
    ("crossover_measured_records", "batch pays from (records, measured, loopback)", "", None),
    ("crossover_client_rule_records", "client batches from (records, its rule)", "", None),
    ("bulk_bytes_up_per_image_4096", "bulk 4096: bytes up per image", "<= 16 KB", lambda v: v <= 16_000),
    ("bulk_bytes_down_per_image_4096", "bulk 4096: bytes down per image", "", None),
    ("bulk_max_abs_error", "bulk: max |encrypted - plaintext|", "", None),
    ("bulk_argmax_agreement", "bulk: argmax agreement", "all", None),
    ("peer_server_s", "peer 0.9: server per image (s)", "", None),
    ("peer_server_ratio", "peer / ours, server time per image", "", None),
    ("peer_batch_ratio", "peer / ours in batches of 4096, per image", "", None),
    ("peer_public_keys_bytes", "peer 0.9: public keys bytes", "", None),
    ("peer_request_bytes", "peer 0.9: request bytes", "", None),
    ("peer_response_bytes", "peer 0.9: response bytes", "", None),
    ("peer_max_abs_error", "peer 0.9: max |encrypted - plaintext|", "", None),
]


def print_table(results: dict) -> None:
    print(f"\n{'measure':<46} {'value':>14}  {'target':<10} met")
    for key, title, target, check in TARGETS:
        if key not in results:
            continue
        value = results[key]
        met = "" if check is None else ("yes" if check(value) else "NO")
        if key.endswith("argmax_agreement"):
            total = results["bulk_records" if key.startswith("bulk") else "accuracy_records"]
            met = "yes" if value == total else "NO"
            shown = f"{value:,}/{total:,}"
        elif isinstance(value, float) and value < 1e-2:
            shown = f"{value:.3g}"
        elif isinstance(value, float):
            shown = f"{value:,.2f}"
        else:
            shown = f"{value:,}"
        print(f"{title:<46} {shown:>14}  {target:<10} {met}")
    for key in ("bulk", "peer"):
        if key in results:
            print(f"{key}: {results[key]}")


if __name__ == "__main__":
    sys.exit(main())
