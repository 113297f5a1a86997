"""Regenerate the golden wire files (run from the repo root: python tests/golden/make_golden.py).

The files pin protocol version 2 byte for byte: a tiny model artifact, a test-only key
pair (the secret key here protects nothing), one request and its response in both forms,
and the scores they decrypt to. Only regenerate them on a deliberate format change.
``v1/`` keeps protocol version 1's request, key bundle and secret key file as they were
made, to show they are refused (the request) or still read (the key file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

import numpy as np  # noqa: E402

from client.keys import SecretKeys, save_secret_key  # noqa: E402
from scoring import protocol  # noqa: E402
from scoring.model import LinearModel, export_model  # noqa: E402
from scoring.protocol import ScoreRequest, WireForm  # noqa: E402
from scoring.service import ScoringService  # noqa: E402
from scoring.settings import Settings  # noqa: E402

MODEL = LinearModel(coef=np.array([[0.5, -1.0, 0.25, 0.0, 1.5, -0.75],
                                   [-0.5, 0.5, 1.0, -1.0, 0.0, 0.25],
                                   [1.0, 0.0, -0.5, 0.75, -1.25, 0.5]]),
                    intercept=np.array([0.1, -0.2, 0.3]), kind="classifier", classes=("cat", "dog", "emu"),
                    proba="softmax", estimator="LogisticRegression")
X = np.array([0.9, 0.1, -0.4, 0.3, 0.6, -0.8])


def main() -> None:
    for name in ("secret.key",):
        (HERE / name).unlink(missing_ok=True)
    export_model(MODEL, HERE / "model.json")
    keys = SecretKeys.generate()
    save_secret_key(keys, HERE / "secret.key")
    (HERE / "keys.bundle").write_bytes(keys.public_bundle())
    service = ScoringService(Settings(model_path=str(HERE / "model.json")))
    request = ScoreRequest(keys.encrypt_record(service.describe().record_encoding(), X), MODEL.model_hash)
    response = service.score(keys.key_id, keys.public_bundle(), request)
    for form, suffix in ((WireForm.BINARY, "bin"), (WireForm.JSON, "json")):
        (HERE / f"request.{suffix}").write_bytes(protocol.encode_request(request, form))
        (HERE / f"response.{suffix}").write_bytes(protocol.encode_response(response, form))
    (HERE / "expected.json").write_text(json.dumps({
        "x": X.tolist(), "scores": MODEL.decision_function(X[None])[0].tolist(),
        "key_id": keys.key_id, "model_hash": MODEL.model_hash}, indent=1))


if __name__ == "__main__":
    main()
