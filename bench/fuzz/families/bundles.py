"""Key bundles that lie: uploads (random, cut, flipped, swapped fields, bombs, smuggled secret
keys, unserved parameters, odd sections, wrong ids), and valid requests scored with a hostile
bundle stored behind the API (as a client with its own storage could put it there)."""

from __future__ import annotations

import random
import struct

from scoring.ckks import HEADER
from scoring.keys import BUNDLE_MAGIC, PREAMBLE, SECTION, key_id_of

from ..blobs import body_of, ciphertext_fields, field_boundaries, flip, pack, reencode, with_zero_parts
from ..cases import ANY_4XX, BAD_KEY_IDS, KEY_ID_MESSAGE, OK, S400, S422, Case, Family, Target
from ..mutator import Mutator

SECRET_KEY_MESSAGE = "secret key"
SEEDED_MESSAGE = "must be in seeded form"
MALFORMED_MESSAGE = "visibly malformed"


def upload(label: str, body: bytes, expect: frozenset[int] = S422, *, may_succeed: bool = False,
           key_id: str | None = None, match: str | None = None) -> Case:
    return Case(label, body, target=Target.UPLOAD, key_id=key_id, expect=expect, may_succeed=may_succeed,
                match=match)


def valid(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    variant = rng.choice(["as built", "public key zstd", "public key zlib"])
    if variant == "as built":
        return upload(variant, m.bundle, OK, may_succeed=True)
    blob = reencode(m.seal_version, body_of(m.public_key_blob()), variant.split()[-1])
    return upload(variant, m.bundle_with([(b"PKEY", blob)]), OK, may_succeed=True)


def random_bytes(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    size = rng.choice([0, 1, 4, 11, 12, 20, 28, 100, 4096, 65_000, rng.randrange(m.max_bundle_bytes + 10)])
    prefix = rng.choice([b"", b"HEKB", b"HEKB\x01\x01\x01\x00", m.bundle_head(), m.bundle_head() + b"PKEY"])
    body = prefix + rng.randbytes(size)
    return upload(f"{len(body)} random bytes after {prefix[:8]!r}", body,
                  frozenset({413, 422}) if len(body) > m.max_bundle_bytes else S422)


def truncate(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    start = len(m.bundle_head()) + SECTION.size
    blob = m.public_key_blob()
    offsets = list(range(0, start + 1)) + [
        start + o for o in field_boundaries(m.poly_words, seeded=True, length=len(blob))]
    cut = rng.choice(offsets + [rng.randrange(len(m.bundle))])
    mode = rng.choice(["raw", "section-fixed", "header-fixed"])
    if cut <= start or mode == "raw":
        return upload(f"bundle cut at {cut}", m.bundle[:cut])
    short = bytearray(blob[:cut - start])
    if mode == "header-fixed" and len(short) >= 16:
        HEADER.pack_into(short, 0, *HEADER.unpack_from(short)[:-1], len(short))
    return upload(f"public key cut at {cut - start} ({mode})", m.bundle_with([(b"PKEY", bytes(short))]))


def bitflip(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    bits = rng.choice([1, 1, 2, 3, 8, 32])
    start = len(m.bundle_head()) + SECTION.size
    _, data = ciphertext_fields(m.poly_words, seeded=True)
    region = rng.choice(["preamble", "key fields", "key data", "key seed", "anywhere"])
    lo, hi = {"preamble": (0, start), "key fields": (start, start + data),
              "key data": (start + data, len(m.bundle) - 81), "key seed": (len(m.bundle) - 81, len(m.bundle)),
              "anywhere": (0, len(m.bundle))}[region]
    body, where = flip(m.bundle, rng, bits, lo, hi)
    return upload(f"{bits} bit(s) flipped in the bundle's {region} at bits {where[:4]}", body, ANY_4XX,
                  may_succeed=True)


def fields(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    head, blob = m.bundle_head(), m.public_key_blob()
    if rng.random() < 0.45:  # preamble and section fields
        table = {"magic": (0, "4s", [b"HEKC", b"hekb", b"\x00" * 4, b"HESQ"]),
                 "version": (4, "<B", [0, 2, 255]), "scheme": (5, "<B", [0, 2, 255]),
                 "count": (6, "<B", [0, 2, 14, 64, 65, 255]), "reserved": (7, "<B", [1, 128, 255]),
                 "degree": (8, "<I", [0, 1, 4096, 8191, 16384, 32768, (1 << 32) - 1]),
                 "modulus": (12, "<Q", [0, 1, 2, m.modulus + 2, 1152921504606748673, (1 << 64) - 1]),
                 "section tag": (len(head), "4s", [b"pkey", b"SKEY", b"SECK", b"GKEY", b"RKEY", b"\x00" * 4]),
                 "section length": (len(head) + 4, "<I", [0, len(blob) - 1, len(blob) + 1, (1 << 32) - 1])}
        name = rng.choice(list(table))
        offset, fmt, values = table[name]
        value = rng.choice(values)
        body = bytearray(m.bundle)
        body[offset:offset + struct.calcsize(fmt)] = pack(fmt, value)
        return upload(f"bundle {name}={value!r}", bytes(body),
                      match=SECRET_KEY_MESSAGE if value in (b"SKEY", b"SECK") else None)
    mutated, label, still_valid = mu.mutate_fields(rng, blob, True, 1.0)
    return upload(f"public key: {label}", m.bundle_with([(b"PKEY", mutated)]), ANY_4XX if still_valid else S422,
                  may_succeed=still_valid)


def bomb(mu: Mutator, rng: random.Random) -> Case:
    spec = rng.choice(mu.bombs("key", "any"))
    blob = mu.bomb(spec)
    tag = b"PKEY" if rng.random() < 0.8 else rng.choice([b"SKEY", b"GKEY"])
    match = {b"SKEY": SECRET_KEY_MESSAGE, b"PKEY": SEEDED_MESSAGE if spec.fields == "fields, exact size" else None
             }.get(tag)
    return upload(f"{spec.mode} {spec.label} in a {tag.decode()} section ({len(blob)} bytes)",
                  mu.m.bundle_with([(tag, blob)]), match=match)


def secret_key(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    public, secret, raw = m.public_key_blob(), m.secret_key, m.secret_key_raw
    variants = [
        ("PKEY then SKEY", [(b"PKEY", public), (b"SKEY", secret)], SECRET_KEY_MESSAGE),
        ("SKEY only", [(b"SKEY", secret)], SECRET_KEY_MESSAGE),
        ("SKEY then PKEY", [(b"SKEY", secret), (b"PKEY", public)], SECRET_KEY_MESSAGE),
        ("SECK then PKEY", [(b"SECK", raw), (b"PKEY", public)], SECRET_KEY_MESSAGE),
        ("an empty SKEY", [(b"PKEY", public), (b"SKEY", b"")], SECRET_KEY_MESSAGE),
        ("the secret key as PKEY (zstd, as SEAL saves it)", [(b"PKEY", secret)], SECRET_KEY_MESSAGE),
        ("the secret key as PKEY (uncompressed)", [(b"PKEY", raw)], SECRET_KEY_MESSAGE),
        ("the secret key as PKEY (zlib)", [(b"PKEY", reencode(m.seal_version, body_of(raw), "zlib"))],
         SECRET_KEY_MESSAGE),
        ("PKEY twice, the second one secret", [(b"PKEY", public), (b"PKEY", secret)], None),
        ("the secret key padded to a public key's size",
         [(b"PKEY", reencode(m.seal_version, body_of(raw) + bytes(len(public) - len(raw)), "none"))],
         None),
        ("a TenSEAL context with its secret key as PKEY", [(b"PKEY", m.tenseal_context)], None),
        ("a TenSEAL context with its secret key as SKEY", [(b"PKEY", public), (b"SKEY", m.tenseal_context)],
         SECRET_KEY_MESSAGE),
    ]
    if rng.random() < 0.1:
        return upload("a TenSEAL context (or SEAL secret key) as the whole bundle", m.tenseal_context or m.secret_key)
    name, sections, match = rng.choice(variants)
    body = m.bundle_with(sections)
    if rng.random() < 0.2 and not name.startswith("PKEY twice"):
        body += SECTION.pack(b"SKEY", 1 << 31) + secret[:100]  # cut short: refused before its length is read
        name, match = f"{name}, then a SKEY cut short", SECRET_KEY_MESSAGE
    return upload(name, body, match=match)


def parameters(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    q = m.modulus
    degree, moduli = rng.choice([
        (4096, [q]), (16384, [q]), (32768, [q]), (8192, [1152921504606748673]), (8192, [q, q]),
        (32768, [q] * 14), (8192, [q] * 64), (0, [q]), (8192, []), (1 << 31, [q]),
        (8192, [(1 << 64) - 1]), (8192, [2]), (8192, [q + 2]),
    ])
    scheme = rng.choice([1, 1, 1, 2, 3])
    count = len(moduli) if rng.random() < 0.9 else rng.choice([0, 65, 255])
    head = PREAMBLE.pack(BUNDLE_MAGIC, 1, scheme, count, 0, degree) + struct.pack(f"<{len(moduli)}Q", *moduli)
    return upload(f"parameters N={degree}, {len(moduli)} prime(s), count {count}, scheme {scheme}",
                  m.bundle_with([(b"PKEY", m.public_key_blob())], head=head))


def sections(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    public = m.public_key_blob()
    if rng.random() < 0.2:
        tail = rng.choice([b"\x00", b"PKE", SECTION.pack(b"PKEY", 0)[:7], SECTION.pack(b"ABCD", 10)])
        return upload(f"trailing {tail!r}", m.bundle + tail)
    name, content, match = rng.choice([
        ("no sections", [], None),
        ("an empty PKEY", [(b"PKEY", b"")], None),
        ("PKEY twice", [(b"PKEY", public), (b"PKEY", public)], None),
        ("an unknown section", [(b"PKEY", public), (b"GKEY", b"x" * 100)], None),
        ("a relin-key tag", [(b"RKEY", public)], None),
        ("lowercase pkey", [(b"pkey", public)], None),
        ("PKEY holding the public key in full form", [(b"PKEY", m.full_public_key)], SEEDED_MESSAGE),
        ("PKEY holding a ciphertext", [(b"PKEY", m.full_ciphertexts[0])], None),
        ("PKEY holding a seeded ciphertext", [(b"PKEY", m.ciphertexts[0])], None),
        ("PKEY holding a packed ciphertext", [(b"PKEY", m.packed_ciphertexts[0])], "not a packed ciphertext"),
        ("PKEY holding a result", [(b"PKEY", m.result_ciphertext)], None),
        ("PKEY holding a foreign ciphertext", [(b"PKEY", m.foreign_ciphertext)], None),
    ])
    return upload(name, m.bundle_with(content), match=match)


def key_id(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    variant = rng.choice(["bad id", "another bundle's id", "uppercase of its own id"])
    if variant == "bad id":
        bad = rng.choice(BAD_KEY_IDS)
        return upload(f"key id {bad!r}", m.bundle, S400, key_id=bad, match=KEY_ID_MESSAGE)
    if variant == "uppercase of its own id":
        return upload(variant, m.bundle, S400, key_id=m.key_id.upper(), match=KEY_ID_MESSAGE)
    return upload(variant, m.bundle, S422, key_id=key_id_of(b"other"), match="does not hash")


def hostile_stored_bundle(mu: Mutator, rng: random.Random) -> Case:
    """A valid request scored with a stored bundle that is hostile but hashes to its id."""
    m = mu.m
    _, data = ciphertext_fields(m.poly_words, seeded=True)
    words = 8 * m.poly_words
    blob = bytearray(m.public_key_blob())
    variant = rng.choice(["zero key", "coefficients q-1", "random coefficients below q", "zero seed",
                          "bit flips", "secret key", "bomb", "full form", "full form with a zero random part"])
    expect, may_succeed, match = S422, False, None
    if variant == "zero key":
        blob[data:data + words] = bytes(words)
        match = MALFORMED_MESSAGE
    elif variant == "coefficients q-1":  # the constant -1 in NTT form: the key of a secret 0
        blob[data:data + words] = struct.pack("<Q", m.modulus - 1) * m.poly_words
        match = MALFORMED_MESSAGE
    elif variant == "random coefficients below q":  # passes: a key of some unknown secret
        blob[data:data + words] = struct.pack(f"<{m.poly_words}Q", *(rng.randrange(m.modulus)
                                                                   for _ in range(m.poly_words)))
        expect, may_succeed = OK, True
    elif variant == "zero seed":  # another random part: passes, and answers decrypt to garbage
        blob[-64:] = bytes(64)
        expect, may_succeed = OK, True
    elif variant == "bit flips":
        blob = bytearray(flip(bytes(blob), rng, rng.choice([1, 3, 8]))[0])
        expect, may_succeed = ANY_4XX, True
    elif variant == "secret key":
        blob, match = bytearray(m.secret_key), SECRET_KEY_MESSAGE
    elif variant == "bomb":
        blob = bytearray(mu.bomb(mu.bombs("key")[0]))
    elif variant == "full form":
        blob, match = bytearray(m.full_public_key), SEEDED_MESSAGE
    else:
        blob = bytearray(with_zero_parts(m.full_public_key, m.poly_words, second=True))
        match = SEEDED_MESSAGE
    stored = m.bundle_with([(b"PKEY", bytes(blob))])
    body, ctype = m.request(binary=rng.random() < 0.5)
    return Case(f"stored bundle: {variant}", body, content_type=ctype, key_id=key_id_of(stored), bundle=stored,
                expect=expect, may_succeed=may_succeed, match=match)


FAMILIES = {
    "bundle.valid": Family(0.5, valid),
    "bundle.random": Family(2, random_bytes),
    "bundle.truncate": Family(3, truncate),
    "bundle.bitflip": Family(3, bitflip),
    "bundle.field": Family(5, fields),
    "bundle.bomb": Family(2, bomb),
    "bundle.secret_key": Family(2, secret_key),
    "bundle.parameters": Family(2, parameters),
    "bundle.sections": Family(2, sections),
    "bundle.key_id": Family(1, key_id),
    "score.hostile_bundle": Family(2, hostile_stored_bundle),
}
