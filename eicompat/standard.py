"""The standard encoding and the framed strings both halves of the 0.9 API share.

**The standard encoding.** This project's client normally learns the model's encoding
(layout and scales) from ``GET /api/model`` before it encrypts. The 0.9 client encrypts
before it has ever talked to the server, so both halves agree on an encoding fixed by the
record's length alone (:func:`standard_encoding`):

* features must lie in [-1, 1] (the tutorial's pixels / 255); the client refuses others;
* the fewest chunks of at most N features each, so the client can split a record alone;
* input scale ``2**STANDARD_INPUT_BITS`` (what the planner picks for the tutorial model);
  the server gives the weights every bit the model's score bound leaves (the same rule as
  :func:`scoring.encoding.choose_scales`), and refuses a model that leaves too few.

**The wire.** As in 0.9, a record is a list of base64 strings and so is a result (JSON-ready,
for the tutorial's ``run``). Each string is one SEAL ciphertext behind a 22-byte
:data:`FRAME`: the record's feature count, the model's output count (results only), the
string's index and the ciphertext's scale. The record's frame lets the server refuse a
record of the wrong length, which it could not tell from the ciphertexts; the result's frame
tells the client where its scores are, since one result ciphertext holds many outputs (0.9
sent one per output). Frames say nothing that ``GET /api/model`` does not tell any client.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass

import numpy as np

from scoring.ckks import SealRuntime
from scoring.encoding import CoefficientLayout, RecordEncoding, choose_scales
from scoring.kernels.single import CoefficientKernel
from scoring.model import LinearModel, ModelError
from scoring.parameters import DEFAULT_PARAMETERS, CkksParameters

STANDARD_INPUT_BITS = 27
STANDARD_INPUT_BOUND = 1.0
MIN_WEIGHT_BITS = 10
REQUEST_MAGIC, RESULT_MAGIC = b"EIQ1", b"EIR1"
# magic, features (u32), outputs (u32; 0 in a request), index in the list (u16), scale (f64);
# then one SEAL ciphertext blob.
FRAME = struct.Struct("<4sIIHd")


def standard_layout(degree: int, n_features: int, n_outputs: int = 1) -> CoefficientLayout:
    """The layout both halves derive from the record's length: the fewest feature chunks.

    Args:
        degree: the ring degree N.
        n_features: the record's length.
        n_outputs: the model's outputs (the client, which does not know them, passes 1; the
            chunks do not depend on it).
    """
    chunking = CoefficientLayout.plan(degree, n_features, 1)  # one output: the fewest chunks
    per_product = degree // chunking.chunk_width
    return CoefficientLayout(degree, n_features, n_outputs, chunking.chunk_width, chunking.n_chunks,
                             per_product, math.ceil(n_outputs / per_product))


def standard_encoding(n_features: int, n_outputs: int = 1, *, output_scale: float = 1.0,
                      parameters: CkksParameters = DEFAULT_PARAMETERS) -> RecordEncoding:
    """The :class:`RecordEncoding` of the standard encoding (the module docstring says why).

    ``output_scale`` is the server's choice; the client reads it from the result frame.
    """
    layout = standard_layout(parameters.poly_modulus_degree, n_features, n_outputs)
    bounds = np.full(n_features, STANDARD_INPUT_BOUND)
    return RecordEncoding(layout, bounds, float(2 ** STANDARD_INPUT_BITS), output_scale)


def standard_kernel(model: LinearModel, rt: SealRuntime) -> CoefficientKernel:
    """A :class:`CoefficientKernel` on the standard encoding instead of a planned one.

    Evaluation, masking and re-randomization are the kernel's own; only the layout and the
    input scale are fixed by the record's length instead of chosen for the model.

    Raises:
        ModelError: if the model's scores are too large to leave ``MIN_WEIGHT_BITS`` bits
            for its weights at the standard input scale.
    """
    weights = model.coef * model.input_bounds
    weight_bits = sum(choose_scales(weights, model.intercept, int(rt.moduli[0]))) - STANDARD_INPUT_BITS
    if weight_bits < MIN_WEIGHT_BITS:
        raise ModelError(f"this model's scores are too large for the standard encoding (its weights would "
                         f"keep {weight_bits} bits); serve it as an exported artifact to ScoringClient instead")
    return CoefficientKernel(model, rt, layout=standard_layout(rt.degree, model.n_features, model.n_outputs),
                             input_bits=STANDARD_INPUT_BITS)


@dataclass(frozen=True)
class Framed:
    """What a list of compat strings carries: the ciphertexts and where their values are."""

    n_features: int
    n_outputs: int
    scale: float
    ciphertexts: tuple[bytes, ...]


def encode_frames(magic: bytes, framed: Framed) -> list[str]:
    """One base64 string per ciphertext, each behind a :data:`FRAME` (index ``i`` of the list)."""
    return [base64.b64encode(FRAME.pack(magic, framed.n_features, framed.n_outputs, index, framed.scale) + blob)
            .decode("ascii") for index, blob in enumerate(framed.ciphertexts)]


def decode_frames(magic: bytes, texts: list[str], error: type[Exception]) -> Framed:
    """Parse :func:`encode_frames`' strings; they must agree and come complete, in order.

    Raises:
        error: (``BadRequest`` on the server, ``ValueError`` on the client) for anything else.
    """
    if not isinstance(texts, list) or not texts:
        raise error("expected a non-empty list of base64 strings")
    frames, blobs = [], []
    for text in texts:
        data = _b64decode(text, error)
        if len(data) < FRAME.size or data[:4] != magic:
            what = "a record encrypted by EILinearRegressionClient" if magic == REQUEST_MAGIC else "a result of EIServer.predict"
            raise error(f"not {what}")
        frames.append(FRAME.unpack_from(data))
        blobs.append(data[FRAME.size:])
    _, n_features, n_outputs, _, scale = frames[0]
    if frames != [(magic, n_features, n_outputs, index, scale) for index in range(len(frames))]:
        raise error("the ciphertexts are inconsistent or out of order")
    return Framed(n_features, n_outputs, scale, tuple(blobs))


def _b64decode(text: str | bytes, error: type[Exception]) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise error("a ciphertext is not valid base64") from exc


def result_encoding(result: Framed, parameters: CkksParameters = DEFAULT_PARAMETERS) -> RecordEncoding:
    """The encoding that locates a result's scores.

    Raises:
        ValueError: if the result does not hold one ciphertext per product of its layout.
    """
    encoding = standard_encoding(result.n_features, result.n_outputs, output_scale=result.scale,
                                 parameters=parameters)
    if len(result.ciphertexts) != encoding.layout.n_products:
        raise ValueError(f"the result holds {len(result.ciphertexts)} ciphertext(s) where its layout has "
                         f"{encoding.layout.n_products}")
    return encoding
