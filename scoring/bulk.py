"""The encrypted affine map for many records at once: feature-major SIMD.

Ciphertext ``j`` holds feature ``j`` of up to N/2 records, one per slot. Output ``c`` is
``sum_j w[c, j] * ct_j + b_c``: scalar multiplies and adds only, no rotation and no
Galois key (kernels.md). Features whose weights are all zero are not sent. Each result
is re-randomized with a fresh encryption, under the client's public key, of the bias (a
constant polynomial): every slot is an answer, so nothing else needs masking, and the
result no longer lets the client solve for the weights from its own ciphertexts.

Same parameter set and key bundle as the single-record path; records are scaled by the
model's input bounds as there. ``BulkEncoding`` is the one definition both ends use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from .ckks import SealRuntime
from .kernel import choose_scales, fresh_encryption, scale_records
from .model import LinearModel


@dataclass(frozen=True)
class BulkEncoding:
    """How a batch of records becomes one ciphertext per used feature, and back.

    Attributes:
        features: indices of the features with a nonzero weight, in request order.
        max_records: records per request (N/2 slots).
        n_features, n_outputs: the model's shape.
    """

    features: tuple[int, ...]
    max_records: int
    n_features: int
    n_outputs: int
    input_bounds: np.ndarray
    input_scale: float
    output_scale: float

    @classmethod
    def from_description(cls, description: dict) -> BulkEncoding | None:
        """From ``GET /api/model``; None if the service offers no bulk path for the model."""
        bulk = description.get("bulk")
        if not bulk:
            return None
        bounds = np.broadcast_to(np.asarray(description["input_bound"], dtype=np.float64),
                                 (description["n_features"],))
        return cls(tuple(bulk["features"]), bulk["max_records"], description["n_features"],
                   description["n_outputs"], bounds, float(bulk["input_scale"]), float(bulk["output_scale"]))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "max_records": self.max_records,
                "input_scale": self.input_scale, "output_scale": self.output_scale}

    def columns(self, X) -> np.ndarray:
        """The batch's encoded columns, shape (used features, records), each within [-1, 1].

        Raises:
            ValueError: if the batch is empty or too large, has the wrong width, non-finite
                values, or a feature beyond its bound.
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if not 1 <= len(X) <= self.max_records:
            raise ValueError(f"a batch holds 1 to {self.max_records} records, not {len(X)}")
        return scale_records(X, self.input_bounds)[:, list(self.features)].T


class BulkKernel:
    """Scores a batch of records: one ciphertext per used feature in, one per output out."""

    def __init__(self, model: LinearModel, rt: SealRuntime) -> None:
        self.model = model
        self.rt = rt
        weights = model.coef * model.input_bounds
        used = np.flatnonzero(np.any(weights != 0, axis=0))
        self.weights = weights[:, used]
        # Slot noise: a coefficient's noise spreads over sqrt(N) in each slot.
        input_bits, weight_bits = choose_scales(self.weights, model.intercept, int(rt.moduli[0]),
                                                noise=3.2 * math.sqrt(rt.degree))
        self.weight_scale = float(2 ** weight_bits)
        self.encoding = BulkEncoding(tuple(int(j) for j in used), rt.degree // 2, model.n_features,
                                     model.n_outputs, model.input_bounds, float(2 ** input_bits),
                                     float(2 ** (input_bits + weight_bits)))
        self.bias = [rt.residues(np.rint(np.r_[b * self.encoding.output_scale, np.zeros(rt.degree - 1)])
                                 .astype(np.int64))[0] for b in model.intercept]

    def evaluate(self, columns: list[seal.Ciphertext], encryptor: seal.Encryptor) -> list[seal.Ciphertext]:
        """Encrypted scores of the batch, one ciphertext per output (a slot per record)."""
        plain, term = seal.Plaintext(), seal.Ciphertext()
        results = []
        for output in range(self.model.n_outputs):
            result = fresh_encryption(self.rt, encryptor, self.bias[output], self.encoding.output_scale)
            for column, weight in zip(columns, self.weights[output]):
                if abs(weight * self.weight_scale) < 0.5:
                    continue  # rounds to zero; SEAL refuses a transparent product
                self.rt.encoder.encode(float(weight), self.weight_scale, plain)
                self.rt.evaluator.multiply_plain(column, plain, term)
                self.rt.evaluator.add_inplace(result, term)
            results.append(result)
        return results
