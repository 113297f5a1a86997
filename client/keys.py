"""The client's keys: generate, export the public bundle, save and load the secret key.

The secret key never leaves the client. :meth:`SecretKeys.public_bundle` holds only the
parameters and the public key; the secret key is written to disk only by the explicitly
named :func:`save_secret_key`, owner-read-only.

Example:
    >>> keys = SecretKeys.generate()
    >>> len(keys.key_id)
    64
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tenseal.sealapi as seal

from scoring.ckks import (
    DEFAULT_PARAMETERS,
    BlobError,
    CkksParameters,
    SealRuntime,
    canonical_ciphertext,
    runtime,
)
from scoring.bulk import BulkEncoding
from scoring.kernel import RecordEncoding
from scoring.errors import KeysRejected
from scoring.keys import build_bundle, key_id_of, parse_bundle

SECRET_FILE_MAGIC = b"HESECRET"
SECRET_FILE_VERSION = 1


@dataclass
class SecretKeys:
    """A CKKS key pair for one parameter set; the secret half stays in this process.

    Build with :meth:`generate` or :func:`load_secret_key`.
    """

    parameters: CkksParameters
    secret_key: seal.SecretKey = field(repr=False)
    public_key_blob: bytes = field(repr=False)
    _bundle: bytes = field(default=b"", repr=False)

    @classmethod
    def generate(cls, parameters: CkksParameters = DEFAULT_PARAMETERS) -> SecretKeys:
        """Generate a fresh key pair.

        The public key is SEAL's, in its seeded form: a symmetric encryption of zero whose
        random part is given by a seed (this is how SEAL's KeyGenerator makes public keys).
        The service expands the seed itself, so the client cannot choose that part, which
        re-randomization relies on; and the bundle is half the size.
        """
        rt = runtime(parameters)
        generator = seal.KeyGenerator(rt.context)
        secret_key = generator.secret_key()
        zero = seal.Encryptor(rt.context, secret_key).encrypt_zero_symmetric(rt.context.key_parms_id())
        return cls(parameters, secret_key, rt.save_canonical(zero))

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
        return seal.Encryptor(self.runtime.context, self.secret_key)

    def decryptor(self) -> seal.Decryptor:
        return seal.Decryptor(self.runtime.context, self.secret_key)

    def encrypt_coefficients(self, values: np.ndarray, scale: float) -> bytes:
        """Encrypt ``values`` as the coefficients of one plaintext: a seeded ciphertext blob.

        Raises:
            ValueError: if a scaled value does not fit in the modulus.
        """
        rt = self.runtime
        plain = rt.encode_coefficients(values, scale)
        return rt.save_canonical(self.encryptor().encrypt_symmetric(plain))

    def encrypt_record(self, encoding: RecordEncoding, x) -> tuple[bytes, ...]:
        """Encrypt one record as the model's encoding asks: one seeded ciphertext per chunk.

        Raises:
            ValueError: if the record does not fit the model (length, values, bounds).
        """
        return tuple(self.encrypt_coefficients(chunk, encoding.input_scale) for chunk in encoding.chunks(x))

    def decrypt_scores(self, encoding: RecordEncoding, blobs: tuple[bytes, ...]) -> np.ndarray:
        """Decrypt one record's result ciphertexts to its scores, shape (outputs,)."""
        return encoding.scores([self.decrypt_coefficients(blob, encoding.output_scale) for blob in blobs])

    def encrypt_columns(self, encoding: BulkEncoding, X) -> tuple[bytes, ...]:
        """Encrypt a batch feature-major: one seeded ciphertext per used feature, a slot per record.

        Raises:
            ValueError: if the batch does not fit the model (width, size, values, bounds).
        """
        encryptor = self.encryptor()
        rt = self.runtime
        return tuple(rt.save_canonical(encryptor.encrypt_symmetric(rt.encode_slots(column, encoding.input_scale)))
                     for column in encoding.columns(X))

    def decrypt_columns(self, encoding: BulkEncoding, blobs: tuple[bytes, ...], records: int) -> np.ndarray:
        """Decrypt a batch's results (one per output) to scores, shape (records, outputs)."""
        rt = self.runtime
        decryptor = self.decryptor()
        columns = []
        for blob in blobs:
            checked = canonical_ciphertext(rt, blob, scale=encoding.output_scale, seeded_ok=False, what="result")
            plain = seal.Plaintext()
            decryptor.decrypt(rt.load(seal.Ciphertext(), checked), plain)
            columns.append(rt.decode_slots(plain)[:records])
        return np.column_stack(columns)

    def decrypt_coefficients(self, blob: bytes, scale: float) -> np.ndarray:
        """Decrypt a result ciphertext blob to its (real) coefficients.

        Raises:
            ValueError: if the blob is not a ciphertext for these keys' parameters and scale.
        """
        rt = self.runtime
        checked = canonical_ciphertext(rt, blob, scale=scale, seeded_ok=False, what="result")
        ciphertext = rt.load(seal.Ciphertext(), checked)
        plain = seal.Plaintext()
        self.decryptor().decrypt(ciphertext, plain)
        return rt.decode_coefficients(plain)


def save_secret_key(keys: SecretKeys, path: str | Path) -> Path:
    """Write the secret key (with its public key and parameters) to a new file, mode 0400.

    Raises:
        FileExistsError: if ``path`` exists; a secret key file is never overwritten.
    """
    path = Path(path)
    rt = keys.runtime
    secret = rt.save(keys.secret_key)
    public = keys.public_bundle()
    moduli = keys.parameters.coeff_modulus
    data = (SECRET_FILE_MAGIC + struct.pack("<BIB", SECRET_FILE_VERSION, keys.parameters.poly_modulus_degree,
                                            len(moduli))
            + struct.pack(f"<{len(moduli)}Q", *moduli)
            + struct.pack("<I", len(secret)) + secret + struct.pack("<I", len(public)) + public)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o400)  # whatever the umask
    return path


def load_secret_key(path: str | Path) -> SecretKeys:
    """Read a file written by :func:`save_secret_key`.

    Raises:
        ValueError: if the file is not a secret key file of a known version.
    """
    data = Path(path).read_bytes()
    header = struct.Struct("<BIB")
    if not data.startswith(SECRET_FILE_MAGIC):
        raise ValueError(f"{path} is not a secret key file")
    offset = len(SECRET_FILE_MAGIC)
    version, degree, count = header.unpack_from(data, offset)
    if version != SECRET_FILE_VERSION:
        raise ValueError(f"{path}: secret key file version {version} is not supported")
    offset += header.size
    parameters = CkksParameters(degree, struct.unpack_from(f"<{count}Q", data, offset))
    offset += 8 * count
    secret, offset = _chunk(data, offset)
    public, offset = _chunk(data, offset)
    rt = runtime(parameters)
    try:
        _, public_key_blob = parse_bundle(public, served=(parameters,))
        secret_key = rt.load(seal.SecretKey(), secret)
    except (BlobError, KeysRejected, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt secret key file") from exc
    return SecretKeys(parameters, secret_key, public_key_blob, public)


def _chunk(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<I", data, offset)
    offset += 4
    if offset + length > len(data):
        raise ValueError("truncated secret key file")
    return data[offset:offset + length], offset + length
