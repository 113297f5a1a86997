"""The wire format, version 2: typed messages, the model description, and the one codec.

Messages (:class:`ScoreRequest`, :class:`ScoreResponse`) travel in two forms:

JSON (``application/json``)::

    request:  {"version": 2, "ciphertexts": ["<base64>", ...], "model_hash": "<hex>"?, "records": n?}
    response: {"version": 2, "ciphertexts": ["<base64>", ...], "model_hash": "<hex>", "records": n?}

Without ``records`` a message holds one record (one ciphertext per feature chunk, one per
result product); with it, a batch of ``records`` records in coefficient lanes (one
ciphertext per sent feature, one per output, record ``r`` at coefficient ``r``).

Binary (``application/octet-stream``), all integers little-endian, saving base64's third::

    4-byte magic ("HESQ" request, "HESP" response), u8 version, u8 flags (bit 0: a
    32-byte model hash follows the count; bit 1: a u32 record count follows), u16
    ciphertext count, [model hash], [records], then per ciphertext a u32 length and the bytes.

Version 1 put batches in CKKS slots, where one batch, even of one record, could return the
whole model; a version 1 message is refused with a 400 that says so. Each ciphertext is a
SEAL blob: requests send them uncompressed (what the client makes), responses as SEAL saves
them (zstd-compressed); both ends parse them strictly, decompressing with a cap equal to the
exact size the served parameters imply. Parsing is strict: an unknown
version or field, a duplicate key, bad base64 or trailing bytes is a 400 that says so, and a
request that carries storage credentials is refused.

:class:`ModelDescription` is ``GET /api/model``: everything a client needs to encrypt for the
served model and read its scores, and no weights. The service builds it; the client, the
encodings, the command line and the hosts read it, typed.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import struct
from dataclasses import dataclass

import numpy as np

from .encoding import CoefficientLayout, LaneEncoding, RecordEncoding
from .errors import BadRequest, CredentialsRefused, PayloadTooLarge, UnsupportedMediaType
from .parameters import CkksParameters

PROTOCOL_VERSION = 2
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
RECORDS_HEADER = "X-Records-Disclosed"  # every score response says how many records' scores it holds
CREDENTIAL_NAMES = frozenset(name.lower() for name in (
    "conn_str", "connection_string", "connectionstring", "storage_connection_string", "account_key",
    "accountkey", "storage_key", "sas", "sas_token", "sas_url", "credential", "credentials",
))
CREDENTIAL_MARKERS = (b"AccountKey=", b"SharedAccessSignature=", b"DefaultEndpointsProtocol=")
CREDENTIALS_MESSAGE = ("requests must never carry storage credentials (a connection string, account key "
                       "or SAS token would be exposed to every hop and log on the way); upload your "
                       "public key bundle with PUT /api/keys/{key_id} or to your own storage, and send "
                       "only its key id")


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreRequest:
    """Encrypted records for the served model.

    Attributes:
        ciphertexts: ciphertext blobs, packed (``scoring.ckks``, as the client sends them) or
            SEAL's own (one per feature chunk, or one per sent feature).
        model_hash: the model they were encrypted for (a 409 if another is served).
        records: None for one record; the record count of a batch in coefficient lanes.
    """

    ciphertexts: tuple[bytes, ...]
    model_hash: str | None = None
    records: int | None = None


@dataclass(frozen=True)
class ScoreResponse:
    """Encrypted scores only the key owner can read, and the model that computed them."""

    ciphertexts: tuple[bytes, ...]
    model_hash: str
    records: int | None = None

    @property
    def disclosed(self) -> int:
        """How many records' scores the response holds (``X-Records-Disclosed``)."""
        return 1 if self.records is None else self.records


class WireForm(enum.Enum):
    """The two forms of a message; a response takes its request's form."""

    JSON = JSON_TYPE
    BINARY = BINARY_TYPE

    @property
    def content_type(self) -> str:
        return self.value


def media_type(content_type: str | None) -> str:
    """The bare, lowercased media type of a Content-Type header value."""
    return (content_type or "").split(";")[0].strip().lower()


# -- the model description ------------------------------------------------------------------


@dataclass(frozen=True)
class SinglePath:
    """How one record is encrypted and its scores read (``encryption`` in the description).

    Attributes:
        noise_bound: every score carries server-sampled noise uniform in +-this.
    """

    parameters: CkksParameters
    input_scale: float
    output_scale: float
    layout: CoefficientLayout
    noise_bound: float

    def to_dict(self) -> dict:
        return {**self.parameters.to_dict(), "encoding": "coefficient", "input_scale": self.input_scale,
                "output_scale": self.output_scale, "layout": self.layout.to_dict(),
                "noise_bound": self.noise_bound}


@dataclass(frozen=True)
class BatchPath:
    """How a batch is encrypted in coefficient lanes (``batch`` in the description).

    Attributes:
        features: the features a batch carries, in order; None means every feature (the
            default, which does not reveal which weight columns are zero).
    """

    max_records: int
    features: tuple[int, ...] | None
    input_scale: float
    output_scale: float
    noise_bound: float

    def to_dict(self) -> dict:
        return {"encoding": "coefficient-lanes", "max_records": self.max_records,
                "features": None if self.features is None else list(self.features),
                "input_scale": self.input_scale, "output_scale": self.output_scale,
                "noise_bound": self.noise_bound}


@dataclass(frozen=True)
class Limits:
    """Body caps, checked before parsing (413 beyond them)."""

    max_request_bytes: int
    max_batch_request_bytes: int

    @property
    def largest(self) -> int:
        return max(self.max_request_bytes, self.max_batch_request_bytes)


@dataclass(frozen=True)
class ModelDescription:
    """``GET /api/model``: what a client needs to encrypt for the served model; no weights."""

    model_hash: str
    estimator: str
    kind: str
    n_features: int
    n_outputs: int
    classes: tuple | None
    proba: str | None
    input_bound: float | tuple[float, ...]
    encryption: SinglePath
    batch: BatchPath | None
    limits: Limits
    protocol_version: int = PROTOCOL_VERSION

    @property
    def parameters(self) -> CkksParameters:
        return self.encryption.parameters

    @property
    def input_bounds(self) -> np.ndarray:
        """The bound of each feature, shape (features,)."""
        return np.broadcast_to(np.asarray(self.input_bound, dtype=np.float64), (self.n_features,))

    def record_encoding(self) -> RecordEncoding:
        """How one record is encoded and its scores read back (shared with the server's kernel)."""
        enc = self.encryption
        return RecordEncoding(enc.layout, self.input_bounds, enc.input_scale, enc.output_scale)

    def lane_encoding(self) -> LaneEncoding | None:
        """How batches are encoded, or None if the service has no batch path for the model."""
        if self.batch is None:
            return None
        features = tuple(range(self.n_features)) if self.batch.features is None else self.batch.features
        return LaneEncoding(features, self.batch.max_records, self.n_features, self.n_outputs, self.input_bounds,
                            self.batch.input_scale, self.batch.output_scale)

    def to_dict(self) -> dict:
        return {
            "protocol_version": self.protocol_version,
            "model_hash": self.model_hash,
            "estimator": self.estimator,
            "kind": self.kind,
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "classes": None if self.classes is None else list(self.classes),
            "proba": self.proba,
            "input_bound": list(self.input_bound) if isinstance(self.input_bound, tuple) else self.input_bound,
            "encryption": self.encryption.to_dict(),
            "batch": None if self.batch is None else self.batch.to_dict(),
            "limits": {"max_request_bytes": self.limits.max_request_bytes,
                       "max_batch_request_bytes": self.limits.max_batch_request_bytes},
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelDescription:
        """Read a description (fields this version does not know are ignored).

        Raises:
            ValueError: if a field it needs is missing or malformed, or the service speaks
                another protocol version.
        """
        try:
            version = int(data["protocol_version"])
            if version != PROTOCOL_VERSION:
                raise ValueError(f"the service speaks protocol version {version}; this client speaks "
                                 f"{PROTOCOL_VERSION}")
            n_features, n_outputs = int(data["n_features"]), int(data["n_outputs"])
            enc = data["encryption"]
            parameters = CkksParameters.from_dict(enc)
            layout = CoefficientLayout(parameters.poly_modulus_degree, n_features, n_outputs,
                                       **{k: int(v) for k, v in enc["layout"].items()})
            single = SinglePath(parameters, float(enc["input_scale"]), float(enc["output_scale"]), layout,
                                float(enc["noise_bound"]))
            batch = data.get("batch")
            lanes = None if batch is None else BatchPath(
                int(batch["max_records"]), None if batch["features"] is None else tuple(int(f) for f in batch["features"]),
                float(batch["input_scale"]), float(batch["output_scale"]), float(batch["noise_bound"]))
            bound = data["input_bound"]
            classes = data.get("classes")
            limits = data["limits"]
            return cls(str(data["model_hash"]), str(data["estimator"]), str(data["kind"]), n_features, n_outputs,
                       None if classes is None else tuple(classes), data.get("proba"),
                       tuple(float(b) for b in bound) if isinstance(bound, list) else float(bound),
                       single, lanes, Limits(int(limits["max_request_bytes"]), int(limits["max_batch_request_bytes"])),
                       version)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a model description of protocol version {PROTOCOL_VERSION}: {exc!r}") from exc


# -- the codec ------------------------------------------------------------------------------


def read_request(body: bytes, content_type: str | None, limits: Limits) -> tuple[ScoreRequest, WireForm]:
    """What a host calls with a request body: the caps, then the strict parse, once.

    Raises:
        PayloadTooLarge: before parsing, beyond the largest body the model takes; after it,
            a single-record body beyond the single-record cap.
        BadRequest, CredentialsRefused, UnsupportedMediaType: as :func:`decode_request`.
    """
    if len(body) > limits.largest:
        raise PayloadTooLarge(_too_large(len(body), limits))
    request, form = decode_request(body, content_type)
    if request.records is None and len(body) > limits.max_request_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; one record needs at most "
                              f"{limits.max_request_bytes}")
    return request, form


BATCH_LIMITS_MESSAGE = ("batch requests are capped at {cap} bytes, below Azure Functions' 100 MB request limit "
                        "(and the work per batch stays well under its 230 s response limit)")


def _too_large(size: int, limits: Limits) -> str:
    if not limits.max_batch_request_bytes:
        return f"request body is {size} bytes; the limit is {limits.max_request_bytes}"
    return f"request body is {size} bytes; " + BATCH_LIMITS_MESSAGE.format(cap=limits.max_batch_request_bytes)


def decode_request(body: bytes, content_type: str | None) -> tuple[ScoreRequest, WireForm]:
    """Parse a request in either form, strictly; return it and its form.

    Raises:
        BadRequest: for anything malformed, with a message that says what.
        CredentialsRefused: if a JSON request carries storage credentials.
        UnsupportedMediaType: for a content type that is neither form.
    """
    form = _form(body, content_type, REQUEST_MAGIC)
    fields = _decode_binary(body, REQUEST_MAGIC) if form is WireForm.BINARY else _decode_json(body, response=False)
    return ScoreRequest(*fields), form


def decode_response(body: bytes, content_type: str | None) -> ScoreResponse:
    """Parse a response in either form (the client's side).

    Raises:
        BadRequest: for anything malformed (it did not come from this service).
    """
    form = _form(body, content_type, RESPONSE_MAGIC)
    ciphertexts, model_hash, records = (_decode_binary(body, RESPONSE_MAGIC) if form is WireForm.BINARY
                                        else _decode_json(body, response=True))
    if model_hash is None:
        raise BadRequest("a response must name its model")
    return ScoreResponse(ciphertexts, model_hash, records)


def encode_request(request: ScoreRequest, form: WireForm) -> bytes:
    """A request's body in ``form`` (the client's side)."""
    return _encode(request, form, REQUEST_MAGIC)


def encode_response(response: ScoreResponse, form: WireForm) -> bytes:
    """A response's body in ``form``, its request's form."""
    return _encode(response, form, RESPONSE_MAGIC)


def _form(body: bytes, content_type: str | None, magic: bytes) -> WireForm:
    kind = media_type(content_type)
    if kind == BINARY_TYPE or (not kind and body[:4] == magic):
        return WireForm.BINARY
    if kind in (JSON_TYPE, "text/json") or not kind:
        return WireForm.JSON
    raise UnsupportedMediaType(f"content type {kind!r} is not served; send {JSON_TYPE} or {BINARY_TYPE}")


def message_document(message: ScoreRequest | ScoreResponse) -> dict:
    """A message's JSON form as a document (the container's envelope embeds one)."""
    document: dict = {"version": PROTOCOL_VERSION,
                      "ciphertexts": [base64.b64encode(c).decode("ascii") for c in message.ciphertexts]}
    if message.model_hash is not None:
        document["model_hash"] = message.model_hash
    if message.records is not None:
        document["records"] = message.records
    return document


def _encode(message: ScoreRequest | ScoreResponse, form: WireForm, magic: bytes) -> bytes:
    if form is WireForm.JSON:
        return json.dumps(message_document(message), separators=(",", ":")).encode()
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


Fields = tuple[tuple[bytes, ...], "str | None", "int | None"]


def _decode_binary(body: bytes, magic: bytes) -> Fields:
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
    return tuple(ciphertexts), model_hash, records


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


def refuse_credentials(names, body: bytes = b"") -> None:
    """Refuse a request whose field or parameter names, or body, carry storage credentials.

    Raises:
        CredentialsRefused: with a message that explains why.
    """
    if any(str(name).lower() in CREDENTIAL_NAMES for name in names) or any(
            marker in body for marker in CREDENTIAL_MARKERS):
        raise CredentialsRefused(CREDENTIALS_MESSAGE)


def request_from_document(document: object) -> ScoreRequest:
    """A request from its JSON document, already parsed (the container's envelope holds one).

    Raises:
        BadRequest, CredentialsRefused: as :func:`decode_request`.
    """
    if not isinstance(document, dict):
        raise BadRequest("a score message must be a JSON object")
    refuse_credentials(document.keys())
    return ScoreRequest(*_fields(document))


def _decode_json(body: bytes, *, response: bool) -> Fields:
    document = load_json_object(body)
    if not response:
        refuse_credentials(document.keys(), body)
    return _fields(document)


def _fields(document: dict) -> Fields:
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
    return tuple(decode_base64(c, f"ciphertext {i}") for i, c in enumerate(ciphertexts)), model_hash, records


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise BadRequest("JSON object repeats a field")
    return dict(pairs)


def _check_version(version: int) -> None:
    if version == 1:
        raise BadRequest(f"protocol version 1 is not supported: this service speaks version {PROTOCOL_VERSION}, "
                         "which moved batches from CKKS slots to coefficient lanes; update the client")
    if version != PROTOCOL_VERSION:
        raise BadRequest(f"protocol version {version} is not supported (this service speaks {PROTOCOL_VERSION})")


def _check_records(records: int) -> None:
    if not 1 <= records <= MAX_RECORDS:
        raise BadRequest(f"records must be between 1 and {MAX_RECORDS}, not {records}")


def _check_count(count: int) -> None:
    if not 1 <= count <= MAX_CIPHERTEXTS:
        raise BadRequest(f"a message carries 1 to {MAX_CIPHERTEXTS} ciphertexts, not {count}")
