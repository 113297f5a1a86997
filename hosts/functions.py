"""The Azure Functions glue: turn HttpRequests and bindings into data-plane calls.

``function_app.py`` declares routes and bindings only, builds one :class:`FunctionsHost` from
the app settings at start, and calls one method here per route. Each method decodes, calls
the data plane (:class:`scoring.service.ScoringService`), encodes; errors become their JSON
answers in :func:`hosts.http.respond`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import azure.functions as func
from azure.storage.blob import BlobClient, ContainerClient

from keystore.blobs import BlobBundleSource, container_client, delete_proven, keep_challenge, pending_challenge
from scoring import ownership, protocol
from scoring.errors import KeysNotFound, PayloadTooLarge
from scoring.keys import MAX_BUNDLE_BYTES, KeyId, check_key_id
from scoring.service import KEYS_MISSING_MESSAGE, ScoringService

from .http import Reply, json_reply, respond
from .settings import HostSettings

logger = logging.getLogger(__name__)


def http_response(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(reply.body, status_code=reply.status, mimetype=reply.content_type,
                             headers=reply.headers)


class FunctionsHost:
    """One worker's service and key storage, configured once from its settings."""

    def __init__(self, settings: HostSettings, service: ScoringService | None = None) -> None:
        self.settings = settings
        self.service = service or ScoringService(settings.scoring)
        self._keys: ContainerClient | None = None
        logger.info("key bundles in container %s, storage reached with a %s", settings.keys_container,
                    settings.storage.identity if settings.storage else "nothing")

    @property
    def keys(self) -> ContainerClient:
        """The keys container, over the same connection and identity as the bindings."""
        if self._keys is None:
            self._keys = container_client(self.settings.storage, self.settings.keys_container)
        return self._keys

    def score(self, req: func.HttpRequest, bundle: BlobClient) -> func.HttpResponse:
        """POST /api/score/{key_id}: the bundle's BlobClient comes from the blob input binding."""

        def handle(key_id: KeyId) -> Reply:
            request, form = protocol.read_request(req.get_body(), req.headers.get("content-type"),
                                                  self.service.limits)
            response = self.service.score(key_id, BlobBundleSource(bundle), request)
            return Reply(protocol.encode_response(response, form), 200, form.content_type,
                         {protocol.RECORDS_HEADER: str(response.disclosed)})

        return self._keyed(req, handle)

    def put_keys(self, req: func.HttpRequest, existing: BlobClient, stored: func.Out[bytes]) -> func.HttpResponse:
        """PUT /api/keys/{key_id}: check the bundle, store it through the output binding."""

        def handle(key_id: KeyId) -> Reply:
            body = req.get_body()
            if len(body) > MAX_BUNDLE_BYTES:
                raise PayloadTooLarge(f"key bundle is {len(body)} bytes; the limit is {MAX_BUNDLE_BYTES}")
            self.service.check_upload(key_id, body)
            if BlobBundleSource(existing).read() == body:
                return json_reply({"key_id": key_id, "stored": False, "bytes": len(body)}, 200)
            stored.set(body)
            return json_reply({"key_id": key_id, "stored": True, "bytes": len(body)}, 201)

        return self._keyed(req, handle)

    def challenge(self, req: func.HttpRequest, bundle: BlobClient) -> func.HttpResponse:
        """POST /api/keys/{key_id}/challenge: what only the secret key's holder can answer."""

        def handle(key_id: KeyId) -> Reply:
            pending, etag = pending_challenge(bundle)
            if etag is None:
                raise KeysNotFound(KEYS_MISSING_MESSAGE.format(key_id=key_id))
            challenge = self.service.challenge(key_id, BlobBundleSource(bundle), pending)
            if challenge.new and not keep_challenge(bundle, challenge, etag):  # another request drew one first
                pending, _ = pending_challenge(bundle)
                challenge = self.service.challenge(key_id, BlobBundleSource(bundle), pending)
            return json_reply({"key_id": key_id, "challenge": base64.b64encode(challenge.ciphertext).decode("ascii"),
                               "expires_in": ownership.CHALLENGE_SECONDS})

        return self._keyed(req, handle)

    def delete_keys(self, req: func.HttpRequest) -> func.HttpResponse:
        """DELETE /api/keys/{key_id} with X-Key-Proof: remove the bundle (the tutorial's clean-up)."""

        def handle(key_id: KeyId) -> Reply:
            proof = req.headers.get(ownership.PROOF_HEADER)
            ownership.check_proof_form(proof)  # before the lookup: junk learns nothing of existence
            deleted = delete_proven(self.keys.get_blob_client(key_id),
                                    lambda nonce, expires: ownership.verify(proof, nonce, expires))
            self.service.forget(key_id)
            if not deleted:
                raise KeysNotFound(f"no key bundle is stored under key id {key_id}")
            return Reply(b"", 204)

        return self._keyed(req, handle)

    @staticmethod
    def _keyed(req: func.HttpRequest, handle: Callable[[KeyId], Reply]) -> func.HttpResponse:
        """Every keyed route's start: the key id checked and credentials in the query refused,
        before anything else, then the handler; every failure becomes its JSON error."""

        def checked() -> Reply:
            key_id = check_key_id(req.route_params.get("key_id", ""))
            protocol.refuse_credentials(req.params.keys())
            return handle(key_id)

        return respond(checked, http_response)

    def describe(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/model."""
        return respond(lambda: json_reply(self.service.describe().to_dict()), http_response)

    def health(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/health (anonymous): liveness, nothing about the model or other callers."""
        return respond(lambda: json_reply(self.service.health()), http_response)
