"""Load the served model from an exported artifact or a joblib pickle of a fitted estimator.

Example:
    >>> model = load_model("sklearn_mnist_model.pkl")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from .estimators import from_estimator
from .model import LinearModel, ModelError, read_artifact

logger = logging.getLogger(__name__)


def load_model(path: str | Path, *, input_bound: float | np.ndarray | None = None) -> LinearModel:
    """Load the served model from an exported artifact (``.json``) or a joblib pickle.

    Args:
        path: the artifact or pickle.
        input_bound: for pickles, the largest ``|x_i|`` clients will send (default 1.0,
            which suits pixels scaled to [0, 1] as in the original tutorial).

    Raises:
        ModelError: if the file cannot be read or is not a supported linear model.
    """
    path = Path(path)
    if path.suffix == ".json":
        return read_artifact(path)
    return from_estimator(_unpickle(path), input_bound=1.0 if input_bound is None else input_bound)


def _unpickle(path: Path):
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            estimator = joblib.load(path)
        except Exception as exc:  # joblib raises many types for a bad file
            raise ModelError(f"cannot load model {path}: {exc}") from exc
    for warning in caught:
        if issubclass(warning.category, InconsistentVersionWarning):
            logger.warning("model %s was pickled by scikit-learn %s (this is %s); loading it anyway",
                           path.name, warning.message.original_sklearn_version,
                           warning.message.current_sklearn_version)
        else:
            logger.warning("loading model %s: %s", path.name, warning.message)
    return estimator
