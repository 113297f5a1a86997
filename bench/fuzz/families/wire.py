"""The wire format, version 2, mutated: JSON documents and text, binary frames, content types,
and whole version-1 messages (a 400 that says version 1 is not supported)."""

from __future__ import annotations

import base64
import json
import random

from scoring.protocol import HAS_MODEL_HASH, HAS_RECORDS, PROTOCOL_VERSION, REQUEST_MAGIC, RESPONSE_MAGIC, media_type

from ..blobs import request_frame
from ..cases import (BINARY_TYPE, CONTENT_TYPES, JSON_TYPE, OK, S400, S409, S413, S415, S422, VERSION_1_MESSAGE,
                     Case, Family)
from ..mutator import Mutator


def _dumps(document) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def json_document(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    b64 = [base64.b64encode(c).decode() for c in m.ciphertexts]
    doc = {"version": PROTOCOL_VERSION, "ciphertexts": b64, "model_hash": m.model_hash}
    valid = _dumps(doc)
    version = f'"version":{PROTOCOL_VERSION}'.encode()

    def with_(key, value):
        return _dumps({**doc, key: value})

    def without(key):
        return _dumps({k: v for k, v in doc.items() if k != key})

    def version_as(text: bytes) -> bytes:
        return valid.replace(version, b'"version":' + text)

    if rng.random() < 0.25:  # a text-level mutation of the valid JSON body
        body = bytearray(valid)
        pos = rng.choice([rng.randrange(40), rng.randrange(len(body))])
        op = rng.choice(["delete", "insert", "replace"])
        char = rng.choice(b'{}[]",:\\ 0a-\x00\xff')
        if op == "delete":
            del body[pos]
        elif op == "insert":
            body.insert(pos, char)
        else:
            body[pos] = char
        return Case(f"JSON text: {op} {chr(char)!r} at {pos}", bytes(body), content_type=rng.choice([JSON_TYPE, None]),
                    may_succeed=True)
    deep = rng.choice([1000, 5000, 25_000, 100_000])
    room = m.max_request_bytes - 100  # deep enough to exhaust the recursion limit, under the cap
    first = b64[0]
    mutations = [
        ("empty body", lambda: b"", S400),
        ("not JSON", lambda: b"{not json", S400),
        ("invalid UTF-8", lambda: b'{"version":2,"ciphertexts":["\xff\xfe"]}', S400),
        ("UTF-16 with BOM", lambda: '{"version":2}'.encode("utf-16"), S400),
        ("a JSON list", lambda: _dumps([doc]), S400),
        ("a JSON string", lambda: b'"hello"', S400),
        ("a JSON number", lambda: b"2", S400),
        ("null", lambda: b"null", S400),
        ("version as string", lambda: with_("version", "2"), S400),
        ("version as float", lambda: with_("version", 2.0), S400),
        ("version as bool", lambda: with_("version", True), S400),
        ("version null", lambda: with_("version", None), S400),
        ("version 1", lambda: with_("version", 1), S400, VERSION_1_MESSAGE),
        ("version 3", lambda: with_("version", 3), S400),
        ("version 0", lambda: with_("version", 0), S400),
        ("version -1", lambda: with_("version", -1), S400),
        ("version as list", lambda: with_("version", [2]), S400),
        ("version 1e999", lambda: version_as(b"1e999"), S400),
        ("version NaN", lambda: version_as(b"NaN"), S400),
        ("version with 5000 digits", lambda: version_as(b"2" + b"0" * 5000), S400),
        ("version with 4000 digits", lambda: version_as(b"2" + b"0" * 4000), S400),
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
        ("model_hash uppercase", lambda: with_("model_hash", m.model_hash.upper()), S400),
        ("model_hash 63 chars", lambda: with_("model_hash", m.model_hash[:63]), S400),
        ("model_hash of another model", lambda: with_("model_hash", m.other_model_hash), S409),
        ("model_hash null", lambda: with_("model_hash", None), OK),
        ("records null", lambda: with_("records", None), OK),
        ("records 0", lambda: with_("records", 0), S400),
        ("records as string", lambda: with_("records", "1"), S400),
        ("records as bool", lambda: with_("records", True), S400),
        ("records 1 on one record's chunks", lambda: with_("records", 1), S422 if m.batch else S400),
        ("extra field", lambda: with_("extra", 1), S400),
        ("credential field", lambda: with_("connection_string", "x"), S400),
        ("AccountKey in body", lambda: with_("extra", "AccountKey=abc"), S400),
        ("duplicate version", lambda: valid.replace(b"{" + version, b"{" + version + b"," + version), S400),
        ("duplicate ciphertexts", lambda: valid[:-1] + b',"ciphertexts":' + json.dumps(b64).encode() + b"}", S400),
        ("base64 without padding", lambda: with_("ciphertexts", [first.rstrip("=") + "A"] + b64[1:]), S400),
        ("base64 with '*'", lambda: with_("ciphertexts", ["*" + first[1:]] + b64[1:]), S400),
        ("base64 with a newline", lambda: with_("ciphertexts", [first[:76] + "\n" + first[76:]] + b64[1:]), S400),
        ("base64 url-safe", lambda: with_("ciphertexts", [first.replace("+", "-").replace("/", "_")] + b64[1:]),
         frozenset({400, 422, 200})),
        ("base64 non-ASCII", lambda: with_("ciphertexts", ["\u00e9" + first[1:]] + b64[1:]), S400),
        ("base64 lone surrogate", lambda: valid.replace(first[:8].encode(), b"\\ud800" + first[6:8].encode(), 1),
         S400),
        ("base64 length 1 mod 4", lambda: with_("ciphertexts", [first + "A"] + b64[1:]), S400),
        ("deep list", lambda: b"[" * (d := min(deep, room // 2)) + b"]" * d, S400),
        ("deep object", lambda: b'{"a":' * (d := min(deep, room // 6)) + b"1" + b"}" * d, S400),
        ("deep ciphertexts", lambda: b"{" + version + b',"ciphertexts":' + b"[" * (d := min(deep, room // 2))
         + b"]" * d + b"}", S400),
        ("trailing garbage", lambda: valid + b"x", S400),
        ("trailing whitespace", lambda: valid + b" \n\t", OK),
        ("UTF-8 BOM", lambda: b"\xef\xbb\xbf" + valid, frozenset({200, 400})),
        ("NUL byte", lambda: valid[:1] + b"\x00" + valid[1:], S400),
        ("huge string", lambda: with_("model_hash", "a" * (m.max_body_bytes + 10)), S413),
    ]
    name, make, expect, *match = rng.choice(mutations)
    return Case(name, make(), content_type=rng.choice([JSON_TYPE, JSON_TYPE, None, "text/json"]), expect=expect,
                may_succeed=200 in expect, exact=expect == OK, match=match[0] if match else None)


def binary_frame(mu: Mutator, rng: random.Random) -> Case:
    m = mu.m
    chunks = m.ciphertexts
    digest = bytes.fromhex(m.model_hash)
    n = len(chunks[0])
    rest = [len(c) for c in chunks[1:]]

    def frame(**kw):
        return request_frame(kw.pop("chunks", chunks), model_hash=kw.pop("model_hash", digest), **kw)

    mutations = [
        ("response magic", lambda: frame(magic=RESPONSE_MAGIC), S400),
        ("lowercase magic", lambda: frame(magic=b"hesq"), S400),
        ("random magic", lambda: frame(magic=b"\x00" + rng.randbytes(3)), S400),
        ("version 1", lambda: frame(version=1), S400, VERSION_1_MESSAGE),
        ("version 0", lambda: frame(version=0), S400),
        ("version 3", lambda: frame(version=3), S400),
        ("version 255", lambda: frame(version=255), S400),
        ("unknown flag 0x04", lambda: frame(flags=HAS_MODEL_HASH | 4), S400),
        ("flags 0xff", lambda: frame(flags=0xFF), S400),
        ("hash flag without a hash", lambda: frame(model_hash=b"", flags=HAS_MODEL_HASH), frozenset({400, 422})),
        ("hash without the flag", lambda: frame(flags=0), S400),
        ("no hash, no flag", lambda: frame(model_hash=b""), OK),
        ("records flag without records", lambda: frame(flags=HAS_MODEL_HASH | HAS_RECORDS), S400),
        ("records without the flag", lambda: frame(flags=HAS_MODEL_HASH, records=1), S400),
        ("records 1 on one record's chunks", lambda: frame(records=1), S422 if m.batch else S400),
        ("another model's hash", lambda: frame(model_hash=bytes.fromhex(m.other_model_hash)), S409),
        ("count 0", lambda: frame(count=0), S400),
        ("count 0, no ciphertext", lambda: frame(count=0, chunks=[]), S400),
        ("count one more", lambda: frame(count=len(chunks) + 1), S400),
        ("count 4096", lambda: frame(count=4096), S400),
        ("count 4097", lambda: frame(count=4097), S400),
        ("count 65535", lambda: frame(count=65535), S400),
        ("length 0", lambda: frame(lengths=[0] + rest), S400),
        ("length one short", lambda: frame(lengths=[n - 1] + rest), S400),
        ("length one long", lambda: frame(lengths=[n + 1] + rest), S400),
        ("length 2**32-1", lambda: frame(lengths=[(1 << 32) - 1] + rest), S400),
        ("a trailing byte", lambda: frame(tail=b"\x00"), S400),
        ("a trailing frame", lambda: frame(tail=frame()), S400),
        ("two copies of the ciphertexts", lambda: frame(chunks=chunks + chunks), S422),
        ("an empty ciphertext", lambda: frame(chunks=[b""] + list(chunks[1:])), S422),
        ("4096 empty ciphertexts", lambda: frame(chunks=[b""] * 4096), S422),
        ("only the frame", lambda: frame(chunks=[]), S400),
        ("a JSON body as binary", lambda: m.request(binary=False)[0], S400),
    ]
    name, make, expect, *match = rng.choice(mutations)
    body = make()
    ctype = rng.choice([BINARY_TYPE, BINARY_TYPE, None]) if body[:4] == REQUEST_MAGIC else BINARY_TYPE
    return Case(name, body, content_type=ctype, expect=expect, may_succeed=expect == OK, exact=expect == OK,
                match=match[0] if match else None)


def content_type(mu: Mutator, rng: random.Random) -> Case:
    binary = rng.random() < 0.5
    body, _ = mu.m.request(binary=binary)
    ctype = rng.choice(CONTENT_TYPES)
    kind = media_type(ctype)
    if kind in ("application/json", "text/json"):
        expect = S400 if binary else OK
    elif kind == BINARY_TYPE:
        expect = OK if binary else S400
    elif not kind:
        expect = OK
    else:
        expect = S415
    return Case(f"{'binary' if binary else 'JSON'} body as {ctype!r}", body, content_type=ctype, expect=expect,
                may_succeed=expect == OK, exact=expect == OK)


def version_1(mu: Mutator, rng: random.Random) -> Case:
    """Whole version-1 messages, as a client of the old protocol sends them (batches were in
    CKKS slots then): always a 400 that says version 1 is not supported, whatever they hold."""
    m = mu.m
    binary = rng.random() < 0.5
    variant = rng.choice(["one record", "one record, no hash", "a batch", "a batch of 8192", "no ciphertexts"])
    records = {"a batch": 3, "a batch of 8192": 8192}.get(variant)
    digest = None if "no hash" in variant else m.model_hash
    if variant == "no ciphertexts":
        body, ctype = ((request_frame([], version=1), BINARY_TYPE) if binary
                       else (b'{"version":1,"ciphertexts":[]}', JSON_TYPE))
    elif binary:
        body = request_frame(m.ciphertexts, model_hash=bytes.fromhex(digest) if digest else b"", records=records,
                                   version=1)
        ctype = rng.choice([BINARY_TYPE, None])
    else:
        document = {"version": 1, "ciphertexts": [base64.b64encode(c).decode() for c in m.ciphertexts]}
        document.update({k: v for k, v in (("model_hash", digest), ("records", records)) if v is not None})
        body, ctype = _dumps(document), rng.choice([JSON_TYPE, None])
    return Case(f"version 1: {variant} ({'binary' if binary else 'JSON'})", body, content_type=ctype, expect=S400,
                match=VERSION_1_MESSAGE)


FAMILIES = {
    "request.json": Family(6, json_document),
    "request.binary": Family(3, binary_frame),
    "request.content_type": Family(1, content_type),
    "request.version_1": Family(1, version_1),
}
