"""Run the peer, ``encrypted-inference==0.9``, on the same model and images; print JSON.

Runs inside its own virtual environment (``make bench`` creates ``.venv-peer``; the peer
needs only numpy), so it imports nothing from this project but reads the same inputs:

    .venv-peer/bin/python bench/peer.py MODEL.json IMAGES.npy COUNT

MODEL.json is this project's exported artifact (weights and intercept as JSON lists);
IMAGES.npy the images, one per row. It times the peer exactly as the original tutorial
uses it: client key generation, encryption, the server's ``EIServer.predict``, decryption.
"""

import json
import sys
import time

import numpy as np
from encrypted.inference.eiclient import EILinearRegressionClient
from encrypted.inference.eiserver import EIServer


def main() -> int:
    model_path, images_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = json.load(open(model_path))
    coef = np.array(model["coef"]).reshape(model["n_outputs"], model["n_features"])
    intercept = np.array(model["intercept"])
    X = np.load(images_path)[:count]
    started = time.perf_counter()
    client = EILinearRegressionClient(verbose=False)
    _, public_keys = client.get_public_keys()
    keygen = time.perf_counter() - started
    server = EIServer(coef, intercept, verbose=False)
    rows, timings = [], {"encrypt": [], "server": [], "decrypt": []}
    request_bytes = response_bytes = 0
    for x in X:
        t0 = time.perf_counter()
        ciphertexts = client.encrypt(x)
        t1 = time.perf_counter()
        result = server.predict(ciphertexts, public_keys)
        t2 = time.perf_counter()
        scores = client.decrypt(result)
        t3 = time.perf_counter()
        timings["encrypt"].append(t1 - t0)
        timings["server"].append(t2 - t1)
        timings["decrypt"].append(t3 - t2)
        request_bytes = sum(len(c) for c in ciphertexts)
        response_bytes = sum(len(r) for r in result)
        rows.append(list(map(float, scores)))
    print(json.dumps({"keygen_s": keygen, "public_keys_bytes": len(public_keys), "request_bytes": request_bytes,
                      "response_bytes": response_bytes, "scores": rows,
                      **{f"{k}_s": float(np.median(v)) for k, v in timings.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
