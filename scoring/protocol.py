"""The wire format, version 1, in both forms: JSON with base64 fields, and binary.

JSON (``application/json``)::

    request:  {"version": 1, "ciphertexts": ["<base64>", ...], "model_hash": "<hex>"?, "records": n?}
    response: {"version": 1, "ciphertexts": ["<base64>", ...], "model_hash": "<hex>", "records": n?}

Without ``records`` a message holds one record (one ciphertext per feature chunk, one per
result product); with it, a batch of ``records`` records feature-major (one ciphertext
per used feature, one per output, a slot per record).

Binary (``application/octet-stream``), all integers little-endian, saving base64's third::

    4-byte magic ("HESQ" request, "HESP" response), u8 version, u8 flags (bit 0: a
    32-byte model hash follows the count; bit 1: a u32 record count follows), u16
    ciphertext count, [model hash], [records], then per ciphertext a u32 length and the bytes.

Each ciphertext is an uncompressed SEAL blob; the service checks it further. Parsing
is strict: an unknown version or field, a duplicate key, bad base64 or trailing bytes is
a 400 that says so, and a request that carries storage credentials is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from dataclasses import dataclass

from .errors import BadRequest, CredentialsRefused, UnsupportedMediaType

PROTOCOL_VERSION = 1
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
REQUEST_MAGIC, RESPONSE_MAGIC = b"HESQ", b"HESP"
FRAME = struct.Struct("<4sBBH")
LENGTH = struct.Struct("<I")
HAS_MODEL_HASH = 0x01
HAS_RECORDS = 0x02
RECORDS = struct.Struct("<I")
MAX_RECORDS = 1 << 20
MAX_CIPHERTEXTS = 4096
HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
CREDENTIAL_NAMES = frozenset(name.lower() for name in (
    "conn_str", "connection_string", "connectionstring", "storage_connection_string", "account_key",
    "accountkey", "storage_key", "sas", "sas_token", "sas_url", "credential", "credentials",
))
CREDENTIAL_MARKERS = (b"AccountKey=", b"SharedAccessSignature=", b"DefaultEndpointsProtocol=")
CREDENTIALS_MESSAGE = ("requests must never carry storage credentials (a connection string, account key "
                       "or SAS token would be exposed to every hop and log on the way); upload your "
                       "public key bundle with PUT /api/keys/{key_id} or to your own storage, and send "
                       "only its key id")


@dataclass(frozen=True)
class ScoreMessage:
    """A request or a response: ciphertext blobs plus the model hash they belong to."""

    ciphertexts: tuple[bytes, ...]
    model_hash: str | None = None
    records: int | None = None


def media_type(content_type: str | None) -> str:
    """The bare, lowercased media type of a Content-Type header value."""
    return (content_type or "").split(";")[0].strip().lower()


def refuse_credentials(names, body: bytes = b"") -> None:
    """Refuse a request whose field or parameter names, or body, carry storage credentials.

    Raises:
        CredentialsRefused: with a message that explains why.
    """
    if any(str(name).lower() in CREDENTIAL_NAMES for name in names) or any(
            marker in body for marker in CREDENTIAL_MARKERS):
        raise CredentialsRefused(CREDENTIALS_MESSAGE)


def encode(message: ScoreMessage, *, binary: bool, response: bool) -> tuple[bytes, str]:
    """Serialize a request or response; return the body and its content type."""
    if binary:
        return _encode_binary(message, RESPONSE_MAGIC if response else REQUEST_MAGIC), BINARY_TYPE
    document: dict = {"version": PROTOCOL_VERSION,
                      "ciphertexts": [base64.b64encode(c).decode("ascii") for c in message.ciphertexts]}
    if message.model_hash is not None:
        document["model_hash"] = message.model_hash
    if message.records is not None:
        document["records"] = message.records
    return json.dumps(document, separators=(",", ":")).encode(), JSON_TYPE


def decode(body: bytes, content_type: str | None, *, response: bool) -> ScoreMessage:
    """Parse a request or response in either form, strictly.

    Raises:
        BadRequest: for anything malformed, with a message that says what.
        CredentialsRefused: if a JSON request carries storage credentials.
        UnsupportedMediaType: for a content type that is neither form.
    """
    kind = media_type(content_type)
    magic = RESPONSE_MAGIC if response else REQUEST_MAGIC
    if kind == BINARY_TYPE or (not kind and body[:4] == magic):
        return _decode_binary(body, magic)
    if kind in (JSON_TYPE, "text/json") or not kind:
        return _decode_json(body, response=response)
    raise UnsupportedMediaType(f"content type {kind!r} is not served; send {JSON_TYPE} or {BINARY_TYPE}")


def _encode_binary(message: ScoreMessage, magic: bytes) -> bytes:
    flags = (HAS_MODEL_HASH if message.model_hash is not None else 0) | (
        HAS_RECORDS if message.records is not None else 0)
    parts = [FRAME.pack(magic, PROTOCOL_VERSION, flags, len(message.ciphertexts))]
    if message.model_hash is not None:
        parts.append(bytes.fromhex(message.model_hash))
    if message.records is not None:
        parts.append(RECORDS.pack(message.records))
    for ciphertext in message.ciphertexts:
        parts += [LENGTH.pack(len(ciphertext)), ciphertext]
    return b"".join(parts)


def _decode_binary(body: bytes, magic: bytes) -> ScoreMessage:
    if len(body) < FRAME.size:
        raise BadRequest("binary message is shorter than its frame header")
    found, version, flags, count = FRAME.unpack_from(body)
    if found != magic:
        raise BadRequest(f"binary message does not start with {magic.decode()}")
    _check_version(version)
    if flags & ~(HAS_MODEL_HASH | HAS_RECORDS):
        raise BadRequest(f"binary message has unknown flags 0x{flags:02x}")
    offset, model_hash, records = FRAME.size, None, None
    if flags & HAS_MODEL_HASH:
        if len(body) < offset + 32:
            raise BadRequest("binary message is truncated in its model hash")
        model_hash, offset = body[offset:offset + 32].hex(), offset + 32
    if flags & HAS_RECORDS:
        if len(body) < offset + RECORDS.size:
            raise BadRequest("binary message is truncated in its record count")
        (records,), offset = RECORDS.unpack_from(body, offset), offset + RECORDS.size
        _check_records(records)
    _check_count(count)
    ciphertexts = []
    for index in range(count):
        if len(body) < offset + LENGTH.size:
            raise BadRequest(f"binary message is truncated before ciphertext {index}")
        (length,) = LENGTH.unpack_from(body, offset)
        offset += LENGTH.size
        if len(body) < offset + length:
            raise BadRequest(f"binary message is truncated in ciphertext {index}")
        ciphertexts.append(body[offset:offset + length])
        offset += length
    if offset != len(body):
        raise BadRequest(f"binary message has {len(body) - offset} bytes after its last ciphertext")
    return ScoreMessage(tuple(ciphertexts), model_hash, records)


def load_json_object(body: bytes) -> dict:
    """Parse a body as one JSON object, strictly: a repeated field is refused.

    Raises:
        BadRequest: if the body is not JSON (including too deep or too large numbers) or not
            an object.
    """
    try:
        document = json.loads(body, object_pairs_hook=_no_duplicate_keys)
    except RecursionError as exc:
        raise BadRequest("body is not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer beyond the digit limit
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object")
    return document


def decode_base64(text: object, what: str) -> bytes:
    """Strict base64 of a JSON string field.

    Raises:
        BadRequest: naming ``what`` if it is not a string of valid base64.
    """
    if not isinstance(text, str):
        raise BadRequest(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{what} is not valid base64") from exc


def _decode_json(body: bytes, *, response: bool) -> ScoreMessage:
    document = load_json_object(body)
    if not response:
        refuse_credentials(document.keys(), body)
    unknown = set(document) - {"version", "ciphertexts", "model_hash", "records"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; "
                         "expected version, ciphertexts and optionally model_hash and records")
    if "version" not in document or "ciphertexts" not in document:
        raise BadRequest("missing field(s): a message needs version and ciphertexts")
    version = document["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise BadRequest("version must be an integer")
    _check_version(version)
    ciphertexts = document["ciphertexts"]
    if not isinstance(ciphertexts, list) or not all(isinstance(c, str) for c in ciphertexts):
        raise BadRequest("ciphertexts must be a list of base64 strings")
    _check_count(len(ciphertexts))
    model_hash = document.get("model_hash")
    if model_hash is not None and (not isinstance(model_hash, str) or not HASH_PATTERN.fullmatch(model_hash)):
        raise BadRequest("model_hash must be 64 lowercase hex characters")
    records = document.get("records")
    if records is not None:
        if not isinstance(records, int) or isinstance(records, bool):
            raise BadRequest("records must be an integer")
        _check_records(records)
    return ScoreMessage(tuple(decode_base64(c, f"ciphertext {i}") for i, c in enumerate(ciphertexts)),
                        model_hash, records)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise BadRequest("JSON object repeats a field")
    return dict(pairs)


def _check_version(version: int) -> None:
    if version != PROTOCOL_VERSION:
        raise BadRequest(f"protocol version {version} is not supported (this service speaks {PROTOCOL_VERSION})")


def _check_records(records: int) -> None:
    if not 1 <= records <= MAX_RECORDS:
        raise BadRequest(f"records must be between 1 and {MAX_RECORDS}, not {records}")


def _check_count(count: int) -> None:
    if not 1 <= count <= MAX_CIPHERTEXTS:
        raise BadRequest(f"a message carries 1 to {MAX_CIPHERTEXTS} ciphertexts, not {count}")
