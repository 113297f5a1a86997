"""Every supported scikit-learn linear model, served encrypted: labels equal, scores within 1e-5.

Each estimator is fitted on scikit-learn's bundled data (digits, breast cancer, diabetes,
iris) or generated data for the wide cases, exported, served by the real service, and
scored through the real encrypted path for a few held-out rows.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import datasets
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Perceptron,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, Normalizer, PolynomialFeatures, StandardScaler
from sklearn.svm import LinearSVC, LinearSVR

from scoring.estimators import from_estimator
from scoring.model import ModelError, export_model, labels_from_scores, probabilities
from scoring.service import ScoringService
from scoring.settings import Settings
from helpers import score_in_process


def data(name: str):
    if name == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        return X / 16.0, y
    if name == "cancer":
        return datasets.load_breast_cancer(return_X_y=True)
    if name == "diabetes":
        return datasets.load_diabetes(return_X_y=True)
    if name == "iris":
        X, y = datasets.load_iris(return_X_y=True)
        return X, np.array(["setosa", "versicolor", "virginica"])[y]
    if name == "linnerud":  # three targets
        X, Y = datasets.load_linnerud(return_X_y=True)
        return X, Y
    if name == "binary-digits":
        X, y = datasets.load_digits(return_X_y=True)
        return X / 16.0, y >= 5
    raise KeyError(name)


CASES = [
    ("logistic-binary", lambda: LogisticRegression(max_iter=5000), "binary-digits"),
    ("logistic-multinomial", lambda: LogisticRegression(max_iter=5000), "digits"),
    ("logistic-ovr", lambda: OneVsRestClassifier(LogisticRegression(max_iter=5000)), "iris"),
    ("linear-svc", lambda: LinearSVC(max_iter=20000), "digits"),
    ("sgd-hinge", lambda: SGDClassifier(random_state=0), "iris"),
    ("sgd-log", lambda: SGDClassifier(loss="log_loss", random_state=0), "digits"),
    ("sgd-modified-huber", lambda: SGDClassifier(loss="modified_huber", random_state=0), "iris"),
    ("ridge-classifier", lambda: RidgeClassifier(), "digits"),
    ("ridge-classifier-binary", lambda: RidgeClassifier(), "cancer"),
    ("perceptron", lambda: Perceptron(random_state=0), "digits"),
    ("linear-regression", lambda: LinearRegression(), "diabetes"),
    ("ridge", lambda: Ridge(alpha=0.1), "diabetes"),
    ("lasso", lambda: Lasso(alpha=0.01), "diabetes"),
    ("elastic-net", lambda: ElasticNet(alpha=0.001), "diabetes"),
    ("sgd-regressor", lambda: make_pipeline(StandardScaler(), SGDRegressor(random_state=0)), "diabetes"),
    ("linear-svr", lambda: make_pipeline(StandardScaler(), LinearSVR(max_iter=20000, random_state=0)), "diabetes"),
    ("multi-output-linear", lambda: LinearRegression(), "linnerud"),
    ("multi-output-wrapper", lambda: MultiOutputRegressor(Ridge()), "linnerud"),
    ("pipe-standard-logistic", lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)), "cancer"),
    ("pipe-minmax-pca-svc", lambda: make_pipeline(MinMaxScaler(), PCA(20), LinearSVC(max_iter=20000)), "digits"),
    ("pipe-maxabs-svd-ridge", lambda: make_pipeline(MaxAbsScaler(), TruncatedSVD(5, random_state=0), Ridge()),
     "diabetes"),
    ("pipe-whitened-pca-sgd", lambda: make_pipeline(StandardScaler(), PCA(3, whiten=True),
                                                    SGDClassifier(loss="log_loss", random_state=0)), "iris"),
]


def served(tmp_path, estimator, X) -> tuple[ScoringService, object]:
    model = from_estimator(estimator, input_bound=np.abs(X).max(axis=0) * 1.5 + 1e-3)
    path = export_model(model, tmp_path / "model.json")
    return ScoringService(Settings(model_path=str(path))), model


def check_scores(encrypted: np.ndarray, plain: np.ndarray) -> None:
    """Each record's scores within 1e-5 relative: max|error| <= 1e-5 * max(1, max|score|)."""
    plain = np.asarray(plain, dtype=np.float64).reshape(encrypted.shape)
    error = np.abs(encrypted - plain).reshape(len(encrypted), -1).max(axis=1)
    scale = np.maximum(1.0, np.abs(plain).reshape(len(encrypted), -1).max(axis=1))
    assert np.all(error <= 1e-5 * scale), (error / scale).max()


@pytest.mark.parametrize("name,factory,dataset", CASES, ids=[c[0] for c in CASES])
def test_estimator_served_encrypted_matches_scikit_learn(tmp_path, keys, name, factory, dataset):
    X, y = data(dataset)
    rows = np.random.default_rng(0).permutation(len(X))
    train, held_out = rows[:-8], rows[-8:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of small fits are beside the point
        estimator = factory().fit(X[train], y[train])
    service, model = served(tmp_path, estimator, X)
    encrypted = np.vstack([score_in_process(service, keys, X[i]) for i in held_out])
    if model.kind == "regressor":
        check_scores(encrypted, estimator.predict(X[held_out]))
        return
    scores = encrypted[:, 0] if encrypted.shape[1] == 1 else encrypted
    check_scores(scores, estimator.decision_function(X[held_out]))
    assert labels_from_scores(model.classes, scores).tolist() == estimator.predict(X[held_out]).tolist()
    if model.proba is not None:
        np.testing.assert_allclose(probabilities(model.proba, scores), estimator.predict_proba(X[held_out]),
                                   atol=1e-5)
    else:
        assert not _has_working_proba(estimator, X[held_out])


def _has_working_proba(estimator, X) -> bool:
    try:
        estimator.predict_proba(X)
    except (AttributeError, NotImplementedError, ValueError):
        return False
    return True


def test_labels_keep_their_type(tmp_path, keys):
    X, y = data("iris")
    estimator = LogisticRegression(max_iter=5000).fit(X, y)
    service, model = served(tmp_path, estimator, X)
    assert model.classes == ("setosa", "versicolor", "virginica")
    scores = score_in_process(service, keys, X[120])
    assert labels_from_scores(model.classes, scores[None])[0] == estimator.predict(X[120:121])[0]


@pytest.mark.parametrize("step", [Normalizer(), PolynomialFeatures(2)])
def test_non_affine_pipeline_step_is_refused_by_name(step):
    X, y = data("iris")
    pipeline = make_pipeline(StandardScaler(), step, LogisticRegression(max_iter=5000)).fit(X, y)
    name = pipeline.steps[1][0]
    with pytest.raises(ModelError, match=f"step '{name}' \\({type(step).__name__}\\) is not an affine"):
        from_estimator(pipeline)


@pytest.mark.parametrize("features,classes,estimator", [
    (3072, 100, RidgeClassifier(alpha=10.0)),
    (20_000, 2, SGDClassifier(random_state=0)),
])
def test_wide_inputs_and_many_classes(tmp_path, keys, features, classes, estimator):
    rng = np.random.default_rng(features)
    X = rng.uniform(0, 1, size=(400, features))
    y = rng.integers(0, classes, size=400)
    estimator.fit(X[:-3], y[:-3])
    service, model = served(tmp_path, estimator, X)
    layout = service.describe().encryption.layout
    assert layout.n_chunks > 1 or layout.n_products > 1
    for row in X[-3:]:
        encrypted = score_in_process(service, keys, row)
        plain = estimator.decision_function(row[None])[0]
        check_scores(encrypted[None] if classes > 2 else encrypted, np.atleast_1d(plain))
