"""Linear models: load a fitted scikit-learn estimator or an exported artifact.

The served model is an affine map ``scores = coef @ x + intercept`` plus what a client
needs to turn decrypted scores into answers (class labels, how probabilities are
computed). An exported artifact is plain JSON (no pickle), so a function starts without
unpickling; its ``model_hash`` covers every field that affects an answer.

Example:
    >>> model = read_artifact("mnist.model.json")       # doctest: +SKIP
    >>> export_model(model, "copy.model.json")          # doctest: +SKIP

Loading a pickled estimator is :func:`scoring.loading.load_model`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ARTIFACT_FORMAT = "encrypted-scoring-linear-model"
ARTIFACT_VERSION = 1
PROBA_KINDS = ("softmax", "ovr-logistic", "binary-logistic", "modified-huber")


class ModelError(ValueError):
    """A model that cannot be served; the message says why."""


@dataclass(frozen=True)
class LinearModel:
    """An affine scorer with what the client needs to read its scores.

    Attributes:
        coef: weights, shape (outputs, features).
        intercept: shape (outputs,).
        kind: ``"classifier"`` or ``"regressor"``.
        classes: the estimator's class labels (classifiers only), JSON values.
        proba: how ``predict_proba`` is computed from scores, or None if not offered.
        input_bound: the largest ``|x_i|`` a client may send, one number for every feature or
            one per feature; it bounds the scores so that the encrypted computation cannot
            overflow (the client enforces it). Per-feature bounds keep precision for
            features of very different ranges.
        estimator: the scikit-learn class the model came from.
    """

    coef: np.ndarray
    intercept: np.ndarray
    kind: str
    classes: tuple | None = None
    proba: str | None = None
    input_bound: float | tuple[float, ...] = 1.0
    estimator: str = "unknown"
    model_hash: str = field(init=False)

    def __post_init__(self) -> None:
        coef = np.ascontiguousarray(self.coef, dtype=np.float64)
        intercept = np.ascontiguousarray(self.intercept, dtype=np.float64).reshape(-1)
        if coef.ndim != 2 or coef.shape[0] != intercept.shape[0] or coef.size == 0:
            raise ModelError(f"coef {coef.shape} and intercept {intercept.shape} do not form an affine map")
        if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
            raise ModelError("the model has non-finite weights")
        if self.kind not in ("classifier", "regressor"):
            raise ModelError(f"unknown model kind {self.kind!r}")
        if self.proba is not None and self.proba not in PROBA_KINDS:
            raise ModelError(f"unknown probability kind {self.proba!r}")
        bounds = np.asarray(self.input_bound, dtype=np.float64)
        if bounds.ndim > 1 or (bounds.ndim == 1 and bounds.shape != (coef.shape[1],)) or not (
                np.all(np.isfinite(bounds)) and np.all(bounds > 0)):
            raise ModelError("input_bound must be a positive number, or one per feature")
        bound = float(bounds) if bounds.ndim == 0 else tuple(bounds.tolist())
        object.__setattr__(self, "input_bound", bound)
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "intercept", intercept)
        object.__setattr__(self, "model_hash", _hash(self._content()))

    @property
    def n_features(self) -> int:
        return self.coef.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.coef.shape[0]

    @property
    def input_bounds(self) -> np.ndarray:
        """The bound of each feature, shape (features,)."""
        return np.broadcast_to(np.asarray(self.input_bound, dtype=np.float64), (self.n_features,))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Plaintext scores, shape (rows, outputs); the reference for encrypted results."""
        return np.asarray(X, dtype=np.float64) @ self.coef.T + self.intercept

    def _content(self) -> dict:
        return {
            "estimator": self.estimator,
            "kind": self.kind,
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "classes": None if self.classes is None else list(self.classes),
            "proba": self.proba,
            "input_bound": list(self.input_bound) if isinstance(self.input_bound, tuple) else self.input_bound,
        }

    def to_artifact(self) -> dict:
        """The JSON artifact: format, version, content and its hash."""
        return {"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, **self._content(),
                "model_hash": self.model_hash}


def _hash(content: dict) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def export_model(model: LinearModel, path: str | Path) -> Path:
    """Write a model's portable JSON artifact and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.to_artifact()))
    return path


def read_artifact(path: str | Path) -> LinearModel:
    """Read an exported artifact and check its hash.

    Raises:
        ModelError: if the file is not an artifact of a known version or was altered.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model artifact {path}: {exc}") from exc
    if data.get("format") != ARTIFACT_FORMAT or data.get("version") != ARTIFACT_VERSION:
        raise ModelError(f"{path} is not a version {ARTIFACT_VERSION} model artifact")
    classes = data["classes"]
    model = LinearModel(
        coef=np.array(data["coef"], dtype=np.float64).reshape(data["n_outputs"], data["n_features"]),
        intercept=np.array(data["intercept"], dtype=np.float64),
        kind=data["kind"],
        classes=None if classes is None else tuple(classes),
        proba=data["proba"],
        input_bound=data["input_bound"],
        estimator=data["estimator"],
    )
    if model.model_hash != data.get("model_hash"):
        raise ModelError(f"{path}: content does not match its model_hash (altered or corrupt)")
    return model


def probabilities(kind: str, scores: np.ndarray) -> np.ndarray | None:
    """Class probabilities from decision scores, as scikit-learn computes them.

    Args:
        kind: one of ``PROBA_KINDS``.
        scores: shape (rows,) for binary models or (rows, classes).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1 or scores.shape[1] == 1:
        if kind not in ("binary-logistic", "modified-huber"):
            return None
        flat = scores.reshape(-1)
        positive = _expit(flat) if kind == "binary-logistic" else (np.clip(flat, -1, 1) + 1) / 2
        return np.column_stack([1 - positive, positive])
    if kind == "softmax":
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)
    if kind == "ovr-logistic":
        prob = _expit(scores)
        return prob / prob.sum(axis=1, keepdims=True)
    if kind == "modified-huber":  # SGDClassifier(loss="modified_huber"); all-zero rows become uniform
        prob = (np.clip(scores, -1, 1) + 1) / 2
        total = prob.sum(axis=1, keepdims=True)
        zero = total[:, 0] == 0
        prob[zero], total[zero] = 1.0, scores.shape[1]
        return prob / total
    return None


def _expit(values: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(values)


def labels_from_scores(classes: tuple, scores: np.ndarray) -> np.ndarray:
    """Class labels from decision scores, as a scikit-learn linear classifier's ``predict``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(classes)
    if scores.ndim == 1 or scores.shape[1] == 1:
        return labels[(scores.reshape(-1) > 0).astype(int)]
    return labels[np.argmax(scores, axis=1)]
