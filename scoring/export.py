"""Export a fitted scikit-learn linear model to the portable artifact the service loads.

Usage::

    python -m scoring.export sklearn_mnist_model.pkl models/mnist.model.json [--input-bound 1.0]
    python -m scoring.export pipeline.pkl models/cancer.model.json --bounds-from X_train.npy

The artifact is JSON (weights, intercept, class labels, feature count, input bounds,
content hash; no pickle), so the function starts without unpickling. Affine pipeline
steps are folded in. Point ``SCORING_MODEL_PATH`` at it.

Input bounds: the largest ``|x_i|`` clients will send, which bounds the scores so the
encrypted computation cannot overflow; clients are refused data beyond them. One number
for every feature (``--input-bound``, default 1.0: pixels / 255 as in the tutorial), or
per feature from sample data (``--bounds-from``: a .npy or .csv of rows, times
``--margin``), which keeps precision when features have very different ranges.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from .loading import load_model
from .model import export_model


def bounds_from(path: str, margin: float) -> np.ndarray:
    """Per-feature bounds: the largest absolute value of each column in a sample, times a margin."""
    data = np.load(path) if path.endswith(".npy") else np.loadtxt(path, delimiter=",", ndmin=2)
    return np.abs(np.asarray(data, dtype=np.float64)).max(axis=0) * margin + 1e-12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoring.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a joblib pickle of a fitted linear model or pipeline, or an artifact")
    parser.add_argument("destination", help="where to write the JSON artifact")
    bounds = parser.add_mutually_exclusive_group()
    bounds.add_argument("--input-bound", type=float, default=1.0,
                        help="the largest |feature| clients will send (default 1.0: pixels / 255)")
    bounds.add_argument("--bounds-from", metavar="FILE", help="per-feature bounds from sample rows (.npy or .csv)")
    parser.add_argument("--margin", type=float, default=1.5, help="with --bounds-from: factor over the sample's "
                        "largest values (default 1.5)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    bound = bounds_from(args.bounds_from, args.margin) if args.bounds_from else args.input_bound
    model = load_model(args.source, input_bound=bound)
    path = export_model(model, args.destination)
    print(f"wrote {path}: {model.estimator}, {model.n_features} features, {model.n_outputs} outputs, "
          f"hash {model.model_hash}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
