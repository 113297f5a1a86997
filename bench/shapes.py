"""``python -m bench.shapes``: how cost grows with input width and output count.

For random affine maps of several shapes: the layout (chunks up, products down), bytes on
the wire (binary form) and server time per record with model privacy on (the product plus a
masked encryption of zero per result computed on the request path, as when the pool of
prepared ones is empty).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import tenseal.sealapi as seal

from client.keys import SecretKeys
from scoring.ckks import runtime
from scoring.kernels.single import CoefficientKernel
from scoring.keys import load_bundle
from scoring.model import LinearModel

SHAPES = [(64, 10), (784, 10), (784, 100), (3072, 10), (3072, 100), (20_000, 2), (20_000, 10), (100_000, 1)]


def measure(keys: SecretKeys, features: int, outputs: int) -> dict:
    rng = np.random.default_rng(features + outputs)
    model = LinearModel(rng.normal(size=(outputs, features)) / np.sqrt(features), rng.normal(size=outputs),
                        "regressor")
    started = time.perf_counter()
    kernel = CoefficientKernel(model, runtime())
    encode_ms = (time.perf_counter() - started) * 1e3
    x = rng.uniform(-1, 1, features)
    blobs = keys.encrypt_record(kernel.encoding, x)
    chunks = [kernel.rt.load(seal.Ciphertext(), b) for b in blobs]
    encryptor = load_bundle(keys.public_bundle()).encryptor
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        zeros = [kernel.masked_zero(encryptor, p) for p in range(kernel.layout.n_products)]
        results = kernel.evaluate(chunks, zeros)
        samples.append((time.perf_counter() - started) * 1e3)
    out = tuple(kernel.rt.save_canonical(r) for r in results)
    error = np.abs(keys.decrypt_scores(kernel.encoding, out) - model.decision_function(x[None])[0]).max()
    return {"features": features, "outputs": outputs, "chunks": kernel.layout.n_chunks,
            "products": kernel.layout.n_products, "request_kb": sum(map(len, blobs)) / 1000,
            "response_kb": sum(map(len, out)) / 1000, "server_ms": statistics.median(samples),
            "weights_ms": encode_ms, "max_error": float(error)}


def main() -> int:
    keys = SecretKeys.generate()
    print(f"{'features':>8} {'outputs':>7} {'chunks':>6} {'products':>8} {'request KB':>10} {'response KB':>11} "
          f"{'server ms':>9} {'encode weights ms':>17} {'max error':>9}")
    for features, outputs in SHAPES:
        row = measure(keys, features, outputs)
        print(f"{row['features']:>8} {row['outputs']:>7} {row['chunks']:>6} {row['products']:>8} "
              f"{row['request_kb']:>10.0f} {row['response_kb']:>11.0f} {row['server_ms']:>9.1f} "
              f"{row['weights_ms']:>17.0f} {row['max_error']:>9.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
