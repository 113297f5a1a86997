"""Turn fitted scikit-learn estimators into the affine map the service scores.

Supported: every linear classifier and regressor with ``coef_``/``intercept_``
(LogisticRegression, LinearSVC, SGDClassifier, RidgeClassifier, Perceptron,
LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor, LinearSVR, ...), the wrappers
OneVsRestClassifier and MultiOutputRegressor around them, and Pipelines whose steps before
the estimator are affine (StandardScaler, MinMaxScaler, MaxAbsScaler, PCA, TruncatedSVD,
and the like), folded into one map at export so that the encrypted result equals the
pipeline's ``decision_function``. A step that is not affine is refused by name.
"""

from __future__ import annotations

import numpy as np

from .model import PROBA_KINDS, LinearModel, ModelError, probabilities

# (name, A, c): a step maps x to A @ x + c; A is (out, in).
Affine = tuple[np.ndarray, np.ndarray]


def from_estimator(estimator, *, input_bound: float = 1.0) -> LinearModel:
    """Convert a fitted linear estimator, wrapper or affine pipeline.

    Raises:
        ModelError: if it is not fitted, not linear, or a pipeline step is not affine.
    """
    steps, final = _split_pipeline(estimator)
    coef, intercept = _linear_part(final)
    for name, step in reversed(steps):
        A, c = _affine(name, step, coef.shape[1])
        coef, intercept = coef @ A, coef @ c + intercept
    name = type(final).__name__
    if steps:
        name = "Pipeline(" + ", ".join([type(s).__name__ for _, s in steps] + [name]) + ")"
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return LinearModel(coef, intercept, "regressor", input_bound=input_bound, estimator=name)
    return LinearModel(coef, intercept, "classifier", classes=tuple(np.asarray(classes).tolist()),
                       proba=_proba_kind(estimator, coef.shape[1]), input_bound=input_bound, estimator=name)


def _split_pipeline(estimator) -> tuple[list, object]:
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return [], estimator
    active = [(name, step) for name, step in steps if step not in (None, "passthrough")]
    if not active:
        raise ModelError("the pipeline has no final estimator")
    return active[:-1], active[-1][1]


def _linear_part(estimator) -> tuple[np.ndarray, np.ndarray]:
    """(coef (outputs, features), intercept (outputs,)) of a linear estimator or wrapper."""
    inner = getattr(estimator, "estimators_", None)
    if inner is not None and getattr(estimator, "coef_", None) is None:
        if type(estimator).__name__ == "OneVsRestClassifier" and len(inner) == 1:
            return _linear_part(inner[0])
        parts = [_linear_part(e) for e in inner]
        return np.vstack([c for c, _ in parts]), np.concatenate([b for _, b in parts])
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        raise ModelError(f"{type(estimator).__name__} is not a fitted linear model (no coef_)")
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    intercept = np.broadcast_to(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64),
                                (coef.shape[0],)).copy()
    return coef, intercept


def _affine(name: str, step, n_out: int) -> Affine:
    """The affine map (A, c) of a fitted transformer, checked on random points."""
    kind = type(step).__name__
    n_in = getattr(step, "n_features_in_", None)
    if n_in is None:
        raise ModelError(f"pipeline step {name!r} ({kind}) is not fitted")
    A, c = _known_affine(step, n_in)
    if A is None:
        raise ModelError(f"pipeline step {name!r} ({kind}) is not an affine transform; only affine steps "
                         "(scalers, PCA, TruncatedSVD, ...) can be folded into an encrypted linear model")
    if A.shape != (n_out, n_in):
        raise ModelError(f"pipeline step {name!r} ({kind}) outputs {A.shape[0]} features where the next "
                         f"step takes {n_out}")
    probe = np.random.default_rng(0).normal(size=(4, n_in))
    expected = np.asarray(step.transform(probe), dtype=np.float64)
    if not np.allclose(probe @ A.T + c, expected, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(expected).max())):
        raise ModelError(f"pipeline step {name!r} ({kind}) does not behave as an affine map with its "
                         "fitted attributes")
    return A, c


def _known_affine(step, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    kind = type(step).__name__
    if kind == "StandardScaler":
        scale = _or_ones(step.scale_, n)
        mean = np.zeros(n) if step.mean_ is None else np.asarray(step.mean_, dtype=np.float64)
        return np.diag(1 / scale), -mean / scale
    if kind == "MinMaxScaler":
        return np.diag(step.scale_), np.asarray(step.min_, dtype=np.float64)
    if kind == "MaxAbsScaler":
        return np.diag(1 / _or_ones(step.scale_, n)), np.zeros(n)
    if kind in ("PCA", "IncrementalPCA"):
        components = np.asarray(step.components_, dtype=np.float64)
        if getattr(step, "whiten", False):
            components = components / np.sqrt(step.explained_variance_)[:, None]
        return components, -components @ np.asarray(step.mean_, dtype=np.float64)
    if kind == "TruncatedSVD":
        return np.asarray(step.components_, dtype=np.float64), np.zeros(step.components_.shape[0])
    return None, None


def _or_ones(scale, n: int) -> np.ndarray:
    return np.ones(n) if scale is None else np.asarray(scale, dtype=np.float64)


def _proba_kind(estimator, n_features: int) -> str | None:
    """Find how the estimator turns scores into probabilities, by asking it.

    scikit-learn's rule depends on the estimator, its version and its options (softmax,
    one-vs-rest logistic normalized, modified Huber), so the answer is read off the
    estimator's own ``predict_proba`` on probe inputs.
    """
    if not hasattr(estimator, "predict_proba"):
        return None
    probe = np.random.default_rng(0).normal(size=(8, n_features)) * 0.1
    try:
        expected = estimator.predict_proba(probe)
    except (AttributeError, NotImplementedError, ValueError):  # e.g. SGDClassifier(loss="hinge")
        return None
    scores = np.asarray(estimator.decision_function(probe), dtype=np.float64)
    for kind in PROBA_KINDS:
        candidate = probabilities(kind, scores)
        if candidate is not None and np.allclose(candidate, expected, rtol=1e-9, atol=1e-12):
            return kind
    raise ModelError(f"{type(estimator).__name__}.predict_proba follows no rule this service knows")
