"""Model privacy: the client plays the attacker against its own answers.

Against a bare ``ct * P`` result (``protect=False``, a switch that exists for this test),
dividing the result's second part by the query's second part, pointwise in NTT form,
reads the weight plaintext P and so every weight; and a unit-vector query decrypts to
whole rows of weights in the coefficients that are not outputs. Against the served
result (fresh encryption of zero added, non-output coefficients masked uniformly modulo
q), the same attacks recover nothing related to the weights, and the unit-vector query
reveals only its own scores.
"""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as seal

from scoring.ckks import runtime
from scoring.kernel import CoefficientKernel
from scoring.keys import load_bundle
from scoring.model import LinearModel


@pytest.fixture(scope="module")
def kernel():
    rng = np.random.default_rng(11)
    model = LinearModel(rng.normal(size=(10, 784)) * 0.05, rng.normal(size=10), "classifier",
                        classes=tuple(range(10)), estimator="LogisticRegression")
    return CoefficientKernel(model, runtime())


def polys(ct: seal.Ciphertext) -> np.ndarray:
    """The ciphertext's two parts, (2, N) residues modulo the one prime, as SEAL stores them."""
    rt = runtime()
    return rt.ciphertext_polys(rt.save_body(ct), 2)[:, 0, :].copy()


def answer(kernel, keys, x, *, protect: bool) -> tuple[seal.Ciphertext, seal.Ciphertext]:
    rt = kernel.rt
    query = rt.load(seal.Ciphertext(), keys.encrypt_record(kernel.encoding, x)[0])
    result = kernel.evaluate([query], load_bundle(keys.public_bundle()).encryptor, protect=protect)[0]
    return query, result


def divide_attack(kernel, query, result) -> np.ndarray:
    """Read P from result.c1 / query.c1 (pointwise mod q, NTT form); return the weight estimate."""
    rt = kernel.rt
    q = int(rt.moduli[0])
    numerator, denominator = polys(result)[1], polys(query)[1]
    ratio = np.array([int(n) * pow(int(d), q - 2, q) % q for n, d in zip(numerator, denominator)],
                     dtype=np.uint64)
    coefficients = rt.ntt(ratio[None, :], inverse=True)[0]
    signed = np.where(coefficients > q // 2, -(q - coefficients.astype(object)), coefficients.astype(object))
    return rows_from_layout(kernel, np.array(signed, dtype=np.float64) / kernel.weight_scale)


def rows_from_layout(kernel, coefficients: np.ndarray) -> np.ndarray:
    """Undo the weight layout: block c holds row c reversed."""
    n = kernel.layout.chunk_width
    return np.vstack([coefficients[c * n:(c + 1) * n][::-1] for c in range(kernel.model.n_outputs)])


def decrypt_all_coefficients(kernel, keys, result) -> np.ndarray:
    plain = seal.Plaintext()
    keys.decryptor().decrypt(result, plain)
    return kernel.rt.decode_coefficients(plain)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1])


def test_division_attack_reads_every_weight_from_an_unprotected_result(kernel, keys):
    x = np.random.default_rng(1).uniform(0, 1, 784)
    query, result = answer(kernel, keys, x, protect=False)
    stolen = divide_attack(kernel, query, result)
    assert np.abs(stolen - kernel.model.coef).max() <= 1 / kernel.weight_scale


def test_division_attack_recovers_nothing_from_the_served_result(kernel, keys):
    x = np.random.default_rng(1).uniform(0, 1, 784)
    query, result = answer(kernel, keys, x, protect=True)
    stolen = divide_attack(kernel, query, result)
    assert abs(correlation(stolen, kernel.model.coef)) < 0.05
    assert np.median(np.abs(stolen - kernel.model.coef)) > 1e3  # noise the size of q, not weights


def test_unit_vector_query_reads_whole_rows_when_unprotected(kernel, keys):
    unit = np.zeros(784)
    unit[0] = 1.0
    _, result = answer(kernel, keys, unit, protect=False)
    coefficients = decrypt_all_coefficients(kernel, keys, result)
    rows = rows_from_layout(kernel, coefficients - bias_at_outputs(kernel))
    assert np.abs(rows - kernel.model.coef).max() < 1e-5  # every weight


def bias_at_outputs(kernel) -> np.ndarray:
    bias = np.zeros(kernel.rt.degree)
    bias[kernel.layout.output_positions(0)] = kernel.model.intercept
    return bias


def test_unit_vector_query_reveals_only_its_own_scores_when_served(kernel, keys):
    unit = np.zeros(784)
    unit[0] = 1.0
    _, result = answer(kernel, keys, unit, protect=True)
    coefficients = decrypt_all_coefficients(kernel, keys, result)
    outputs = kernel.layout.output_positions(0)
    np.testing.assert_allclose(coefficients[outputs], kernel.model.coef[:, 0] + kernel.model.intercept, atol=1e-5)
    others = np.delete(coefficients, outputs)
    hidden = rows_from_layout(kernel, coefficients)[:, 1:]  # where the rows would be, outputs left out
    assert abs(correlation(hidden, kernel.model.coef[:, 1:])) < 0.05
    # Uniform modulo q at the output scale: spread over +-q/2/scale, nothing near weight size.
    half_range = float(kernel.rt.moduli[0]) / 2 / kernel.output_scale
    assert np.mean(np.abs(others) > 0.01 * half_range) > 0.95


def test_two_answers_to_the_same_query_differ_everywhere_but_the_outputs(kernel, keys):
    x = np.random.default_rng(2).uniform(0, 1, 784)
    rt = kernel.rt
    blob = keys.encrypt_record(kernel.encoding, x)[0]
    encryptor = load_bundle(keys.public_bundle()).encryptor
    first, second = (kernel.evaluate([rt.load(seal.Ciphertext(), blob)], encryptor)[0] for _ in range(2))
    assert (polys(first) != polys(second)).mean() > 0.99  # re-randomized
    a, b = (decrypt_all_coefficients(kernel, keys, r) for r in (first, second))
    outputs = kernel.layout.output_positions(0)
    np.testing.assert_allclose(a[outputs], b[outputs], atol=1e-5)
    assert np.mean(np.abs(np.delete(a - b, outputs)) > 1.0) > 0.95  # fresh mask each time
