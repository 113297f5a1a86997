"""The encrypted affine map for many records at once, in coefficient lanes.

Ciphertext ``j`` holds feature ``j`` of up to N records as the coefficients of its
plaintext (record ``r`` at coefficient ``r``). Multiplying a ciphertext by a constant
polynomial scales every coefficient, so output ``c`` is ``sum_j w[c, j] * ct_j`` plus the
bias, with record ``r``'s score at coefficient ``r``: scalar multiplies and adds only, no
rotation and no Galois key (kernels.md).

Model privacy: each output starts from a fresh encryption, under the client's public key,
of the bias plus server-sampled noise at the lanes below the declared record count and a
mask uniform modulo q at every lane at and beyond it (:mod:`scoring.kernels.masking`). The
client reads exactly its declared records' scores, to the noise's precision, whatever it
put in the other lanes: a batch reveals what that many single requests would.

By default a batch carries every feature, so the model description does not reveal which
weight columns are zero; an owner may skip them (``skip_zero_features``) to save bytes.
"""

from __future__ import annotations

import numpy as np
import tenseal.sealapi as seal

from ..ckks import SealRuntime
from ..encoding import LaneEncoding, choose_scales
from ..model import LinearModel
from .masking import Masking, flood_width


class LaneKernel:
    """Scores a batch of records: one ciphertext per sent feature in, one per output out."""

    def __init__(self, model: LinearModel, rt: SealRuntime, *, skip_zero_features: bool = False,
                 max_records: int = 0) -> None:
        self.model = model
        self.rt = rt
        weights = model.coef * model.input_bounds
        sent = np.flatnonzero(np.any(weights != 0, axis=0)) if skip_zero_features else np.arange(model.n_features)
        self.weights = weights[:, sent]
        # A lane's noise is the encryption noise of each column times that output's weights.
        widest = self.weights[np.argmax(np.linalg.norm(self.weights, axis=1))]
        input_bits, weight_bits = choose_scales(self.weights, model.intercept, int(rt.moduli[0]),
                                                noise_weights=widest)
        self.weight_scale = float(2 ** weight_bits)
        if max_records > rt.degree:
            raise ValueError(f"SCORING_BATCH_MAX_RECORDS is {max_records}; a batch has {rt.degree} lanes at most")
        lanes = max_records or rt.degree
        self.encoding = LaneEncoding(tuple(int(j) for j in sent), lanes, model.n_features, model.n_outputs,
                                     model.input_bounds, float(2 ** input_bits),
                                     float(2 ** (input_bits + weight_bits)))
        self.bias = np.rint(model.intercept * self.encoding.output_scale).astype(np.int64)
        self.flood_width = flood_width(self.encoding.output_scale)
        self.masking = Masking(rt)

    def evaluate(self, columns: list[seal.Ciphertext], encryptor: seal.Encryptor | None,
                 records: int) -> list[seal.Ciphertext]:
        """Encrypted scores of the batch, one ciphertext per output (a lane per record).

        Args:
            columns: one ciphertext per sent feature, at the encoding's input scale.
            encryptor: the client's public-key encryptor; None leaves every lane bare (only
                tests that play the attacker do this).
            records: the declared record count; lanes at and beyond it are masked.
        """
        plain, term = seal.Plaintext(), seal.Ciphertext()
        readable = np.arange(records)
        scale = self.encoding.output_scale
        results = []
        for output in range(self.model.n_outputs):
            result = None
            if encryptor is not None:
                residues = self.masking.mask(readable, np.full(records, self.bias[output]), self.flood_width)
                result = self.masking.encrypt(encryptor, residues, scale)
            for column, weight in zip(columns, self.weights[output]):
                if abs(weight * self.weight_scale) < 0.5:
                    continue  # rounds to zero; SEAL refuses a transparent product
                self.rt.encoder.encode(float(weight), self.weight_scale, plain)
                if result is None:
                    result = seal.Ciphertext()
                    self.rt.evaluator.multiply_plain(column, plain, result)
                else:
                    self.rt.evaluator.multiply_plain(column, plain, term)
                    self.rt.evaluator.add_inplace(result, term)
            if encryptor is None:
                bias = np.zeros(self.rt.degree)
                bias[:records] = self.model.intercept[output]
                self.rt.evaluator.add_plain_inplace(result, self.rt.encode_coefficients(bias, scale))
            results.append(result)
        return results
