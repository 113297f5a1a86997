"""The Azure ML glue: the inference server's one route, ``/score``, onto the scoring core.

``score.py`` is the entry script the Azure ML inference server (``azmlinfsrv``) loads: it
calls :func:`init` once per worker and :func:`run` per request, with ``@rawhttp`` so that this
module sees the whole HTTP request and chooses the status. Errors are mapped to
``{"error": code, "message": text}`` by :func:`hosts.http.respond`, as on the Functions app.

Requests (docs/aml.md has the details)::

    GET  /score                                   the model description (GET /api/model on the function)
    POST /score   x-key-id: <key id>              the function's score request, JSON or binary
    POST /score   {"key_id": ..., "data": {...}, "keys": "<base64 bundle>"?}   the tutorial's shape

Key bundles come from the container's own storage connection (``SCORING_STORAGE`` and
``SCORING_KEYS_CONTAINER``, by the same rule as on the function) or inline in the JSON
document; never with credentials in a request.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path

import flask
from azure.storage.blob import ContainerClient
from azureml_inference_server_http.api.aml_response import AMLResponse
from werkzeug.exceptions import RequestEntityTooLarge

from keystore.blobs import BlobBundleSource, container_client
from scoring import protocol
from scoring.bundles import BundleSource
from scoring.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType
from scoring.keys import MAX_BUNDLE_BYTES, check_key_id
from scoring.model import ModelError
from scoring.service import ScoringService

from .http import Reply, json_reply, quiet_azure_logging, respond
from .settings import HostSettings

logger = logging.getLogger(__name__)

MODEL_DIR_SETTING = "AZUREML_MODEL_DIR"
MODEL_SUFFIXES = (".json", ".pkl", ".joblib")
KEY_ID_HEADER = "x-key-id"
ENVELOPE_FIELDS = ("key_id", "data", "keys")
# A JSON document may carry a bundle besides the score message: base64 of the largest one, plus room.
ENVELOPE_MARGIN = 4 * (MAX_BUNDLE_BYTES // 3 + 1) + 1024
JSON_TYPES = ("", protocol.JSON_TYPE, "text/json")
NO_KEY_ID = (f"say which keys to use: the key id in the {KEY_ID_HEADER} header, or a JSON document "
             '{"key_id": ..., "data": <score message>, "keys": <base64 bundle, optional>}')

_host: AmlHost | None = None


@dataclasses.dataclass(frozen=True)
class Envelope:
    """The JSON document form of a request: key id, score message, and optionally the bundle."""

    key_id: str
    request: protocol.ScoreRequest
    keys: bytes | None


class AmlHost:
    """One worker's service and, when storage is configured, the container holding key bundles."""

    def __init__(self, service: ScoringService, keys: ContainerClient | None) -> None:
        self.service = service
        self.keys = keys

    @classmethod
    def from_env(cls) -> AmlHost:
        """Configure from the environment, once: model, limits, storage connection.

        Raises:
            ModelError: if no model file can be chosen.
            ConfigurationError: for storage settings no path can honour.
        """
        settings = host_settings()
        keys = None
        if settings.storage is None:
            logger.info("no key storage is configured (SCORING_STORAGE): key bundles must come inline")
        else:
            keys = container_client(settings.storage, settings.keys_container)
        return cls(ScoringService(settings.scoring), keys)

    def handle(self, request: flask.Request) -> Reply:
        """Answer one request to ``/score``.

        Raises:
            ScoringError: a subclass naming the HTTP status for every refusal.
        """
        protocol.refuse_credentials(request.args.keys())
        if request.method in ("GET", "HEAD"):
            return json_reply(self.service.describe().to_dict())
        if request.method != "POST":  # OPTIONS, answered as azmlinfsrv answers it without @rawhttp
            return Reply(b"", 200, "text/plain")
        body = self._read_body(request)
        key_id = request.headers.get(KEY_ID_HEADER)
        if key_id is not None:
            key_id = check_key_id(key_id)
            score_request, form = protocol.read_request(body, request.content_type, self.service.limits)
            bundle: BundleSource | bytes | None = self.stored(key_id)
        else:
            envelope = parse_envelope(body, request.content_type)
            limits = self.service.limits
            if envelope.request.records is None and len(body) > limits.max_request_bytes + ENVELOPE_MARGIN:
                raise PayloadTooLarge(f"request body is {len(body)} bytes; one record needs at most "
                                      f"{limits.max_request_bytes + ENVELOPE_MARGIN} with its bundle")
            key_id, score_request, form = envelope.key_id, envelope.request, protocol.WireForm.JSON
            bundle = envelope.keys if envelope.keys is not None else self.stored(envelope.key_id)
        response = self.service.score(key_id, bundle, score_request)
        return Reply(protocol.encode_response(response, form), 200, form.content_type,
                     {protocol.RECORDS_HEADER: str(response.disclosed)})

    def stored(self, key_id: str) -> BundleSource | None:
        """Where the bundle for ``key_id`` is stored, or None without storage (then: 404)."""
        return None if self.keys is None else BlobBundleSource(self.keys.get_blob_client(key_id))

    @functools.cached_property
    def body_cap(self) -> int:
        """The most this host reads: the service's largest body limit, plus room for an inline bundle."""
        return self.service.limits.largest + ENVELOPE_MARGIN

    def _read_body(self, request: flask.Request) -> bytes:
        request.max_content_length = self.body_cap
        try:
            return request.get_data(cache=False)
        except RequestEntityTooLarge as exc:
            raise PayloadTooLarge(f"request body is over the limit of {request.max_content_length} bytes") from exc


def host_settings() -> HostSettings:
    """Settings from the environment, the model found in ``AZUREML_MODEL_DIR`` unless named.

    ``SCORING_MODEL_PATH`` wins; a relative one is resolved against ``AZUREML_MODEL_DIR``.

    Raises:
        ModelError: if neither names a model, or the folder does not hold exactly one.
        ConfigurationError: for storage settings no path can honour.
    """
    model_dir = os.environ.get(MODEL_DIR_SETTING)
    settings = HostSettings.from_env(base_dir=Path(model_dir) if model_dir else None, require_storage=False)
    if settings.scoring.model_path:
        return settings
    if not model_dir:
        raise ModelError(f"no model: set {MODEL_DIR_SETTING} (Azure ML sets it) or SCORING_MODEL_PATH")
    scoring = dataclasses.replace(settings.scoring, model_path=str(find_model(Path(model_dir))))
    return dataclasses.replace(settings, scoring=scoring)


def find_model(folder: Path) -> Path:
    """The one model file under ``folder`` (any depth): an exported ``*.json`` artifact, else a pickle.

    Raises:
        ModelError: if there is none, or more than one of the preferred kind.
    """
    if not folder.is_dir():
        raise ModelError(f"{MODEL_DIR_SETTING}={folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix in MODEL_SUFFIXES and p.is_file())
    artifacts = [p for p in files if p.suffix == ".json"]
    candidates = artifacts or files
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(str(p.relative_to(folder)) for p in candidates) or "nothing"
    raise ModelError(f"{MODEL_DIR_SETTING}={folder} must hold one model file ({', '.join(MODEL_SUFFIXES)}); "
                     f"found {found}. Set SCORING_MODEL_PATH to the one to serve")


def parse_envelope(body: bytes, content_type: str | None) -> Envelope:
    """Parse the JSON document form strictly, the score message inside it included.

    Raises:
        BadRequest: for anything malformed, with a message that says what.
        CredentialsRefused: if it carries storage credentials.
        UnsupportedMediaType: for a body that is not JSON.
    """
    kind = protocol.media_type(content_type)
    if kind == protocol.BINARY_TYPE:
        raise BadRequest(NO_KEY_ID)
    if kind not in JSON_TYPES:
        raise UnsupportedMediaType(f"content type {kind!r} is not served; send {protocol.JSON_TYPE} or "
                                   f"{protocol.BINARY_TYPE}")
    document = protocol.load_json_object(body)
    protocol.refuse_credentials(document.keys(), body)
    unknown = set(document) - set(ENVELOPE_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; expected key_id, data and "
                         "optionally keys")
    if "key_id" not in document or "data" not in document:
        raise BadRequest(NO_KEY_ID)
    if not isinstance(document["data"], dict):
        raise BadRequest('data must be the JSON score message {"version": 2, "ciphertexts": [...], ...}')
    key_id = check_key_id(document["key_id"])
    keys = document.get("keys")
    bundle = None if keys is None else protocol.decode_base64(keys, "keys (the public key bundle)")
    return Envelope(key_id, protocol.request_from_document(document["data"]), bundle)


def aml_response(reply: Reply) -> AMLResponse:
    return AMLResponse(reply.body, reply.status, {"Content-Type": reply.content_type, **reply.headers})


def init() -> None:
    """Build the worker's host and load the model now, so that a bad model fails the start.

    Raises:
        ModelError, ServiceUnavailable, ConfigurationError: if the model cannot be found or
            loaded, or a setting cannot be honoured (azmlinfsrv then logs it and exits, and
            the deployment reports the failure).
    """
    global _host
    _log_where_the_server_logs()
    quiet_azure_logging()
    _host = AmlHost.from_env()
    _host.service.load()  # weights encoded once per worker


def _log_where_the_server_logs() -> None:
    """azmlinfsrv configures only its own loggers: send ours to its handlers, at its level."""
    server = logging.getLogger("azmlinfsrv")
    for name in ("scoring", "hosts", "keystore"):
        ours = logging.getLogger(name)
        ours.handlers, ours.propagate = list(server.handlers), not server.handlers
        ours.setLevel(server.getEffectiveLevel())


def run(request: flask.Request) -> AMLResponse:
    """Answer one request (``score.run`` with ``@rawhttp``)."""
    return respond(lambda: _current().handle(request), aml_response)


def _current() -> AmlHost:
    if _host is None:
        raise ServiceUnavailable("the service is starting (init() has not run)")
    return _host
