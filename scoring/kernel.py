"""The encrypted affine map for one record per request, by coefficient encoding.

The client places its features as the coefficients of a plaintext polynomial; the server
holds, per product, a weight polynomial with output ``c``'s row reversed in block ``c``.
Coefficient ``c*m + m - 1`` of the product is then ``sum_i x_i * w[c, i]`` (kernels.md):
one ``multiply_plain`` computes every score, with no rotation and no Galois key.

Wider inputs are split into chunks of ``m`` features (one ciphertext each; the server
adds the chunk products) and more outputs than one polynomial holds are split across
products (one result ciphertext each). :class:`CoefficientLayout` plans that split and
both ends derive every position from it.

Model privacy: every result gets a fresh encryption of zero under the client's public
key (re-randomization) whose first part also carries a mask uniform modulo q at every
coefficient that is not an output, and the bias at the outputs. The client can decrypt
its scores and nothing else; a bare ``ct * P`` would reveal every weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from .ckks import SealRuntime
from .model import LinearModel

# Request ciphertexts are seeded (half size), results are not: a chunk costs half a
# product in bytes, which is what the planner weighs.
REQUEST_WEIGHT, RESPONSE_WEIGHT = 0.5, 1.0


@dataclass(frozen=True)
class CoefficientLayout:
    """How features and outputs are placed in polynomials of degree ``degree``.

    Attributes:
        chunk_width: features per request ciphertext (m).
        n_chunks: request ciphertexts per record.
        outputs_per_product: outputs in one result polynomial (k, with k*m <= N).
        n_products: result ciphertexts per record.
    """

    degree: int
    n_features: int
    n_outputs: int
    chunk_width: int
    n_chunks: int
    outputs_per_product: int
    n_products: int

    @classmethod
    def plan(cls, degree: int, n_features: int, n_outputs: int) -> CoefficientLayout:
        """The layout with the fewest bytes on the wire for this shape."""
        best = None
        for n_chunks in range(math.ceil(n_features / degree), n_features + 1):
            width = math.ceil(n_features / n_chunks)
            per_product = degree // width
            products = math.ceil(n_outputs / per_product)
            cost = REQUEST_WEIGHT * n_chunks + RESPONSE_WEIGHT * products
            if best is None or cost < best[0]:
                best = (cost, cls(degree, n_features, n_outputs, width, n_chunks, per_product, products))
            if per_product >= n_outputs:
                break  # more chunks only add request bytes
        return best[1]

    def feature_chunks(self, x: np.ndarray) -> list[np.ndarray]:
        """Split one record's features into the chunks the request carries."""
        return [x[i * self.chunk_width:(i + 1) * self.chunk_width] for i in range(self.n_chunks)]

    def outputs_in(self, product: int) -> range:
        """The output indices result ``product`` carries."""
        start = product * self.outputs_per_product
        return range(start, min(start + self.outputs_per_product, self.n_outputs))

    def output_positions(self, product: int) -> np.ndarray:
        """Coefficient positions of result ``product``'s outputs, in output order."""
        count = len(self.outputs_in(product))
        return np.arange(count) * self.chunk_width + self.chunk_width - 1

    def to_dict(self) -> dict:
        return {"chunk_width": self.chunk_width, "n_chunks": self.n_chunks,
                "outputs_per_product": self.outputs_per_product, "n_products": self.n_products}


def scale_records(X: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Records (rows) divided by the features' input bounds, after checking they fit.

    Both encodings (one record, or a batch) call this, so a client is refused the same way.

    Raises:
        ValueError: for the wrong width, non-finite values, or a feature beyond its bound
            (it could overflow the encrypted computation).
    """
    if X.shape[1] != len(bounds):
        raise ValueError(f"the model takes {len(bounds)} features; the record has {X.shape[1]}")
    if not np.all(np.isfinite(X)):
        raise ValueError("the record holds NaN or infinite values")
    beyond = np.argwhere(np.abs(X) > bounds)
    if beyond.size:
        row, col = (int(v) for v in beyond[0])
        where = f"feature {col}" if len(X) == 1 else f"record {row} feature {col}"
        raise ValueError(f"the model accepts features with |x| <= input_bound (scale your data as it was "
                         f"scaled for training); {where} is {X[row, col]:.6g}, its bound {bounds[col]:.6g}")
    return X / bounds


@dataclass(frozen=True)
class RecordEncoding:
    """How one record becomes plaintext coefficients and how scores come back out.

    Each feature is divided by its input bound (so every encoded value lies in [-1, 1]),
    the record is split into the layout's chunks, and each chunk is encoded at
    ``input_scale``; result ``p`` holds its outputs at ``layout.output_positions(p)`` at
    ``output_scale``. The server builds it from the kernel, the client from ``GET
    /api/model``, so both ends use this one definition.
    """

    layout: CoefficientLayout
    input_bounds: np.ndarray
    input_scale: float
    output_scale: float

    @classmethod
    def from_description(cls, description: dict) -> RecordEncoding:
        """From the service's model description (``GET /api/model``)."""
        enc = description["encryption"]
        layout = CoefficientLayout(enc["poly_modulus_degree"], description["n_features"], description["n_outputs"],
                                   **enc["layout"])
        bounds = np.broadcast_to(np.asarray(description["input_bound"], dtype=np.float64), (layout.n_features,))
        return cls(layout, bounds, float(enc["input_scale"]), float(enc["output_scale"]))

    def chunks(self, x) -> list[np.ndarray]:
        """The record's encoded chunks.

        Raises:
            ValueError: if the record has the wrong length, non-finite values, or a feature
                beyond its bound (it could overflow the encrypted computation).
        """
        scaled = scale_records(np.asarray(x, dtype=np.float64).reshape(1, -1), self.input_bounds)
        return self.layout.feature_chunks(scaled[0])

    def scores(self, coefficients: list[np.ndarray]) -> np.ndarray:
        """The outputs, in order, from each result's decoded coefficients."""
        return np.concatenate([c[self.layout.output_positions(p)] for p, c in enumerate(coefficients)])


def choose_scales(weights: np.ndarray, intercept: np.ndarray, modulus: int, *,
                  noise: float = 3.2) -> tuple[int, int]:
    """Input and weight scale bits: no output can overflow, and the error is smallest.

    ``weights`` act on features scaled into [-1, 1], so every output obeys
    ``|y_c| <= ||w_c||_1 + |b_c|``; that bound (plus one, far above the noise) times the
    product scale must stay below q/2. The product's bits are then split so that the two
    error sources match: encryption noise, which the weights amplify (about
    ``noise * ||W||_F / input_scale``; 3.2 per coefficient, more in slots), and the rounding
    of the weights, which the inputs amplify (at most ``sqrt(n / 12) / weight_scale``).

    Raises:
        ValueError: if the scores are too large for the modulus to leave useful precision.
    """
    bound = float(np.max(np.abs(weights).sum(axis=1) + np.abs(intercept)))
    product_bits = math.floor(math.log2((modulus / 2 - 1) / (bound + 1)))
    if product_bits < 20:
        raise ValueError(f"scores up to {bound:.3g} leave too little precision in a "
                         f"{modulus.bit_length()}-bit modulus; lower input_bound or rescale the model")
    amplified = noise * max(float(np.linalg.norm(weights)), 1e-12)
    rounding = math.sqrt(weights.shape[1] / 12)
    input_bits = round((product_bits + math.log2(amplified / rounding)) / 2)
    input_bits = min(max(input_bits, 10), product_bits - 10)
    return input_bits, product_bits - input_bits


class CoefficientKernel:
    """Weight plaintexts for one model and parameter set, encoded once; then score.

    Example:
        >>> kernel = CoefficientKernel(model, runtime())            # doctest: +SKIP
        >>> results = kernel.evaluate(ciphertexts, bundle.encryptor)  # doctest: +SKIP
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
        self.encoding = RecordEncoding(self.layout, model.input_bounds, self.input_scale, self.output_scale)
        self.weights = [[self._weight_plain(chunk, product) for product in range(self.layout.n_products)]
                        for chunk in range(self.layout.n_chunks)]
        self.bias = [self._bias_coefficients(product) for product in range(self.layout.n_products)]
        self.bias_residues = [rt.residues(bias.astype(np.int64))[0] for bias in self.bias]
        self.bias_plains = [rt.encode_coefficients(bias / self.output_scale, self.output_scale)
                            for bias in self.bias]

    def _weight_plain(self, chunk: int, product: int) -> seal.Plaintext:
        lay = self.layout
        columns = slice(chunk * lay.chunk_width, (chunk + 1) * lay.chunk_width)
        coefficients = np.zeros(self.rt.degree)
        for local, output in enumerate(lay.outputs_in(product)):
            row = self.weights_matrix[output, columns]
            end = local * lay.chunk_width + lay.chunk_width
            coefficients[end - len(row):end] = row[::-1]
        return self.rt.encode_coefficients(coefficients, self.weight_scale)

    def _bias_coefficients(self, product: int) -> np.ndarray:
        """The bias at the product's output positions, as integers at the output scale."""
        bias = np.zeros(self.rt.degree)
        outputs = list(self.layout.outputs_in(product))
        bias[self.layout.output_positions(product)] = self.model.intercept[outputs] * self.output_scale
        return np.rint(bias)

    def evaluate(self, chunks: list[seal.Ciphertext], encryptor: seal.Encryptor | None, *,
                 protect: bool = True) -> list[seal.Ciphertext]:
        """Encrypted scores for one record: one ciphertext per product.

        Args:
            chunks: the record's ciphertexts, one per feature chunk, at ``input_scale``.
            encryptor: the client's public-key encryptor (for re-randomization).
            protect: re-randomize and mask the results. Only tests that play the attacker
                turn this off.
        """
        results = []
        for product in range(self.layout.n_products):
            result = seal.Ciphertext()
            self.rt.evaluator.multiply_plain(chunks[0], self.weights[0][product], result)
            for chunk in range(1, len(chunks)):
                partial = seal.Ciphertext()
                self.rt.evaluator.multiply_plain(chunks[chunk], self.weights[chunk][product], partial)
                self.rt.evaluator.add_inplace(result, partial)
            if protect:
                self.rt.evaluator.add_inplace(result, self._masked_zero(encryptor, product))
            else:
                self.rt.evaluator.add_plain_inplace(result, self.bias_plains[product])
            results.append(result)
        return results

    def _masked_zero(self, encryptor: seal.Encryptor, product: int) -> seal.Ciphertext:
        """A fresh encryption of (bias at the outputs, uniform mod q everywhere else)."""
        mask = self.rt.uniform_residues()[0]
        positions = self.layout.output_positions(product)
        mask[positions] = self.bias_residues[product][positions]
        return fresh_encryption(self.rt, encryptor, mask, self.output_scale)


def fresh_encryption(rt: SealRuntime, encryptor: seal.Encryptor, residues: np.ndarray,
                     scale: float) -> seal.Ciphertext:
    """A fresh public-key encryption of the polynomial ``residues`` (mod q, length N) at ``scale``.

    Added to a result, it re-randomizes it (the client's key, fresh randomness) and adds
    the polynomial: the bias, and on the single path a mask over non-outputs.
    """
    zero = seal.Ciphertext()
    encryptor.encrypt_zero(zero)
    rt.evaluator.transform_from_ntt_inplace(zero)
    polys = rt.ciphertext_polys(rt.save_body(zero), 2).copy()
    q = rt.moduli[0]
    first = polys[0, 0] + residues  # both below q < 2**60: no uint64 overflow
    polys[0, 0] = np.where(first >= q, first - q, first)
    result = rt.load(seal.Ciphertext(), rt.ciphertext_blob(polys, ntt=False, scale=scale))
    rt.evaluator.transform_to_ntt_inplace(result)
    return result
