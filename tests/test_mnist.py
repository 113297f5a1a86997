"""The original tutorial's model on MNIST (where ../shared is present; skipped otherwise)."""

from __future__ import annotations

import numpy as np
import pytest

from client import ScoringClient
from scoring.loading import load_model
from scoring.service import ScoringService
from scoring.settings import Settings
from helpers import score_in_process
from conftest import running_app


@pytest.fixture(scope="module")
def tutorial_service(tutorial_model_path):
    return ScoringService(Settings(model_path=str(tutorial_model_path)))


def test_tutorial_model_agrees_with_plaintext_on_mnist(tutorial_service, tutorial_model_path, keys, mnist):
    X, y = mnist
    model = load_model(tutorial_model_path)
    rows = range(0, 10_000, 40)  # 250 images spread over the test set; the benchmark runs all 10,000
    encrypted = np.vstack([score_in_process(tutorial_service, keys, X[i]) for i in rows])
    plain = model.decision_function(X[list(rows)])
    assert np.abs(encrypted - plain).max() <= 1e-5
    assert (encrypted.argmax(axis=1) == plain.argmax(axis=1)).all()


def test_tutorial_model_over_http_with_the_pickle_as_is(azurite, tutorial_model_path, mnist):
    X, y = mnist
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    with pytest.warns(InconsistentVersionWarning):
        estimator = joblib.load(tutorial_model_path)
    with running_app(azurite, tutorial_model_path, container="mnistkeys") as host:
        client = ScoringClient(host.url)
        np.testing.assert_array_equal(client.predict(X[:10]), estimator.predict(X[:10]))
        assert client.describe_model().n_features == 784
        client.delete_keys()
