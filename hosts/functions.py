"""The Azure Functions glue: turn HttpRequests and bindings into service calls.

``function_app.py`` declares routes and bindings only and calls one function here per
route. Errors are mapped to ``{"error": code, "message": text}`` in :func:`respond`, the
one place this host does it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import azure.functions as func
from azure.storage.blob import BlobClient

from scoring.errors import KeysNotFound, PayloadTooLarge, error_body
from scoring.keys import MAX_BUNDLE_BYTES, check_key_id
from scoring.protocol import refuse_credentials
from scoring.service import ScoringService, Settings

from . import storage

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent.parent
JSON_TYPE = "application/json"

_service: ScoringService | None = None


def service() -> ScoringService:
    """The worker's one service, configured from the environment on first use."""
    global _service
    if _service is None:
        _service = ScoringService(Settings.from_env(base_dir=APP_DIR))
    return _service


def reset(settings: Settings | None = None) -> None:
    """Replace the worker's service (tests, or after settings change)."""
    global _service
    _service = None if settings is None else ScoringService(settings)


def respond(call: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Run a handler; map every ScoringError to its status and JSON body, hide the rest."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the caller must never see a traceback
        error = storage.error_for(exc)
        return func.HttpResponse(error_body(error), status_code=error.status, mimetype=JSON_TYPE,
                                 headers=error.headers)


def json_response(document: dict, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document), status_code=status, mimetype=JSON_TYPE)


def score(req: func.HttpRequest, bundle: BlobClient) -> func.HttpResponse:
    """POST /api/score/{key_id}: the bundle's BlobClient comes from the blob input binding."""

    def handle() -> func.HttpResponse:
        key_id = check_key_id(req.route_params.get("key_id", ""))
        refuse_credentials(req.params.keys())
        body, content_type = service().score(key_id, storage.BlobBundleSource(bundle), req.get_body(),
                                             req.headers.get("content-type"))
        return func.HttpResponse(body, status_code=200, mimetype=content_type)

    return respond(handle)


def put_keys(req: func.HttpRequest, existing: BlobClient, stored: func.Out[bytes]) -> func.HttpResponse:
    """PUT /api/keys/{key_id}: check the bundle, store it through the output binding."""

    def handle() -> func.HttpResponse:
        key_id = check_key_id(req.route_params.get("key_id", ""))
        refuse_credentials(req.params.keys())
        body = req.get_body()
        if len(body) > MAX_BUNDLE_BYTES:
            raise PayloadTooLarge(f"key bundle is {len(body)} bytes; the limit is {MAX_BUNDLE_BYTES}")
        service().check_upload(key_id, body)
        current = storage.BlobBundleSource(existing).read()
        if current is not None and current[0] == body:
            return json_response({"key_id": key_id, "stored": False, "bytes": len(body)}, 200)
        stored.set(body)
        return json_response({"key_id": key_id, "stored": True, "bytes": len(body)}, 201)

    return respond(handle)


def delete_keys(req: func.HttpRequest) -> func.HttpResponse:
    """DELETE /api/keys/{key_id}: remove the stored bundle (the tutorial's clean-up)."""

    def handle() -> func.HttpResponse:
        key_id = check_key_id(req.route_params.get("key_id", ""))
        container = os.environ.get(storage.KEYS_CONTAINER_SETTING, storage.DEFAULT_KEYS_CONTAINER)
        existed = storage.delete_blob(storage.STORAGE_SETTING, container, key_id)
        service().forget(key_id)
        if not existed:
            raise KeysNotFound(f"no key bundle is stored under key id {key_id}")
        return func.HttpResponse(status_code=204)

    return respond(handle)


def describe(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/model."""
    return respond(lambda: json_response(service().describe()))


def health(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health."""
    return respond(lambda: json_response(service().health()))
