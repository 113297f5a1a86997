"""Shared fixtures: a real fitted model, real keys, and the shared MNIST data where present."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from client.datasets import load_digits_scaled, train_digits_model
from client.keys import SecretKeys
from scoring.estimators import from_estimator
from scoring.model import export_model
from scoring.service import ScoringService
from scoring.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))
MNIST_DIR = SHARED / "data" / "mnist"
TUTORIAL_MODEL = SHARED / "models" / "sklearn_mnist_model.pkl"


@pytest.fixture(scope="session")
def digits():
    """Scaled digits: (X, y); the model is fitted on the first 1500 rows, tests use the rest."""
    return load_digits_scaled()


@pytest.fixture(scope="session")
def digits_estimator():
    return train_digits_model()


@pytest.fixture(scope="session")
def digits_model_path(tmp_path_factory, digits_estimator) -> Path:
    return export_model(from_estimator(digits_estimator), tmp_path_factory.mktemp("models") / "digits.model.json")


@pytest.fixture(scope="session")
def service(digits_model_path) -> ScoringService:
    return ScoringService(Settings(model_path=str(digits_model_path)))


@pytest.fixture(scope="session")
def keys() -> SecretKeys:
    return SecretKeys.generate()


@pytest.fixture(scope="session")
def tutorial_model_path() -> Path:
    if not TUTORIAL_MODEL.exists():
        pytest.skip(f"the tutorial model is not at {TUTORIAL_MODEL} (../shared absent)")
    return TUTORIAL_MODEL


@pytest.fixture(scope="session")
def mnist():
    if not MNIST_DIR.exists():
        pytest.skip(f"MNIST is not at {MNIST_DIR} (../shared absent)")
    from client.datasets import load_mnist_test

    return load_mnist_test(MNIST_DIR)


def random_model_rows(seed: int, rows: int, features: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(rows, features))


@pytest.fixture(scope="session")
def azurite():
    """A real Azurite blob service on a free port, for the whole session."""
    from devhost.azurite import Azurite, ensure_installed

    ensure_installed(ROOT)
    with Azurite(port=0) as service:
        yield service


def app_env(azurite, model_path: Path, container: str, **settings: str) -> dict[str, str]:
    """The Functions app's settings: Azurite, a keys container, a model, and any ``SCORING_*`` extras."""
    return {"SCORING_STORAGE": azurite.connection_string, "SCORING_KEYS_CONTAINER": container,
            "SCORING_MODEL_PATH": str(model_path), **settings}


@pytest.fixture()
def functions_host(azurite, digits_model_path, request):
    """The Functions app's host object (hosts.functions.FunctionsHost) on Azurite and the digits
    model, with a container of the test's own, built from settings as function_app.py builds it."""
    from hosts.functions import FunctionsHost
    from hosts.settings import HostSettings

    container = "keys" + format(abs(hash(request.node.nodeid)) % 10**8, "08d")
    env = app_env(azurite, digits_model_path, container)
    host = FunctionsHost(HostSettings.from_env(env, require_storage=True))
    host.keys.create_container()
    return host


@contextmanager
def running_app(azurite, model_path: Path, container: str = "hekeys", **settings: str):
    """function_app.py served over HTTP by the local host, on a free port, with Azurite.

    The host's worker processes read the environment when they start; the settings stay set
    while it serves.
    """
    from devhost import LocalFunctionsHost

    with pytest.MonkeyPatch.context() as patch:
        for name, value in app_env(azurite, model_path, container, **settings).items():
            patch.setenv(name, value)
        host = LocalFunctionsHost(ROOT, port=0, load_local_settings=False)
        host.start()
        try:
            yield host
        finally:
            host.stop()


@pytest.fixture(scope="module")
def http_app(azurite, digits_model_path):
    with running_app(azurite, digits_model_path, container="httpkeys") as host:
        yield host
