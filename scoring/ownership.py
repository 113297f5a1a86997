"""Proof that a caller holds a key bundle's secret key: what deleting a bundle requires.

A key id names a public bundle, and anyone who learns it (from a URL, a log) could ask to
delete it. So ``DELETE /api/keys/{key_id}`` needs proof of the secret key, and no reusable
secret travels for it: the service draws a 128-bit nonce, keeps it beside the stored bundle
(its metadata) with an expiry, and answers every challenge request with a fresh encryption
of that nonce under the bundle's public key (:func:`issue`); the caller answers with the
decrypted nonce (:func:`answer`, in ``X-Key-Proof``). A pending nonce is reused until it
expires (``CHALLENGE_SECONDS``), so a stranger who asks for challenges learns nothing (it
cannot decrypt them) and cannot replace the owner's pending one; the bundle is deleted on the
first correct answer. Whoever can read the blob's metadata (storage administrators, who could
delete the blob anyway) could read a pending nonce.
"""

from __future__ import annotations

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
    """A challenge for one bundle: the nonce and expiry the server keeps, the ciphertext it sends.

    Attributes:
        nonce: 32 lowercase hex digits, kept beside the bundle until it expires.
        expires: when the answer stops counting, seconds since the epoch.
        ciphertext: this request's encryption of the nonce under the bundle's key (an
            uncompressed SEAL blob).
        new: whether the nonce was drawn now (and must be kept), or was pending.
    """

    nonce: str
    expires: float
    ciphertext: bytes
    new: bool


def issue(bundle: PublicBundle, pending: tuple[str, float] | None = None, *, now: float | None = None) -> Challenge:
    """A challenge for ``bundle``: the pending nonce while it lasts, else a fresh one.

    Args:
        pending: the nonce and expiry kept beside the bundle, if any.
    """
    issued = time.time() if now is None else now
    if pending is not None and PROOF_PATTERN.fullmatch(pending[0] or "") and pending[1] > issued:
        nonce, expires, new = bytes.fromhex(pending[0]), pending[1], False
    else:
        nonce, expires, new = os.urandom(CHALLENGE_BYTES), issued + CHALLENGE_SECONDS, True
    rt = runtime(bundle.parameters)
    residues = np.zeros(rt.degree, dtype=np.uint64)
    residues[:CHALLENGE_BYTES] = np.frombuffer(nonce, dtype=np.uint8).astype(np.uint64) * np.uint64(CHALLENGE_SCALE)
    ciphertext = Masking(rt).encrypt(bundle.encryptor, residues, CHALLENGE_SCALE)
    return Challenge(nonce.hex(), expires, rt.save_canonical(ciphertext), new)


def check_proof_form(proof: str | None) -> None:
    """Refuse a missing or malformed answer before anything is looked up, so that such a
    request says nothing about whether a bundle exists.

    Raises:
        ProofRequired: saying what is missing or malformed and how to prove.
    """
    if not proof:
        raise ProofRequired(f"deleting a key bundle needs proof that you hold its secret key: {HOW_TO_PROVE}")
    if not PROOF_PATTERN.fullmatch(proof):
        raise ProofRequired(f"{PROOF_HEADER} must be 32 lowercase hex characters (the decrypted challenge)")


def verify(proof: str | None, nonce: str | None, expires: float | None, *, now: float | None = None) -> None:
    """Check an answer against the pending nonce and its expiry.

    Raises:
        ProofRequired: if there is no answer, no pending challenge, an expired one, or a
            wrong answer; the message says which and how to prove.
    """
    check_proof_form(proof)
    if nonce is None or expires is None:
        raise ProofRequired(f"no challenge is pending for this key bundle: {HOW_TO_PROVE}")
    if (time.time() if now is None else now) > expires:
        raise ProofRequired(f"the challenge expired (answers count for {CHALLENGE_SECONDS} s): {HOW_TO_PROVE}")
    if not hmac.compare_digest(proof, nonce):
        raise ProofRequired("the answer does not match the pending challenge: it was not decrypted with this "
                            "bundle's secret key")


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
