"""Single-record score requests whose ciphertexts lie: random, cut, flipped, swapped fields,
re-compressed, bombs, zero parts, other objects spliced in; bodies over the caps; key ids
that are malformed or name no bundle."""

from __future__ import annotations

import random
import struct

from scoring.keys import key_id_of
from scoring.protocol import FRAME, LENGTH

from ..blobs import body_of, ciphertext_fields, field_boundaries, flip, reencode, with_zero_parts
from ..cases import (ANY_4XX, BAD_KEY_IDS, BINARY_TYPE, CONTENT_TYPES, JSON_TYPE, KEY_ID_MESSAGE, OK, S400, S404,
                     S413, S422, Case, Family, Stored)
from ..mutator import Mutator


def valid(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    variant = rng.choice(["binary", "json", "no-hash", "full-binary", "full-json", "no-content-type"])
    if variant.startswith("full"):
        body, ctype = m.request(m.full_ciphertexts, binary=variant == "full-binary")
    elif variant == "json":
        body, ctype = m.request(binary=False)
    elif variant == "no-hash":
        body, ctype = m.request(binary=rng.random() < 0.5, model_hash=None)
    elif variant == "no-content-type":
        body, ctype = m.request(binary=rng.random() < 0.5)
        ctype = None
    else:
        body, ctype = m.request()
    return Case(variant, body, content_type=ctype, expect=OK, may_succeed=True, exact=True)


def random_bytes(mu: Mutator, rng: random.Random) -> Case:
    size = rng.choice([0, 1, 3, 4, 7, 8, 16, 44, 100, 1000, 4096, 65_774,
                       rng.randrange(0, mu.m.max_request_bytes + 1000)])
    prefix = rng.choice([b"", b"", b"HESQ", b"HESQ\x02\x01\x01\x00", b"HESQ\x02\x03\x40\x00", b"{",
                         b'{"version":2,"ciphertexts":["'])
    body = (prefix + rng.randbytes(size))[:max(size, len(prefix))]
    ctype = rng.choice(CONTENT_TYPES)
    return Case(f"{len(body)} random bytes after {prefix[:12]!r}, {ctype}", body, content_type=ctype)


def truncate(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    index, blob, seeded = mu.ciphertext(rng)
    cuts = field_boundaries(m.poly_words, seeded=seeded, length=len(blob)) + [rng.randrange(len(blob))]
    cut = rng.choice(cuts)
    short = blob[:cut]
    mode = rng.choice(["body", "frame-fixed", "header-fixed", "json"])
    if mode == "body":
        body, ctype = mu.request_with(index, blob, rng, binary=True)
        start = FRAME.size + 32 + LENGTH.size + sum(LENGTH.size + len(c) for c in m.ciphertexts[:index])
        frame_cut = rng.choice([0, 1, 4, 5, 6, 8, 20, 40, 42, start + cut])
        return Case(f"binary body cut at {frame_cut}", body[:frame_cut], content_type=ctype, expect=S400)
    if mode == "header-fixed" and cut >= 16:
        from scoring.ckks import HEADER

        fixed = bytearray(short)
        HEADER.pack_into(fixed, 0, *HEADER.unpack_from(fixed)[:-1], len(fixed))
        short = bytes(fixed)
    if mode == "json":
        body, ctype = mu.request_with(index, short, rng, binary=False)
        text_cut = rng.choice([None, None, 1, 10, len(body) // 2, len(body) - 1])
        if text_cut is not None:
            return Case(f"JSON text cut at {text_cut}", body[:text_cut], content_type=ctype, expect=S400)
    else:
        body, ctype = mu.request_with(index, short, rng, binary=True)
    return Case(f"{'seeded' if seeded else 'full'} ciphertext cut at {cut} ({mode})", body, content_type=ctype,
                expect=S422)


def bitflip(mu: Mutator, rng: random.Random) -> Case:
    index, blob, seeded = mu.ciphertext(rng)
    bits = rng.choice([1, 1, 2, 3, 8, 32])
    _, data = ciphertext_fields(mu.m.poly_words, seeded=seeded)
    region = rng.choice(["header", "data", "anywhere", "seed" if seeded else "data", "frame"])
    if region == "frame":
        body, ctype = mu.request_with(index, blob, rng, binary=rng.random() < 0.7)
        flipped, where = flip(body, rng, bits, 0, 60 if ctype == BINARY_TYPE else len(body))
        return Case(f"{bits} bit(s) of the {ctype} body at {where[:4]}", flipped, content_type=ctype,
                    may_succeed=True)
    lo, hi = {"header": (0, data), "data": (data, len(blob)), "anywhere": (0, len(blob)),
              "seed": (len(blob) - 81, len(blob))}[region]
    flipped, where = flip(blob, rng, bits, lo, hi)
    body, ctype = mu.request_with(index, flipped, rng)
    return Case(f"{bits} bit(s) flipped in the ciphertext {region} at bits {where[:4]}", body, content_type=ctype,
                may_succeed=True)


def fields(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    index, blob, seeded = mu.ciphertext(rng)
    if rng.random() < 0.15:  # a random body behind valid fields
        _, data = ciphertext_fields(m.poly_words, seeded=seeded)
        masked = rng.random() < 0.5
        if masked:  # coefficients below q (and a random seed): a valid ciphertext of garbage
            words = m.poly_words * (1 if seeded else 2)
            tail = struct.pack(f"<{words}Q", *(rng.randrange(m.modulus) for _ in range(words)))
            if seeded:
                tail += blob[data + 8 * words:data + 8 * words + 17] + rng.randbytes(64)
        else:
            tail = rng.randbytes(len(blob) - data)
        body, ctype = mu.request_with(index, blob[:data] + tail, rng)
        return Case(f"random {'coefficients below q' if masked else 'bytes'} behind valid fields", body,
                    content_type=ctype, may_succeed=masked)
    mutated, label, still_valid = mu.mutate_fields(rng, blob, seeded, m.input_scale)
    body, ctype = mu.request_with(index, mutated, rng)
    return Case(f"{'seeded' if seeded else 'full'}: {label}", body, content_type=ctype,
                expect=ANY_4XX if still_valid else S422, may_succeed=still_valid)


def recompress(mu: Mutator, rng: random.Random) -> Case:
    index, blob, seeded = mu.ciphertext(rng)
    mode = rng.choice(["zstd", "zlib", "none"])
    body, ctype = mu.request_with(index, reencode(mu.m.seal_version, body_of(blob), mode), rng)
    return Case(f"valid {'seeded' if seeded else 'full'} ciphertext re-encoded {mode}", body, content_type=ctype,
                expect=OK, may_succeed=True, exact=True)


def bomb(mu: Mutator, rng: random.Random) -> Case:
    spec = rng.choice(mu.bombs("ciphertext", "any"))
    blob = mu.bomb(spec)
    body, ctype = mu.request_with(rng.randrange(len(mu.m.ciphertexts)), blob, rng)
    return Case(f"{spec.mode} {spec.label} ({len(blob)} bytes -> {mu.inflated(spec) >> 20} MB)", body,
                content_type=ctype, expect=S422)


def zero_parts(mu: Mutator, rng: random.Random) -> Case:
    """Full ciphertexts with an all-zero part: the second part zero makes SEAL's product 'transparent'."""
    m = mu.m
    index = rng.randrange(len(m.ciphertexts))
    which = rng.choice(["second", "second", "both", "first"])
    blob = with_zero_parts(m.full_ciphertexts[index], m.poly_words, first=which in ("first", "both"),
                                 second=which in ("second", "both"))
    mode = rng.choice(["none", "zstd", "zlib"])
    body, ctype = mu.request_with(index, reencode(m.seal_version, body_of(blob), mode), rng)
    return Case(f"full ciphertext with its {which} part(s) zero ({mode})", body, content_type=ctype,
                expect=OK if which == "first" else S422, may_succeed=which == "first",
                match=None if which == "first" else "zero second part")


def splice(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    index = rng.randrange(len(m.ciphertexts))
    if rng.random() < 0.2:
        body = rng.choice([m.bundle, m.secret_key, m.ciphertexts[0]])
        return Case("a SEAL blob or bundle as the whole body", body,
                    content_type=rng.choice([BINARY_TYPE, JSON_TYPE, None]), expect=S400)
    variants = [
        ("the public key as a ciphertext", m.public_key_blob(), S422),
        ("the full-form public key as a ciphertext", m.full_public_key, S422),
        ("the secret key as a ciphertext", m.secret_key, S422),
        ("the raw secret key as a ciphertext", m.secret_key_raw, S422),
        ("a result ciphertext", m.result_ciphertext, S422),
        ("a ciphertext for other parameters", m.foreign_ciphertext, S422),
        ("the key bundle as a ciphertext", m.bundle, S422),
        ("a TenSEAL context as a ciphertext", m.tenseal_context, frozenset({413, 422})),
        ("a full ciphertext where a seeded one was", m.full_ciphertexts[index], OK),
        ("two ciphertexts glued", m.ciphertexts[index] + m.ciphertexts[index], S422),
    ]
    name, blob, expect = rng.choice(variants)
    body, ctype = mu.request_with(index, blob, rng)
    return Case(name, body, content_type=ctype, expect=expect, may_succeed=expect == OK, exact=expect == OK)


def packed(mu: Mutator, rng: random.Random) -> Case:
    """The client's packed form (``HEPK``, bits, SEAL's fields with the residues packed), honest
    or lying: its bits, its word count, its length, its bytes."""
    from scoring.ckks import CIPHERTEXT_DATA_OFFSET, PACKED_CIPHERTEXT_MAGIC, PACKED_PREFIX

    m = mu.m
    index = rng.randrange(len(m.packed_ciphertexts))
    blob = m.packed_ciphertexts[index]
    count_at = PACKED_PREFIX + CIPHERTEXT_DATA_OFFSET - 8
    variants = {
        "valid": (blob, OK),
        "other bits": (blob[:4] + bytes([rng.choice([0, 1, 59, 61, 64, 255])]) + blob[5:], S422),
        "cut": (blob[:rng.randrange(len(blob))], S422),
        "a byte more": (blob + b"\x00", S422),
        "word count lies": (blob[:count_at] + struct.pack("<Q", rng.choice([0, 1, m.poly_words - 1, 2 * m.poly_words,
                                                                            2 ** 40, 2 ** 64 - 1])) + blob[count_at + 8:],
                            S422),
        "random after the magic": (PACKED_CIPHERTEXT_MAGIC + rng.randbytes(rng.choice([0, 1, 100, len(blob) - 4])), S422),
        "bits flipped": (flip(blob, rng, rng.choice([1, 3, 8]), 0, len(blob))[0], ANY_4XX),
    }
    name = rng.choice(list(variants))
    mutated, expect = variants[name]
    body, ctype = mu.request_with(index, mutated, rng)
    if name == "bits flipped":
        return Case(f"packed: {name}", body, content_type=ctype, expect=expect, may_succeed=True)
    return Case(f"packed: {name}", body, content_type=ctype, expect=expect, may_succeed=expect == OK,
                exact=expect == OK)


def too_large(mu: Mutator, rng: random.Random) -> Case:
    """Bodies over a cap. One under the largest cap (a batch's) is parsed before the
    single-record cap applies, so those are well formed and carry their content type."""
    m = mu.m
    cap = m.max_request_bytes
    variant = rng.choice(["random", "padded JSON", "binary with a large chunk"])
    if variant == "random":
        body = rng.randbytes(max(cap, m.max_body_bytes) + rng.choice([1, 100, 100_000]))
        ctype = rng.choice([JSON_TYPE, BINARY_TYPE, None])
    elif variant == "padded JSON":
        valid_body = m.request(binary=False)[0]
        body, ctype = valid_body + b" " * (cap + 1 - len(valid_body)), rng.choice([JSON_TYPE, None])
    else:
        body = m.request([m.full_ciphertexts[0] * 2])[0]
        body, ctype = body + bytes(max(0, cap + 1 - len(body))), rng.choice([BINARY_TYPE, None])
    return Case(f"{variant}, {len(body)} bytes", body, content_type=ctype, expect=S413)


def key_id(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    body, ctype = m.request(binary=rng.random() < 0.5)
    bad = rng.choice(BAD_KEY_IDS + (m.key_id.upper(), "../" + m.key_id[3:]))
    return Case(f"key id {bad!r}", body, content_type=ctype, key_id=bad, expect=S400, match=KEY_ID_MESSAGE)


def routing(mu: Mutator, rng: random.Random) -> Case:
    """Well-formed requests that name no stored bundle, or a bundle stored under another's id."""
    body, ctype = mu.m.request(binary=rng.random() < 0.5)
    variant = rng.choice(["none stored", "bundle under another id"])
    other = key_id_of(rng.randbytes(8))
    if variant == "none stored":
        return Case(variant, body, content_type=ctype, key_id=other, bundle=Stored.NONE, expect=S404)
    return Case(variant, body, content_type=ctype, key_id=other, expect=S422, match="does not hash to its key id")


FAMILIES = {
    "request.valid": Family(1, valid),
    "request.random": Family(3, random_bytes),
    "request.truncate": Family(4, truncate),
    "request.bitflip": Family(3, bitflip),
    "request.field": Family(6, fields),
    "request.recompress": Family(2, recompress),
    "request.packed": Family(2, packed),
    "request.bomb": Family(2, bomb),
    "request.zero_parts": Family(1, zero_parts),
    "request.splice": Family(2, splice),
    "request.too_large": Family(0.5, too_large),
    "request.key_id": Family(1, key_id),
    "request.routing": Family(1, routing),
}
