"""The encrypted affine map for one record per request, by coefficient encoding.

The client places its features as the coefficients of a plaintext polynomial; the server
holds, per product, a weight polynomial with output ``c``'s row reversed in block ``c``.
Coefficient ``c*m + m - 1`` of the product is then ``sum_i x_i * w[c, i]`` (kernels.md):
one ``multiply_plain`` computes every score, with no rotation and no Galois key. The
layout (chunks of features, products of outputs) is :class:`scoring.encoding.CoefficientLayout`.

Model privacy (:mod:`scoring.kernels.masking`): every result gets a fresh encryption, under
the client's public key, of the bias plus server-sampled noise at the outputs and a mask
uniform modulo q at every other coefficient. The client reads its scores, to the noise's
precision, and nothing else. These masked encryptions do not depend on the request, so a
host may prepare them ahead (:meth:`CoefficientKernel.masked_zero`, used by
:class:`scoring.pools.ZeroPools`).
"""

from __future__ import annotations

import numpy as np
import tenseal.sealapi as seal

from ..ckks import SealRuntime
from ..encoding import CoefficientLayout, RecordEncoding, choose_scales
from ..model import LinearModel
from .masking import Masking, flood_width


class CoefficientKernel:
    """Weight plaintexts for one model and parameter set, encoded once; then score.

    Example:
        >>> kernel = CoefficientKernel(model, runtime())                       # doctest: +SKIP
        >>> zeros = [kernel.masked_zero(bundle.encryptor, p) for p in range(kernel.layout.n_products)]  # doctest: +SKIP
        >>> results = kernel.evaluate(ciphertexts, zeros)                        # doctest: +SKIP
    """

    def __init__(self, model: LinearModel, rt: SealRuntime, *, layout: CoefficientLayout | None = None,
                 input_bits: int | None = None) -> None:
        """Plan the layout and scales for the model (or take a fixed ``layout`` and
        ``input_bits``, as the migration facade's standard encoding does) and encode the weights."""
        if len(rt.moduli) != 1:
            raise ValueError("the coefficient kernel serves parameter sets with one prime")
        self.model = model
        self.rt = rt
        self.layout = layout or CoefficientLayout.plan(rt.degree, model.n_features, model.n_outputs)
        self.weights_matrix = model.coef * model.input_bounds  # the client divides x by the bounds
        chosen_input, chosen_weight = choose_scales(self.weights_matrix, model.intercept, int(rt.moduli[0]))
        if input_bits is None:
            input_bits, weight_bits = chosen_input, chosen_weight
        else:
            weight_bits = chosen_input + chosen_weight - input_bits
        self.input_scale = float(2 ** input_bits)
        self.weight_scale = float(2 ** weight_bits)
        self.output_scale = self.input_scale * self.weight_scale
        self.flood_width = flood_width(self.output_scale)
        self.encoding = RecordEncoding(self.layout, model.input_bounds, self.input_scale, self.output_scale)
        self.weights = [[self._weight_plain(chunk, product) for product in range(self.layout.n_products)]
                        for chunk in range(self.layout.n_chunks)]
        self.bias = [self._bias_integers(product) for product in range(self.layout.n_products)]
        self.masking = Masking(rt)
        self._bias_plains: dict[int, seal.Plaintext] = {}

    def _weight_plain(self, chunk: int, product: int) -> seal.Plaintext:
        lay = self.layout
        columns = slice(chunk * lay.chunk_width, (chunk + 1) * lay.chunk_width)
        coefficients = np.zeros(self.rt.degree)
        for local, output in enumerate(lay.outputs_in(product)):
            row = self.weights_matrix[output, columns]
            end = local * lay.chunk_width + lay.chunk_width
            coefficients[end - len(row):end] = row[::-1]
        return self.rt.encode_coefficients(coefficients, self.weight_scale)

    def _bias_integers(self, product: int) -> np.ndarray:
        """The bias of the product's outputs, in output order, as integers at the output scale."""
        outputs = list(self.layout.outputs_in(product))
        return np.rint(self.model.intercept[outputs] * self.output_scale).astype(np.int64)

    def masked_zero(self, encryptor: seal.Encryptor, product: int) -> seal.Ciphertext:
        """A fresh encryption of (bias + noise at the product's outputs, uniform mod q elsewhere).

        Independent of any request: may be prepared ahead, and must be used exactly once.
        """
        positions = self.layout.output_positions(product)
        residues = self.masking.mask(positions, self.bias[product], self.flood_width)
        return self.masking.encrypt(encryptor, residues, self.output_scale)

    def evaluate(self, chunks: list[seal.Ciphertext], zeros: list[seal.Ciphertext] | None) -> list[seal.Ciphertext]:
        """Encrypted scores for one record: one ciphertext per product.

        Args:
            chunks: the record's ciphertexts, one per feature chunk, at ``input_scale``.
            zeros: one :meth:`masked_zero` per product, each used here once; None leaves the
                products bare and adds the bias in the clear (only tests that play the
                attacker do this).
        """
        results = []
        for product in range(self.layout.n_products):
            result = seal.Ciphertext()
            self.rt.evaluator.multiply_plain(chunks[0], self.weights[0][product], result)
            for chunk in range(1, len(chunks)):
                partial = seal.Ciphertext()
                self.rt.evaluator.multiply_plain(chunks[chunk], self.weights[chunk][product], partial)
                self.rt.evaluator.add_inplace(result, partial)
            if zeros is None:
                self.rt.evaluator.add_plain_inplace(result, self._bias_plain(product))
            else:
                self.rt.evaluator.add_inplace(result, zeros[product])
            results.append(result)
        return results

    def _bias_plain(self, product: int) -> seal.Plaintext:
        if product not in self._bias_plains:
            bias = np.zeros(self.rt.degree)
            bias[self.layout.output_positions(product)] = self.bias[product] / self.output_scale
            self._bias_plains[product] = self.rt.encode_coefficients(bias, self.output_scale)
        return self._bias_plains[product]
