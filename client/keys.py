"""The client's keys: generate, export the public bundle, pack, save and load the secret key.

The secret key never leaves the client. :meth:`SecretKeys.public_bundle` holds only the
parameters and the public key; the secret key leaves this object only through the
explicitly named :meth:`SecretKeys.to_bytes` and :func:`save_secret_key`.

Key generation follows SEAL's (a uniform ternary secret ``s``; a public key
``(-(a*s + e), a)`` with ``a`` expanded by SEAL from a 64-byte seed and ``e`` centred-binomial
noise of standard deviation 3.24), but draws ``s`` from the OS's generator and ``e`` from a
32-byte seed, so that the whole key pair is reproducible from ``s`` and two seeds: 2,163
bytes (:meth:`SecretKeys.to_bytes`), small enough for Azure Key Vault (25 KB) or a
Databricks secret (128 KB).

The compact form, version 1 (all integers little-endian)::

    "HESK"  u8 version=1  u32 ring degree  u8 modulus count  u64 prime x count
    u8[N/4] the secret's coefficients, 2 bits each (0 -> 0, 1 -> 1, 2 -> -1), coefficient i
            in bits 2*(i%4) of byte i//4
    u8 PRNG type (SEAL: 1 blake2xb, 2 shake256)  u8[64] seed of a  u8[32] seed of e

The secret key file (:func:`save_secret_key`) is ``"HESECRET"``, ``u8 file version=2``, then
the compact form. Version 1 files (``"HESECRET"``, ``u8 1``, ``u32 degree``, ``u8 count``,
primes, then ``u32 length`` + SEAL's secret key blob and ``u32 length`` + the public bundle;
about 131 KB) are still read; their keys cannot be packed (their noise came from no seed).

Example:
    >>> keys = SecretKeys.generate()
    >>> len(keys.key_id), len(keys.to_bytes()) <= 4096
    (64, True)
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tenseal.sealapi as seal

from scoring import ownership
from scoring.ckks import (
    CIPHERTEXT_FIELDS,
    PRNG_TYPES,
    BlobError,
    SealRuntime,
    canonical_ciphertext,
    runtime,
)
from scoring.encoding import LaneEncoding, RecordEncoding
from scoring.errors import KeysRejected
from scoring.keys import build_bundle, key_id_of, parse_bundle
from scoring.parameters import DEFAULT_PARAMETERS, SERVED_PARAMETERS, CkksParameters

PACKED_MAGIC = b"HESK"
PACKED_VERSION = 1
PACKED_HEAD = struct.Struct("<4sBIB")
SEED_A_BYTES, SEED_E_BYTES = 64, 32
PRNG_BLAKE2XB = 1
NOISE_COINS = 21  # centred binomial: the sum of 21 coin flips minus 21 more; sigma = sqrt(21/2)
MAX_MODULI = 64
FILE_MAGIC = b"HESECRET"
FILE_VERSION = 2
LEGACY_HEAD = struct.Struct("<BIB")
LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class _Seeds:
    """What reproduces a key pair besides the secret: the PRNG type and the two seeds."""

    prng: int
    a: bytes
    e: bytes


@dataclass
class SecretKeys:
    """A CKKS key pair for one parameter set; the secret half stays in this process.

    Build with :meth:`generate`, :meth:`from_bytes` or :func:`load_secret_key`.
    """

    parameters: CkksParameters
    secret_key: seal.SecretKey = field(repr=False)
    public_key_blob: bytes = field(repr=False)
    _seeds: _Seeds | None = field(default=None, repr=False)
    _secret: np.ndarray | None = field(default=None, repr=False)
    _bundle: bytes = field(default=b"", repr=False)
    _tools: tuple | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, parameters: CkksParameters = DEFAULT_PARAMETERS) -> SecretKeys:
        """Generate a fresh key pair (a uniform ternary secret from the OS's generator).

        The public key is in SEAL's seeded form: the service expands its random part from
        the seed itself, so the client cannot choose that part, and the bundle is half the size.
        """
        rt = runtime(parameters)
        secret = _ternary(rt.degree)
        return cls._derive(rt, secret, _Seeds(PRNG_BLAKE2XB, os.urandom(SEED_A_BYTES), os.urandom(SEED_E_BYTES)))

    @classmethod
    def _derive(cls, rt: SealRuntime, secret: np.ndarray, seeds: _Seeds) -> SecretKeys:
        q = int(rt.moduli[0])
        s_ntt = rt.ntt(rt.residues(secret))[0]
        e_ntt = rt.ntt(rt.residues(_noise(seeds.e, rt.degree)))[0]
        a_ntt = _expand(rt, seeds)
        products = (a_ntt.astype(object) * s_ntt.astype(object) + e_ntt.astype(object)) % q
        p0 = np.array([(q - int(v)) % q for v in products], dtype=np.uint64)
        secret_key = rt.load(seal.SecretKey(), rt.plaintext_blob(s_ntt[None], scale=1.0))
        return cls(rt.parameters, secret_key, _seeded_blob(rt, p0, seeds), seeds, secret)

    # -- the compact form ----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole key pair in at most 4 KB (2,163 bytes at N=8192): keep it secret.

        Raises:
            ValueError: for keys read from a version 1 file, whose public key no seed reproduces.
        """
        if self._seeds is None or self._secret is None:
            raise ValueError("these keys were read from a version 1 secret key file: their public key "
                             "came from no seed, so they cannot be packed; generate new keys "
                             "(SecretKeys.generate()) and upload their bundle")
        moduli = self.parameters.coeff_modulus
        codes = np.where(self._secret < 0, 2, self._secret).astype(np.uint8).reshape(-1, 4)
        packed = codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6
        return (PACKED_HEAD.pack(PACKED_MAGIC, PACKED_VERSION, self.parameters.poly_modulus_degree, len(moduli))
                + struct.pack(f"<{len(moduli)}Q", *moduli) + packed.astype(np.uint8).tobytes()
                + bytes([self._seeds.prng]) + self._seeds.a + self._seeds.e)

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretKeys:
        """Rebuild a key pair from :meth:`to_bytes`; the same key id as before.

        Raises:
            ValueError: for bytes that are not this form, with a message that says what.
        """
        data = bytes(data)
        if data[:4] != PACKED_MAGIC:
            raise ValueError("not packed secret keys (they start with HESK; see SecretKeys.to_bytes())")
        if len(data) < PACKED_HEAD.size:
            raise ValueError("packed secret keys are truncated")
        _, version, degree, count = PACKED_HEAD.unpack_from(data)
        if version != PACKED_VERSION:
            raise ValueError(f"packed secret keys of version {version} are not supported (expected {PACKED_VERSION})")
        parameters = _served(degree, data, PACKED_HEAD.size, count)
        offset = PACKED_HEAD.size + 8 * count
        expected = offset + degree // 4 + 1 + SEED_A_BYTES + SEED_E_BYTES
        if len(data) != expected:
            raise ValueError(f"packed secret keys are {len(data)} bytes; these parameters need exactly {expected}")
        packed = np.frombuffer(data, dtype=np.uint8, count=degree // 4, offset=offset)
        codes = np.stack([(packed >> shift) & 3 for shift in (0, 2, 4, 6)], axis=1).reshape(-1)
        if np.any(codes == 3):
            raise ValueError("packed secret keys hold a coefficient code 3: the bytes are corrupt")
        secret = np.where(codes == 2, -1, codes.astype(np.int64))
        offset += degree // 4
        prng = data[offset]
        if prng not in PRNG_TYPES:
            raise ValueError(f"packed secret keys name an unknown PRNG type {prng}")
        seeds = _Seeds(prng, data[offset + 1:offset + 1 + SEED_A_BYTES], data[offset + 1 + SEED_A_BYTES:])
        return cls._derive(runtime(parameters), secret, seeds)

    # -- the public half -----------------------------------------------------------------

    @property
    def runtime(self) -> SealRuntime:
        return runtime(self.parameters)

    def public_bundle(self) -> bytes:
        """The bytes to upload: parameters and public key, nothing secret."""
        if not self._bundle:
            self._bundle = build_bundle(self.public_key_blob, self.parameters)
        return self._bundle

    @property
    def key_id(self) -> str:
        """The bundle's id, under which the service finds it: sha256 of its bytes."""
        return key_id_of(self.public_bundle())

    def encryptor(self) -> seal.Encryptor:
        return self._seal_tools()[0]

    def decryptor(self) -> seal.Decryptor:
        return self._seal_tools()[1]

    def _seal_tools(self) -> tuple[seal.Encryptor, seal.Decryptor]:
        if self._tools is None:
            context = self.runtime.context
            self._tools = (seal.Encryptor(context, self.secret_key), seal.Decryptor(context, self.secret_key))
        return self._tools

    # -- encryption and decryption -------------------------------------------------------

    def encrypt_coefficients(self, values: np.ndarray, scale: float) -> bytes:
        """Encrypt ``values`` as the coefficients of one plaintext: a seeded ciphertext, residues packed.

        Raises:
            ValueError: if a scaled value does not fit in the modulus.
        """
        return encrypt_coefficients(self.runtime, self.encryptor(), values, scale)

    def encrypt_record(self, encoding: RecordEncoding, x) -> tuple[bytes, ...]:
        """Encrypt one record as the model's encoding asks: one seeded ciphertext per chunk.

        Raises:
            ValueError: if the record does not fit the model (length, values, bounds).
        """
        return tuple(self.encrypt_coefficients(chunk, encoding.input_scale) for chunk in encoding.chunks(x))

    def encrypt_columns(self, encoding: LaneEncoding, X) -> tuple[bytes, ...]:
        """Encrypt a batch in coefficient lanes: one seeded ciphertext per sent feature.

        Raises:
            ValueError: if the batch does not fit the model (width, size, values, bounds).
        """
        return tuple(self.encrypt_coefficients(column, encoding.input_scale) for column in encoding.columns(X))

    def decrypt_coefficients(self, blob: bytes, scale: float) -> np.ndarray:
        """Decrypt a result ciphertext blob to its (real) coefficients.

        Raises:
            ValueError: if the blob is not a ciphertext for these keys' parameters and scale.
        """
        rt = self.runtime
        checked = canonical_ciphertext(rt, blob, scale=scale, seeded_ok=False, what="result")
        plain = seal.Plaintext()
        self.decryptor().decrypt(rt.load(seal.Ciphertext(), checked), plain)
        return rt.decode_coefficients(plain)

    def decrypt_scores(self, encoding: RecordEncoding, blobs: tuple[bytes, ...]) -> np.ndarray:
        """Decrypt one record's result ciphertexts to its scores, shape (outputs,)."""
        return encoding.scores([self.decrypt_coefficients(blob, encoding.output_scale) for blob in blobs])

    def decrypt_columns(self, encoding: LaneEncoding, blobs: tuple[bytes, ...], records: int) -> np.ndarray:
        """Decrypt a batch's results (one per output) to scores, shape (records, outputs)."""
        return encoding.scores([self.decrypt_coefficients(blob, encoding.output_scale) for blob in blobs], records)

    def answer_challenge(self, ciphertext: bytes) -> str:
        """The proof that these keys own their bundle, for ``DELETE /api/keys/{key_id}``.

        Raises:
            ValueError: if the challenge was not made for these keys.
        """
        return ownership.answer(self.runtime, self.decryptor(), ciphertext)


# -- key material ------------------------------------------------------------------------


def encrypt_coefficients(rt: SealRuntime, encryptor: seal.Encryptor, values: np.ndarray, scale: float) -> bytes:
    """``values`` as one plaintext's coefficients, encrypted with a secret-key ``encryptor``:
    the seeded ciphertext's wire form (residues packed)."""
    return rt.save_packed(encryptor.encrypt_symmetric(rt.encode_coefficients(values, scale)))


def _ternary(count: int) -> np.ndarray:
    """``count`` integers uniform in {-1, 0, 1} from the OS's generator (rejection of byte 255)."""
    values = np.empty(0, dtype=np.int64)
    while values.size < count:
        raw = np.frombuffer(os.urandom(2 * count), dtype=np.uint8)
        values = np.concatenate([values, raw[raw < 255].astype(np.int64) % 3 - 1])
    return values[:count]


def _noise(seed: bytes, count: int) -> np.ndarray:
    """Centred binomial noise (as SEAL's), reproducible from ``seed``: 2 x 21 bits per coefficient."""
    stream = hashlib.shake_256(b"he-scoring key noise v1" + seed).digest(count * 2 * NOISE_COINS // 8 + 8)
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8))[:count * 2 * NOISE_COINS]
    coins = bits.reshape(count, 2, NOISE_COINS).sum(axis=2, dtype=np.int64)
    return coins[:, 0] - coins[:, 1]


def _prng_info(rt: SealRuntime, seeds: _Seeds) -> bytes:
    body = bytes([seeds.prng]) + seeds.a
    return rt.wrap(body) + body


def _seeded_blob(rt: SealRuntime, first: np.ndarray, seeds: _Seeds) -> bytes:
    """A seeded two-part ciphertext blob: the first part, then where SEAL expands the second from."""
    array = rt.array_blob(first)  # header and length announce only the first part, as SEAL's seeded form
    body = (rt.parms_id_bytes + CIPHERTEXT_FIELDS.pack(1, 2, rt.degree, len(rt.moduli), 1.0, 1) + array
            + _prng_info(rt, seeds))
    return rt.wrap(body) + body


def _expand(rt: SealRuntime, seeds: _Seeds) -> np.ndarray:
    """SEAL's expansion of the seed: the public key's uniform part ``a`` (NTT form)."""
    expanded = rt.load(seal.Ciphertext(), _seeded_blob(rt, np.zeros(rt.degree, dtype=np.uint64), seeds))
    return rt.ciphertext_polys(rt.save_body(expanded), 2)[1, 0].copy()


def _served(degree: int, data: bytes, offset: int, count: int) -> CkksParameters:
    if not 1 <= count <= MAX_MODULI or len(data) < offset + 8 * count:
        raise ValueError("truncated or malformed parameters")
    parameters = CkksParameters(degree, struct.unpack_from(f"<{count}Q", data, offset))
    if parameters not in SERVED_PARAMETERS:
        raise ValueError(f"keys for {parameters.name}, which this library does not serve")
    return parameters


# -- the secret key file -----------------------------------------------------------------


def save_secret_key(keys: SecretKeys, path: str | Path) -> Path:
    """Write the key pair to a new file, mode 0400 (``HESECRET``, file version 2).

    Raises:
        FileExistsError: if ``path`` exists; a secret key file is never overwritten.
        ValueError: for keys that cannot be packed (read from a version 1 file).
    """
    path = Path(path)
    data = FILE_MAGIC + bytes([FILE_VERSION]) + keys.to_bytes()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o400)  # whatever the umask
    return path


def load_secret_key(path: str | Path) -> SecretKeys:
    """Read a file written by :func:`save_secret_key` (file version 2, or 1).

    Raises:
        ValueError: if the file is not a secret key file of a known version, or is
            truncated or corrupt; the message names the file and what is wrong.
        OSError: if it cannot be read.
    """
    data = Path(path).read_bytes()
    try:
        if not data.startswith(FILE_MAGIC) or len(data) < len(FILE_MAGIC) + 1:
            raise ValueError("not a secret key file")
        version = data[len(FILE_MAGIC)]
        if version == FILE_VERSION:
            return SecretKeys.from_bytes(data[len(FILE_MAGIC) + 1:])
        if version == 1:
            return _load_legacy(data)
        raise ValueError(f"secret key file version {version} is not supported")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _load_legacy(data: bytes) -> SecretKeys:
    offset = len(FILE_MAGIC)
    if len(data) < offset + LEGACY_HEAD.size:
        raise ValueError("truncated secret key file")
    _, degree, count = LEGACY_HEAD.unpack_from(data, offset)
    offset += LEGACY_HEAD.size
    parameters = _served(degree, data, offset, count)
    offset += 8 * count
    secret, offset = _chunk(data, offset)
    public, offset = _chunk(data, offset)
    if offset != len(data):
        raise ValueError(f"{len(data) - offset} bytes after the public bundle")
    rt = runtime(parameters)
    try:
        _, public_key_blob = parse_bundle(public, served=(parameters,))
        secret_key = rt.load(seal.SecretKey(), secret)
    except (BlobError, KeysRejected, RuntimeError, ValueError) as exc:
        raise ValueError("corrupt secret key file") from exc
    return SecretKeys(parameters, secret_key, public_key_blob, _bundle=public)


def _chunk(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + LENGTH.size > len(data):
        raise ValueError("truncated secret key file")
    (length,) = LENGTH.unpack_from(data, offset)
    offset += LENGTH.size
    if offset + length > len(data):
        raise ValueError("truncated secret key file")
    return data[offset:offset + length], offset + length
