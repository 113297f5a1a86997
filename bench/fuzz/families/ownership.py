"""The ownership routes: challenges for any key id and stored bundle, and deletions with
malformed, wrong, stale or correct ``X-Key-Proof`` values.

A deletion never succeeds without the decrypted answer to the pending challenge, and never
fails with a 5xx; the runners check that nothing stored is lost.
"""

from __future__ import annotations

import random

from scoring.keys import key_id_of

from ..cases import (ANY_4XX, BAD_KEY_IDS, DELETED, KEY_ID_MESSAGE, OK, S400, S403, S404, S422, Case, Family, Stored,
                     Target)
from ..mutator import Mutator
from .bundles import SECRET_KEY_MESSAGE, SEEDED_MESSAGE

HEX_MESSAGE = "32 lowercase hex"
NO_PROOF_MESSAGE = "needs proof"
WRONG_MESSAGE = "does not match"

# X-Key-Proof values made from the true answer (32 lowercase hex), and how each must be answered
DERIVED = {
    "the answer": (lambda a: a, DELETED, None),
    "the answer in upper case": (str.upper, S403, HEX_MESSAGE),
    "the answer with one bit flipped": (lambda a: format(int(a, 16) ^ 1, "032x"), S403, WRONG_MESSAGE),
    "the answer with its last digit cut": (lambda a: a[:-1], S403, HEX_MESSAGE),
    "the answer and one more digit": (lambda a: a + "0", S403, HEX_MESSAGE),
    "the answer twice": (lambda a: a * 2, S403, HEX_MESSAGE),
    "the answer twice, comma-separated": (lambda a: f"{a}, {a}", S403, HEX_MESSAGE),
    "the answer with 0x": (lambda a: "0x" + a, S403, HEX_MESSAGE),
    "the answer, percent-encoded": (lambda a: "".join(f"%{ord(c):02x}" for c in a), S403, HEX_MESSAGE),
    "the answer to an expired challenge": (lambda a: a, S403, "expired"),
    "the answer and trailing spaces": (lambda a: a + "  ", frozenset({204, 403}), None),  # a server may strip them
}


def challenge(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    body = rng.choice([b"", b"", rng.randbytes(rng.randrange(1, 2000)), m.bundle, m.request()[0]])
    variant = rng.choice(["own bundle", "own bundle", "bad key id", "nothing stored", "under another id",
                          "a bundle with a secret key", "a full-form public key", "a bomb"])
    if variant == "own bundle":
        return Case(variant, body, target=Target.CHALLENGE, expect=OK, may_succeed=True)
    if variant == "bad key id":
        bad = rng.choice(BAD_KEY_IDS + (m.key_id.upper(),))
        return Case(f"key id {bad!r}", body, target=Target.CHALLENGE, key_id=bad, expect=S400, match=KEY_ID_MESSAGE)
    if variant == "nothing stored":
        return Case(variant, body, target=Target.CHALLENGE, key_id=key_id_of(rng.randbytes(8)), bundle=Stored.NONE,
                    expect=S404)
    if variant == "under another id":
        return Case(variant, body, target=Target.CHALLENGE, key_id=key_id_of(rng.randbytes(8)), expect=S422,
                    match="does not hash")
    blob, match = {"a bundle with a secret key": (m.secret_key, SECRET_KEY_MESSAGE),
                   "a full-form public key": (m.full_public_key, SEEDED_MESSAGE),
                   "a bomb": (mu.bomb(mu.bombs("key")[0]), None)}[variant]
    stored = m.bundle_with([(b"PKEY", blob)])
    return Case(f"stored: {variant}", body, target=Target.CHALLENGE, key_id=key_id_of(stored), bundle=stored,
                expect=S422, match=match)


def delete(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    roll = rng.random()
    if roll < 0.1:
        bad = rng.choice(BAD_KEY_IDS + (m.key_id.upper(),))
        return Case(f"key id {bad!r}", target=Target.DELETE, key_id=bad, proof="0" * 32, expect=S400,
                    match=KEY_ID_MESSAGE)
    if roll < 0.15:
        return Case("nothing stored", target=Target.DELETE, key_id=key_id_of(rng.randbytes(8)), bundle=Stored.NONE,
                    proof="0" * 32, expect=S404)
    if roll < 0.55:
        name = rng.choice(sorted(DERIVED))
        derive, expect, match = DERIVED[name]
        return Case(f"X-Key-Proof: {name}", target=Target.DELETE, derive=derive, stale="expired" in name,
                    expect=expect, may_succeed=204 in expect, match=match)
    value, expect, match = rng.choice([
        (None, S403, NO_PROOF_MESSAGE),
        ("", S403, NO_PROOF_MESSAGE),
        ("a b", S403, HEX_MESSAGE),
        ("0" * 32, S403, WRONG_MESSAGE),
        (rng.randbytes(16).hex(), S403, WRONG_MESSAGE),
        ("F" * 32, S403, HEX_MESSAGE),
        ("g" * 32, S403, HEX_MESSAGE),
        ("a" * 31, S403, HEX_MESSAGE),
        ("a" * 33, S403, HEX_MESSAGE),
        (m.key_id, S403, HEX_MESSAGE),
        ("\u00e9" * 32, S403, HEX_MESSAGE),
        ("-1", S403, HEX_MESSAGE),
        ("null", S403, HEX_MESSAGE),
        ("' OR 1=1 --", S403, HEX_MESSAGE),
        ("../../" + "a" * 26, S403, HEX_MESSAGE),
        ("a" * rng.choice([1000, 8000]), ANY_4XX, None),  # a front may refuse a long header itself
    ])
    label = "no X-Key-Proof" if value is None else f"X-Key-Proof: {value[:40]!r}{'...' if len(value) > 40 else ''}"
    return Case(label, target=Target.DELETE, proof=value, expect=expect, match=match)


FAMILIES = {
    "keys.challenge": Family(1, challenge),
    "keys.delete": Family(3, delete),
}
