"""One error family for the whole service: each error knows its HTTP status and its code.

Hosts (the Azure Functions app, the Azure ML entry script, the local host) map a
``ScoringError`` to ``{"error": code, "message": text}`` in one place each, with
:func:`error_body`. Messages never contain key, ciphertext or credential bytes.
"""

from __future__ import annotations

import json


class ScoringError(Exception):
    """Base of every error the service reports to a caller.

    Attributes:
        status: the HTTP status a host answers with.
        code: a short stable identifier for programs (``"bad_request"``, ...).
        headers: extra HTTP headers a host should send (for example ``Retry-After``).
    """

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, str]:
        """The JSON error body every host returns."""
        return {"error": self.code, "message": self.message}


class BadRequest(ScoringError):
    """Malformed request: not JSON, not base64, unknown version or field, bad key id."""

    status = 400
    code = "bad_request"


class CredentialsRefused(BadRequest):
    """A request carried storage credentials, which must never travel in a request."""

    code = "credentials_refused"


class KeysNotFound(ScoringError):
    """No key bundle is stored under the requested key id."""

    status = 404
    code = "keys_not_found"


class ModelMismatch(ScoringError):
    """The request was encrypted for another model version than the one served."""

    status = 409
    code = "model_mismatch"


class ProofRequired(ScoringError):
    """Deleting a bundle needs proof that the caller holds its secret key (a decrypted challenge)."""

    status = 403
    code = "proof_required"


class PayloadTooLarge(ScoringError):
    """The body exceeds the configured cap; refused before parsing."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ScoringError):
    """The body's content type is neither JSON nor the binary form."""

    status = 415
    code = "unsupported_media_type"


class KeysRejected(ScoringError):
    """A key bundle that does not parse, holds a secret key, uses unserved parameters, or whose
    public key is visibly malformed."""

    status = 422
    code = "keys_rejected"


class CiphertextRejected(ScoringError):
    """A ciphertext that does not parse or does not fit the served parameters and model."""

    status = 422
    code = "ciphertext_rejected"


class ServiceUnavailable(ScoringError):
    """The service cannot answer now (model not loadable, storage unreachable)."""

    status = 503
    code = "unavailable"


class InternalError(ScoringError):
    """An unexpected failure; the caller sees only this generic message."""

    status = 500
    code = "internal_error"


def error_body(error: ScoringError) -> bytes:
    """Serialize an error as the JSON body every host returns."""
    return json.dumps(error.to_dict()).encode()
