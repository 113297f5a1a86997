"""How the client reaches a service: the Azure Functions app's routes, or the container's one URL.

Both transports take and return the wire format's typed messages
(:class:`scoring.protocol.ScoreRequest` / :class:`~scoring.protocol.ScoreResponse`) and raise
:class:`ServiceError` for every refusal. A session the caller passes in is used as it is (no
adapters mounted, no headers written into it); a session the transport creates gets a retry
adapter for 429 and 503 that honours ``Retry-After``.

Example:
    >>> transport = FunctionsTransport("https://myapp.azurewebsites.net", function_key="...")  # doctest: +SKIP
    >>> transport.model()["model_hash"]                                                          # doctest: +SKIP
"""

from __future__ import annotations

import base64
import json

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scoring import ownership, protocol
from scoring.protocol import ScoreRequest, ScoreResponse, WireForm

DEFAULT_TIMEOUT = 30.0
RETRY_STATUSES = (429, 503)
FUNCTION_KEY_HEADER = "x-functions-key"
KEY_ID_HEADER = "x-key-id"


class ServiceError(Exception):
    """The service refused a request; carries its status, error code, message and response."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status = response.status_code
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            self.code, self.message = body.get("error", "unknown"), str(body.get("message", ""))
        except ValueError:
            self.code, self.message = "unknown", response.text[:200]
        super().__init__(f"{self.status} {self.code}: {self.message} ({response.request.method} "
                         f"{response.url.split('?')[0]})")


def retrying_session(retries: int) -> requests.Session:
    """A new session that retries 429 and 503, honouring ``Retry-After``."""
    session = requests.Session()
    retry = Retry(total=retries, status_forcelist=RETRY_STATUSES, allowed_methods=None, backoff_factor=0.2,
                  respect_retry_after_header=True, raise_on_status=False)
    for scheme in ("http://", "https://"):
        session.mount(scheme, HTTPAdapter(max_retries=retry))
    return session


class HttpTransport:
    """What both transports share: the session, the timeout, the key header, the error."""

    stores_keys = True

    def __init__(self, url: str, *, function_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 binary: bool = True, retries: int = 3, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.form = WireForm.BINARY if binary else WireForm.JSON
        self.session = session if session is not None else retrying_session(retries)
        self._owns_session = session is None
        self._headers = {FUNCTION_KEY_HEADER: function_key} if function_key else {}

    def request(self, method: str, url: str, *, headers: dict | None = None, **kwargs) -> requests.Response:
        response = self.session.request(method, url, timeout=self.timeout, headers={**self._headers, **(headers or {})},
                                        **kwargs)
        if response.status_code >= 400:
            raise ServiceError(response)
        return response

    def _post_message(self, url: str, request: ScoreRequest, headers: dict | None = None) -> ScoreResponse:
        body = protocol.encode_request(request, self.form)
        content_type = self.form.content_type
        response = self.request("POST", url, data=body,
                                headers={"content-type": content_type, "accept": content_type, **(headers or {})})
        return protocol.decode_response(response.content, response.headers.get("content-type"))

    def close(self) -> None:
        """Close the session if this transport made it (one passed in is its owner's to close)."""
        if self._owns_session:
            self.session.close()


class FunctionsTransport(HttpTransport):
    """The Azure Functions app: ``<base>/<prefix>/model``, ``/keys/{id}``, ``/score/{id}``."""

    def __init__(self, base_url: str, *, route_prefix: str = "api", **options) -> None:
        base = base_url.rstrip("/")
        super().__init__(base + ("/" + route_prefix.strip("/") if route_prefix else ""), **options)

    def model(self) -> dict:
        return self.request("GET", f"{self.url}/model").json()

    def put_keys(self, key_id: str, bundle: bytes) -> None:
        self.request("PUT", f"{self.url}/keys/{key_id}", data=bundle,
                     headers={"content-type": protocol.BINARY_TYPE})

    def challenge(self, key_id: str) -> bytes:
        document = self.request("POST", f"{self.url}/keys/{key_id}/challenge").json()
        return base64.b64decode(document["challenge"], validate=True)

    def delete_keys(self, key_id: str, proof: str) -> None:
        self.request("DELETE", f"{self.url}/keys/{key_id}", headers={ownership.PROOF_HEADER: proof})

    def score(self, key_id: str, request: ScoreRequest, *, bundle: bytes | None = None) -> ScoreResponse:
        """Score with the bundle stored under ``key_id`` (``bundle`` is not used: the app holds it)."""
        return self._post_message(f"{self.url}/score/{key_id}", request)


class ContainerTransport(HttpTransport):
    """The container (Azure ML online endpoint, ACI, ``make serve-aml``): one URL for every call.

    It takes no key uploads: its bundles come from its own storage (the key id in
    ``x-key-id``) or inline, beside the score message, in the tutorial's JSON document.
    """

    stores_keys = False

    def model(self) -> dict:
        return self.request("GET", self.url).json()

    def put_keys(self, key_id: str, bundle: bytes) -> None:
        raise NotImplementedError("the container takes no key uploads: use upload_keys_to_blob() (the storage "
                                  "it reads), or let score() send the bundle inline")

    def challenge(self, key_id: str) -> bytes:
        raise NotImplementedError("the container deletes no keys; delete the bundle from your storage")

    def delete_keys(self, key_id: str, proof: str) -> None:
        raise NotImplementedError("the container deletes no keys; delete the bundle from your storage")

    def score(self, key_id: str, request: ScoreRequest, *, bundle: bytes | None = None) -> ScoreResponse:
        """Score with the stored bundle (``bundle`` None) or with ``bundle`` sent inline."""
        if bundle is None:
            return self._post_message(self.url, request, {KEY_ID_HEADER: key_id})
        document = {"key_id": key_id, "data": protocol.message_document(request),
                    "keys": base64.b64encode(bundle).decode("ascii")}
        response = self.request("POST", self.url, data=json.dumps(document, separators=(",", ":")).encode(),
                                headers={"content-type": protocol.JSON_TYPE, "accept": protocol.JSON_TYPE})
        return protocol.decode_response(response.content, response.headers.get("content-type"))


def transport_for(endpoint: str, **options) -> HttpTransport:
    """The transport an endpoint URL names: a URL ending in ``/score`` is the container's."""
    if endpoint.rstrip("/").endswith("/score"):
        options.pop("route_prefix", None)
        return ContainerTransport(endpoint, **options)
    return FunctionsTransport(endpoint, **options)
