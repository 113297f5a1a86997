"""Public keys a client crafted from a secret of its choosing.

A secret of 0, 1 or -1 (with or without noise in the key) is refused wherever the bundle
arrives (upload, stored behind the API and scored, challenged) with a 422 naming the reason.
A secret that passes the checks (the constant 2, the sparse X) must still be served
correctly: its answers, to honest or noiseless queries, decrypt to the model's scores.
"""

from __future__ import annotations

import random

from ..cases import OK, S422, Case, Family, Target
from ..mutator import Mutator

MALFORMED = "visibly malformed: "


def crafted_key(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    name = rng.choice(sorted(m.crafted))
    key = m.crafted[name]
    binary = rng.random() < 0.6
    if key.refusal is not None:
        target = rng.choice([Target.UPLOAD, Target.SCORE, Target.SCORE, Target.CHALLENGE])
        body, ctype = m.request(binary=binary) if target is Target.SCORE else (key.bundle, None)
        return Case(f"{name}: {target.name.lower()}", body, target=target, content_type=ctype, key_id=key.key_id,
                    bundle=key.bundle, expect=S422, match=MALFORMED + key.refusal)
    variants = ["upload", "challenge", "one record", "one record, no noise"] + (["a batch"] if key.columns else [])
    variant = rng.choice(variants)
    records = None
    if variant == "upload":
        return Case(f"{name}: upload", key.bundle, target=Target.UPLOAD, expect=OK, may_succeed=True)
    if variant == "challenge":
        return Case(f"{name}: challenge", target=Target.CHALLENGE, key_id=key.key_id, bundle=key.bundle, expect=OK,
                    may_succeed=True, owner=name)
    if variant == "a batch":
        records = m.batch.records
        body, ctype = m.request(key.columns, binary=binary, records=records)
    else:
        chunks = key.exact_ciphertexts if variant.endswith("no noise") else key.ciphertexts
        body, ctype = m.request(chunks, binary=binary)
    return Case(f"{name}: {variant}", body, content_type=ctype, key_id=key.key_id, bundle=key.bundle, expect=OK,
                may_succeed=True, exact=True, owner=name, records=records)


FAMILIES = {"keys.crafted": Family(2, crafted_key)}
