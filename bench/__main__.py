"""``make bench``: measure the single-record path and print the figures the README reports.

With ../shared present (or SCORING_MODEL_PATH / MNIST_DIR set) it uses the original
tutorial's model on the MNIST test set; otherwise the digits model on held-out digits.
Prints a table against the targets and writes bench/results.json.

Environment: BENCH_HTTP_REQUESTS (default 200), BENCH_ACCURACY_RECORDS (default: all).
"""

from __future__ import annotations

import json
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
    results.update(http_latency(model_path, X))

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


def http_latency(model_path: str, X: np.ndarray) -> dict:
    """Warm end-to-end latency of one record over HTTP: local host + Azurite, client included."""
    from client import ScoringClient
    from devhost import Azurite, LocalFunctionsHost, ensure_installed

    requests_count = int(os.environ.get("BENCH_HTTP_REQUESTS", "200"))
    ensure_installed(ROOT)
    with Azurite(port=0) as azurite:
        os.environ.update(SCORING_STORAGE=azurite.connection_string, SCORING_KEYS_CONTAINER="benchkeys",
                          SCORING_MODEL_PATH=model_path)
        host = LocalFunctionsHost(ROOT, port=0, load_local_settings=False)
        host.start()
        try:
            client = ScoringClient(host.url)
            record = client.encrypt(X[0])
            client.score(record)  # warm: keys uploaded, model loaded, bundle cached
            round_trip = timed(lambda: client.score(record), requests_count)
            full = timed(lambda: client.decrypt(client.score(client.encrypt(X[1]))), requests_count // 2)
            client.delete_keys()
        finally:
            host.stop()
    return {"http_requests": requests_count,
            "http_score_p50_ms": percentile(round_trip, 50), "http_score_p99_ms": percentile(round_trip, 99),
            "http_encrypt_score_decrypt_p50_ms": percentile(full, 50),
            "http_encrypt_score_decrypt_p99_ms": percentile(full, 99)}


TARGETS = [
    ("server_kernel_unprotected_ms", "server compute, kernel only (ms)", "<= 1", lambda v: v <= 1),
    ("server_kernel_protected_ms", "server compute with model privacy (ms)", "<= 4", lambda v: v <= 4),
    ("server_request_binary_ms", "server, whole binary request (ms)", "", None),
    ("server_request_json_ms", "server, whole JSON request (ms)", "", None),
    ("request_binary_bytes", "request bytes (binary)", "<= 70 KB", lambda v: v <= 70_000),
    ("request_json_bytes", "request bytes (JSON)", "", None),
    ("response_binary_bytes", "response bytes (binary)", "<= 135 KB", lambda v: v <= 135_000),
    ("response_json_bytes", "response bytes (JSON)", "", None),
    ("key_bundle_bytes", "key bundle bytes", "<= 140 KB", lambda v: v <= 140_000),
    ("key_generation_ms", "client key generation (ms)", "", None),
    ("encrypt_ms", "client encryption (ms)", "", None),
    ("decrypt_ms", "client decryption (ms)", "", None),
    ("max_abs_error", "max |encrypted - plaintext|", "<= 1e-5", lambda v: v <= 1e-5),
    ("argmax_agreement", "argmax agreement", "all records", None),
    ("plaintext_accuracy", "plaintext accuracy", "", None),
    ("http_score_p50_ms", "HTTP score round trip p50 (ms)", "", None),
    ("http_score_p99_ms", "HTTP score round trip p99 (ms)", "", None),
    ("http_encrypt_score_decrypt_p50_ms", "encrypt+HTTP+decrypt p50 (ms)", "", None),
    ("http_encrypt_score_decrypt_p99_ms", "encrypt+HTTP+decrypt p99 (ms)", "", None),
]


def print_table(results: dict) -> None:
    print(f"\n{'measure':<42} {'value':>14}  {'target':<12} met")
    for key, title, target, check in TARGETS:
        value = results[key]
        if key == "argmax_agreement":
            met = "yes" if value == results["accuracy_records"] else "NO"
            shown = f"{value:,}/{results['accuracy_records']:,}"
        else:
            met = "" if check is None else ("yes" if check(value) else "NO")
            shown = f"{value:,.3g}" if isinstance(value, float) and value < 1e-2 else (
                f"{value:,.2f}" if isinstance(value, float) else f"{value:,}")
        print(f"{title:<42} {shown:>14}  {target:<12} {met}")


if __name__ == "__main__":
    sys.exit(main())
