"""Hostile inputs for the scoring service, built from valid ones, and a runner that measures them.

``python -m bench.fuzz [--cases N] [--seed S] [--json PATH]`` runs N mutated requests and key
bundles against the core (``ScoringService.score`` / ``check_upload``, which run
``protocol.decode``, ``keys.parse_bundle`` and the strict SEAL parsing) in a child process,
and prints the cases per category, the status histogram, the failures (crashes, 5xx, other
exceptions, unexpected statuses: 0 expected), the slowest rejection and the peak memory.

How the inputs are made: :func:`build_material` makes the valid inputs (a real client key,
its bundle, a real request for one record, the same record encrypted with the public key,
a real response, the secret key, a ciphertext for other parameters); :class:`Fuzzer` turns
them into :class:`Case` objects by category (random bytes, truncations at every field
boundary, bit flips, field swaps in the SEAL layout of ``scoring.ckks``, zstd and zlib
decompression bombs that claim huge sizes, smuggled secret keys, JSON and binary-frame
mutations...). Every mutation decision comes from ``random.Random(f"{seed}/{category}/{k}")``,
so case ``k`` of a category is the same mutation on every run (the key itself is fresh).

How it measures: the child resets its peak RSS (``/proc/self/clear_refs``) before each case
and reads ``VmHWM`` after it, so each case's memory cost is known; it runs under
``RLIMIT_AS`` (baseline + ``--mem-limit-mb``) and a per-case deadline (``faulthandler``
exits the child with a traceback), and the parent kills it on an overall timeout, so a
crash, a hang or a balloon is reported with the case that caused it.
"""

from __future__ import annotations

import argparse
import base64
import faulthandler
import json
import math
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "fuzz.json"

# -- the valid inputs ----------------------------------------------------------------------


@dataclass
class Material:
    """Valid inputs made with a real key; every case is a mutation of these.

    Attributes:
        ciphertexts: the request's chunks as the client sends them (seeded, uncompressed).
        full_ciphertexts: the same record encrypted with the public key (two full parts).
        expected: the plaintext model's scores for the record (reference for successes).
    """

    key_id: str
    bundle: bytes
    ciphertexts: tuple[bytes, ...]
    full_ciphertexts: tuple[bytes, ...]
    result_ciphertext: bytes
    secret_key: bytes            # as SEAL saves it (zstd-compressed)
    secret_key_raw: bytes        # uncompressed
    foreign_ciphertext: bytes    # made under other parameters (N=4096)
    tenseal_context: bytes       # a TenSEAL context serialized with its secret key (or b"")
    model_hash: str
    other_model_hash: str
    input_scale: float
    max_request_bytes: int
    max_bundle_bytes: int
    degree: int
    moduli: tuple[int, ...]
    parms_id: bytes
    other_parms_id: bytes
    seal_version: tuple[int, int]
    record: tuple[float, ...]
    expected: tuple[float, ...]
    max_body_bytes: int = 0        # the largest body read at all (the batch cap if there is a batch path)
    bulk_ciphertexts: tuple[bytes, ...] = ()   # a valid batch, one column per used feature (empty: no batch path)
    bulk_records: int = 0
    bulk_max_records: int = 0
    bulk_input_scale: float = 0.0
    bulk_expected: tuple[tuple[float, ...], ...] = ()
    bulk_full_column: bytes = b""   # the first column loaded and saved again: two full parts

    @property
    def modulus(self) -> int:
        return self.moduli[0]

    @property
    def poly_words(self) -> int:
        return len(self.moduli) * self.degree

    def request(self, ciphertexts=None, *, binary: bool = True, model_hash: str | None | bool = True,
                records: int | None = None) -> tuple[bytes, str]:
        """A request body (and content type) carrying ``ciphertexts`` (default: the valid ones).

        ``records`` makes it a batch (``records`` slots per column).
        """
        from scoring import protocol

        digest = self.model_hash if model_hash is True else model_hash
        chunks = self.ciphertexts if ciphertexts is None else tuple(ciphertexts)
        message = (protocol.ScoreMessage(chunks, digest) if records is None
                   else protocol.ScoreMessage(chunks, digest, records))
        return protocol.encode(message, binary=binary, response=False)

    def public_key_blob(self) -> bytes:
        """The bundle's uncompressed public key blob."""
        from scoring.keys import PREAMBLE, SECTION

        return self.bundle[PREAMBLE.size + 8 * len(self.moduli) + SECTION.size:]


def build_material(service, keys, record) -> Material:
    """Make the valid inputs with ``keys`` (a ``client.keys.SecretKeys``) for ``service``."""
    import numpy as np
    import tenseal.sealapi as seal

    from client.keys import SecretKeys
    from client.scoring_client import ModelInfo
    from scoring import protocol
    from scoring.ckks import CkksParameters
    from scoring.keys import MAX_BUNDLE_BYTES, load_bundle

    info = ModelInfo(service.describe())
    encoding = info.encoding
    kernel = service.kernel
    rt = kernel.rt
    record = np.asarray(record, dtype=np.float64)
    ciphertexts = tuple(keys.encrypt_record(encoding, record))
    encryptor = load_bundle(keys.public_bundle()).encryptor
    full = []
    for chunk in encoding.chunks(record):
        ct = seal.Ciphertext()
        encryptor.encrypt(rt.encode_coefficients(chunk, encoding.input_scale), ct)
        full.append(rt.save_canonical(ct))
    body, content_type = protocol.encode(protocol.ScoreMessage(ciphertexts, info.model_hash), binary=True,
                                         response=False)
    out, out_type = service.score(keys.key_id, keys.public_bundle(), body, content_type)
    result = protocol.decode(out, out_type, response=True).ciphertexts[0]
    small = CkksParameters(4096, (seal.CoeffModulus.Create(4096, [60])[0].value(),))
    foreign = SecretKeys.generate(small).encrypt_coefficients(np.zeros(16), encoding.input_scale)
    try:
        import tenseal as ts

        context = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60], n_threads=1)
        tenseal_context = context.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    except Exception:  # noqa: BLE001 - an optional extra input
        tenseal_context = b""
    expected = service.model.decision_function(record[None, :])[0]
    limits = service.describe().get("limits", {})
    bulk = _bulk_material(service, keys, record)
    return Material(
        **bulk, max_body_bytes=max(service.max_request_bytes(), limits.get("max_bulk_request_bytes") or 0),
        key_id=keys.key_id, bundle=keys.public_bundle(), ciphertexts=ciphertexts, full_ciphertexts=tuple(full),
        result_ciphertext=result, secret_key=rt.save(keys.secret_key),
        secret_key_raw=rt.save_canonical(keys.secret_key), foreign_ciphertext=foreign,
        tenseal_context=tenseal_context, model_hash=info.model_hash,
        other_model_hash=format(int(info.model_hash, 16) ^ 1, "064x"), input_scale=encoding.input_scale,
        max_request_bytes=service.max_request_bytes(), max_bundle_bytes=MAX_BUNDLE_BYTES, degree=rt.degree,
        moduli=tuple(int(q) for q in rt.moduli), parms_id=rt.parms_id_bytes, other_parms_id=foreign[16:48],
        seal_version=rt.seal_version, record=tuple(record.tolist()), expected=tuple(expected.tolist()))


def _bulk_material(service, keys, record, records: int = 3) -> dict:
    """A valid batch of ``records`` records if the service offers a batch path, else nothing."""
    import numpy as np

    try:
        from scoring.bulk import BulkEncoding
    except ImportError:
        return {}
    description = service.describe()
    encoding = BulkEncoding.from_description(description)
    if encoding is None:
        return {}
    import tenseal.sealapi as seal

    from scoring.ckks import canonical_ciphertext

    X = np.stack([record * f for f in np.linspace(1.0, -1.0, records)])
    columns = tuple(keys.encrypt_columns(encoding, X))
    rt = service.kernel.rt
    full = rt.save_canonical(rt.load(seal.Ciphertext(), canonical_ciphertext(
        rt, columns[0], scale=encoding.input_scale, seeded_ok=True)))
    return dict(bulk_ciphertexts=columns, bulk_records=records, bulk_full_column=full,
                bulk_max_records=encoding.max_records, bulk_input_scale=encoding.input_scale,
                bulk_expected=tuple(tuple(row) for row in service.model.decision_function(X).tolist()))


# -- SEAL blob layout (offsets from the start of a blob; see scoring.ckks) ------------------


def _layout():
    from scoring.ckks import ARRAY_LENGTH, CIPHERTEXT_FIELDS, HEADER_SIZE, PARMS_ID_SIZE

    header = [("magic", 0, "<H"), ("header_size", 2, "<B"), ("major", 3, "<B"), ("minor", 4, "<B"),
              ("compression", 5, "<B"), ("reserved", 6, "<H"), ("size", 8, "<Q")]
    fields = {f"outer.{name}": (offset, fmt) for name, offset, fmt in header}
    fields["parms_id"] = (HEADER_SIZE, f"{PARMS_ID_SIZE}s")
    base = HEADER_SIZE + PARMS_ID_SIZE
    for name, offset, fmt in (("is_ntt", 0, "<B"), ("parts", 1, "<Q"), ("degree", 9, "<Q"),
                              ("moduli", 17, "<Q"), ("scale", 25, "<d"), ("correction", 33, "<Q")):
        fields[name] = (base + offset, fmt)
    array = base + CIPHERTEXT_FIELDS.size
    fields.update({f"array.{name}": (array + offset, fmt) for name, offset, fmt in header})
    fields["coeff_count"] = (array + HEADER_SIZE, "<Q")
    data = array + HEADER_SIZE + ARRAY_LENGTH.size
    return fields, data


def ciphertext_fields(poly_words: int, *, seeded: bool) -> tuple[dict[str, tuple[int, str]], int]:
    """Field name -> (offset, struct format) in an uncompressed ciphertext blob; and the data offset."""
    fields, data = _layout()
    fields = dict(fields)
    if seeded:
        seed = data + 8 * poly_words
        fields.update({f"seed.{name[6:]}": (seed + offset, fmt)
                       for name, (offset, fmt) in _layout()[0].items() if name.startswith("outer.")})
        fields["prng_type"] = (seed + 16, "<B")
        fields["seed"] = (seed + 17, "64s")
    return fields, data


def field_boundaries(poly_words: int, *, seeded: bool, length: int) -> list[int]:
    """Every offset where a field starts or ends, plus a few inside the data."""
    fields, data = ciphertext_fields(poly_words, seeded=seeded)
    offsets = {0, 1, length - 1, data + 8, data + 4 * poly_words, data + 8 * poly_words - 1}
    for offset, fmt in fields.values():
        offsets |= {offset, offset + 1, offset + struct.calcsize(fmt)}
    return sorted(o for o in offsets if 0 <= o < length)


def seal_header(version: tuple[int, int], compression: int, total: int) -> bytes:
    from scoring.ckks import HEADER, HEADER_SIZE, SEAL_MAGIC

    return HEADER.pack(SEAL_MAGIC, HEADER_SIZE, version[0], version[1], compression, 0, total)


def reencode(version: tuple[int, int], body: bytes, mode: str) -> bytes:
    """A SEAL blob of ``body`` (fields without the outer header) in ``mode``: none, zstd, zlib."""
    from scoring.ckks import COMPRESSION_NONE, COMPRESSION_ZLIB, COMPRESSION_ZSTD, HEADER_SIZE

    if mode == "zstd":
        payload, code = zstandard.ZstdCompressor(level=3).compress(body), COMPRESSION_ZSTD
    elif mode == "zlib":
        payload, code = zlib.compress(body, 6), COMPRESSION_ZLIB
    else:
        payload, code = body, COMPRESSION_NONE
    return seal_header(version, code, HEADER_SIZE + len(payload)) + payload


def bomb(version: tuple[int, int], prefix: bytes, total: int, mode: str, *, window_log: int | None = None,
         frames: int = 1) -> bytes:
    """A SEAL blob whose compressed body is ``prefix`` then zeros, ``total`` bytes once inflated.

    Built by streaming (never holds ``total`` bytes): 1 GB of zeros is about 32 KB with zstd;
    zlib's best ratio is about 1:1030.
    """
    from scoring.ckks import COMPRESSION_ZLIB, COMPRESSION_ZSTD, HEADER_SIZE

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


def claiming_fields(m: Material, *, parts: int, scale: float) -> bytes:
    """Ciphertext fields (no outer header) that claim ``parts`` polynomials, before the data."""
    from scoring.ckks import ARRAY_LENGTH, CIPHERTEXT_FIELDS, HEADER_SIZE

    words = parts * m.poly_words
    array = seal_header(m.seal_version, 0, HEADER_SIZE + ARRAY_LENGTH.size + 8 * words) + ARRAY_LENGTH.pack(words)
    return m.parms_id + CIPHERTEXT_FIELDS.pack(1, parts, m.degree, len(m.moduli), scale, 1) + array


# -- cases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile input and what the service may answer.

    Attributes:
        target: ``"score"`` (``ScoringService.score`` / POST /api/score) or ``"upload"``
            (``check_upload`` / PUT /api/keys).
        key_id: the id in the URL; None means the material's (score) or sha256(body) (upload).
        bundle: for score, the stored bundle; None means none is stored.
        expect: the statuses allowed; empty means any 4xx (plus 200 if ``may_succeed``).
        match: a text the error message must contain.
    """

    index: int
    category: str
    label: str
    target: str
    body: bytes
    content_type: str | None = None
    key_id: str | None = None
    bundle: bytes | None = None
    expect: frozenset[int] = frozenset()
    may_succeed: bool = False
    match: str | None = None

    def judge(self, status: int, message: str = "") -> str | None:
        """None if ``status`` is an acceptable answer, else why not."""
        if status >= 500:
            return f"{status} (server error): {message}"
        if self.expect:
            if status not in self.expect:
                return f"status {status} where {sorted(self.expect)} was expected: {message}"
        elif not (400 <= status < 500 or (status == 200 and self.may_succeed)):
            return f"status {status} where a 4xx was expected: {message}"
        if self.match and status != 200 and self.match not in message:
            return f"message {message!r} does not mention {self.match!r}"
        return None


ANY_4XX: frozenset[int] = frozenset()
OK = frozenset({200})
S400, S404, S409, S413, S415, S422 = (frozenset({s}) for s in (400, 404, 409, 413, 415, 422))
JSON_TYPE, BINARY_TYPE = "application/json", "application/octet-stream"
CONTENT_TYPES = (JSON_TYPE, BINARY_TYPE, None, "", "text/json", "application/json; charset=utf-8",
                 "APPLICATION/OCTET-STREAM", "text/plain", "multipart/form-data; boundary=x",
                 "application/x-www-form-urlencoded")
BAD_KEY_IDS = ("../" + "a" * 61, "..%2f" + "a" * 59, "A" * 64, "ABCDEF" + "0" * 58, "a" * 63, "a" * 65,
               "g" * 64, "a" * 63 + "/", "a" * 63 + "\n", "a" * 63 + "\x00", "\uff10" * 64, " " + "a" * 63,
               "a" * 32 + "-" + "a" * 31, "", "..", "0x" + "a" * 62)
U64_EDGES = (0, 1, 2, 3, 255, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40, 1 << 63, (1 << 64) - 1)
HUGE = 1 << 30  # bombs inflate to 1 GB


def _flip(data: bytes, rng: random.Random, bits: int, lo: int = 0, hi: int | None = None) -> tuple[bytes, list[int]]:
    out = bytearray(data)
    hi = len(out) if hi is None else min(hi, len(out))
    positions = sorted(rng.randrange(lo * 8, hi * 8) for _ in range(bits)) if hi > lo else []
    for bit in positions:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out), positions


def _pack(fmt: str, value) -> bytes:
    if fmt.endswith("s"):
        size = struct.calcsize(fmt)
        return (value * size)[:size] if isinstance(value, bytes) and len(value) < size else value
    return struct.pack(fmt, value)


class Fuzzer:
    """Deterministic hostile cases from :class:`Material`, by category.

    Example:
        >>> fuzzer = Fuzzer(material, seed=0)            # doctest: +SKIP
        >>> for case in fuzzer.cases(3000): ...          # doctest: +SKIP
    """

    def __init__(self, material: Material, seed: int = 0, *, bomb_bytes: int = HUGE) -> None:
        self.m = material
        self.seed = seed
        self.bomb_bytes = bomb_bytes
        self.categories: dict[str, tuple[float, Callable[[random.Random], dict]]] = {
            name[3:].replace("__", "."): (weight, getattr(self, name))
            for name, weight in self.WEIGHTS.items()
            if material.bulk_ciphertexts or not name.startswith("_g_bulk")}
        self._bombs: dict = {}

    # weight per generator (relative share of the cases)
    WEIGHTS = {
        "_g_request__valid": 1, "_g_request__random": 3, "_g_request__truncate": 4, "_g_request__bitflip": 3,
        "_g_request__field": 6, "_g_request__recompress": 2, "_g_request__bomb": 2, "_g_request__json": 6,
        "_g_request__binary": 3, "_g_request__content_type": 1, "_g_request__too_large": 0.5,
        "_g_request__splice": 2, "_g_request__zero_parts": 1, "_g_request__key_id": 1, "_g_request__routing": 1,
        "_g_bundle__valid": 0.5, "_g_bundle__random": 2, "_g_bundle__truncate": 3, "_g_bundle__bitflip": 3,
        "_g_bundle__field": 5, "_g_bundle__bomb": 2, "_g_bundle__secret_key": 2, "_g_bundle__parameters": 2,
        "_g_bundle__sections": 2, "_g_bundle__key_id": 1, "_g_score__hostile_bundle": 2, "_g_bulk__request": 1,
    }

    # -- schedule ---------------------------------------------------------------------------

    def schedule(self, n: int, categories: list[str] | None = None) -> list[tuple[str, int]]:
        """(category, k) for ``n`` cases, each category in proportion to its weight, shuffled."""
        names = [c for c in self.categories if not categories or any(c.startswith(p) for p in categories)]
        if not names:
            raise ValueError(f"no category matches {categories}")
        weights = [self.categories[c][0] for c in names]
        total = sum(weights)
        counts = [max(1, math.floor(n * w / total)) for w in weights]
        order = sorted(range(len(names)), key=lambda i: -weights[i])
        i = 0
        while sum(counts) < n:
            counts[order[i % len(order)]] += 1
            i += 1
        while sum(counts) > n and any(c > 1 for c in counts):
            j = max(range(len(counts)), key=lambda j: counts[j])
            counts[j] -= 1
        plan = [(name, k) for name, count in zip(names, counts) for k in range(count)]
        random.Random(f"{self.seed}/schedule").shuffle(plan)
        return plan[:n] if len(plan) > n else plan

    def case(self, category: str, k: int, index: int = 0) -> Case:
        """Case ``k`` of ``category``: the same mutation for the same seed, every time."""
        rng = random.Random(f"{self.seed}/{category}/{k}")
        spec = self.categories[category][1](rng)
        spec.setdefault("target", "score")
        if spec["target"] == "score" and "bundle" not in spec:
            spec["bundle"] = self.m.bundle
        return Case(index=index, category=category, **spec)

    def cases(self, n: int, categories: list[str] | None = None) -> Iterator[Case]:
        """``n`` cases, made one at a time (a case's bytes are dropped once used)."""
        for index, (category, k) in enumerate(self.schedule(n, categories)):
            yield self.case(category, k, index)

    def prepare(self) -> None:
        """Build the decompression bombs now (they are cached; building takes about a second)."""
        for key in self._bomb_specs():
            self._bomb(key)

    # -- helpers ------------------------------------------------------------------------------

    def _ciphertext(self, rng: random.Random) -> tuple[int, bytes, bool]:
        """A random chunk index, its valid blob, and whether it is seeded."""
        index = rng.randrange(len(self.m.ciphertexts))
        if rng.random() < 0.3:
            return index, self.m.full_ciphertexts[index], False
        return index, self.m.ciphertexts[index], True

    def _with_chunk(self, index: int, blob: bytes, rng: random.Random, *, binary: bool | None = None
                    ) -> tuple[bytes, str]:
        chunks = list(self.m.ciphertexts)
        chunks[index] = blob
        binary = rng.random() < 0.6 if binary is None else binary
        return self.m.request(chunks, binary=binary)

    def _body_of(self, blob: bytes) -> bytes:
        from scoring.ckks import HEADER_SIZE

        return blob[HEADER_SIZE:]

    def _field_value(self, rng: random.Random, name: str, fmt: str, current: bytes, blob_len: int,
                     scale: float) -> tuple[object, bool]:
        """A replacement value for a SEAL field and whether the result may still be valid."""
        q = self.m.modulus
        if name in ("outer.minor", "array.minor", "seed.minor"):
            return rng.choice([0, 1, 2, 9, 255]), True
        if name.endswith("magic"):
            return rng.choice([0, 0xA15F, 0x5EA1, 0xFFFF, 0x0001]), False
        if name.endswith("header_size"):
            return rng.choice([0, 8, 15, 17, 32, 255]), False
        if name.endswith("major"):
            return rng.choice([0, 3, 5, 255]), False
        if name.endswith("compression"):
            return rng.choice([1, 2, 3, 128, 255]), False
        if name.endswith("reserved"):
            return rng.choice([1, 0x8000, 0xFFFF]), False
        if name.endswith(".size"):
            (value,) = struct.unpack(fmt, current)
            return rng.choice([0, 16, value - 1, value + 1, value * 2, blob_len - 1, blob_len + 1,
                               1 << 32, 1 << 63, (1 << 64) - 1]) & ((1 << 64) - 1), False
        if name == "parms_id":
            return rng.choice([bytes(32), b"\xff" * 32, rng.randbytes(32), self.m.other_parms_id,
                               self.m.parms_id[8:] + self.m.parms_id[:8]]), False
        if name == "is_ntt":
            return rng.choice([0, 2, 255]), False
        if name == "parts":
            return rng.choice([0, 1, 3, 4, 255, 1 << 32, (1 << 64) - 1]), False
        if name == "degree":
            return rng.choice([0, 1, 2048, 4096, 8191, 16384, 32768, 1 << 63, (1 << 64) - 1]), False
        if name == "moduli":
            return rng.choice([0, 2, 3, 14, 64, (1 << 64) - 1]), False
        if name == "scale":
            return rng.choice([0.0, -scale, math.nan, math.inf, -math.inf, 1.0, 2 * scale, scale / 2,
                               2.0 ** 40, 5e-324, scale * (1 + 2 ** -52), 1e308]), False
        if name == "correction":
            return rng.choice([0, 2, 3, (1 << 64) - 1]), False
        if name == "coeff_count":
            (value,) = struct.unpack(fmt, current)
            return rng.choice([0, value - 1, value + 1, 2 * value, 1 << 63, (1 << 64) - 1]), False
        if name == "prng_type":
            return rng.choice([0, 3, 4, 255]), False
        if name == "seed":
            return rng.choice([bytes(64), b"\xff" * 64, rng.randbytes(64)]), True
        if name == "coefficient":
            if rng.random() < 0.5:
                return rng.choice([q, q + 1, 1 << 60, 1 << 63, (1 << 64) - 1]), False
            return rng.choice([0, 1, q - 1, rng.randrange(q)]), True
        raise KeyError(name)

    def _mutate_fields(self, rng: random.Random, blob: bytes, seeded: bool, scale: float
                       ) -> tuple[bytes, str, bool]:
        """Swap one to three SEAL fields; maybe re-compress so that only inner fields lie."""
        fields, data = ciphertext_fields(self.m.poly_words, seeded=seeded)
        names = list(fields) + ["coefficient"] * 3
        out = bytearray(blob)
        labels, valid = [], True
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            name = rng.choice(names)
            if name == "coefficient":
                words = self.m.poly_words * (1 if seeded else 2)
                offset, fmt = data + 8 * rng.randrange(words), "<Q"
            else:
                offset, fmt = fields[name]
            size = struct.calcsize(fmt)
            value, still_valid = self._field_value(rng, name, fmt, bytes(out[offset:offset + size]), len(blob), scale)
            new = _pack(fmt, value)
            if new == bytes(out[offset:offset + size]):
                continue
            out[offset:offset + size] = new
            valid = valid and still_valid
            labels.append(f"{name}={value!r}"[:60])
        result = bytes(out)
        if not labels:
            return result, "no-op", True
        if not any(label.startswith("outer.") for label in labels) and rng.random() < 0.3:
            mode = rng.choice(["zstd", "zlib"])
            result = reencode(self.m.seal_version, self._body_of(result), mode)
            labels.append(f"recompressed {mode}")
        return result, ", ".join(labels), valid

    # -- request categories -------------------------------------------------------------------

    def _g_request__valid(self, rng):
        variant = rng.choice(["binary", "json", "no-hash", "full-binary", "full-json", "no-content-type"])
        if variant.startswith("full"):
            body, ctype = self.m.request(self.m.full_ciphertexts, binary=variant == "full-binary")
        elif variant == "json":
            body, ctype = self.m.request(binary=False)
        elif variant == "no-hash":
            body, ctype = self.m.request(binary=rng.random() < 0.5, model_hash=None)
        elif variant == "no-content-type":
            body, ctype = self.m.request(binary=rng.random() < 0.5)
            ctype = None
        else:
            body, ctype = self.m.request()
        return dict(label=variant, body=body, content_type=ctype, expect=OK, may_succeed=True)

    def _g_request__random(self, rng):
        size = rng.choice([0, 1, 3, 4, 7, 8, 16, 44, 100, 1000, 4096, 65_774,
                           rng.randrange(0, self.m.max_request_bytes + 1000)])
        prefix = rng.choice([b"", b"", b"HESQ", b"HESQ\x01\x00\x01\x00", b"{", b'{"version":1,"ciphertexts":["'])
        body = (prefix + rng.randbytes(size))[:max(size, len(prefix))]
        ctype = rng.choice(CONTENT_TYPES)
        return dict(label=f"{len(body)} random bytes after {prefix[:12]!r}, {ctype}", body=body, content_type=ctype)

    def _g_request__truncate(self, rng):
        from scoring.protocol import FRAME, LENGTH

        index, blob, seeded = self._ciphertext(rng)
        cuts = field_boundaries(self.m.poly_words, seeded=seeded, length=len(blob)) + [rng.randrange(len(blob))]
        cut = rng.choice(cuts)
        short = blob[:cut]
        mode = rng.choice(["body", "frame-fixed", "header-fixed", "json"])
        if mode == "body":
            body, ctype = self._with_chunk(index, blob, rng, binary=True)
            start = FRAME.size + 32 + LENGTH.size + sum(LENGTH.size + len(c) for c in self.m.ciphertexts[:index])
            frame_cut = rng.choice([0, 1, 4, 5, 6, 8, 20, 40, 42, start + cut])
            return dict(label=f"binary body cut at {frame_cut}", body=body[:frame_cut], content_type=ctype, expect=S400)
        if mode == "header-fixed" and cut >= 16:
            from scoring.ckks import HEADER

            fixed = bytearray(short)
            HEADER.pack_into(fixed, 0, *HEADER.unpack_from(fixed)[:-1], len(fixed))
            short = bytes(fixed)
        if mode == "json":
            body, ctype = self._with_chunk(index, short, rng, binary=False)
            text_cut = rng.choice([None, None, 1, 10, len(body) // 2, len(body) - 1])
            if text_cut is not None:
                return dict(label=f"JSON text cut at {text_cut}", body=body[:text_cut], content_type=ctype,
                            expect=S400)
        else:
            body, ctype = self._with_chunk(index, short, rng, binary=True)
        return dict(label=f"{'seeded' if seeded else 'full'} ciphertext cut at {cut} ({mode})", body=body,
                    content_type=ctype, expect=S422)

    def _g_request__bitflip(self, rng):
        index, blob, seeded = self._ciphertext(rng)
        bits = rng.choice([1, 1, 2, 3, 8, 32])
        _, data = ciphertext_fields(self.m.poly_words, seeded=seeded)
        region = rng.choice(["header", "data", "anywhere", "seed" if seeded else "data", "frame"])
        if region == "frame":
            body, ctype = self._with_chunk(index, blob, rng, binary=rng.random() < 0.7)
            flipped, where = _flip(body, rng, bits, 0, 60 if ctype == BINARY_TYPE else len(body))
            return dict(label=f"{bits} bit(s) of the {ctype} body at {where[:4]}", body=flipped,
                        content_type=ctype, may_succeed=True)
        lo, hi = {"header": (0, data), "data": (data, len(blob)), "anywhere": (0, len(blob)),
                  "seed": (len(blob) - 81, len(blob))}[region]
        flipped, where = _flip(blob, rng, bits, lo, hi)
        body, ctype = self._with_chunk(index, flipped, rng)
        return dict(label=f"{bits} bit(s) flipped in the ciphertext {region} at bits {where[:4]}", body=body,
                    content_type=ctype, may_succeed=True)

    def _g_request__field(self, rng):
        index, blob, seeded = self._ciphertext(rng)
        if rng.random() < 0.15:  # a random body behind valid fields
            _, data = ciphertext_fields(self.m.poly_words, seeded=seeded)
            masked = rng.random() < 0.5
            if masked:  # coefficients below q (and a random seed): a valid ciphertext of garbage
                words = self.m.poly_words * (1 if seeded else 2)
                tail = struct.pack(f"<{words}Q", *(rng.randrange(self.m.modulus) for _ in range(words)))
                if seeded:
                    tail += blob[data + 8 * words:data + 8 * words + 17] + rng.randbytes(64)
            else:
                tail = rng.randbytes(len(blob) - data)
            body, ctype = self._with_chunk(index, blob[:data] + tail, rng)
            return dict(label=f"random {'coefficients below q' if masked else 'bytes'} behind valid fields",
                        body=body, content_type=ctype, may_succeed=masked)
        mutated, label, valid = self._mutate_fields(rng, blob, seeded, self.m.input_scale)
        body, ctype = self._with_chunk(index, mutated, rng)
        return dict(label=f"{'seeded' if seeded else 'full'}: {label}", body=body, content_type=ctype,
                    expect=ANY_4XX if valid else S422, may_succeed=valid)

    def _g_request__recompress(self, rng):
        index, blob, seeded = self._ciphertext(rng)
        mode = rng.choice(["zstd", "zlib", "none"])
        body, ctype = self._with_chunk(index, reencode(self.m.seal_version, self._body_of(blob), mode), rng)
        return dict(label=f"valid {'seeded' if seeded else 'full'} ciphertext re-encoded {mode}", body=body,
                    content_type=ctype, expect=OK, may_succeed=True)

    def _bomb_specs(self):
        scale = self.m.input_scale
        return [
            ("zstd", "fields claiming 2^17 parts + zeros", 1 << 17, scale, self.bomb_bytes, None, 1),
            ("zstd", "zeros only", 0, scale, self.bomb_bytes, None, 1),
            ("zstd", "valid 2-part fields + zeros", 2, scale, self.bomb_bytes, None, 1),
            ("zstd", "zeros, 128 MB window", 0, scale, 256 << 20, 27, 1),
            ("zstd", "8 frames of zeros", 0, scale, 64 << 20, None, 8),
            ("zlib", "fields claiming 2^17 parts + zeros", 1 << 17, scale, 64 << 20, None, 1),
            ("zlib", "zeros only", 0, scale, 64 << 20, None, 1),
            ("zstd", "public key fields claiming 2^17 parts + zeros", 1 << 17, 1.0, self.bomb_bytes, None, 1),
            ("zlib", "public key fields + zeros", 2, 1.0, 256 << 20, None, 1),
            ("zstd", "exactly the size of a full ciphertext, zeros", -1, scale, 0, None, 1),
            ("zlib", "exactly the size of a full ciphertext, valid fields + zero data", -2, scale, 0, None, 1),
            ("zstd", "exactly the size of a public key, valid fields + zero data", -2, 1.0, 0, None, 1),
        ]

    def _bomb(self, spec) -> bytes:
        if spec not in self._bombs:
            mode, _, parts, scale, total, window, frames = spec
            full = 32 + 41 + 16 + 8 + 16 * self.m.poly_words
            if parts == -1:
                prefix, total = b"", full
            elif parts == -2:
                prefix, total = claiming_fields(self.m, parts=2, scale=scale), full
            elif parts == 0:
                prefix = b""
            else:
                prefix = claiming_fields(self.m, parts=parts, scale=scale)
            self._bombs[spec] = bomb(self.m.seal_version, prefix, total, mode, window_log=window, frames=frames)
        return self._bombs[spec]

    def _g_request__bomb(self, rng):
        specs = [s for s in self._bomb_specs() if s[3] != 1.0]
        spec = rng.choice(specs)
        blob = self._bomb(spec)
        index = rng.randrange(len(self.m.ciphertexts))
        body, ctype = self._with_chunk(index, blob, rng)
        inflated = spec[4] if spec[2] >= 0 else 32 + 41 + 16 + 8 + 16 * self.m.poly_words
        return dict(label=f"{spec[0]} {spec[1]} ({len(blob)} bytes -> {inflated * spec[6] >> 20} MB)", body=body,
                    content_type=ctype, expect=S422)

    def _g_request__zero_parts(self, rng):
        """Ciphertexts with an all-zero part: the second part zero makes SEAL's product 'transparent'."""
        from scoring.ckks import HEADER_SIZE

        index = rng.randrange(len(self.m.ciphertexts))
        blob = bytearray(self.m.full_ciphertexts[index])
        _, data = ciphertext_fields(self.m.poly_words, seeded=False)
        n = 8 * self.m.poly_words
        which = rng.choice(["second", "second", "both", "first"])
        if which in ("second", "both"):
            blob[data + n:data + 2 * n] = bytes(n)
        if which in ("first", "both"):
            blob[data:data + n] = bytes(n)
        mode = rng.choice(["none", "zstd", "zlib"])
        mutated = reencode(self.m.seal_version, bytes(blob[HEADER_SIZE:]), mode)
        body, ctype = self._with_chunk(index, mutated, rng)
        return dict(label=f"full ciphertext with its {which} part(s) zero ({mode})", body=body, content_type=ctype,
                    expect=S422 if which != "first" else OK, may_succeed=which == "first")

    def _g_request__json(self, rng):
        b64 = [base64.b64encode(c).decode() for c in self.m.ciphertexts]
        doc = {"version": 1, "ciphertexts": b64, "model_hash": self.m.model_hash}

        def dumps(d) -> bytes:
            return json.dumps(d, separators=(",", ":")).encode()

        def with_(key, value):
            return dumps({**doc, key: value})

        def without(key):
            return dumps({k: v for k, v in doc.items() if k != key})

        deep = rng.choice([1000, 5000, 25_000, 100_000])
        room = self.m.max_request_bytes - 100  # deep enough to exhaust the recursion limit, under the cap
        first = b64[0]
        mutations = [
            ("empty body", lambda: b"", S400),
            ("not JSON", lambda: b"{not json", S400),
            ("invalid UTF-8", lambda: b'{"version":1,"ciphertexts":["\xff\xfe"]}', S400),
            ("UTF-16 with BOM", lambda: '{"version":1}'.encode("utf-16"), S400),
            ("a JSON list", lambda: dumps([doc]), S400),
            ("a JSON string", lambda: b'"hello"', S400),
            ("a JSON number", lambda: b"1", S400),
            ("null", lambda: b"null", S400),
            ("version as string", lambda: with_("version", "1"), S400),
            ("version as float", lambda: with_("version", 1.0), S400),
            ("version as bool", lambda: with_("version", True), S400),
            ("version null", lambda: with_("version", None), S400),
            ("version 2", lambda: with_("version", 2), S400),
            ("version 0", lambda: with_("version", 0), S400),
            ("version -1", lambda: with_("version", -1), S400),
            ("version as list", lambda: with_("version", [1]), S400),
            ("version 1e999", lambda: dumps(doc).replace(b'"version":1', b'"version":1e999'), S400),
            ("version NaN", lambda: dumps(doc).replace(b'"version":1', b'"version":NaN'), S400),
            ("version with 5000 digits", lambda: dumps(doc).replace(b'"version":1', b'"version":1' + b"0" * 5000), S400),
            ("version with 4000 digits", lambda: dumps(doc).replace(b'"version":1', b'"version":1' + b"0" * 4000), S400),
            ("version 2**64", lambda: with_("version", 1 << 64), S400),
            ("missing version", lambda: without("version"), S400),
            ("missing ciphertexts", lambda: without("ciphertexts"), S400),
            ("missing everything", lambda: b"{}", S400),
            ("ciphertexts as string", lambda: with_("ciphertexts", first), S400),
            ("ciphertexts as object", lambda: with_("ciphertexts", {"0": first}), S400),
            ("ciphertexts empty", lambda: with_("ciphertexts", []), S400),
            ("ciphertexts of ints", lambda: with_("ciphertexts", [1, 2]), S400),
            ("ciphertexts of null", lambda: with_("ciphertexts", [None]), S400),
            ("ciphertexts nested", lambda: with_("ciphertexts", [b64]), S400),
            ("4097 ciphertexts", lambda: with_("ciphertexts", ["AA=="] * 4097), S400),
            ("65536 empty ciphertexts", lambda: with_("ciphertexts", [""] * 65536), frozenset({400, 413})),
            ("one more ciphertext", lambda: with_("ciphertexts", b64 + ["AAAA"]), S422),
            ("an empty ciphertext", lambda: with_("ciphertexts", [""] + b64[1:]), S422),
            ("a ciphertext of 'AAAA'", lambda: with_("ciphertexts", ["AAAA"] + b64[1:]), S422),
            ("model_hash as int", lambda: with_("model_hash", 7), S400),
            ("model_hash uppercase", lambda: with_("model_hash", self.m.model_hash.upper()), S400),
            ("model_hash 63 chars", lambda: with_("model_hash", self.m.model_hash[:63]), S400),
            ("model_hash of another model", lambda: with_("model_hash", self.m.other_model_hash), S409),
            ("model_hash null", lambda: with_("model_hash", None), OK),
            ("extra field", lambda: with_("extra", 1), S400),
            ("credential field", lambda: with_("connection_string", "x"), S400),
            ("AccountKey in body", lambda: with_("extra", "AccountKey=abc"), S400),
            ("duplicate version", lambda: dumps(doc).replace(b'{"version":1', b'{"version":1,"version":1'), S400),
            ("duplicate ciphertexts", lambda: dumps(doc)[:-1] + b',"ciphertexts":' + json.dumps(b64).encode() + b"}", S400),
            ("base64 without padding", lambda: with_("ciphertexts", [first.rstrip("=") + "A"] + b64[1:]), S400),
            ("base64 with '*'", lambda: with_("ciphertexts", ["*" + first[1:]] + b64[1:]), S400),
            ("base64 with a newline", lambda: with_("ciphertexts", [first[:76] + "\n" + first[76:]] + b64[1:]), S400),
            ("base64 url-safe", lambda: with_("ciphertexts", [first.replace("+", "-").replace("/", "_")] + b64[1:]),
             frozenset({400, 422, 200})),
            ("base64 non-ASCII", lambda: with_("ciphertexts", ["\u00e9" + first[1:]] + b64[1:]), S400),
            ("base64 lone surrogate", lambda: dumps(doc).replace(first[:8].encode(), b"\\ud800" + first[6:8].encode(), 1),
             S400),
            ("base64 length 1 mod 4", lambda: with_("ciphertexts", [first + "A"] + b64[1:]), S400),
            ("deep list", lambda: b"[" * (d := min(deep, room // 2)) + b"]" * d, S400),
            ("deep object", lambda: b'{"a":' * (d := min(deep, room // 6)) + b"1" + b"}" * d, S400),
            ("deep ciphertexts", lambda: b'{"version":1,"ciphertexts":' + b"[" * (d := min(deep, room // 2)) + b"]" * d + b"}",
             S400),
            ("trailing garbage", lambda: dumps(doc) + b"x", S400),
            ("trailing whitespace", lambda: dumps(doc) + b" \n\t", OK),
            ("UTF-8 BOM", lambda: b"\xef\xbb\xbf" + dumps(doc), frozenset({200, 400})),
            ("NUL byte", lambda: dumps(doc)[:1] + b"\x00" + dumps(doc)[1:], S400),
            ("huge string", lambda: with_("model_hash", "a" * (self.m.max_body_bytes + 10)), S413),
        ]
        if rng.random() < 0.25:  # text-level mutation of the valid JSON body
            body = bytearray(dumps(doc))
            pos = rng.choice([rng.randrange(40), rng.randrange(len(body))])
            op = rng.choice(["delete", "insert", "replace"])
            char = rng.choice(b'{}[]",:\\ 0a-\x00\xff')
            if op == "delete":
                del body[pos]
            elif op == "insert":
                body.insert(pos, char)
            else:
                body[pos] = char
            return dict(label=f"JSON text: {op} {chr(char)!r} at {pos}", body=bytes(body),
                        content_type=rng.choice([JSON_TYPE, None]), may_succeed=True)
        name, make, expect = rng.choice(mutations)
        return dict(label=name, body=make(), content_type=rng.choice([JSON_TYPE, JSON_TYPE, None, "text/json"]),
                    expect=expect, may_succeed=200 in expect)

    def _g_request__binary(self, rng):
        from scoring.protocol import FRAME, HAS_MODEL_HASH, LENGTH, REQUEST_MAGIC, RESPONSE_MAGIC

        chunks = self.m.ciphertexts
        digest = bytes.fromhex(self.m.model_hash)

        def frame(magic=REQUEST_MAGIC, version=1, flags=HAS_MODEL_HASH, count=None, hash_=digest, parts=None,
                  lengths=None, tail=b""):
            parts = list(chunks if parts is None else parts)
            count = len(parts) if count is None else count
            lengths = [len(p) for p in parts] if lengths is None else lengths
            out = FRAME.pack(magic, version, flags, count) + hash_
            for length, part in zip(lengths, parts):
                out += LENGTH.pack(length) + part
            return out + tail

        n = len(chunks[0])
        mutations = [
            ("response magic", frame(magic=RESPONSE_MAGIC), S400),
            ("lowercase magic", frame(magic=b"hesq"), S400),
            ("random magic", frame(magic=rng.randbytes(4)), S400),
            ("version 0", frame(version=0), S400),
            ("version 2", frame(version=2), S400),
            ("version 255", frame(version=255), S400),
            ("unknown flag 0x02", frame(flags=HAS_MODEL_HASH | 2), S400),
            ("flags 0xff", frame(flags=0xFF), S400),
            ("hash flag without a hash", frame(hash_=b""), frozenset({400, 422})),
            ("hash without the flag", frame(flags=0), S400),
            ("no hash, no flag", frame(flags=0, hash_=b""), OK),
            ("another model's hash", frame(hash_=bytes.fromhex(self.m.other_model_hash)), S409),
            ("count 0", frame(count=0), S400),
            ("count 0, no ciphertext", frame(count=0, parts=[]), S400),
            ("count one more", frame(count=len(chunks) + 1), S400),
            ("count 4096", frame(count=4096), S400),
            ("count 4097", frame(count=4097), S400),
            ("count 65535", frame(count=65535), S400),
            ("length 0", frame(lengths=[0] + [len(c) for c in chunks[1:]]), S400),
            ("length one short", frame(lengths=[n - 1] + [len(c) for c in chunks[1:]]), S400),
            ("length one long", frame(lengths=[n + 1] + [len(c) for c in chunks[1:]]), S400),
            ("length 2**32-1", frame(lengths=[(1 << 32) - 1] + [len(c) for c in chunks[1:]]), S400),
            ("a trailing byte", frame(tail=b"\x00"), S400),
            ("a trailing frame", frame(tail=frame()), S400),
            ("two copies of the ciphertexts", frame(parts=chunks + chunks), S422),
            ("an empty ciphertext", frame(parts=[b""] + list(chunks[1:])), S422),
            ("4096 empty ciphertexts", frame(parts=[b""] * 4096), S422),
            ("only the frame", frame(parts=[]), S400),
            ("a JSON body as binary", self.m.request(binary=False)[0], S400),
        ]
        name, body, expect = rng.choice(mutations)
        ctype = rng.choice([BINARY_TYPE, BINARY_TYPE, None]) if body[:4] == REQUEST_MAGIC else BINARY_TYPE
        return dict(label=name, body=body, content_type=ctype, expect=expect, may_succeed=200 in expect)

    def _g_request__content_type(self, rng):
        binary = rng.random() < 0.5
        body, _ = self.m.request(binary=binary)
        ctype = rng.choice(CONTENT_TYPES)
        from scoring.protocol import media_type

        kind = media_type(ctype)
        if kind in ("application/json", "text/json"):
            expect = S400 if binary else OK
        elif kind == BINARY_TYPE:
            expect = OK if binary else S400
        elif not kind:
            expect = OK
        else:
            expect = S415
        return dict(label=f"{'binary' if binary else 'JSON'} body as {ctype!r}", body=body, content_type=ctype,
                    expect=expect, may_succeed=200 in expect)

    def _g_request__too_large(self, rng):
        """Bodies over the cap. A body under the largest cap (a batch's) is parsed before a
        single record's cap applies, so those are well formed and carry their content type."""
        cap = self.m.max_request_bytes
        variant = rng.choice(["random", "padded JSON", "binary with a large chunk"])
        if variant == "random":
            body = rng.randbytes(max(cap, self.m.max_body_bytes) + rng.choice([1, 100, 100_000]))
            ctype = rng.choice([JSON_TYPE, BINARY_TYPE, None])
        elif variant == "padded JSON":
            valid = self.m.request(binary=False)[0]
            body, ctype = valid + b" " * (cap + 1 - len(valid)), rng.choice([JSON_TYPE, None])
        else:
            body = self.m.request([self.m.full_ciphertexts[0] * 2])[0]
            body, ctype = body + bytes(max(0, cap + 1 - len(body))), rng.choice([BINARY_TYPE, None])
        return dict(label=f"{variant}, {len(body)} bytes", body=body, content_type=ctype, expect=S413)

    def _g_request__splice(self, rng):
        index = rng.randrange(len(self.m.ciphertexts))
        variants = [
            ("the public key as a ciphertext", self.m.public_key_blob(), S422),
            ("the secret key as a ciphertext", self.m.secret_key, S422),
            ("the raw secret key as a ciphertext", self.m.secret_key_raw, S422),
            ("a result ciphertext", self.m.result_ciphertext, S422),
            ("a ciphertext for other parameters", self.m.foreign_ciphertext, S422),
            ("the key bundle as a ciphertext", self.m.bundle, S422),
            ("a TenSEAL context as a ciphertext", self.m.tenseal_context, frozenset({413, 422})),
            ("a full ciphertext where a seeded one was", self.m.full_ciphertexts[index], OK),
            ("two ciphertexts glued", self.m.ciphertexts[index] + self.m.ciphertexts[index], S422),
        ]
        if rng.random() < 0.2:
            body = rng.choice([self.m.bundle, self.m.secret_key, self.m.ciphertexts[0]])
            return dict(label="a SEAL blob or bundle as the whole body", body=body,
                        content_type=rng.choice([BINARY_TYPE, JSON_TYPE, None]), expect=S400)
        name, blob, expect = rng.choice(variants)
        body, ctype = self._with_chunk(index, blob, rng)
        return dict(label=name, body=body, content_type=ctype, expect=expect, may_succeed=200 in expect)

    def _g_request__key_id(self, rng):
        body, ctype = self.m.request(binary=rng.random() < 0.5)
        key_id = rng.choice(BAD_KEY_IDS + (self.m.key_id.upper(), "../" + self.m.key_id[3:]))
        return dict(label=f"key id {key_id!r}", body=body, content_type=ctype, key_id=key_id, expect=S400,
                    match="64 lowercase hex")

    def _g_request__routing(self, rng):
        """Requests that are well formed but name the wrong key or no stored key."""
        from scoring.keys import key_id_of

        body, ctype = self.m.request(binary=rng.random() < 0.5)
        variant = rng.choice(["none stored", "bundle under another id", "another key's ciphertext id"])
        if variant == "none stored":
            return dict(label=variant, body=body, content_type=ctype, key_id=key_id_of(rng.randbytes(8)),
                        bundle=None, expect=S404)
        other = key_id_of(rng.randbytes(8))
        return dict(label=variant, body=body, content_type=ctype, key_id=other, expect=S422,
                    match="does not hash to its key id")

    # -- bundle categories ----------------------------------------------------------------------

    def _bundle_parts(self) -> tuple[bytes, bytes, bytes]:
        """(preamble with moduli, PKEY section header, public key blob) of the valid bundle."""
        from scoring.keys import PREAMBLE, SECTION

        head = PREAMBLE.size + 8 * len(self.m.moduli)
        return self.m.bundle[:head], self.m.bundle[head:head + SECTION.size], self.m.bundle[head + SECTION.size:]

    def _bundle_with(self, sections: list[tuple[bytes, bytes]], head: bytes | None = None) -> bytes:
        from scoring.keys import SECTION

        head = self._bundle_parts()[0] if head is None else head
        return head + b"".join(SECTION.pack(tag, len(payload)) + payload for tag, payload in sections)

    def _upload(self, label, body, expect=S422, may_succeed=False, key_id=None, match=None):
        return dict(label=label, body=body, target="upload", key_id=key_id, expect=expect,
                    may_succeed=may_succeed, match=match)

    def _g_bundle__valid(self, rng):
        variant = rng.choice(["as built", "public key zstd", "public key zlib"])
        if variant == "as built":
            return self._upload(variant, self.m.bundle, OK, True)
        _, _, blob = self._bundle_parts()
        mode = variant.split()[-1]
        return self._upload(variant, self._bundle_with([(b"PKEY", reencode(self.m.seal_version,
                                                                               self._body_of(blob), mode))]),
                            OK, True)

    def _g_bundle__random(self, rng):
        size = rng.choice([0, 1, 4, 11, 12, 20, 28, 100, 4096, 131_000, rng.randrange(self.m.max_bundle_bytes + 10)])
        prefix = rng.choice([b"", b"HEKB", b"HEKB\x01\x01\x01\x00", self._bundle_parts()[0],
                             self._bundle_parts()[0] + b"PKEY"])
        body = prefix + rng.randbytes(size)
        expect = frozenset({413, 422}) if len(body) > self.m.max_bundle_bytes else S422
        return self._upload(f"{len(body)} random bytes after {prefix[:8]!r}", body, expect)

    def _g_bundle__truncate(self, rng):
        from scoring.ckks import HEADER
        from scoring.keys import SECTION

        head, section, blob = self._bundle_parts()
        offsets = list(range(0, len(head) + len(section) + 1)) + [
            len(head) + len(section) + o for o in field_boundaries(self.m.poly_words, seeded=False,
                                                                   length=len(blob))]
        cut = rng.choice(offsets + [rng.randrange(len(self.m.bundle))])
        mode = rng.choice(["raw", "section-fixed", "header-fixed"])
        start = len(head) + len(section)
        if cut <= start or mode == "raw":
            return self._upload(f"bundle cut at {cut}", self.m.bundle[:cut])
        short = bytearray(blob[:cut - start])
        if mode == "header-fixed" and len(short) >= 16:
            HEADER.pack_into(short, 0, *HEADER.unpack_from(short)[:-1], len(short))
        body = head + SECTION.pack(b"PKEY", len(short)) + bytes(short)
        return self._upload(f"public key cut at {cut - start} ({mode})", body)

    def _g_bundle__bitflip(self, rng):
        bits = rng.choice([1, 1, 2, 3, 8, 32])
        head, section, blob = self._bundle_parts()
        start = len(head) + len(section)
        region = rng.choice(["preamble", "key fields", "key data", "anywhere"])
        lo, hi = {"preamble": (0, start), "key fields": (start, start + 113),
                  "key data": (start + 113, len(self.m.bundle)), "anywhere": (0, len(self.m.bundle))}[region]
        body, where = _flip(self.m.bundle, rng, bits, lo, hi)
        return self._upload(f"{bits} bit(s) flipped in the bundle's {region} at bits {where[:4]}", body,
                            ANY_4XX, True)

    def _g_bundle__field(self, rng):
        import struct as _s

        head, section, blob = self._bundle_parts()
        if rng.random() < 0.45:  # preamble and section fields
            fields = {"magic": (0, "4s", [b"HEKC", b"hekb", b"\x00" * 4, b"HESQ"]),
                      "version": (4, "<B", [0, 2, 255]), "scheme": (5, "<B", [0, 2, 255]),
                      "count": (6, "<B", [0, 2, 14, 64, 65, 255]), "reserved": (7, "<B", [1, 128, 255]),
                      "degree": (8, "<I", [0, 1, 4096, 8191, 16384, 32768, (1 << 32) - 1]),
                      "modulus": (12, "<Q", [0, 1, 2, self.m.modulus + 2, 1152921504606748673, (1 << 64) - 1]),
                      "section tag": (len(head), "4s", [b"pkey", b"SKEY", b"SECK", b"GKEY", b"RKEY", b"\x00" * 4]),
                      "section length": (len(head) + 4, "<I", [0, len(blob) - 1, len(blob) + 1, (1 << 32) - 1])}
            name = rng.choice(list(fields))
            offset, fmt, values = fields[name]
            value = rng.choice(values)
            body = bytearray(self.m.bundle)
            body[offset:offset + _s.calcsize(fmt)] = _pack(fmt, value)
            match = "secret key" if value in (b"SKEY", b"SECK") else None
            return self._upload(f"bundle {name}={value!r}", bytes(body), match=match)
        mutated, label, valid = self._mutate_fields(rng, blob, False, 1.0)
        return self._upload(f"public key: {label}", self._bundle_with([(b"PKEY", mutated)]),
                            ANY_4XX if valid else S422, valid)

    def _g_bundle__bomb(self, rng):
        specs = [s for s in self._bomb_specs() if s[3] == 1.0 or s[2] == 0]
        spec = rng.choice(specs)
        blob = self._bomb(spec)
        tag = b"PKEY" if rng.random() < 0.8 else rng.choice([b"SKEY", b"GKEY"])
        body = self._bundle_with([(tag, blob)])
        match = "secret key" if tag == b"SKEY" else None
        # an all-zero public key of the exact size is a well-formed key (see the report on zero keys)
        zero_key = spec[2] == -2 and tag == b"PKEY"
        return self._upload(f"{spec[0]} {spec[1]} in a {tag.decode()} section ({len(blob)} bytes)", body,
                            frozenset({200, 422}) if zero_key else S422, zero_key, match=match)

    def _g_bundle__secret_key(self, rng):
        _, _, public = self._bundle_parts()
        secret, raw = self.m.secret_key, self.m.secret_key_raw
        variants = [
            ("PKEY then SKEY", [(b"PKEY", public), (b"SKEY", secret)], "secret key"),
            ("SKEY only", [(b"SKEY", secret)], "secret key"),
            ("SKEY then PKEY", [(b"SKEY", secret), (b"PKEY", public)], "secret key"),
            ("SECK then PKEY", [(b"SECK", raw), (b"PKEY", public)], "secret key"),
            ("an empty SKEY", [(b"PKEY", public), (b"SKEY", b"")], "secret key"),
            ("the secret key as PKEY (zstd, as SEAL saves it)", [(b"PKEY", secret)], "secret key"),
            ("the secret key as PKEY (uncompressed)", [(b"PKEY", raw)], "secret key"),
            ("the secret key as PKEY (zlib)",
             [(b"PKEY", reencode(self.m.seal_version, self._body_of(raw), "zlib"))], "secret key"),
            ("PKEY twice, the second one secret", [(b"PKEY", public), (b"PKEY", secret)], None),
            ("the secret key padded to a public key's size",
             [(b"PKEY", reencode(self.m.seal_version, self._body_of(raw) + bytes(len(public) - len(raw)),
                                 "none"))], None),
            ("a TenSEAL context with its secret key as PKEY", [(b"PKEY", self.m.tenseal_context)], None),
            ("a TenSEAL context with its secret key as SKEY", [(b"PKEY", public), (b"SKEY", self.m.tenseal_context)],
             "secret key"),
        ]
        if rng.random() < 0.1:
            body = self.m.tenseal_context or self.m.secret_key
            return self._upload("a TenSEAL context (or SEAL secret key) as the whole bundle", body)
        name, sections, match = rng.choice(variants)
        body = self._bundle_with(sections)
        if rng.random() < 0.2 and not name.startswith("PKEY twice"):
            from scoring.keys import SECTION

            body += SECTION.pack(b"SKEY", 1 << 31) + secret[:100]  # cut short: refused before its length is read
            name, match = f"{name}, then a SKEY cut short", "secret key"
        return self._upload(name, body, match=match)

    def _g_bundle__parameters(self, rng):
        from scoring.keys import BUNDLE_MAGIC, PREAMBLE

        _, section, public = self._bundle_parts()
        q = self.m.modulus
        variants = [
            (4096, [q]), (16384, [q]), (32768, [q]), (8192, [1152921504606748673]), (8192, [q, q]),
            (32768, [q] * 14), (8192, [q] * 64), (0, [q]), (8192, []), (1 << 31, [q]),
            (8192, [(1 << 64) - 1]), (8192, [2]), (8192, [q + 2]),
        ]
        degree, moduli = rng.choice(variants)
        scheme = rng.choice([1, 1, 1, 2, 3])
        count = len(moduli) if rng.random() < 0.9 else rng.choice([0, 65, 255])
        head = PREAMBLE.pack(BUNDLE_MAGIC, 1, scheme, count, 0, degree) + struct.pack(f"<{len(moduli)}Q", *moduli)
        return self._upload(f"parameters N={degree}, {len(moduli)} prime(s), count {count}, scheme {scheme}",
                            head + section + public)

    def _g_bundle__sections(self, rng):
        _, _, public = self._bundle_parts()
        variants = [
            ("no sections", []),
            ("an empty PKEY", [(b"PKEY", b"")]),
            ("PKEY twice", [(b"PKEY", public), (b"PKEY", public)]),
            ("an unknown section", [(b"PKEY", public), (b"GKEY", b"x" * 100)]),
            ("a relin-key tag", [(b"RKEY", public)]),
            ("lowercase pkey", [(b"pkey", public)]),
            ("PKEY holding a ciphertext", [(b"PKEY", self.m.full_ciphertexts[0])]),
            ("PKEY holding a seeded ciphertext", [(b"PKEY", self.m.ciphertexts[0])]),
            ("PKEY holding a result", [(b"PKEY", self.m.result_ciphertext)]),
            ("PKEY holding a foreign ciphertext", [(b"PKEY", self.m.foreign_ciphertext)]),
        ]
        if rng.random() < 0.2:
            from scoring.keys import SECTION

            tail = rng.choice([b"\x00", b"PKE", SECTION.pack(b"PKEY", 0)[:7], SECTION.pack(b"ABCD", 10)])
            return self._upload(f"trailing {tail!r}", self.m.bundle + tail)
        name, sections = rng.choice(variants)
        return self._upload(name, self._bundle_with(sections))

    def _g_bundle__key_id(self, rng):
        from scoring.keys import key_id_of

        variant = rng.choice(["bad id", "another bundle's id", "uppercase of its own id"])
        if variant == "bad id":
            key_id = rng.choice(BAD_KEY_IDS)
            return self._upload(f"key id {key_id!r}", self.m.bundle, S400, key_id=key_id, match="64 lowercase hex")
        if variant == "uppercase of its own id":
            return self._upload(variant, self.m.bundle, S400, key_id=self.m.key_id.upper())
        return self._upload(variant, self.m.bundle, S422, key_id=key_id_of(b"other"), match="does not hash")

    def _g_score__hostile_bundle(self, rng):
        """A valid request scored with a stored bundle that is hostile but hashes to its id."""
        from scoring.keys import key_id_of

        head, _, public = self._bundle_parts()
        _, data = ciphertext_fields(self.m.poly_words, seeded=False)
        n = 8 * self.m.poly_words
        blob = bytearray(public)
        variant = rng.choice(["zero key", "zero second part", "zero first part", "coefficients q-1",
                              "random coefficients below q", "bit flips", "secret key", "bomb"])
        expect, may_succeed = ANY_4XX, True
        if variant == "zero key":
            blob[data:] = bytes(2 * n)
        elif variant == "zero second part":
            blob[data + n:] = bytes(n)
        elif variant == "zero first part":
            blob[data:data + n] = bytes(n)
        elif variant == "coefficients q-1":
            blob[data:] = struct.pack("<Q", self.m.modulus - 1) * (2 * self.m.poly_words)
        elif variant == "random coefficients below q":
            blob[data:] = struct.pack(f"<{2 * self.m.poly_words}Q",
                                      *(rng.randrange(self.m.modulus) for _ in range(2 * self.m.poly_words)))
        elif variant == "bit flips":
            blob = bytearray(_flip(bytes(blob), rng, rng.choice([1, 3, 8]))[0])
        elif variant == "secret key":
            blob, expect, may_succeed = bytearray(self.m.secret_key), S422, False
        else:
            blob, expect, may_succeed = bytearray(self._bomb(self._bomb_specs()[7])), S422, False
        bundle = self._bundle_with([(b"PKEY", bytes(blob))])
        body, ctype = self.m.request(binary=rng.random() < 0.5)
        return dict(label=f"stored bundle: {variant}", body=body, content_type=ctype, key_id=key_id_of(bundle),
                    bundle=bundle, expect=expect, may_succeed=may_succeed,
                    match="secret key" if variant == "secret key" else None)


    # -- batch requests (when the service offers a batch path) ------------------------------------

    def _g_bulk__request(self, rng):
        from scoring.protocol import MAX_RECORDS

        columns = list(self.m.bulk_ciphertexts)
        records = self.m.bulk_records
        binary = rng.random() < 0.6
        scale = self.m.bulk_input_scale

        def batch(cols=None, n=records, **kw):
            return self.m.request(columns if cols is None else cols, binary=binary, records=n, **kw)

        def with_column(blob):
            j = rng.randrange(len(columns))
            return batch(columns[:j] + [blob] + columns[j + 1:])

        variant = rng.choice(["valid", "valid", "no model hash", "fewer records", "records 0", "records too many",
                              "records over the protocol limit", "records u32 max", "records as text",
                              "records null", "a column fewer", "a column more", "one column", "columns twice",
                              "field", "field", "bit flips", "zero second part", "zero first part",
                              "single-record ciphertext", "bomb", "a single-record request marked as a batch",
                              "padded over the cap"])
        expect, may_succeed, label = ANY_4XX, False, variant
        if variant == "valid":
            body, ctype = batch()
            expect, may_succeed = OK, True
        elif variant == "no model hash":
            body, ctype = batch(model_hash=None)
            expect, may_succeed = OK, True
        elif variant == "fewer records":
            body, ctype = batch(n=1)
            expect, may_succeed = OK, True
        elif variant in ("records 0", "records too many", "records over the protocol limit", "records u32 max"):
            n = {"records 0": 0, "records too many": self.m.bulk_max_records + 1,
                 "records over the protocol limit": MAX_RECORDS + 1, "records u32 max": (1 << 32) - 1}[variant]
            if binary:
                body, ctype = batch(n=1)
                body = body.replace(struct.pack("<I", 1), struct.pack("<I", n), 1)
            else:
                body, ctype = batch(n=n)
            expect = S400
        elif variant == "records as text":
            body, ctype = self.m.request(columns, binary=False, records=records)
            value = rng.choice([b'"3"', b"true", b"1.5", b"[3]", b"-1", b"1e999", b"1" + b"0" * 5000])
            body = body.replace(b'"records":3', b'"records":' + value)
            label = f"records {value[:12].decode()}"
            expect = S400
        elif variant == "records null":
            body, ctype = self.m.request(columns, binary=binary)  # a batch's columns, read as one record
            expect = frozenset({413, 422})
        elif variant == "a column fewer":
            body, ctype = batch(columns[:-1])
            expect = S422
        elif variant == "a column more":
            body, ctype = batch(columns + columns[:1])
            expect = S422
        elif variant == "one column":
            body, ctype = batch(columns[:1])
            expect = S422 if len(columns) > 1 else OK
        elif variant == "columns twice":
            body, ctype = batch(columns + columns)
            expect = frozenset({413, 422})
        elif variant == "field":
            mutated, label, valid = self._mutate_fields(rng, columns[rng.randrange(len(columns))], True, scale)
            body, ctype = with_column(mutated)
            label = f"a column: {label}"
            expect, may_succeed = (ANY_4XX, True) if valid else (S422, False)
        elif variant == "bit flips":
            flipped, where = _flip(columns[0], rng, rng.choice([1, 3, 8]))
            body, ctype = with_column(flipped)
            label, may_succeed = f"a column with bits {where} flipped", True
        elif variant in ("zero second part", "zero first part"):
            from scoring.ckks import HEADER_SIZE

            blob = bytearray(self.m.bulk_full_column)
            _, data = ciphertext_fields(self.m.poly_words, seeded=False)
            n = 8 * self.m.poly_words
            start = data + n if variant == "zero second part" else data
            blob[start:start + n] = bytes(n)
            body, ctype = with_column(reencode(self.m.seal_version, bytes(blob[HEADER_SIZE:]),
                                               rng.choice(["none", "zstd"])))
            expect, may_succeed = (S422, False) if variant == "zero second part" else (OK, True)
        elif variant == "single-record ciphertext":
            body, ctype = with_column(self.m.ciphertexts[0])
            may_succeed = True
        elif variant == "bomb":
            body, ctype = with_column(self._bomb(rng.choice([s for s in self._bomb_specs() if s[3] != 1.0])))
            expect = S422
        elif variant == "a single-record request marked as a batch":
            body, ctype = self.m.request(binary=binary, records=1)
            expect = S422 if len(self.m.ciphertexts) != len(columns) else ANY_4XX
            may_succeed = len(self.m.ciphertexts) == len(columns)
        else:
            body, ctype = batch()
            body += bytes(self.m.max_body_bytes + 1 - len(body))
            expect = S413
        return dict(label=label, body=body, content_type=ctype, expect=expect, may_succeed=may_succeed)


# -- running cases against the core ---------------------------------------------------------------


def _status_kb() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Vm"):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class PeakMemory:
    """Peak RSS per case: reset the high-water mark before, read it after (Linux)."""

    def __init__(self) -> None:
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def start(self) -> int:
        """Reset the mark; return the current RSS in kB."""
        if self.resettable:
            self._reset()
        return _status_kb().get("VmRSS", 0)

    def peak(self) -> int:
        """The peak RSS in kB since :meth:`start` (since the process began if not resettable)."""
        if self.resettable:
            return _status_kb().get("VmHWM", 0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def call(service, material: Material, case: Case) -> tuple[int, str, str, bytes | None, str | None]:
    """Run one case against the core: (status, error code, message, response body, its type).

    Any exception other than a ScoringError propagates: it is a failure.
    """
    from scoring.errors import ScoringError
    from scoring.keys import key_id_of

    try:
        if case.target == "upload":
            key_id = key_id_of(case.body) if case.key_id is None else case.key_id
            service.check_upload(key_id, case.body)
            return 200, "", "", None, None
        key_id = material.key_id if case.key_id is None else case.key_id
        out, out_type = service.score(key_id, case.bundle, case.body, case.content_type)
        return 200, "", "", out, out_type
    except ScoringError as exc:
        return exc.status, exc.code, exc.message, None, None


def encodings(service) -> tuple:
    """(the single-record encoding, the batch encoding or None) from the service's description."""
    from client.scoring_client import ModelInfo

    description = service.describe()
    try:
        from scoring.bulk import BulkEncoding
    except ImportError:
        return ModelInfo(description).encoding, None
    return ModelInfo(description).encoding, BulkEncoding.from_description(description)


def check_success(material: Material, keys, encoding: tuple, case: Case, out: bytes | None,
                  out_type: str | None) -> str | None:
    """A 200 must decrypt without error; an unmutated record must decrypt to the model's scores."""
    import numpy as np

    from scoring import protocol

    if case.target != "score":
        return None
    message = protocol.decode(out, out_type, response=True)
    exact = case.expect == OK and case.bundle == material.bundle and case.category != "request.zero_parts"
    if getattr(message, "records", None) is not None:
        scores = keys.decrypt_columns(encoding[1], message.ciphertexts, message.records)
        expected = np.asarray(material.bulk_expected)[:message.records]
        exact = exact and "zero first part" not in case.label
        tolerance = 1e-2
    else:
        scores = keys.decrypt_scores(encoding[0], message.ciphertexts)
        expected, tolerance = np.asarray(material.expected), 1e-3
    if exact and not np.allclose(scores, expected, atol=tolerance):
        worst = float(np.max(np.abs(scores - expected)))
        return f"accepted, but the scores are off by {worst:.3g}"
    return None


@dataclass
class Stats:
    """Figures for a run, overall and per category."""

    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    per_category: dict = field(default_factory=lambda: defaultdict(lambda: {
        "cases": 0, "statuses": Counter(), "slowest_ms": 0.0, "max_memory_growth_mb": 0.0}))
    failures: list = field(default_factory=list)
    failure_count: int = 0
    failure_kinds: Counter = field(default_factory=Counter)
    slowest_rejection: dict = field(default_factory=lambda: {"ms": 0.0})
    slowest_success: dict = field(default_factory=lambda: {"ms": 0.0})
    largest_case: dict = field(default_factory=lambda: {"growth_mb": 0.0})
    peak_rss_kb: int = 0
    total_ms: float = 0.0

    def record(self, case: Case, status: int | str, ms: float, start_kb: int, peak_kb: int,
               failure: str | None) -> None:
        self.cases += 1
        self.total_ms += ms
        self.statuses[str(status)] += 1
        category = self.per_category[case.category]
        category["cases"] += 1
        category["statuses"][str(status)] += 1
        category["slowest_ms"] = max(category["slowest_ms"], round(ms, 3))
        growth = max(0, peak_kb - start_kb) / 1024
        category["max_memory_growth_mb"] = max(category["max_memory_growth_mb"], round(growth, 2))
        self.peak_rss_kb = max(self.peak_rss_kb, peak_kb)
        where = {"ms": round(ms, 3), "category": case.category, "label": case.label, "status": status}
        if isinstance(status, int) and 400 <= status < 500 and ms > self.slowest_rejection["ms"]:
            self.slowest_rejection = where
        if status == 200 and ms > self.slowest_success["ms"]:
            self.slowest_success = where
        if growth > self.largest_case["growth_mb"]:
            self.largest_case = {**where, "growth_mb": round(growth, 2)}
        if failure:
            self.failure_count += 1
            self.failure_kinds[f"{case.category}: {failure.splitlines()[0][:100]}"] += 1
            if len(self.failures) < 50:
                self.failures.append({"index": case.index, "category": case.category, "label": case.label,
                                      "status": status, "failure": failure[:2000]})


def run(service, material: Material, keys, cases, *, progress: Callable[[Case], None] | None = None,
        case_timeout: float | None = None) -> Stats:
    """Run cases against the core in this process and collect the figures."""
    encoding = encodings(service)
    memory = PeakMemory()
    stats = Stats()
    for case in cases:
        if progress is not None:
            progress(case)
        if case_timeout:
            faulthandler.dump_traceback_later(case_timeout, exit=True)
        start_kb = memory.start()
        started = time.perf_counter()
        failure = None
        try:
            status, _code, message, out, out_type = call(service, material, case)
        except Exception as exc:  # noqa: BLE001 - every other exception is the finding
            status, message = type(exc).__name__, str(exc)
            failure = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-6))
        ms = (time.perf_counter() - started) * 1e3
        peak_kb = memory.peak()
        if failure is None:
            failure = case.judge(status, message)
        if failure is None and status == 200:
            try:
                failure = check_success(material, keys, encoding, case, out, out_type)
            except Exception as exc:  # noqa: BLE001
                failure = f"accepted, but the response does not decrypt: {type(exc).__name__}: {exc}"
        stats.record(case, status, ms, start_kb, peak_kb, failure)
    if case_timeout:
        faulthandler.cancel_dump_traceback_later()
    return stats


def default_record(service, seed: int):
    """A record within the model's input bounds, from the seed."""
    import numpy as np

    model = service.model
    return np.random.default_rng(seed).uniform(-0.9, 0.9, model.n_features) * model.input_bounds


def digits_model(directory: Path) -> Path:
    """The digits model, exported into ``directory`` (when no model is given)."""
    from demo.data import train_digits_model
    from scoring.model import export_model

    try:
        from scoring.estimators import from_estimator
    except ImportError:  # older layout
        from scoring.model import from_estimator
    return export_model(from_estimator(train_digits_model()), directory / "digits.model.json")


# -- the child process ------------------------------------------------------------------------------


SELFTESTS = ("segv", "hang", "balloon")


def selftest(args: argparse.Namespace) -> int:
    """A deliberate fault inside a case, so that tests can check the harness reports it."""
    progress_fd = os.open(args.progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(progress_fd, json.dumps({"index": 0, "category": f"selftest.{args.selftest}",
                                       "label": "a deliberate fault"}).encode(), 0)
    limit = _status_kb().get("VmSize", 0) * 1024 + (args.mem_limit_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    faulthandler.dump_traceback_later(args.case_timeout, exit=True)
    if args.selftest == "segv":
        import ctypes

        ctypes.string_at(0)
    elif args.selftest == "hang":
        time.sleep(3600)
    else:
        hoard = [bytearray(64 << 20) for _ in range(4 * args.mem_limit_mb)]  # MemoryError under RLIMIT_AS
        del hoard
    return 0


def worker(args: argparse.Namespace) -> int:
    """Build the material, warm up, limit memory, run the cases, write the report."""
    import numpy as np  # noqa: F401 - imported before the baseline is measured

    if args.selftest:
        return selftest(args)

    from client.keys import SecretKeys
    from scoring.service import ScoringService, Settings

    setup_started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or str(digits_model(Path(tmp)))
        service = ScoringService(Settings(model_path=model_path))
        service.kernel  # noqa: B018 - build it now, not inside the first case
    keys = SecretKeys.generate()
    material = build_material(service, keys, default_record(service, args.seed))
    fuzzer = Fuzzer(material, args.seed, bomb_bytes=args.bomb_mb << 20)
    fuzzer.prepare()
    categories = args.categories.split(",") if args.categories else None
    # warm up: one valid request and one rejection, outside the figures
    run(service, material, keys, [fuzzer.case("request.valid", 0), fuzzer.case("request.random", 0)])
    setup_s = time.perf_counter() - setup_started
    status = _status_kb()
    baseline_kb = status.get("VmRSS", 0)
    if args.mem_limit_mb:
        limit = status.get("VmSize", 0) * 1024 + (args.mem_limit_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    progress_fd = os.open(args.progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if args.progress else None

    def progress(case: Case) -> None:
        line = json.dumps({"index": case.index, "category": case.category, "label": case.label})
        os.pwrite(progress_fd, line.encode().ljust(512)[:4096], 0)

    started = time.perf_counter()
    stats = run(service, material, keys, fuzzer.cases(args.cases, categories),
                progress=progress if progress_fd is not None else None, case_timeout=args.case_timeout)
    elapsed = time.perf_counter() - started
    final = _status_kb()
    report = {
        "seed": args.seed, "cases": stats.cases, "model": Path(model_path).name,
        "categories": {name: {"cases": c["cases"], "statuses": dict(sorted(c["statuses"].items())),
                              "slowest_ms": c["slowest_ms"], "max_memory_growth_mb": c["max_memory_growth_mb"]}
                       for name, c in sorted(stats.per_category.items())},
        "statuses": dict(sorted(stats.statuses.items())),
        "failures": stats.failures, "failure_count": stats.failure_count,
        "failure_kinds": dict(stats.failure_kinds.most_common()),
        "server_errors": sum(n for s, n in stats.statuses.items() if not s.isdigit() or int(s) >= 500),
        "slowest_rejection": stats.slowest_rejection, "slowest_success": stats.slowest_success,
        "mean_ms": round(stats.total_ms / max(1, stats.cases), 3),
        "memory": {
            "baseline_rss_mb": round(baseline_kb / 1024, 1),
            "peak_rss_mb": round(stats.peak_rss_kb / 1024, 1),
            "peak_growth_mb": round(max(0, stats.peak_rss_kb - baseline_kb) / 1024, 1),
            "largest_single_case": stats.largest_case,
            "final_rss_mb": round(final.get("VmRSS", 0) / 1024, 1),
            "vm_peak_mb": round(final.get("VmPeak", 0) / 1024, 1),
            "address_space_limit_mb": args.mem_limit_mb,
            "per_case_peak": "reset" if PeakMemory().resettable else "ru_maxrss (not resettable here)",
        },
        "setup_s": round(setup_s, 2), "elapsed_s": round(elapsed, 2),
        "case_timeout_s": args.case_timeout,
    }
    Path(args.report).write_text(json.dumps(report, indent=2))
    return 0


class FuzzFailure(AssertionError):
    """The child crashed, hung or ran out of its limits; the message names the case."""


def run_isolated(cases: int = 3000, *, seed: int = 0, model: str | Path | None = None,
                 categories: list[str] | None = None, timeout: float = 600, case_timeout: float = 10,
                 mem_limit_mb: int = 1024, bomb_mb: int = HUGE >> 20, selftest: str | None = None) -> dict:
    """Run cases in a child process (spawned fresh: no fork after SEAL threads) and return its report.

    Raises:
        FuzzFailure: if the child dies (a signal such as SIGSEGV), exceeds a deadline, or
            fails otherwise; the message names the case it was running.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report, progress = Path(tmp) / "report.json", Path(tmp) / "progress"
        command = [sys.executable, "-X", "faulthandler", "-m", "bench.fuzz", "--worker", "--cases", str(cases),
                   "--seed", str(seed), "--report", str(report), "--progress", str(progress),
                   "--case-timeout", str(case_timeout), "--mem-limit-mb", str(mem_limit_mb),
                   "--bomb-mb", str(bomb_mb)]
        if model:
            command += ["--model", str(model)]
        if categories:
            command += ["--categories", ",".join(categories)]
        if selftest:
            command += ["--selftest", selftest]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

        def running() -> str:
            try:
                return progress.read_text().strip() or "(setup)"
            except OSError:
                return "(setup: no case started)"

        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            raise FuzzFailure(f"the fuzz child did not finish within {timeout} s (a hang or a spin): it was "
                              f"running {running()}; stderr tail: {stderr[-1500:]}") from None
        if done.returncode != 0:
            if done.returncode < 0:
                what = f"was killed by {signal.Signals(-done.returncode).name}"
            elif "Timeout (" in done.stderr:
                what = f"exceeded the per-case deadline of {case_timeout} s"
            elif "MemoryError" in done.stderr:
                what = f"ran out of its address-space limit (baseline + {mem_limit_mb} MB)"
            else:
                what = f"exited with {done.returncode}"
            raise FuzzFailure(f"the fuzz child {what} while running {running()}; stderr tail:\n"
                              f"{done.stderr[-3000:]}")
        return json.loads(report.read_text())


# -- command line ------------------------------------------------------------------------------------


def format_report(report: dict) -> str:
    statuses = sorted({s for c in report["categories"].values() for s in c["statuses"]},
                      key=lambda s: (not s.isdigit(), s))
    width = max(len(name) for name in report["categories"]) + 2
    lines = [f"fuzz: {report['cases']} cases, seed {report['seed']}, model {report['model']}, "
             f"{report['elapsed_s']} s (setup {report['setup_s']} s), mean {report['mean_ms']} ms per case", "",
             "category".ljust(width) + "cases" + "".join(s.rjust(7) for s in statuses) + "  slowest ms  max MB"]
    for name, c in report["categories"].items():
        lines.append(name.ljust(width) + str(c["cases"]).rjust(5)
                     + "".join(str(c["statuses"].get(s, "")).rjust(7) for s in statuses)
                     + f"{c['slowest_ms']:12.2f}{c['max_memory_growth_mb']:8.1f}")
    memory = report["memory"]
    slow = report["slowest_rejection"]
    largest = memory["largest_single_case"]
    lines += ["", "statuses: " + ", ".join(f"{s}: {n}" for s, n in report["statuses"].items()),
              f"failures: {report['failure_count']} (crashes, 5xx, other exceptions, unexpected statuses); "
              f"server errors: {report['server_errors']}",
              f"slowest rejection: {slow['ms']:.2f} ms ({slow.get('category')}: {slow.get('label')}, "
              f"{slow.get('status')})",
              f"slowest success: {report['slowest_success']['ms']:.2f} ms "
              f"({report['slowest_success'].get('category')}: {report['slowest_success'].get('label')})",
              f"peak memory: {memory['peak_rss_mb']} MB RSS (baseline {memory['baseline_rss_mb']} MB, growth "
              f"{memory['peak_growth_mb']} MB); largest single case +{largest['growth_mb']} MB "
              f"({largest.get('category')}: {largest.get('label')}); VmPeak {memory['vm_peak_mb']} MB under an "
              f"address-space limit of baseline + {memory['address_space_limit_mb']} MB"]
    for kind, count in report["failure_kinds"].items():
        example = next((f for f in report["failures"] if kind.startswith(f["category"] + ": ")
                        and kind.endswith(f["failure"].splitlines()[0][:100])), None)
        lines.append(f"  FAIL x{count} {kind}" + (f"  (e.g. #{example['index']}: {example['label']})" if example else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="a model artifact or pickle (default: the digits model)")
    parser.add_argument("--categories", help="comma-separated category prefixes (default: all)")
    parser.add_argument("--json", nargs="?", const=str(DEFAULT_JSON), default=None, metavar="PATH",
                        help=f"write the figures as JSON (default path {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
    parser.add_argument("--case-timeout", type=float, default=10, help="seconds for one case")
    parser.add_argument("--mem-limit-mb", type=int, default=1024, help="address space over the baseline")
    parser.add_argument("--bomb-mb", type=int, default=HUGE >> 20, help="what the zstd bombs inflate to")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    parser.add_argument("--selftest", choices=SELFTESTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    try:
        report = run_isolated(args.cases, seed=args.seed, model=args.model,
                              categories=args.categories.split(",") if args.categories else None,
                              timeout=args.timeout, case_timeout=args.case_timeout, mem_limit_mb=args.mem_limit_mb,
                              bomb_mb=args.bomb_mb)
    except FuzzFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if report["failure_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
