"""Export a fitted scikit-learn linear model to the portable artifact the service loads.

Usage::

    python -m scoring.export sklearn_mnist_model.pkl models/mnist.model.json [--input-bound 1.0]

The artifact is JSON (weights, intercept, class labels, feature count, content hash; no
pickle), so the function starts without unpickling. Point ``SCORING_MODEL_PATH`` at it.
"""

from __future__ import annotations

import argparse
import logging

from .model import export_model, load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scoring.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a joblib pickle of a fitted linear model, or an artifact")
    parser.add_argument("destination", help="where to write the JSON artifact")
    parser.add_argument("--input-bound", type=float, default=1.0,
                        help="the largest |feature| clients will send (default 1.0: pixels / 255)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    model = load_model(args.source, input_bound=args.input_bound)
    path = export_model(model, args.destination)
    print(f"wrote {path}: {model.estimator}, {model.n_features} features, {model.n_outputs} outputs, "
          f"hash {model.model_hash}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
