"""The encrypted affine map against plaintext: random maps of many shapes, and digits."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as seal

from scoring.ckks import runtime
from scoring.encoding import CoefficientLayout
from scoring.kernels.masking import FLOOD_BOUND
from scoring.kernels.single import CoefficientKernel
from scoring.keys import load_bundle
from scoring.model import LinearModel

SHAPES = [(1, 1), (20, 3), (64, 10), (784, 10), (5000, 4), (3072, 100), (20000, 2)]


def encrypted_scores(kernel: CoefficientKernel, keys, x: np.ndarray, *, protect: bool = True) -> np.ndarray:
    rt = kernel.rt
    chunks = [rt.load(seal.Ciphertext(), blob) for blob in keys.encrypt_record(kernel.encoding, x)]
    encryptor = load_bundle(keys.public_bundle()).encryptor
    zeros = [kernel.masked_zero(encryptor, p) for p in range(kernel.layout.n_products)] if protect else None
    results = kernel.evaluate(chunks, zeros)
    return keys.decrypt_scores(kernel.encoding, tuple(rt.save_canonical(r) for r in results))


@pytest.mark.parametrize("features,outputs", SHAPES)
def test_random_affine_maps_match_plaintext(keys, features, outputs):
    rng = np.random.default_rng(features * 1000 + outputs)
    model = LinearModel(rng.normal(size=(outputs, features)) / np.sqrt(features), rng.normal(size=outputs),
                        "regressor")
    kernel = CoefficientKernel(model, runtime())
    x = rng.uniform(-1, 1, size=features)
    expected = model.decision_function(x[None])[0]
    got = encrypted_scores(kernel, keys, x)
    assert got.shape == (outputs,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_layout_covers_every_feature_and_output_once():
    for features, outputs in SHAPES:
        lay = CoefficientLayout.plan(8192, features, outputs)
        assert lay.chunk_width * lay.outputs_per_product <= 8192  # no wrap-around into outputs
        assert sum(len(c) for c in lay.feature_chunks(np.zeros(features))) == features
        assert [o for p in range(lay.n_products) for o in lay.outputs_in(p)] == list(range(outputs))


def test_mnist_shape_fits_one_ciphertext_and_one_product():
    lay = CoefficientLayout.plan(8192, 784, 10)
    assert (lay.n_chunks, lay.n_products, lay.outputs_per_product) == (1, 1, 10)


def test_digits_scores_and_labels_match_plaintext(keys, digits, digits_estimator):
    from scoring.estimators import from_estimator

    X, _ = digits
    kernel = CoefficientKernel(from_estimator(digits_estimator), runtime())
    rows = X[1500:1540]
    got = np.vstack([encrypted_scores(kernel, keys, row) for row in rows])
    expected = digits_estimator.decision_function(rows)
    assert np.abs(got - expected).max() < 1e-5
    assert (got.argmax(axis=1) == digits_estimator.predict(rows)).all()


def test_protection_changes_the_outputs_by_the_documented_noise_only(keys):
    rng = np.random.default_rng(7)
    model = LinearModel(rng.normal(size=(10, 784)) * 0.05, rng.normal(size=10), "regressor")
    kernel = CoefficientKernel(model, runtime())
    x = rng.uniform(0, 1, size=784)
    protected = np.concatenate([encrypted_scores(kernel, keys, x, protect=True) for _ in range(20)])
    bare = np.tile(encrypted_scores(kernel, keys, x, protect=False), 20)
    difference = np.abs(protected - bare)
    assert difference.max() <= FLOOD_BOUND + 1e-6  # the flood, plus encryption noise
    assert difference.max() > FLOOD_BOUND / 4  # and the flood is really there


def test_scores_never_overflow_at_the_input_bound(keys):
    """Every feature at +bound or -bound aligned with the weights gives the largest score."""
    rng = np.random.default_rng(3)
    model = LinearModel(rng.normal(size=(3, 300)) * 4, rng.normal(size=3) * 10, "regressor", input_bound=2.0)
    kernel = CoefficientKernel(model, runtime())
    x = 2.0 * np.sign(model.coef[0])
    expected = model.decision_function(x[None])[0]
    got = encrypted_scores(kernel, keys, x)
    assert abs(expected[0]) > 1000
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_an_all_zero_record_scores_to_the_bias(keys):
    model = LinearModel(np.ones((2, 5)), np.array([0.5, -2.0]), "regressor")
    kernel = CoefficientKernel(model, runtime())
    np.testing.assert_allclose(encrypted_scores(kernel, keys, np.zeros(5)), [0.5, -2.0], atol=FLOOD_BOUND + 1e-6)
