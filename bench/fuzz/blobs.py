"""Bytes the cases are made of: the SEAL blob layout, SEAL blobs and bombs, wire frames, bundles.

Everything here is a pure function of its arguments (no service, no key): offsets of the
fields of a ciphertext blob as ``scoring.ckks`` lays them out, blobs re-encoded or inflated
to gigabytes, binary request frames with any field wrong, key bundles with any sections,
and the byte-level mutations (bit flips, packing a field value).
"""

from __future__ import annotations

import functools
import random
import struct
import zlib

import zstandard

from scoring.ckks import (
    ARRAY_LENGTH,
    CIPHERTEXT_DATA_OFFSET,
    CIPHERTEXT_FIELDS,
    COMPRESSION_NONE,
    COMPRESSION_ZLIB,
    COMPRESSION_ZSTD,
    HEADER,
    HEADER_SIZE,
    PARMS_ID_SIZE,
    PRNG_INFO_SIZE,
    SEAL_MAGIC,
)
from scoring.keys import SECTION
from scoring.protocol import FRAME, HAS_MODEL_HASH, HAS_RECORDS, LENGTH, PROTOCOL_VERSION, RECORDS, REQUEST_MAGIC

# -- the SEAL blob layout (offsets from the start of a blob) -----------------------------------

HEADER_FIELDS = (("magic", 0, "<H"), ("header_size", 2, "<B"), ("major", 3, "<B"), ("minor", 4, "<B"),
                 ("compression", 5, "<B"), ("reserved", 6, "<H"), ("size", 8, "<Q"))
CIPHERTEXT_FIELD_OFFSETS = (("is_ntt", 0, "<B"), ("parts", 1, "<Q"), ("degree", 9, "<Q"), ("moduli", 17, "<Q"),
                            ("scale", 25, "<d"), ("correction", 33, "<Q"))


def ciphertext_fields(poly_words: int, *, seeded: bool) -> tuple[dict[str, tuple[int, str]], int]:
    """Field name -> (offset, struct format) in an uncompressed ciphertext blob; and the data offset.

    A seeded blob (a request ciphertext, a public key) holds one part, then the PRNG info:
    its own SEAL header, the PRNG type and a 64-byte seed.
    """
    fields = {f"outer.{name}": (offset, fmt) for name, offset, fmt in HEADER_FIELDS}
    fields["parms_id"] = (HEADER_SIZE, f"{PARMS_ID_SIZE}s")
    base = HEADER_SIZE + PARMS_ID_SIZE
    fields.update({name: (base + offset, fmt) for name, offset, fmt in CIPHERTEXT_FIELD_OFFSETS})
    array = base + CIPHERTEXT_FIELDS.size
    fields.update({f"array.{name}": (array + offset, fmt) for name, offset, fmt in HEADER_FIELDS})
    fields["coeff_count"] = (array + HEADER_SIZE, "<Q")
    data = HEADER_SIZE + CIPHERTEXT_DATA_OFFSET
    if seeded:
        seed = data + 8 * poly_words
        fields.update({f"seed.{name}": (seed + offset, fmt) for name, offset, fmt in HEADER_FIELDS})
        fields["prng_type"] = (seed + HEADER_SIZE, "<B")
        fields["seed"] = (seed + HEADER_SIZE + 1, f"{PRNG_INFO_SIZE - HEADER_SIZE - 1}s")
    return fields, data


def field_boundaries(poly_words: int, *, seeded: bool, length: int) -> list[int]:
    """Every offset where a field starts or ends, plus a few inside the data."""
    fields, data = ciphertext_fields(poly_words, seeded=seeded)
    offsets = {0, 1, length - 1, data + 8, data + 4 * poly_words, data + 8 * poly_words - 1}
    for offset, fmt in fields.values():
        offsets |= {offset, offset + 1, offset + struct.calcsize(fmt)}
    return sorted(o for o in offsets if 0 <= o < length)


def body_size(poly_words: int, *, seeded: bool) -> int:
    """The uncompressed fields of a two-part ciphertext (without the outer header)."""
    if seeded:
        return CIPHERTEXT_DATA_OFFSET + 8 * poly_words + PRNG_INFO_SIZE
    return CIPHERTEXT_DATA_OFFSET + 16 * poly_words


def body_of(blob: bytes) -> bytes:
    """A blob's fields without its outer SEAL header."""
    return blob[HEADER_SIZE:]


# -- SEAL blobs ------------------------------------------------------------------------------


def seal_header(version: tuple[int, int], compression: int, total: int) -> bytes:
    return HEADER.pack(SEAL_MAGIC, HEADER_SIZE, version[0], version[1], compression, 0, total)


def reencode(version: tuple[int, int], body: bytes, mode: str) -> bytes:
    """A SEAL blob of ``body`` (fields without the outer header) in ``mode``: none, zstd, zlib."""
    if mode == "zstd":
        payload, code = zstandard.ZstdCompressor(level=3).compress(body), COMPRESSION_ZSTD
    elif mode == "zlib":
        payload, code = zlib.compress(body, 6), COMPRESSION_ZLIB
    else:
        payload, code = body, COMPRESSION_NONE
    return seal_header(version, code, HEADER_SIZE + len(payload)) + payload


@functools.lru_cache(maxsize=64)
def bomb(version: tuple[int, int], prefix: bytes, total: int, mode: str, *, window_log: int | None = None,
         frames: int = 1) -> bytes:
    """A SEAL blob whose compressed body is ``prefix`` then zeros, ``total`` bytes once inflated.

    Built by streaming (never holds ``total`` bytes): 1 GB of zeros is about 32 KB with zstd;
    zlib's best ratio is about 1:1030. Built once per process (about a second for all of them).
    """
    chunk = bytes(1 << 20)
    payload = bytearray()
    for _ in range(frames):
        if mode == "zstd":
            params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log or 21)
            stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
        else:
            stream = zlib.compressobj(9)
        payload += stream.compress(prefix)
        remaining = total - len(prefix)
        while remaining > 0:
            n = min(remaining, len(chunk))
            payload += stream.compress(chunk if n == len(chunk) else chunk[:n])
            remaining -= n
        payload += stream.flush()
    code = COMPRESSION_ZSTD if mode == "zstd" else COMPRESSION_ZLIB
    return seal_header(version, code, HEADER_SIZE + len(payload)) + bytes(payload)


def claiming_fields(version: tuple[int, int], parms_id: bytes, degree: int, moduli: int, *, parts: int,
                    scale: float) -> bytes:
    """Ciphertext fields (no outer header) that claim ``parts`` polynomials, up to the data."""
    words = parts * moduli * degree
    array = seal_header(version, COMPRESSION_NONE, HEADER_SIZE + ARRAY_LENGTH.size + 8 * words)
    return parms_id + CIPHERTEXT_FIELDS.pack(1, parts, degree, moduli, scale, 1) + array + ARRAY_LENGTH.pack(words)


def with_zero_parts(blob: bytes, poly_words: int, *, first: bool = False, second: bool = False) -> bytes:
    """An uncompressed full (two-part) ciphertext blob with its first and/or second part zero.

    A zero second part makes the ciphertext 'transparent' (it encrypts nothing, and SEAL
    refuses to multiply it); a zero first part is a valid ciphertext of garbage.
    """
    out = bytearray(blob)
    data, n = HEADER_SIZE + CIPHERTEXT_DATA_OFFSET, 8 * poly_words
    if first:
        out[data:data + n] = bytes(n)
    if second:
        out[data + n:data + 2 * n] = bytes(n)
    return bytes(out)


# -- wire frames and bundles -----------------------------------------------------------------


def request_frame(chunks, *, model_hash: bytes = b"", records: int | None = None, magic: bytes = REQUEST_MAGIC,
                  version: int = PROTOCOL_VERSION, flags: int | None = None, count: int | None = None,
                  lengths=None, tail: bytes = b"") -> bytes:
    """A binary request, every field of which may lie.

    By default it is what ``scoring.protocol.encode_request`` writes: the flags say what
    follows, the count and lengths are the real ones. ``records`` may be any integer below
    2**32 (the frame holds a u32).
    """
    chunks = list(chunks)
    if flags is None:
        flags = (HAS_MODEL_HASH if model_hash else 0) | (HAS_RECORDS if records is not None else 0)
    count = len(chunks) if count is None else count
    lengths = [len(c) for c in chunks] if lengths is None else lengths
    out = FRAME.pack(magic, version, flags, count) + model_hash
    if records is not None:
        out += RECORDS.pack(records)
    for length, chunk in zip(lengths, chunks):
        out += LENGTH.pack(length) + chunk
    return out + tail


def key_bundle(head: bytes, sections) -> bytes:
    """A key bundle: ``head`` (preamble and primes), then (tag, payload) sections."""
    return head + b"".join(SECTION.pack(tag, len(payload)) + payload for tag, payload in sections)


# -- byte-level mutations ------------------------------------------------------------------


def flip(data: bytes, rng: random.Random, bits: int, lo: int = 0, hi: int | None = None) -> tuple[bytes, list[int]]:
    """``data`` with ``bits`` random bits flipped between byte ``lo`` and ``hi``; and which bits."""
    out = bytearray(data)
    hi = len(out) if hi is None else min(hi, len(out))
    positions = sorted(rng.randrange(lo * 8, hi * 8) for _ in range(bits)) if hi > lo else []
    for bit in positions:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out), positions


def pack(fmt: str, value) -> bytes:
    """A field value in its struct format; a short bytes value is repeated to the field's size."""
    if fmt.endswith("s"):
        size = struct.calcsize(fmt)
        return (value * size)[:size] if isinstance(value, bytes) and len(value) < size else value
    return struct.pack(fmt, value)
