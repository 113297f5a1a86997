"""A hostile client's tools: keys with a secret and noise of its choosing, and queries it crafts
coefficient by coefficient with no encryption noise at all (it holds the secret, so it can).

These build SEAL objects the way a client can on its own machine; the service sees only
their bytes.
"""

from __future__ import annotations

import os

import numpy as np
import tenseal.sealapi as seal

from client.keys import PRNG_BLAKE2XB, SEED_A_BYTES, SEED_E_BYTES, SecretKeys, _expand, _seeded_blob, _Seeds
from scoring.ckks import PLAINTEXT_DATA_OFFSET, SealRuntime, runtime


def mulmod(a: np.ndarray, b: np.ndarray, q: int) -> np.ndarray:
    return np.array([int(x) * int(y) % q for x, y in zip(a, b)], dtype=np.uint64)


def crafted_keys(secret: np.ndarray, *, noise: bool = False) -> SecretKeys:
    """Keys for ``secret`` (any small polynomial, 0 included); the public key's noise is 0 unless asked."""
    rt = runtime()
    seeds = _Seeds(PRNG_BLAKE2XB, os.urandom(SEED_A_BYTES), os.urandom(SEED_E_BYTES))
    secret = np.asarray(secret, dtype=np.int64)
    if noise:
        return SecretKeys._derive(rt, secret, seeds)
    q = int(rt.moduli[0])
    s_ntt = rt.ntt(rt.residues(secret))[0]
    first = (np.uint64(q) - mulmod(_expand(rt, seeds), s_ntt, q)) % np.uint64(q)  # -(a*s), no e
    secret_key = rt.load(seal.SecretKey(), rt.plaintext_blob(s_ntt[None], scale=1.0))
    return SecretKeys(rt.parameters, secret_key, _seeded_blob(rt, first, seeds), _secret=secret)


def exact_query(keys: SecretKeys, integers: np.ndarray, scale: float) -> bytes:
    """A seeded ciphertext of the polynomial with these integer coefficients at ``scale``, with
    no encryption noise: ``c0 = m - a*s`` exactly."""
    rt: SealRuntime = keys.runtime
    q = int(rt.moduli[0])
    plain = np.zeros(rt.degree, dtype=np.int64)
    plain[:len(integers)] = integers
    seeds = _Seeds(PRNG_BLAKE2XB, os.urandom(SEED_A_BYTES), b"")
    secret_ntt = rt.ntt(rt.residues(keys._secret))[0]
    message = rt.ntt(rt.residues(plain))[0].astype(object)
    a_s = mulmod(_expand(rt, seeds), secret_ntt, q).astype(object)
    first = np.array([(m - x) % q for m, x in zip(message, a_s)], dtype=np.uint64)
    blob = _seeded_blob(rt, first, seeds)
    # the scale field sits after parms_id and the NTT flag, size, degree and modulus count
    return blob[:16 + 32 + 1 + 24] + np.float64(scale).tobytes() + blob[16 + 32 + 1 + 24 + 8:]


def monomial(degree: int, power: int = 1) -> np.ndarray:
    """The secret X^power: sparse, yet its public key looks uniform."""
    secret = np.zeros(degree, dtype=np.int64)
    secret[power] = 1
    return secret


def decrypt_all(keys: SecretKeys, ciphertext: seal.Ciphertext) -> np.ndarray:
    """Every coefficient of a result, exactly, as signed integers (int64) at its scale: what an
    attacker reads (through SEAL's own inverse NTT, not the client's floating-point decoding)."""
    rt = keys.runtime
    plain = seal.Plaintext()
    keys.decryptor().decrypt(ciphertext, plain)
    words = np.frombuffer(rt.save_body(plain), dtype="<u8", count=rt.degree, offset=PLAINTEXT_DATA_OFFSET)
    residues = rt.ntt(words.reshape(1, -1), inverse=True)[0]
    q = rt.moduli[0]
    return np.where(residues > q // np.uint64(2), -(q - residues).astype(np.int64), residues.astype(np.int64))
