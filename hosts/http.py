"""What both hosts share: one mapping from any exception to an HTTP answer, and one ``respond``.

Every refusal is ``{"error": code, "message": text}`` with the error's status and headers;
storage failures are a 503 with ``Retry-After``; anything unexpected is a 500 whose details
stay in the log. A caller never sees a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from azure.core.exceptions import AzureError

from keystore.blobs import storage_error
from scoring.errors import InternalError, ScoringError, error_body
from scoring.protocol import JSON_TYPE

logger = logging.getLogger(__name__)
Response = TypeVar("Response")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, before a host turns it into its own response type."""

    body: bytes
    status: int = 200
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(document: dict, status: int = 200) -> Reply:
    return Reply(json.dumps(document).encode(), status)


def error_for(exc: Exception) -> ScoringError:
    """The ScoringError a host answers for any exception: itself, 503 for storage (with
    Retry-After when it is unreachable or failing, not when it refused), else 500.

    Logs what the caller does not see.
    """
    if isinstance(exc, ScoringError):
        logger.info("refused with %d %s: %s", exc.status, exc.code, exc.message)
        return exc
    if isinstance(exc, AzureError):
        logger.warning("storage error: %s", type(exc).__name__)
        return storage_error(exc)
    logger.error("unexpected failure", exc_info=exc)
    return InternalError("internal error; see the service log")


def respond(handle: Callable[[], Reply], build: Callable[[Reply], Response]) -> Response:
    """Run a handler and build the host's response; every exception becomes its JSON error."""
    try:
        reply = handle()
    except Exception as exc:  # noqa: BLE001 - the caller must never see a traceback
        error = error_for(exc)
        reply = Reply(error_body(error), error.status, JSON_TYPE, error.headers)
    return build(reply)


def quiet_azure_logging() -> None:
    """azure-core logs every storage request at INFO (secret headers already redacted); the
    Functions host forwards INFO to Application Insights: two records per call. Hosts call this
    once at start."""
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
