"""``make demo``: a full encrypted scoring round trip on local defaults.

Starts Azurite and the Functions app over HTTP on 127.0.0.1, prepares a model, generates
keys, uploads the public bundle, encrypts records, scores them over HTTP, decrypts, prints
predictions against true labels with timings and bytes, and cleans up.

Environment:
    SCORING_MODEL_PATH  a joblib pickle or exported artifact (e.g. the tutorial's
                        ../shared/models/sklearn_mnist_model.pkl); default: train on digits.
    MNIST_DIR           a folder of the MNIST idx files (e.g. ../shared/data/mnist); default:
                        scikit-learn's bundled digits.
    DEMO_RECORDS        how many records to score (default 20).
    DEMO_PORT, AZURITE_PORT   default 7071 and 10000 (a free port if taken).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def prepare_model() -> tuple[Path, str]:
    """Export the configured model (or a digits model) to an artifact; return it and a label."""
    from client.datasets import train_digits_model
    from scoring.estimators import from_estimator
    from scoring.loading import load_model
    from scoring.model import export_model

    source = os.environ.get("SCORING_MODEL_PATH")
    if source:
        model = load_model(source)
        return export_model(model, MODELS / (Path(source).stem + ".model.json")), f"{Path(source).name} (exported)"
    return export_model(from_estimator(train_digits_model()), MODELS / "digits.model.json"), \
        "LogisticRegression trained on scikit-learn's digits"


def prepare_data(n_features: int, count: int) -> tuple[np.ndarray, np.ndarray, str]:
    from client.datasets import load_digits_scaled, load_mnist_test

    folder = os.environ.get("MNIST_DIR")
    if folder:
        X, y = load_mnist_test(folder)
        label = f"MNIST test set from {folder}"
    else:
        X, y = load_digits_scaled()
        X, y = X[1500:], y[1500:]  # rows the digits model did not train on
        label = "scikit-learn digits (held-out rows)"
    if X.shape[1] != n_features:
        raise SystemExit(f"the model takes {n_features} features but the data has {X.shape[1]}: "
                         "set MNIST_DIR for MNIST models, or unset SCORING_MODEL_PATH for digits")
    return X[:count], y[:count], label


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from client import ScoringClient
    from devhost import Azurite, LocalFunctionsHost, ensure_installed
    from devhost.processes import port_or_free
    from scoring.model import read_artifact

    count = int(os.environ.get("DEMO_RECORDS", "20"))
    model_path, model_label = prepare_model()
    model = read_artifact(model_path)
    X, y, data_label = prepare_data(model.n_features, count)
    print(f"model: {model_label}\n       {model.n_features} features, {model.n_outputs} outputs, "
          f"hash {model.model_hash[:16]}...\ndata:  {data_label}, {len(X)} records")

    ensure_installed(ROOT)
    with Azurite(port=port_or_free(int(os.environ.get("AZURITE_PORT", "10000")))) as azurite:
        os.environ.update(SCORING_STORAGE=azurite.connection_string, SCORING_KEYS_CONTAINER="hekeys",
                          SCORING_MODEL_PATH=str(model_path))
        host = LocalFunctionsHost(ROOT, port=port_or_free(int(os.environ.get("DEMO_PORT", "7071"))),
                                  load_local_settings=False)
        host.start()
        try:
            return run_round_trip(ScoringClient(host.url), model, X, y, azurite.port, host.url)
        finally:
            host.stop()


def run_round_trip(client, model, X: np.ndarray, y: np.ndarray, azurite_port: int, url: str) -> int:
    print(f"\nAzurite on 127.0.0.1:{azurite_port}, Functions app on {url}")
    started = time.perf_counter()
    info = client.describe_model()
    keys = client.generate_keys()
    keygen_ms = (time.perf_counter() - started) * 1e3
    print(f"keys:  CKKS N={info.parameters.poly_modulus_degree}, {info.parameters.name}; generated in "
          f"{keygen_ms:.0f} ms; public bundle {len(keys.public_bundle()):,} bytes, id {keys.key_id[:16]}...")
    started = time.perf_counter()
    client.upload_keys()
    print(f"       uploaded through PUT /api/keys/{{id}} in {(time.perf_counter() - started) * 1e3:.0f} ms; "
          "the secret key never leaves this process")

    timings: dict[str, list[float]] = {"encrypt": [], "score over HTTP": [], "decrypt": []}
    sizes = {"request": 0, "response": 0}
    predictions, scores, agree = [], [], 0
    print(f"\n{'#':>3} {'true':>5} {'encrypted':>9} {'plaintext':>9}  max|error|")
    for index, (x, truth) in enumerate(zip(X, y)):
        started = time.perf_counter()
        record = client.encrypt(x)
        encrypted_at = time.perf_counter()
        answer = client.score(record)
        scored_at = time.perf_counter()
        decrypted = client.decrypt(answer)
        done = time.perf_counter()
        timings["encrypt"].append((encrypted_at - started) * 1e3)
        timings["score over HTTP"].append((scored_at - encrypted_at) * 1e3)
        timings["decrypt"].append((done - scored_at) * 1e3)
        sizes["request"] = sum(len(c) for c in record.ciphertexts)
        sizes["response"] = sum(len(c) for c in answer.ciphertexts)
        plain = model.decision_function(x[None])[0]
        label = info.classes[int(np.argmax(decrypted))]
        predictions.append(label)
        scores.append(np.abs(decrypted - plain).max())
        plain_label = info.classes[int(np.argmax(plain))]
        agree += label == plain_label
        print(f"{index:>3} {truth!s:>5} {label!s:>9} {plain_label!s:>9}  {scores[-1]:.1e}"
              + ("" if label == truth else "   (wrong)"))

    correct = sum(p == t for p, t in zip(predictions, y))
    print(f"\naccuracy {correct}/{len(y)}; encrypted and plaintext predictions agree on {agree}/{len(y)}; "
          f"max |error| {max(scores):.1e}")
    for step, values in timings.items():
        print(f"{step:>16}: median {statistics.median(values):7.2f} ms")
    print(f"{'ciphertext':>16}: {sizes['request']:,} bytes up, {sizes['response']:,} bytes down per record "
          "(ciphertext blobs; binary wire form adds a few bytes)")
    deleted = client.delete_keys()
    print(f"clean-up: keys {'deleted' if deleted else 'were already gone'}")
    return 0 if agree == len(y) and max(scores) < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
