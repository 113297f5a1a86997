"""Batches in coefficient lanes (one ciphertext per sent feature), mutated; and batches whose
declared record count disagrees with what their ciphertexts hold.

Lanes beyond the records a batch holds encrypt zeros, so an answer declaring ``r`` records
must decrypt to the held records' scores and then the model's bias, whatever ``r`` is up to
the lane count; beyond it, or 0, the request is refused.
"""

from __future__ import annotations

import base64
import json
import random

from scoring.protocol import MAX_RECORDS, PROTOCOL_VERSION

from ..blobs import body_of, flip, reencode, request_frame, with_zero_parts
from ..cases import ANY_4XX, BINARY_TYPE, JSON_TYPE, OK, S400, S413, S422, Case, Family
from ..mutator import Mutator


def mutated_batch(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    batch = m.batch
    columns = list(batch.columns)
    records = batch.records
    binary = rng.random() < 0.6
    scale = batch.encoding.input_scale

    def request(cols=None, n=records, **kw):
        return m.request(columns if cols is None else cols, binary=binary, records=n, **kw)

    def with_column(blob):
        j = rng.randrange(len(columns))
        return request(columns[:j] + [blob] + columns[j + 1:])

    variant = rng.choice(["valid", "valid", "no model hash", "records null", "a column fewer", "a column more",
                          "one column", "columns twice", "field", "field", "bit flips", "zero second part",
                          "zero first part", "single-record ciphertext", "bomb",
                          "a single-record request marked as a batch", "padded over the cap"])
    expect, may_succeed, exact, label, match = ANY_4XX, False, False, variant, None
    if variant == "valid":
        body, ctype = request()
        expect, may_succeed, exact = OK, True, True
    elif variant == "no model hash":
        body, ctype = request(model_hash=None)
        expect, may_succeed, exact = OK, True, True
    elif variant == "records null":
        body, ctype = m.request(columns, binary=binary)  # a batch's columns, read as one record
        expect = frozenset({413, 422})
    elif variant == "a column fewer":
        body, ctype = request(columns[:-1])
        expect = S422
    elif variant == "a column more":
        body, ctype = request(columns + columns[:1])
        expect = S422
    elif variant == "one column":
        body, ctype = request(columns[:1])
        expect, may_succeed, exact = (S422, False, False) if len(columns) > 1 else (OK, True, True)
    elif variant == "columns twice":
        body, ctype = request(columns + columns)
        expect = frozenset({413, 422})
    elif variant == "field":
        mutated, label, still_valid = mu.mutate_fields(rng, columns[rng.randrange(len(columns))], True, scale)
        body, ctype = with_column(mutated)
        label = f"a column: {label}"
        expect, may_succeed = (ANY_4XX, True) if still_valid else (S422, False)
    elif variant == "bit flips":
        flipped, where = flip(columns[0], rng, rng.choice([1, 3, 8]))
        body, ctype = with_column(flipped)
        label, may_succeed = f"a column with bits {where} flipped", True
    elif variant in ("zero second part", "zero first part"):
        second = variant == "zero second part"
        blob = with_zero_parts(batch.full_column, m.poly_words, first=not second, second=second)
        body, ctype = with_column(reencode(m.seal_version, body_of(blob), rng.choice(["none", "zstd"])))
        expect, may_succeed = (S422, False) if second else (OK, True)
        match = "zero second part" if second else None
    elif variant == "single-record ciphertext":
        body, ctype = with_column(m.ciphertexts[0])
        may_succeed = True
    elif variant == "bomb":
        body, ctype = with_column(mu.bomb(rng.choice(mu.bombs("ciphertext", "any"))))
        expect = S422
    elif variant == "a single-record request marked as a batch":
        body, ctype = m.request(binary=binary, records=1)
        same = len(m.ciphertexts) == len(columns)
        expect, may_succeed = (ANY_4XX, True) if same else (S422, False)
    else:
        body, ctype = request()
        body += bytes(m.max_body_bytes + 1 - len(body))
        expect = S413
    return Case(label, body, content_type=ctype, expect=expect, may_succeed=may_succeed, exact=exact,
                records=records if exact else None, match=match)


def declared_records(mu: Mutator, rng: random.Random) -> Case:
    """A valid batch of a few records declaring another record count (never the honest one), in either form."""
    m = mu.m
    batch = m.batch
    lanes = batch.encoding.max_records
    declared = rng.choice([0, 1, batch.records - 1, batch.records + 1, rng.randrange(batch.records + 1, lanes),
                           rng.randrange(batch.records + 1, lanes), lanes - 1, lanes, lanes + 1,
                           rng.randrange(lanes + 1, MAX_RECORDS + 1), MAX_RECORDS, MAX_RECORDS + 1, 1 << 31,
                           (1 << 32) - 1, -1, 1 << 32, 1 << 64])
    binary = rng.random() < 0.6 and 0 <= declared < 1 << 32
    if binary:
        body = request_frame(batch.columns, model_hash=bytes.fromhex(m.model_hash), records=declared)
        ctype = rng.choice([BINARY_TYPE, None])
    else:
        body = json.dumps({"version": PROTOCOL_VERSION, "model_hash": m.model_hash, "records": declared,
                           "ciphertexts": [base64.b64encode(c).decode() for c in batch.columns]},
                          separators=(",", ":")).encode()
        ctype = rng.choice([JSON_TYPE, None])
    answered = 1 <= declared <= lanes
    if answered:
        expect, match = OK, None
    elif 1 <= declared <= MAX_RECORDS:
        expect, match = S400, f"at most {lanes} records"
    else:
        expect, match = S400, f"records must be between 1 and {MAX_RECORDS}"
    return Case(f"{batch.records} records declared as {declared} ({'binary' if binary else 'JSON'})", body,
                content_type=ctype, expect=expect, may_succeed=answered, exact=answered,
                records=declared if answered else None, match=match)


FAMILIES = {
    "batch.request": Family(0.5, mutated_batch, needs_batches=True),  # a batch costs 20 times a record
    "batch.records": Family(0.5, declared_records, needs_batches=True),
}
