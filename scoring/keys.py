"""The public key bundle: CKKS parameters plus the client's public key, nothing secret.

Binary layout, version 1 (all integers little-endian)::

    "HEKB"  u8 version=1  u8 scheme=1 (CKKS)  u8 modulus count  u8 reserved=0
    u32 ring degree  u64 prime x modulus count
    sections: 4-byte tag, u32 length, payload; exactly one "PKEY": the public key as an
    uncompressed SEAL blob in seeded form (a seeded symmetric encryption of zero, which is
    what a SEAL public key is)

A bundle's id is the lowercase hex SHA-256 of its bytes, so a stored bundle cannot be
swapped under its name. The server parses bundles itself, strictly, before SEAL's loader
sees a byte, and refuses one that holds a secret key, uses parameters it does not serve,
or does not parse.

Only the seeded form of the public key is accepted: the service expands its random part
from the seed, so a client cannot choose it. A key whose random part were 0 or 1 would
make re-randomization add nothing and let a crafted query read the model's weights.

The first part (``-(a*s + e)``) is the client's to choose. Whatever it is, the noise the
server adds to every readable coefficient (:mod:`scoring.kernels.masking`) caps what an
answer reveals; keys that are visibly not made from a secret and small noise (a secret of
0, 1 or -1, or a first part that is not uniform modulo q) are refused all the same, with
the reason.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from .ckks import (
    HEADER_SIZE,
    BlobError,
    SealRuntime,
    canonical_ciphertext,
    is_secret_key_blob,
    runtime,
)
from .errors import BadRequest, KeysRejected
from .parameters import SERVED_PARAMETERS, CkksParameters

BUNDLE_MAGIC = b"HEKB"
BUNDLE_VERSION = 1
SCHEME_CKKS = 1
PREAMBLE = struct.Struct("<4sBBBBI")
SECTION = struct.Struct("<4sI")
PUBLIC_KEY_TAG = b"PKEY"
SECRET_KEY_TAGS = (b"SKEY", b"SECK")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{64}")
BUNDLE_NAME_MESSAGE = "key bundle does not hash to its key id; upload it under sha256(bundle) (ScoringClient does this)"
MAX_BUNDLE_BYTES = 1 << 20  # far above any served parameter set's bundle (131 KB at N=8192)
# A coefficient within q / 2**20 of 0 turns up about 0.016 times in 8192 uniform ones.
SMALL_COEFFICIENT_SHIFT = 20
MAX_SMALL_COEFFICIENTS = 16


def key_id_of(bundle: bytes) -> str:
    """A bundle's id: the lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(bundle).hexdigest()


class KeyId(str):
    """A key id that was checked: 64 lowercase hex characters. Checked once per request."""


def check_key_id(key_id: str) -> KeyId:
    """Return ``key_id`` as a :class:`KeyId` if it is 64 lowercase hex characters (at once if it
    already is one).

    Raises:
        BadRequest: otherwise, so that no path can reach outside the keys container.
    """
    if isinstance(key_id, KeyId):
        return key_id
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise BadRequest("key id must be 64 lowercase hex characters (the SHA-256 of the key bundle)")
    return KeyId(key_id)


def build_bundle(key_blob: bytes, parameters: CkksParameters) -> bytes:
    """Serialize parameters and a seeded public key blob into a bundle (the client's side)."""
    moduli = parameters.coeff_modulus
    return (PREAMBLE.pack(BUNDLE_MAGIC, BUNDLE_VERSION, SCHEME_CKKS, len(moduli), 0,
                          parameters.poly_modulus_degree)
            + struct.pack(f"<{len(moduli)}Q", *moduli)
            + SECTION.pack(PUBLIC_KEY_TAG, len(key_blob)) + key_blob)


@dataclass(frozen=True)
class PublicBundle:
    """A parsed, checked bundle, ready to encrypt zeros under the client's key."""

    key_id: str
    parameters: CkksParameters
    public_key: seal.PublicKey
    encryptor: seal.Encryptor
    size: int


def parse_bundle(data: bytes,
                 served: tuple[CkksParameters, ...] = SERVED_PARAMETERS) -> tuple[CkksParameters, bytes]:
    """Strictly parse a bundle; return its parameters and the canonical public key blob.

    Raises:
        KeysRejected: if the bundle does not parse, holds a secret key, or uses
            parameters outside ``served``.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise KeysRejected(f"key bundle is {len(data)} bytes; no served parameter set needs more than "
                           f"{MAX_BUNDLE_BYTES}")
    if len(data) < PREAMBLE.size:
        raise KeysRejected("not a key bundle: too short")
    magic, version, scheme, count, reserved, degree = PREAMBLE.unpack_from(data)
    if magic != BUNDLE_MAGIC:
        raise KeysRejected("not a key bundle: bad magic (expected a bundle made by the client library)")
    if version != BUNDLE_VERSION:
        raise KeysRejected(f"key bundle version {version} is not supported (expected {BUNDLE_VERSION})")
    if scheme != SCHEME_CKKS or reserved != 0 or not 1 <= count <= 64:
        raise KeysRejected("not a key bundle: bad scheme or modulus count")
    offset = PREAMBLE.size + 8 * count
    if len(data) < offset:
        raise KeysRejected("not a key bundle: truncated parameters")
    parameters = CkksParameters(degree, struct.unpack_from(f"<{count}Q", data, PREAMBLE.size))
    sections = _sections(data, offset)
    if parameters not in served:
        raise KeysRejected(f"key bundle uses parameters this service does not serve ({parameters.name}); "
                           f"served: {', '.join(p.name for p in served)}")
    rt = runtime(parameters)
    key_blob = sections[PUBLIC_KEY_TAG]
    if is_secret_key_blob(rt, key_blob):
        raise _secret_key_refused()
    try:
        return parameters, canonical_ciphertext(rt, key_blob, scale=1.0, seeded_ok=True, seeded_only=True,
                                                what="public key")
    except BlobError as exc:
        raise KeysRejected(f"key bundle rejected: {exc}") from exc


def _sections(data: bytes, offset: int) -> dict[bytes, bytes]:
    sections: dict[bytes, bytes] = {}
    while offset < len(data):
        if offset + SECTION.size > len(data):
            raise KeysRejected("not a key bundle: truncated section header")
        tag, length = SECTION.unpack_from(data, offset)
        offset += SECTION.size
        if tag in SECRET_KEY_TAGS:
            raise _secret_key_refused()
        if tag != PUBLIC_KEY_TAG or tag in sections:
            raise KeysRejected(f"key bundle has an unexpected or repeated section {tag!r}")
        if offset + length > len(data):
            raise KeysRejected("not a key bundle: a section runs past the end")
        sections[tag] = data[offset:offset + length]
        offset += length
    if PUBLIC_KEY_TAG not in sections:
        raise KeysRejected("key bundle has no public key")
    return sections


def _secret_key_refused() -> KeysRejected:
    return KeysRejected("key bundle holds a secret key; it was neither stored nor used. "
                        "Upload only the public bundle (SecretKeys.public_bundle()) and keep the "
                        "secret key on the client")


def load_bundle(data: bytes, key_id: str | None = None,
                served: tuple[CkksParameters, ...] = SERVED_PARAMETERS) -> PublicBundle:
    """Parse, check and load a bundle into SEAL objects (the server's side).

    Raises:
        KeysRejected: as :func:`parse_bundle`, or if ``key_id`` is not the bundle's hash,
            or if SEAL finds a coefficient outside the modulus.
    """
    actual = key_id_of(data)
    if key_id is not None and actual != key_id:
        raise KeysRejected(BUNDLE_NAME_MESSAGE)
    parameters, key_blob = parse_bundle(data, served)
    rt = runtime(parameters)
    try:  # expand the seed, then read the same fields as a public key
        expanded = rt.save_canonical(rt.load(seal.Ciphertext(), key_blob))
        public_key = rt.load(seal.PublicKey(), expanded)
    except (RuntimeError, ValueError) as exc:
        raise KeysRejected("key bundle rejected: the public key is not valid for its parameters") from exc
    problem = malformed_public_key(rt, rt.ciphertext_polys(expanded[HEADER_SIZE:], 2)[:, 0])
    if problem:
        raise KeysRejected(f"key bundle rejected: the public key is visibly malformed: {problem}; "
                           "make keys with SecretKeys.generate()")
    return PublicBundle(actual, parameters, public_key, seal.Encryptor(rt.context, public_key), len(data))


def malformed_public_key(rt: SealRuntime, parts: np.ndarray) -> str | None:
    """Why a public key ``(p0, a)`` (NTT form, one prime) was visibly not made from a secret
    key and small noise, or None.

    ``p0 = -(a*s + e)`` is uniform modulo q for a real secret ``s``; with ``s`` = 0, 1 or -1
    (constant polynomials: ``a*s`` is ``s*a`` point by point in NTT form), ``p0``, ``p0 + a`` or
    ``p0 - a`` is the small noise ``-e``.
    """
    q = rt.moduli[0]
    p0, a = parts[0], parts[1]
    candidates = {"its secret is 0 (the first part is small noise)": p0,
                  "its secret is 1": np.where(p0 + a >= q, p0 + a - q, p0 + a),
                  "its secret is -1": np.where(p0 >= a, p0 - a, p0 + (q - a))}
    limit = float(q) / 2 ** SMALL_COEFFICIENT_SHIFT
    for reason, poly in candidates.items():
        small = int(np.sum(np.abs(rt.centered(rt.ntt(poly[None], inverse=True)[0])) < limit))
        if small > MAX_SMALL_COEFFICIENTS:
            return f"{reason}: {small} of {rt.degree} coefficients are far smaller than uniform values modulo q"
    return None
