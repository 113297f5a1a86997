"""How records become plaintext coefficients, and how scores come back out: both ends share this.

Two encodings, one per path (``shared/design/kernels.md``):

* **One record** (:class:`RecordEncoding`): the record's features are the coefficients of a
  plaintext polynomial; the server multiplies by a weight polynomial that holds output
  ``c``'s row reversed in block ``c``, so coefficient ``c*m + m - 1`` of the product is
  ``sum_i x_i * w[c, i]``. Wider inputs are split into chunks (one ciphertext each) and more
  outputs than one polynomial holds into products (one result each):
  :class:`CoefficientLayout` plans that split.
* **A batch in coefficient lanes** (:class:`LaneEncoding`): ciphertext ``j`` holds feature
  ``j`` of up to N records as coefficients (record ``r`` at coefficient ``r``); output ``c``
  is ``sum_j w[c, j] * ct_j + b_c``, scalar multiplies and adds only, with record ``r``'s
  score at coefficient ``r``.

The server builds both from the model; the client from ``GET /api/model``
(:class:`scoring.protocol.ModelDescription`), so the two ends cannot drift apart. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Request ciphertexts are seeded (half size), results are not: a chunk costs half a
# product in bytes, which is what the planner weighs.
REQUEST_WEIGHT, RESPONSE_WEIGHT = 0.5, 1.0
# Standard deviation of SEAL's encryption noise per coefficient (its default).
COEFFICIENT_NOISE = 3.2


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
        """The layout with the fewest bytes on the wire for this shape.

        Raises:
            ValueError: for no features or no outputs.
        """
        if n_features < 1 or n_outputs < 1:
            raise ValueError(f"a model takes at least one feature and gives at least one output, "
                             f"not {n_features} and {n_outputs}")
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

    Both encodings call this, so a client is refused the same way on either path.

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


def choose_scales(weights: np.ndarray, intercept: np.ndarray, modulus: int, *,
                  noise_weights: np.ndarray | None = None) -> tuple[int, int]:
    """Input and weight scale bits: no output can overflow, and the error is smallest.

    ``weights`` act on features scaled into [-1, 1], so every output obeys
    ``|y_c| <= ||w_c||_1 + |b_c|``; that bound (plus one, far above the noise) times the
    product scale must stay below q/2. The product's bits are then split so that the two
    error sources match: encryption noise (3.2 per coefficient), which the weights it meets
    amplify (``noise_weights``: every weight of a product on the single path, where the noise
    fills every coefficient; one output's row in coefficient lanes), and the rounding of the
    weights, which the inputs amplify (at most ``sqrt(n / 12) / weight_scale``).

    Raises:
        ValueError: if the scores are too large for the modulus to leave useful precision.
    """
    bound = float(np.max(np.abs(weights).sum(axis=1) + np.abs(intercept)))
    product_bits = math.floor(math.log2((modulus / 2 - 1) / (bound + 1)))
    if product_bits < 20:
        raise ValueError(f"scores up to {bound:.3g} leave too little precision in a "
                         f"{modulus.bit_length()}-bit modulus; lower input_bound or rescale the model")
    amplifying = weights if noise_weights is None else noise_weights
    amplified = COEFFICIENT_NOISE * max(float(np.linalg.norm(amplifying)), 1e-12)
    rounding = math.sqrt(weights.shape[1] / 12)
    input_bits = round((product_bits + math.log2(amplified / rounding)) / 2)
    input_bits = min(max(input_bits, 10), product_bits - 10)
    return input_bits, product_bits - input_bits


@dataclass(frozen=True)
class RecordEncoding:
    """How one record becomes plaintext coefficients and how its scores come back out.

    Each feature is divided by its input bound (so every encoded value lies in [-1, 1]),
    the record is split into the layout's chunks, and each chunk is encoded at
    ``input_scale``; result ``p`` holds its outputs at ``layout.output_positions(p)`` at
    ``output_scale``.
    """

    layout: CoefficientLayout
    input_bounds: np.ndarray
    input_scale: float
    output_scale: float

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


@dataclass(frozen=True)
class LaneEncoding:
    """How a batch of records becomes one ciphertext per sent feature, and back.

    Attributes:
        features: the features a batch carries, in request order (every feature unless the
            model's owner chose to skip all-zero weight columns).
        max_records: records per request (N coefficient lanes, or fewer if the owner caps it).
        n_features, n_outputs: the model's shape.
    """

    features: tuple[int, ...]
    max_records: int
    n_features: int
    n_outputs: int
    input_bounds: np.ndarray
    input_scale: float
    output_scale: float

    def columns(self, X) -> np.ndarray:
        """The batch's encoded columns, shape (sent features, records), each within [-1, 1].

        Raises:
            ValueError: if the batch is empty or too large, has the wrong width, non-finite
                values, or a feature beyond its bound.
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if not 1 <= len(X) <= self.max_records:
            raise ValueError(f"a batch holds 1 to {self.max_records} records, not {len(X)}")
        scaled = scale_records(X, self.input_bounds)
        if len(self.features) == self.n_features:
            return np.ascontiguousarray(scaled.T)
        return np.ascontiguousarray(scaled[:, list(self.features)].T)

    def scores(self, coefficients: list[np.ndarray], records: int) -> np.ndarray:
        """Scores, shape (records, outputs), from each output's decoded coefficients."""
        return np.column_stack([c[:records] for c in coefficients])
