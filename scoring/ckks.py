"""CKKS parameters, SEAL objects to and from bytes, and exact coefficient encoding.

Everything here goes through ``tenseal.sealapi`` (the SEAL binding inside the TenSEAL
wheel). SEAL objects only save and load through file paths, so each thread keeps one
in-memory file (``memfd``) for that; nothing touches the disk.

Bytes from strangers never reach a SEAL loader as they came: :func:`canonical_blob`
checks the 16-byte SEAL header, decompresses with an output cap equal to the exact size
the served parameters imply, and rebuilds an uncompressed blob; the callers in
``keys`` and ``protocol`` check every field before loading (see
``shared/design/hostile-input.md``).

Coefficient encoding: a real vector is placed as the *coefficients* of the plaintext
polynomial (not its slots), so that one polynomial product computes many inner products
and a constant weight scales many records at once (see ``shared/design/kernels.md``).
SEAL's CKKS encoder takes slots, so the coefficients go through the canonical embedding:
one FFT turns coefficients into the slot values whose encoding has exactly those
coefficients (``round(value * scale)``, bit for bit what an exact integer encoding gives),
and back. No SEAL save/zstd/load round trip is needed to encode or decode.

Packed ciphertexts: a residue modulo a 60-bit prime takes 60 bits, SEAL writes 64. A
client's ciphertext goes on the wire with its residues packed to the modulus's bit length
(:meth:`SealRuntime.save_packed`, 6% fewer bytes up; zstd cannot find those bits, the rest is
uniform): ``"HEPK"``, ``u8 bits``, then the uncompressed SEAL fields with the one data array's
words packed little-endian, low bits first. :func:`canonical_ciphertext` accepts it beside
SEAL's own blobs and rebuilds the SEAL blob before any check.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
import zlib

import numpy as np
import tenseal.sealapi as seal
import zstandard

from .parameters import DEFAULT_PARAMETERS, CkksParameters

SEAL_MAGIC = 0xA15E
HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, reserved, size
HEADER_SIZE = HEADER.size
COMPRESSION_NONE, COMPRESSION_ZLIB, COMPRESSION_ZSTD = 0, 1, 2
PARMS_ID_SIZE = 32
# Ciphertext fields after parms_id: is_ntt_form u8, size, degree, modulus count u64,
# scale f64, correction factor u64.
CIPHERTEXT_FIELDS = struct.Struct("<BQQQdQ")
PLAINTEXT_FIELDS = struct.Struct("<Qd")  # coeff_count u64, scale f64
ARRAY_LENGTH = struct.Struct("<Q")
CIPHERTEXT_DATA_OFFSET = PARMS_ID_SIZE + CIPHERTEXT_FIELDS.size + HEADER_SIZE + ARRAY_LENGTH.size
PLAINTEXT_DATA_OFFSET = PARMS_ID_SIZE + PLAINTEXT_FIELDS.size + HEADER_SIZE + ARRAY_LENGTH.size
PRNG_INFO_SIZE = HEADER_SIZE + 1 + 64  # SEAL header, prng type, 512-bit seed
PRNG_TYPES = (1, 2)  # blake2xb, shake256
PACKED_CIPHERTEXT_MAGIC = b"HEPK"  # a ciphertext with packed residues (SEAL blobs start with 5E A1)
PACKED_PREFIX = len(PACKED_CIPHERTEXT_MAGIC) + 1  # magic, bits
TRUSTED_LIMIT = 1 << 27


class BlobError(ValueError):
    """Bytes that are not an acceptable SEAL object; the message says what is wrong."""


class SealRuntime:
    """A SEAL context for one parameter set, with the helpers every module needs.

    Build it with :func:`runtime`, which caches one per parameter set. All methods are
    safe to call from several threads: each thread has its own in-memory file.
    """

    def __init__(self, parameters: CkksParameters) -> None:
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(parameters.poly_modulus_degree)
        parms.set_coeff_modulus([seal.Modulus(q) for q in parameters.coeff_modulus])
        self.context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not self.context.parameters_set():
            raise ValueError(
                f"SEAL refuses {parameters.name}: {self.context.parameters_error_message()}"
            )
        self.parameters = parameters
        self.degree = parameters.poly_modulus_degree
        self.moduli = np.array(parameters.coeff_modulus, dtype=np.uint64)
        self.poly_words = len(parameters.coeff_modulus) * self.degree  # residues in one polynomial
        self.word_bits = max(q.bit_length() for q in parameters.coeff_modulus)  # a packed residue's width
        self.parms_id = self.context.first_parms_id()
        self.parms_id_bytes = struct.pack("<4Q", *self.parms_id)
        self.evaluator = seal.Evaluator(self.context)
        self.encoder = seal.CKKSEncoder(self.context)
        roots = np.array([pow(3, j, 2 * self.degree) for j in range(self.degree // 2)], dtype=np.int64)
        self._slot_index = (roots - 1) // 2  # slot j evaluates at zeta^(3^j): entry (3^j - 1)/2
        self._conjugate_index = (2 * self.degree - roots - 1) // 2
        self._twist = np.exp(1j * np.pi * np.arange(self.degree) / self.degree)
        self._local = threading.local()
        self.seal_version = self._probe_seal_version()

    # -- raw SEAL object I/O -------------------------------------------------------------

    def _path(self) -> tuple[int, str]:
        fd = getattr(self._local, "fd", None)
        if fd is None:
            fd = os.memfd_create("seal-object", os.MFD_CLOEXEC)
            self._local.fd = fd
        return fd, f"/proc/self/fd/{fd}"

    def save(self, obj) -> bytes:
        """The object's SEAL blob, as SEAL writes it (usually zstd-compressed)."""
        fd, path = self._path()
        os.ftruncate(fd, 0)
        obj.save(path)
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)

    def save_body(self, obj) -> bytes:
        """The object's uncompressed fields, without the outer SEAL header."""
        return decompress_body(self.save(obj))

    def save_canonical(self, obj) -> bytes:
        """The object's blob, uncompressed: the form this project puts on the wire."""
        body = self.save_body(obj)
        return self.wrap(body) + body

    def save_packed(self, ciphertext: seal.Ciphertext) -> bytes:
        """A ciphertext's wire form with residues packed to :attr:`word_bits` (see the module doc)."""
        body = self.save_body(ciphertext)
        (count,) = ARRAY_LENGTH.unpack_from(body, CIPHERTEXT_DATA_OFFSET - ARRAY_LENGTH.size)
        words = np.frombuffer(body, dtype="<u8", count=count, offset=CIPHERTEXT_DATA_OFFSET)
        return b"".join((PACKED_CIPHERTEXT_MAGIC, bytes([self.word_bits]), body[:CIPHERTEXT_DATA_OFFSET],
                         pack_words(words, self.word_bits).tobytes(), body[CIPHERTEXT_DATA_OFFSET + 8 * count:]))

    def load(self, obj, blob: bytes):
        """Load a blob into ``obj`` (a fresh SEAL object) and return it.

        Only call this with blobs this process built or checked with the strict parsers. A
        packed ciphertext (:meth:`save_packed`) is unpacked first.
        """
        if is_packed(blob):
            body = _unpacked_body(self, blob, "ciphertext")
            blob = self.wrap(body) + body
        fd, path = self._path()
        os.ftruncate(fd, 0)
        os.pwrite(fd, blob, 0)
        obj.load(self.context, path)
        return obj

    def _probe_seal_version(self) -> tuple[int, int]:
        _, _, major, minor, *_ = HEADER.unpack_from(self.save(seal.Plaintext()))
        return major, minor

    # -- building blobs ------------------------------------------------------------------

    def wrap(self, body: bytes) -> bytes:
        """Prefix an uncompressed SEAL header to object fields."""
        major, minor = self.seal_version
        return HEADER.pack(SEAL_MAGIC, HEADER_SIZE, major, minor, COMPRESSION_NONE, 0,
                           HEADER_SIZE + len(body))

    def array_blob(self, words: np.ndarray) -> bytes:
        inner = ARRAY_LENGTH.pack(words.size) + words.astype("<u8", copy=False).tobytes()
        return self.wrap(inner) + inner

    def ciphertext_blob(self, polys: np.ndarray, *, ntt: bool, scale: float) -> bytes:
        """A ciphertext blob from polynomials shaped (size, moduli, N) of residues."""
        size = polys.shape[0]
        body = (self.parms_id_bytes
                + CIPHERTEXT_FIELDS.pack(int(ntt), size, self.degree, len(self.moduli), scale, 1)
                + self.array_blob(polys.reshape(-1)))
        return self.wrap(body) + body

    def plaintext_blob(self, residues: np.ndarray, *, scale: float) -> bytes:
        """An NTT-form plaintext blob from residues shaped (moduli, N)."""
        body = (self.parms_id_bytes
                + PLAINTEXT_FIELDS.pack(residues.size, scale)
                + self.array_blob(residues.reshape(-1)))
        return self.wrap(body) + body

    # -- coefficient encoding through the canonical embedding ---------------------------

    def encode_coefficients(self, values: np.ndarray, scale: float) -> seal.Plaintext:
        """A plaintext whose polynomial has coefficients ``round(values * scale)``.

        Slot j of a CKKS plaintext m is ``m(zeta^(3^j mod 2N)) / scale`` with
        ``zeta = exp(i*pi/N)`` (SEAL walks the roots by powers of 3); one inverse FFT of the
        twisted coefficients evaluates m at every odd power of zeta, and SEAL's encoder
        turns those slot values back into exactly these coefficients, rounded.

        Raises:
            ValueError: if a scaled value does not fit well inside the modulus.
        """
        coefficients = np.zeros(self.degree, dtype=np.float64)
        coefficients[: len(values)] = values
        limit = float(min(self.parameters.coeff_modulus)) / 4
        if not np.all(np.abs(coefficients) * scale < limit):
            raise ValueError("a scaled value does not fit in the coefficient modulus")
        evaluations = np.fft.ifft(coefficients * self._twist) * self.degree
        plain = seal.Plaintext()
        self.encoder.encode(evaluations[self._slot_index].tolist(), scale, plain)
        return plain

    def decode_coefficients(self, plain: seal.Plaintext) -> np.ndarray:
        """The real coefficients of an NTT-form plaintext, divided by its scale.

        SEAL's decoder gives the slot values; the conjugate slots fill the other half of the
        roots, and one FFT, untwisted, gives the coefficients (error about 1e-12 of the
        scale even where the polynomial is uniform modulo q).
        """
        slots = np.asarray(self.encoder.decode_complex(plain))
        evaluations = np.empty(self.degree, dtype=np.complex128)
        evaluations[self._slot_index] = slots
        evaluations[self._conjugate_index] = np.conj(slots)
        return (np.fft.fft(evaluations) / (self.degree * self._twist)).real

    def ntt(self, residues: np.ndarray, *, inverse: bool = False) -> np.ndarray:
        """Move polynomials (K, N) into or out of NTT form with SEAL's own transform.

        Slow (a save through SEAL): for key checks and tests, not for requests.
        """
        doubled = np.stack([residues, np.ones_like(residues)])  # SEAL refuses a ciphertext with c1 = 0
        ct = self.load(seal.Ciphertext(), self.ciphertext_blob(doubled, ntt=inverse, scale=1.0))
        if inverse:
            self.evaluator.transform_from_ntt_inplace(ct)
        else:
            self.evaluator.transform_to_ntt_inplace(ct)
        return self.ciphertext_polys(self.save_body(ct), 1)[0]

    def ciphertext_polys(self, body: bytes, size: int) -> np.ndarray:
        """The first ``size`` polynomials of an uncompressed ciphertext body, (size, K, N)."""
        count = size * self.poly_words
        words = np.frombuffer(body, dtype="<u8", count=count, offset=CIPHERTEXT_DATA_OFFSET)
        return words.reshape(size, len(self.moduli), self.degree)

    def residues(self, values: np.ndarray) -> np.ndarray:
        """Signed integers (int64, length N) as residues modulo each prime, shape (K, N)."""
        values = np.asarray(values, dtype=np.int64)
        out = np.empty((len(self.moduli), self.degree), dtype=np.uint64)
        for k, q in enumerate(self.moduli):
            out[k] = np.mod(values, np.int64(q)).astype(np.uint64)
        return out

    def centered(self, residues: np.ndarray) -> np.ndarray:
        """Residues modulo the (one) prime as signed integers in (-q/2, q/2], as float64."""
        q = self.moduli[0]
        r = np.asarray(residues, dtype=np.uint64)
        return np.where(r > q // np.uint64(2), -(q - r).astype(np.float64), r.astype(np.float64))

    def uniform_residues(self) -> np.ndarray:
        """Polynomials (K, N) uniform modulo each prime, from the OS's secure generator."""
        out = np.empty((len(self.moduli), self.degree), dtype=np.uint64)
        for k, q in enumerate(self.moduli):
            out[k] = _uniform_below(int(q), self.degree)
        return out


def _uniform_below(q: int, count: int) -> np.ndarray:
    """``count`` integers uniform in [0, q), by rejection sampling of os.urandom words."""
    mask = np.uint64((1 << q.bit_length()) - 1)
    words = np.frombuffer(os.urandom(8 * count), dtype="<u8") & mask
    rejected = np.flatnonzero(words >= np.uint64(q))
    while rejected.size:  # about 2**-46 of the words for the served prime
        words = words.copy()
        fresh = np.frombuffer(os.urandom(8 * rejected.size), dtype="<u8") & mask
        words[rejected] = fresh
        rejected = rejected[fresh >= np.uint64(q)]
    return words


@functools.lru_cache(maxsize=None)
def runtime(parameters: CkksParameters = DEFAULT_PARAMETERS) -> SealRuntime:
    """The process-wide :class:`SealRuntime` for a parameter set."""
    return SealRuntime(parameters)


# -- strict reading of SEAL blobs ----------------------------------------------------------


def read_header(blob: bytes) -> tuple[int, int]:
    """Check a SEAL blob's 16-byte header; return (compression mode, declared size).

    Raises:
        BlobError: if the header is not a valid SEAL header or the size disagrees.
    """
    if len(blob) < HEADER_SIZE:
        raise BlobError("shorter than a SEAL header")
    magic, header_size, major, _minor, compression, reserved, size = HEADER.unpack_from(blob)
    if magic != SEAL_MAGIC or header_size != HEADER_SIZE or major != 4 or reserved != 0:
        raise BlobError("not a SEAL 4 object (bad header)")
    if compression not in (COMPRESSION_NONE, COMPRESSION_ZLIB, COMPRESSION_ZSTD):
        raise BlobError(f"unknown SEAL compression mode {compression}")
    if size != len(blob):
        raise BlobError(f"SEAL header declares {size} bytes but {len(blob)} were given")
    return compression, size


def decompress_body(blob: bytes, *, limit: int | None = None) -> bytes:
    """The uncompressed fields of a SEAL blob, never larger than ``limit`` bytes.

    ``limit=None`` is only for objects this process saved itself; a stranger's blob is
    always read with the exact size its parameters imply.

    Raises:
        BlobError: on a bad header, corrupt compressed data, or output over ``limit``.
    """
    compression, _ = read_header(blob)
    payload = memoryview(blob)[HEADER_SIZE:]
    cap = TRUSTED_LIMIT if limit is None else limit
    if compression == COMPRESSION_NONE:
        body = bytes(payload)
    elif compression == COMPRESSION_ZSTD:
        body = _bounded_zstd(payload, cap)
    else:
        decompressor = zlib.decompressobj()
        try:
            body = decompressor.decompress(payload, cap + 1)
        except zlib.error as exc:
            raise BlobError("corrupt zlib data") from exc
        if decompressor.unconsumed_tail or not decompressor.eof:
            raise BlobError("zlib data is truncated or decompresses beyond the expected size")
    if len(body) > cap:
        raise BlobError(f"decompresses to more than the expected {cap} bytes")
    return body


def _bounded_zstd(payload: memoryview, cap: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(bytes(payload), read_across_frames=True)
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= cap:
            chunk = reader.read(cap + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except zstandard.ZstdError as exc:
        raise BlobError("corrupt zstd data") from exc
    finally:
        reader.close()
    return b"".join(chunks)


def _check_array_header(body: bytes, offset: int, words: int, what: str) -> None:
    inner = ARRAY_LENGTH.size + 8 * words
    magic, header_size, major, _minor, compression, reserved, size = HEADER.unpack_from(body, offset)
    if (magic, header_size, major, compression, reserved, size) != (
            SEAL_MAGIC, HEADER_SIZE, 4, COMPRESSION_NONE, 0, HEADER_SIZE + inner):
        raise BlobError(f"{what}: malformed coefficient array")
    (length,) = ARRAY_LENGTH.unpack_from(body, offset + HEADER_SIZE)
    if length != words:
        raise BlobError(f"{what}: holds {length} coefficients where {words} are expected")


def is_packed(blob: bytes) -> bool:
    """Whether ``blob`` is a packed ciphertext (:meth:`SealRuntime.save_packed`)."""
    return blob[:len(PACKED_CIPHERTEXT_MAGIC)] == PACKED_CIPHERTEXT_MAGIC


def canonical_ciphertext(rt: SealRuntime, blob: bytes, *, scale: float, seeded_ok: bool,
                         seeded_only: bool = False, packed_ok: bool = False, what: str = "ciphertext") -> bytes:
    """Check a stranger's two-part NTT-form ciphertext blob and return it uncompressed.

    Every field is compared with what the served parameters imply: parameter id, NTT
    form, two parts, ring degree, modulus count, scale and the exact coefficient count.
    A seeded ciphertext (its second part replaced by a PRNG seed) is accepted when
    ``seeded_ok``, and required when ``seeded_only``; a packed one (a client's request) only
    when ``packed_ok``, and unpacked before every check. SEAL's loader then checks each
    coefficient against the modulus.

    Raises:
        BlobError: with a message that names the first thing that is wrong.
    """
    poly_words = rt.poly_words
    full = CIPHERTEXT_DATA_OFFSET + 8 * 2 * poly_words
    seeded = CIPHERTEXT_DATA_OFFSET + 8 * poly_words + PRNG_INFO_SIZE
    if is_packed(blob):
        if not packed_ok:
            raise BlobError(f"{what}: must be a SEAL object, not a packed ciphertext")
        body = _unpacked_body(rt, blob, what)
    else:
        body = decompress_body(blob, limit=full)
    if seeded_only and len(body) == full:
        raise BlobError(f"{what}: must be in seeded form (its random part is expanded here from the seed, "
                        "so that it cannot be chosen); SecretKeys.generate() makes it so")
    if len(body) not in ((full, seeded) if seeded_ok else (full,)):
        raise BlobError(f"{what}: {len(body)} bytes of fields do not match the served parameters")
    if body[:PARMS_ID_SIZE] != rt.parms_id_bytes:
        raise BlobError(f"{what}: made for other encryption parameters")
    ntt, size, degree, moduli, ct_scale, correction = CIPHERTEXT_FIELDS.unpack_from(body, PARMS_ID_SIZE)
    if (ntt, size, degree, moduli, correction) != (1, 2, rt.degree, len(rt.moduli), 1):
        raise BlobError(f"{what}: expected 2 NTT-form parts of degree {rt.degree} "
                        f"over {len(rt.moduli)} prime(s)")
    if ct_scale != scale:
        raise BlobError(f"{what}: scale {ct_scale!r} is not the expected {scale!r}")
    is_seeded = len(body) == seeded
    _check_array_header(body, PARMS_ID_SIZE + CIPHERTEXT_FIELDS.size,
                        poly_words if is_seeded else 2 * poly_words, what)
    if is_seeded:
        offset = CIPHERTEXT_DATA_OFFSET + 8 * poly_words
        magic, header_size, major, _minor, compression, reserved, size = HEADER.unpack_from(body, offset)
        if ((magic, header_size, major, compression, reserved, size)
                != (SEAL_MAGIC, HEADER_SIZE, 4, COMPRESSION_NONE, 0, PRNG_INFO_SIZE)
                or body[offset + HEADER_SIZE] not in PRNG_TYPES):
            raise BlobError(f"{what}: malformed seed")
    return rt.wrap(body) + body


def _unpacked_body(rt: SealRuntime, blob: bytes, what: str) -> bytes:
    """The SEAL fields of a packed ciphertext, its words unpacked; nothing is allocated by what
    the blob claims: the word count must be one or two polynomials' worth, and what follows
    the words a seed or nothing."""
    bits, start = rt.word_bits, PACKED_PREFIX + CIPHERTEXT_DATA_OFFSET
    if len(blob) < start:
        raise BlobError(f"{what}: the packed ciphertext is truncated ({len(blob)} bytes)")
    if blob[len(PACKED_CIPHERTEXT_MAGIC)] != bits:
        raise BlobError(f"{what}: a packed ciphertext for these parameters has {bits}-bit residues, "
                        f"not {blob[len(PACKED_CIPHERTEXT_MAGIC)]}")
    (count,) = ARRAY_LENGTH.unpack_from(blob, start - ARRAY_LENGTH.size)
    if count not in (rt.poly_words, 2 * rt.poly_words):
        raise BlobError(f"{what}: {count} coefficients do not match the served parameters")
    end = start + count * bits // 8
    if len(blob) - end not in (0, PRNG_INFO_SIZE):
        raise BlobError(f"{what}: {len(blob)} bytes do not match a packed ciphertext of {count} coefficients")
    words = unpack_words(np.frombuffer(blob, dtype="<u8", count=(end - start) // 8, offset=start), bits, count)
    return bytes(blob[PACKED_PREFIX:start]) + words.astype("<u8", copy=False).tobytes() + bytes(blob[end:])


def _packing_period(bits: int) -> int:
    """Words per group that fills whole 64-bit words: 64 / gcd(bits, 64)."""
    return 64 // np.gcd(bits, 64)


def pack_words(words: np.ndarray, bits: int) -> np.ndarray:
    """``words`` (each below 2**bits) as a little-endian bit string, in 64-bit words.

    ``len(words)`` must be a multiple of 64 / gcd(bits, 64) (a ring degree always is).

    Raises:
        ValueError: if a word does not fit in ``bits``.
    """
    period = _packing_period(bits)
    if not 1 <= bits <= 64 or len(words) % period:
        raise ValueError(f"cannot pack {len(words)} words of {bits} bits")
    if bits < 64 and int(words.max(initial=0)) >> bits:
        raise ValueError(f"a word does not fit in {bits} bits")
    if 32 < bits < 64 and bits % 8 == 4:  # pairs fill whole bytes: a 64-bit low word and a short high one
        pairs = words.astype(np.uint64, copy=False).reshape(-1, 2)
        both = np.empty((len(pairs), 2), dtype="<u8")
        both[:, 0] = pairs[:, 0] | (pairs[:, 1] << np.uint64(bits))
        both[:, 1] = pairs[:, 1] >> np.uint64(64 - bits)
        return np.ascontiguousarray(both.view(np.uint8)[:, :bits // 4]).reshape(-1).view("<u8")
    grouped = words.astype(np.uint64, copy=False).reshape(-1, period)
    out = np.zeros((len(grouped), period * bits // 64), dtype=np.uint64)
    for j in range(period):
        word, shift = divmod(j * bits, 64)
        out[:, word] |= grouped[:, j] << np.uint64(shift)
        if shift + bits > 64:
            out[:, word + 1] |= grouped[:, j] >> np.uint64(64 - shift)
    return out.reshape(-1)


def unpack_words(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The ``count`` words :func:`pack_words` packed into ``packed``."""
    mask = np.uint64((1 << bits) - 1)
    if 32 < bits < 64 and bits % 8 == 4:  # the pairs of pack_words
        both = np.zeros((count // 2, 16), dtype=np.uint8)
        both[:, :bits // 4] = packed.view(np.uint8).reshape(count // 2, bits // 4)
        words = both.view("<u8")
        out = np.empty((count // 2, 2), dtype=np.uint64)
        out[:, 0] = words[:, 0] & mask
        out[:, 1] = (words[:, 0] >> np.uint64(bits)) | (words[:, 1] << np.uint64(64 - bits))
        return out.reshape(-1)
    period = _packing_period(bits)
    grouped = packed.astype(np.uint64, copy=False).reshape(count // period, period * bits // 64)
    out = np.empty((len(grouped), period), dtype=np.uint64)
    for j in range(period):
        word, shift = divmod(j * bits, 64)
        value = grouped[:, word] >> np.uint64(shift)
        if shift + bits > 64:
            value |= grouped[:, word + 1] << np.uint64(64 - shift)
        out[:, j] = value & mask
    return out.reshape(-1)


def ciphertext_blob_size(rt: SealRuntime, *, seeded: bool) -> int:
    """The exact size of an uncompressed two-part ciphertext blob (seeded: half plus seed)."""
    poly_words = rt.poly_words
    if seeded:
        return HEADER_SIZE + CIPHERTEXT_DATA_OFFSET + 8 * poly_words + PRNG_INFO_SIZE
    return HEADER_SIZE + CIPHERTEXT_DATA_OFFSET + 16 * poly_words


def is_secret_key_blob(rt: SealRuntime, blob: bytes) -> bool:
    """Whether a blob has the exact shape of a SEAL secret key for these parameters."""
    try:
        body = decompress_body(blob, limit=PLAINTEXT_DATA_OFFSET + 8 * rt.poly_words)
    except BlobError:
        return False
    return (len(body) == PLAINTEXT_DATA_OFFSET + 8 * rt.poly_words
            and PLAINTEXT_FIELDS.unpack_from(body, PARMS_ID_SIZE)[0] == rt.poly_words)
