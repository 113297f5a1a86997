"""The mutations several families share, bound to the material: pick a valid ciphertext, put a
blob where it was in a request, swap SEAL fields for lies, and the bombs."""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass

from .blobs import body_of, body_size, bomb as build_bomb, ciphertext_fields, pack, reencode
from .cases import HUGE
from .material import Material


@dataclass(frozen=True)
class BombSpec:
    """A decompression bomb: a SEAL blob of a few KB that inflates to ``total`` bytes.

    Attributes:
        fields: what precedes the zeros: ``"none"``; ``"claim"``: fields claiming ``parts``
            polynomials; ``"zeros, exact size"``: nothing, inflating to exactly a full
            ciphertext's fields; ``"fields, exact size"``: valid two-part fields and zero data.
        kind: ``"ciphertext"`` (scale of a request), ``"key"`` (scale 1, a public key) or
            ``"any"``.
        total: bytes once inflated; None is the fuzzer's bomb size (1 GB by default).
    """

    mode: str
    label: str
    fields: str = "none"
    parts: int = 0
    kind: str = "any"
    total: int | None = None
    window_log: int | None = None
    frames: int = 1


BOMBS = (
    BombSpec("zstd", "fields claiming 2^17 parts + zeros", "claim", 1 << 17, "ciphertext"),
    BombSpec("zstd", "zeros only"),
    BombSpec("zstd", "valid 2-part fields + zeros", "claim", 2, "ciphertext"),
    BombSpec("zstd", "zeros, 128 MB window", total=256 << 20, window_log=27),
    BombSpec("zstd", "8 frames of zeros", total=64 << 20, frames=8),
    BombSpec("zlib", "fields claiming 2^17 parts + zeros", "claim", 1 << 17, "ciphertext", total=64 << 20),
    BombSpec("zlib", "zeros only", total=64 << 20),
    BombSpec("zstd", "public key fields claiming 2^17 parts + zeros", "claim", 1 << 17, "key"),
    BombSpec("zlib", "public key fields + zeros", "claim", 2, "key", total=256 << 20),
    BombSpec("zstd", "exactly the size of a full ciphertext, zeros", "zeros, exact size", kind="ciphertext"),
    BombSpec("zlib", "exactly the size of a full ciphertext, valid fields + zero data", "fields, exact size",
             2, "ciphertext"),
    BombSpec("zstd", "exactly the size of a full public key, valid fields + zero data", "fields, exact size", 2,
             "key"),
)


class Mutator:
    """The material, and the mutations families share."""

    def __init__(self, material: Material, *, bomb_bytes: int = HUGE) -> None:
        self.m = material
        self.bomb_bytes = bomb_bytes

    # -- requests ------------------------------------------------------------------------

    def ciphertext(self, rng: random.Random) -> tuple[int, bytes, bool]:
        """A random chunk index, its valid blob (seeded, or sometimes full), and whether it is seeded."""
        index = rng.randrange(len(self.m.ciphertexts))
        if rng.random() < 0.3:
            return index, self.m.full_ciphertexts[index], False
        return index, self.m.ciphertexts[index], True

    def request_with(self, index: int, blob: bytes, rng: random.Random, *, binary: bool | None = None
                     ) -> tuple[bytes, str]:
        """The valid single-record request with chunk ``index`` replaced by ``blob``."""
        chunks = list(self.m.ciphertexts)
        chunks[index] = blob
        return self.m.request(chunks, binary=rng.random() < 0.6 if binary is None else binary)

    # -- SEAL fields ---------------------------------------------------------------------

    def mutate_fields(self, rng: random.Random, blob: bytes, seeded: bool, scale: float) -> tuple[bytes, str, bool]:
        """Swap one to three SEAL fields for lies; maybe re-compress so that only inner fields lie.

        Returns:
            the blob, a label, and whether it may still be a valid object.
        """
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
            value, still_valid = self.field_value(rng, name, fmt, bytes(out[offset:offset + size]), len(blob), scale)
            new = pack(fmt, value)
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
            result = reencode(self.m.seal_version, body_of(result), mode)
            labels.append(f"recompressed {mode}")
        return result, ", ".join(labels), valid

    def field_value(self, rng: random.Random, name: str, fmt: str, current: bytes, blob_len: int,
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

    # -- bombs ---------------------------------------------------------------------------

    def bombs(self, *kinds: str) -> list[BombSpec]:
        """The bombs of these kinds."""
        return [spec for spec in BOMBS if spec.kind in kinds]

    def inflated(self, spec: BombSpec) -> int:
        """Bytes the bomb inflates to."""
        if spec.fields.endswith("exact size"):
            return body_size(self.m.poly_words, seeded=False)
        return (spec.total or self.bomb_bytes) * spec.frames

    def bomb(self, spec: BombSpec) -> bytes:
        """The bomb's blob (built once per process: ``build_bomb`` is cached)."""
        total = self.inflated(spec) // spec.frames
        scale = 1.0 if spec.kind == "key" else self.m.input_scale
        prefix = (self.m.claiming_fields(parts=spec.parts, scale=scale)
                  if spec.fields in ("claim", "fields, exact size") else b"")
        return build_bomb(self.m.seal_version, prefix, total, spec.mode, window_log=spec.window_log,
                          frames=spec.frames)

    def prepare(self) -> None:
        """Build every bomb now (building takes about a second)."""
        for spec in BOMBS:
            self.bomb(spec)
