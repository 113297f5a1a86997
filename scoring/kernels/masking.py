"""What every result gets before it leaves the server: a fresh, masked encryption added to it.

A bare product would let the client read the model: divide the result by its own query,
or read cross terms of the weights from coefficients that are not scores. So each result
gets a fresh public-key encryption, under the client's key, of a polynomial that is

* uniform modulo q at every coefficient the client may not read (single path: every
  coefficient but the outputs; batches: every lane at and beyond the declared records), and
* the bias plus server-sampled noise, uniform in ``[-w, w]``, at every coefficient it may read.

The noise (flooding) caps what any readable coefficient can carry, whatever key the client
uploaded: a key with a secret of 0 or a chosen first polynomial makes its own encryption
noise tiny, but not this. ``FLOOD_BOUND`` (``2**-19``, about 1.9e-6, in score units) keeps
scores within 1e-5; each readable coefficient then holds at most ``log2(q / (2w + 1))`` bits
(:func:`readable_bits`; about 28 for the tutorial model), and a hostile client can no longer
pack two weight columns into one answer.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tenseal.sealapi as seal

from ..ckks import SealRuntime

FLOOD_BOUND = 2.0 ** -19  # score units: the noise every readable coefficient carries, uniform in +-this
MIN_FLOOD_WIDTH = 1 << 16  # integer units: far above any key's own noise (about 340 for an honest key)


def flood_width(output_scale: float) -> int:
    """The noise half-width in integer units at ``output_scale`` (at least ``MIN_FLOOD_WIDTH``)."""
    return max(MIN_FLOOD_WIDTH, round(FLOOD_BOUND * output_scale))


def flood_bound(output_scale: float) -> float:
    """The noise half-width in score units, as the model description reports it."""
    return flood_width(output_scale) / output_scale


def readable_bits(modulus: int, output_scale: float) -> float:
    """The most information one readable coefficient can carry, in bits."""
    return math.log2(modulus / (2 * flood_width(output_scale) + 1))


def flood(count: int, width: int) -> np.ndarray:
    """``count`` integers uniform in ``[-width, width]`` (int64), from the OS's secure generator.

    Reduction of 64-bit words modulo ``2 * width + 1`` (below 2**40): bias under 2**-24.
    """
    words = np.frombuffer(os.urandom(8 * count), dtype="<u8")
    return (words % np.uint64(2 * width + 1)).astype(np.int64) - width


class Masking:
    """Fresh masked encryptions under a client's public key, for one parameter set.

    SEAL offers no addition of a coefficient-form polynomial to an NTT-form ciphertext,
    and will not transform a ciphertext whose second part is 0; so the polynomial travels
    as ``(p, 1)``, is moved to NTT form by SEAL, added, and ``(0, 1)`` is taken off again.
    No save (zstd) is involved.
    """

    def __init__(self, rt: SealRuntime) -> None:
        self.rt = rt
        ones = np.ones((1, len(rt.moduli), rt.degree), dtype=np.uint64)
        self._carrier_ones = ones
        # (0, 1) in NTT form: the NTT of the constant 1 is 1 at every point.
        self._unit = np.concatenate([np.zeros_like(ones), ones])
        self._units: dict[float, seal.Ciphertext] = {}

    def encrypt(self, encryptor: seal.Encryptor, residues: np.ndarray, scale: float) -> seal.Ciphertext:
        """A fresh public-key encryption of the polynomial ``residues`` (mod q, length N) at ``scale``.

        Added to a result, it re-randomizes it (the client's key, fresh randomness) and adds
        the polynomial.
        """
        rt = self.rt
        result = seal.Ciphertext()
        encryptor.encrypt_zero(result)
        result.scale = scale
        carrier = rt.load(seal.Ciphertext(), rt.ciphertext_blob(
            np.concatenate([residues.reshape(1, len(rt.moduli), rt.degree), self._carrier_ones]),
            ntt=False, scale=scale))
        rt.evaluator.transform_to_ntt_inplace(carrier)
        rt.evaluator.add_inplace(result, carrier)
        rt.evaluator.sub_inplace(result, self._unit_at(scale))
        return result

    def _unit_at(self, scale: float) -> seal.Ciphertext:
        unit = self._units.get(scale)
        if unit is None:
            unit = self.rt.load(seal.Ciphertext(), self.rt.ciphertext_blob(self._unit, ntt=True, scale=scale))
            self._units[scale] = unit
        return unit

    def mask(self, readable: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
        """The residues to encrypt: ``values`` plus noise at ``readable``, uniform mod q elsewhere.

        Args:
            readable: coefficient positions the client may read.
            values: integers (int64) to place there (the bias at the output scale).
            width: the noise half-width (:func:`flood_width`).
        """
        rt = self.rt
        residues = rt.uniform_residues()[0]
        noisy = np.asarray(values, dtype=np.int64) + flood(len(readable), width)
        residues[readable] = np.mod(noisy, np.int64(rt.moduli[0])).astype(np.uint64)
        return residues
