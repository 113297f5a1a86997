"""Proof that a caller holds a key bundle's secret key: what deleting a bundle requires.

A key id names a public bundle, and anyone who learns it (from a URL, a log) could ask to
delete it. So ``DELETE /api/keys/{key_id}`` needs proof of the secret key, and no reusable
secret travels for it: the service encrypts a fresh 128-bit nonce under the bundle's public
key (:func:`issue`), keeps only its SHA-256 and an expiry (beside the stored bundle), and the
caller answers with the decrypted nonce (:func:`answer`, in ``X-Key-Proof``). An answer is
good for one challenge, for ``CHALLENGE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from .ckks import SealRuntime, canonical_ciphertext, runtime
from .errors import ProofRequired
from .keys import PublicBundle
from .kernels.masking import Masking

CHALLENGE_BYTES = 16
CHALLENGE_SCALE = 2.0 ** 40  # far above any key's noise: each byte decodes exactly
CHALLENGE_SECONDS = 300
PROOF_HEADER = "X-Key-Proof"
PROOF_PATTERN = re.compile(r"[0-9a-f]{32}")
HOW_TO_PROVE = ("ask for a challenge (POST /api/keys/{key_id}/challenge), decrypt it with the secret key and "
                f"send the answer in the {PROOF_HEADER} header (ScoringClient.delete_keys() does this)")


@dataclass(frozen=True)
class Challenge:
    """A challenge for one bundle: the ciphertext for the caller, the rest for the server.

    Attributes:
        ciphertext: an uncompressed SEAL blob encrypting the nonce under the bundle's key.
        digest: SHA-256 of the nonce, hex: what the server keeps.
        expires: when the answer stops counting, seconds since the epoch.
    """

    ciphertext: bytes
    digest: str
    expires: float


def issue(bundle: PublicBundle, *, now: float | None = None) -> Challenge:
    """A fresh challenge for ``bundle``."""
    rt = runtime(bundle.parameters)
    nonce = os.urandom(CHALLENGE_BYTES)
    residues = np.zeros(rt.degree, dtype=np.uint64)
    residues[:CHALLENGE_BYTES] = np.frombuffer(nonce, dtype=np.uint8).astype(np.uint64) * np.uint64(CHALLENGE_SCALE)
    ciphertext = Masking(rt).encrypt(bundle.encryptor, residues, CHALLENGE_SCALE)
    issued = time.time() if now is None else now
    return Challenge(rt.save_canonical(ciphertext), _digest(nonce), issued + CHALLENGE_SECONDS)


def verify(proof: str | None, digest: str | None, expires: float | None, *, now: float | None = None) -> None:
    """Check an answer against the kept digest and expiry.

    Raises:
        ProofRequired: if there is no answer, no pending challenge, an expired one, or a
            wrong answer; the message says which and how to prove.
    """
    if not proof:
        raise ProofRequired(f"deleting a key bundle needs proof that you hold its secret key: {HOW_TO_PROVE}")
    if not PROOF_PATTERN.fullmatch(proof):
        raise ProofRequired(f"{PROOF_HEADER} must be 32 lowercase hex characters (the decrypted challenge)")
    if digest is None or expires is None:
        raise ProofRequired(f"no challenge is pending for this key bundle: {HOW_TO_PROVE}")
    if (time.time() if now is None else now) > expires:
        raise ProofRequired(f"the challenge expired (answers count for {CHALLENGE_SECONDS} s): {HOW_TO_PROVE}")
    if not hmac.compare_digest(_digest(bytes.fromhex(proof)), digest):
        raise ProofRequired("the answer does not match the challenge: it was not decrypted with this bundle's "
                            "secret key, or a newer challenge replaced it")


def answer(rt: SealRuntime, decryptor: seal.Decryptor, ciphertext: bytes) -> str:
    """The caller's side: decrypt a challenge and return the answer for ``X-Key-Proof``.

    Raises:
        ValueError: if the blob is not a challenge for these parameters.
    """
    checked = canonical_ciphertext(rt, ciphertext, scale=CHALLENGE_SCALE, seeded_ok=False, what="challenge")
    plain = seal.Plaintext()
    decryptor.decrypt(rt.load(seal.Ciphertext(), checked), plain)
    values = np.rint(rt.decode_coefficients(plain)[:CHALLENGE_BYTES])
    if np.any(values < 0) or np.any(values > 255):
        raise ValueError("the challenge does not decrypt to bytes: it was made for other keys")
    return bytes(values.astype(np.uint8)).hex()


def _digest(nonce: bytes) -> str:
    return hashlib.sha256(nonce).hexdigest()
