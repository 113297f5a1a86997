"""Models: joblib pickles, the tutorial's 0.22 pickle, portable artifacts, probabilities."""

from __future__ import annotations

import json
import logging

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from scoring.estimators import from_estimator
from scoring.loading import load_model
from scoring.model import (
    ModelError,
    export_model,
    labels_from_scores,
    probabilities,
    read_artifact,
)


def test_joblib_pickle_and_artifact_agree(tmp_path, digits, digits_estimator):
    X, _ = digits
    joblib.dump(digits_estimator, tmp_path / "m.pkl")
    from_pickle = load_model(tmp_path / "m.pkl")
    artifact = export_model(from_pickle, tmp_path / "m.json")
    assert b"pickle" not in artifact.read_bytes()
    from_artifact = read_artifact(artifact)
    assert from_artifact.model_hash == from_pickle.model_hash
    np.testing.assert_array_equal(from_artifact.coef, digits_estimator.coef_)
    np.testing.assert_allclose(from_artifact.decision_function(X[:5]), digits_estimator.decision_function(X[:5]),
                               rtol=1e-13, atol=1e-13)
    assert from_artifact.classes == tuple(range(10)) and from_artifact.n_features == 64


def test_altered_artifact_is_refused(tmp_path, digits_estimator):
    path = export_model(from_estimator(digits_estimator), tmp_path / "m.json")
    document = json.loads(path.read_text())
    document["intercept"][0] += 1.0
    path.write_text(json.dumps(document))
    with pytest.raises(ModelError, match="does not match its model_hash"):
        read_artifact(path)


def test_not_a_linear_model_is_refused(tmp_path):
    joblib.dump({"a": 1}, tmp_path / "x.pkl")
    with pytest.raises(ModelError, match="not a fitted linear model"):
        load_model(tmp_path / "x.pkl")
    (tmp_path / "bad.pkl").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(tmp_path / "bad.pkl")


def test_tutorial_model_loads_with_a_version_warning(tutorial_model_path, caplog):
    with caplog.at_level(logging.WARNING, logger="scoring.model"):
        model = load_model(tutorial_model_path)
    assert "pickled by scikit-learn 0.22.1" in caplog.text
    assert (model.n_outputs, model.n_features, model.classes) == (10, 784, tuple(range(10)))
    assert model.proba in ("softmax", "ovr-logistic")


@pytest.mark.parametrize("multi", ["multinomial", "binary"])
def test_probabilities_match_scikit_learn(digits, multi):
    X, y = digits
    if multi == "binary":
        y = (y > 4).astype(int)
    estimator = LogisticRegression(max_iter=3000).fit(X[:500], y[:500])
    model = from_estimator(estimator)
    scores = estimator.decision_function(X[500:520])
    np.testing.assert_allclose(probabilities(model.proba, scores), estimator.predict_proba(X[500:520]), rtol=1e-12)
    np.testing.assert_array_equal(labels_from_scores(model.classes, scores), estimator.predict(X[500:520]))


def test_regressor_has_no_classes(digits):
    X, y = digits
    model = from_estimator(LinearRegression().fit(X[:300], y[:300]))
    assert model.kind == "regressor" and model.classes is None and model.proba is None


def test_export_command_with_per_feature_bounds(tmp_path, capsys):
    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from scoring.export import main

    X, y = load_breast_cancer(return_X_y=True)
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y), tmp_path / "p.pkl")
    np.save(tmp_path / "X.npy", X)
    assert main([str(tmp_path / "p.pkl"), str(tmp_path / "m.json"), "--bounds-from", str(tmp_path / "X.npy")]) == 0
    model = read_artifact(tmp_path / "m.json")
    assert "Pipeline(StandardScaler, LogisticRegression)" in capsys.readouterr().out
    np.testing.assert_allclose(model.input_bounds, np.abs(X).max(axis=0) * 1.5, rtol=1e-9)
