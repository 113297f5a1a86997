"""The Azure ML glue: the inference server's one route, ``/score``, onto the scoring core.

``score.py`` is the entry script the Azure ML inference server (``azmlinfsrv``) loads: it
calls :func:`init` once per worker and :func:`run` per request, with ``@rawhttp`` so that this
module sees the whole HTTP request and chooses the status. Errors are mapped to
``{"error": code, "message": text}`` in :func:`respond`, the one place this host does it.

Requests (docs/aml.md has the details)::

    GET  /score                                   the model description (GET /api/model on the function)
    POST /score   x-key-id: <key id>              the function's score request, JSON or binary
    POST /score   {"key_id": ..., "data": {...}, "keys": "<base64 bundle>"?}   the tutorial's shape

Key bundles come from the container's own storage connection (``SCORING_STORAGE``, as on the
function) or inline in the JSON document; never with credentials in a request.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import flask
from azure.storage.blob import ContainerClient
from azureml_inference_server_http.api.aml_response import AMLResponse
from werkzeug.exceptions import RequestEntityTooLarge

from scoring import protocol
from scoring.bundles import BundleSource
from scoring.errors import (
    BadRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    error_body,
)
from scoring.keys import MAX_BUNDLE_BYTES, check_key_id
from scoring.model import ModelError
from scoring.service import ScoringService, Settings

from . import storage

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
    data: bytes
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
        """
        return cls(ScoringService(model_settings()), keys_container())

    def handle(self, request: flask.Request) -> AMLResponse:
        """Answer one request to ``/score``.

        Raises:
            ScoringError: a subclass naming the HTTP status for every refusal.
        """
        protocol.refuse_credentials(request.args.keys())
        if request.method in ("GET", "HEAD"):
            return AMLResponse(self.service.describe(), 200, json_str=True)
        if request.method != "POST":  # OPTIONS, answered as azmlinfsrv answers it without @rawhttp
            return AMLResponse("", 200)
        body = self._read_body(request)
        key_id = request.headers.get(KEY_ID_HEADER)
        if key_id is not None:
            key_id = check_key_id(key_id)
            out, out_type = self.service.score(key_id, self.stored(key_id), body, request.content_type)
        else:
            envelope = parse_envelope(body, request.content_type)
            bundle = envelope.keys if envelope.keys is not None else self.stored(envelope.key_id)
            out, out_type = self.service.score(envelope.key_id, bundle, envelope.data, protocol.JSON_TYPE)
        return AMLResponse(out, 200, {"Content-Type": out_type})

    def stored(self, key_id: str) -> BundleSource | None:
        """Where the bundle for ``key_id`` is stored, or None without storage (then: 404)."""
        return None if self.keys is None else storage.BlobBundleSource(self.keys.get_blob_client(key_id))

    @functools.cached_property
    def body_cap(self) -> int:
        """The most this host reads: the service's largest body limit, plus room for an inline bundle."""
        return max(self.service.describe()["limits"].values()) + ENVELOPE_MARGIN

    def _read_body(self, request: flask.Request) -> bytes:
        request.max_content_length = self.body_cap
        try:
            return request.get_data(cache=False)
        except RequestEntityTooLarge as exc:
            raise PayloadTooLarge(f"request body is over the limit of {request.max_content_length} bytes") from exc


def model_settings() -> Settings:
    """Settings from ``SCORING_*``, the model found in ``AZUREML_MODEL_DIR`` unless named.

    ``SCORING_MODEL_PATH`` wins; a relative one is resolved against ``AZUREML_MODEL_DIR``.

    Raises:
        ModelError: if neither names a model, or the folder does not hold exactly one.
    """
    model_dir = os.environ.get(MODEL_DIR_SETTING)
    settings = Settings.from_env(base_dir=Path(model_dir) if model_dir else None)
    if settings.model_path:
        return settings
    if not model_dir:
        raise ModelError(f"no model: set {MODEL_DIR_SETTING} (Azure ML sets it) or SCORING_MODEL_PATH")
    return dataclasses.replace(settings, model_path=str(find_model(Path(model_dir))))


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


def keys_container() -> ContainerClient | None:
    """The key bundles' container over ``SCORING_STORAGE``, or None if no storage is configured."""
    try:
        return storage.container_client(storage.STORAGE_SETTING,
                                        os.environ.get(storage.KEYS_CONTAINER_SETTING, storage.DEFAULT_KEYS_CONTAINER))
    except ServiceUnavailable:
        logger.info("no key storage is configured (%s): key bundles must come inline", storage.STORAGE_SETTING)
        return None


def parse_envelope(body: bytes, content_type: str | None) -> Envelope:
    """Parse the JSON document form strictly; the score message inside is left to the core.

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
        raise BadRequest('data must be the JSON score message {"version": 1, "ciphertexts": [...], ...}')
    return Envelope(check_key_id(document["key_id"]), json.dumps(document["data"]).encode(),
                    _bundle_bytes(document.get("keys")))


def _bundle_bytes(keys: object) -> bytes | None:
    return None if keys is None else protocol.decode_base64(keys, "keys (the public key bundle)")


def respond(call: Callable[[], AMLResponse]) -> AMLResponse:
    """Run a handler; map every ScoringError to its status and JSON body, hide the rest."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the caller must never see a traceback
        error = storage.error_for(exc)
    return AMLResponse(error_body(error), error.status, {"Content-Type": protocol.JSON_TYPE, **error.headers})


def init() -> None:
    """Build the worker's host and load the model now, so that a bad model fails the start.

    Raises:
        ModelError, ServiceUnavailable: if the model cannot be found or loaded (azmlinfsrv
            then logs it and exits, and the deployment reports the failure).
    """
    global _host
    _log_where_the_server_logs()
    _host = AmlHost.from_env()
    _host.service.kernel  # noqa: B018 - builds the kernel: weights encoded once per worker


def _log_where_the_server_logs() -> None:
    """azmlinfsrv configures only its own loggers: send ours to its handlers, at its level."""
    server = logging.getLogger("azmlinfsrv")
    for name in ("scoring", "hosts"):
        ours = logging.getLogger(name)
        ours.handlers, ours.propagate = list(server.handlers), not server.handlers
        ours.setLevel(server.getEffectiveLevel())


def run(request: flask.Request) -> AMLResponse:
    """Answer one request (``score.run`` with ``@rawhttp``)."""
    return respond(lambda: _current().handle(request))


def _current() -> AmlHost:
    if _host is None:
        raise ServiceUnavailable("the service is starting (init() has not run)")
    return _host
