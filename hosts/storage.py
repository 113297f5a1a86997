"""Blob storage access for the hosts, from a connection *setting name* as Azure Functions uses it.

A connection setting ``NAME`` is either an environment variable holding a connection
string (``UseDevelopmentStorage=true`` included), or identity-based:
``NAME__blobServiceUri`` (or ``NAME__serviceUri``) with ``DefaultAzureCredential``
(managed identity in Azure). Nothing here logs a connection string.
"""

from __future__ import annotations

import functools
import logging
import os

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, LinearRetry

from scoring.errors import InternalError, KeysRejected, ScoringError, ServiceUnavailable
from scoring.keys import MAX_BUNDLE_BYTES

STORAGE_SETTING = "SCORING_STORAGE"  # the connection setting name both hosts use
KEYS_CONTAINER_SETTING = "SCORING_KEYS_CONTAINER"
DEFAULT_KEYS_CONTAINER = "hekeys"
RETRY_AFTER_SECONDS = "5"
logger = logging.getLogger(__name__)
# azure-core logs every storage request and response at INFO (secret headers already
# REDACTED); the Functions host forwards INFO to Application Insights: two records per call.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
# Fail fast when storage is down: the caller gets a 503 with Retry-After instead of a hang.
CLIENT_OPTIONS = {"connection_timeout": 5, "read_timeout": 20,
                  "retry_policy": LinearRetry(backoff=0.5, random_jitter_range=0.2, retry_total=1)}
# Per call, for clients built by others (the SDK-type binding's BlobClient, whose default
# exponential retry would wait 15 s and more): fail at once, the client retries on 503.
CALL_OPTIONS = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 20}


@functools.lru_cache(maxsize=None)
def service_client(setting: str) -> BlobServiceClient:
    """A BlobServiceClient for the connection setting ``setting``.

    Raises:
        ServiceUnavailable: if the setting is not configured.
    """
    connection = os.environ.get(setting)
    if connection:
        return BlobServiceClient.from_connection_string(connection, **CLIENT_OPTIONS)
    uri = os.environ.get(f"{setting}__blobServiceUri") or os.environ.get(f"{setting}__serviceUri")
    if uri:
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(uri, credential=DefaultAzureCredential(), **CLIENT_OPTIONS)
    raise ServiceUnavailable(f"storage connection setting {setting} is not configured")


def container_client(setting: str, container: str) -> ContainerClient:
    return service_client(setting).get_container_client(container)


def unavailable(exc: AzureError) -> ScoringError:
    """The 503 a host answers when storage cannot be reached."""
    return ServiceUnavailable(f"blob storage is unreachable ({type(exc).__name__}); retry shortly",
                              headers={"Retry-After": RETRY_AFTER_SECONDS})


def is_unreachable(exc: AzureError) -> bool:
    """Connection failures and storage-side 5xx errors: the caller should retry later."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    return isinstance(exc, HttpResponseError) and (exc.status_code or 0) >= 500


class BlobBundleSource:
    """A key bundle in blob storage, reached through the BlobClient a binding provides.

    Implements ``scoring.bundles.BundleSource``: the version is the blob's ETag, so the
    service re-reads a bundle only when it changed, and sees a deletion at once.
    """

    def __init__(self, client: BlobClient) -> None:
        self.client = client

    def version(self) -> str | None:
        try:
            return self.client.get_blob_properties(**CALL_OPTIONS).etag
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _storage_error(exc) from exc

    def read(self) -> tuple[bytes, str] | None:
        try:
            download = self.client.download_blob(**CALL_OPTIONS)
            if download.size > MAX_BUNDLE_BYTES:
                raise KeysRejected(f"the stored key bundle is {download.size} bytes; no served parameter set "
                                   f"needs more than {MAX_BUNDLE_BYTES}")
            return download.readall(), download.properties.etag
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _storage_error(exc) from exc


def _storage_error(exc: AzureError) -> ScoringError:
    if is_unreachable(exc):
        return unavailable(exc)
    return ServiceUnavailable(f"blob storage refused the request ({type(exc).__name__})")


def error_for(exc: Exception) -> ScoringError:
    """The ScoringError a host answers for any exception: itself, 503 for storage, else 500.

    Logs what the caller does not see. Both hosts map errors through this one function.
    """
    if isinstance(exc, ScoringError):
        logger.info("refused with %d %s: %s", exc.status, exc.code, exc.message)
        return exc
    if isinstance(exc, AzureError):
        logger.warning("storage error: %s", type(exc).__name__)
        return unavailable(exc)
    logger.error("unexpected failure", exc_info=exc)
    return InternalError("internal error; see the service log")


def delete_blob(setting: str, container: str, name: str) -> bool:
    """Delete a blob; return False if it did not exist.

    Raises:
        ServiceUnavailable: if storage cannot be reached.
    """
    try:
        container_client(setting, container).delete_blob(name)
    except ResourceNotFoundError:
        return False
    except AzureError as exc:
        raise _storage_error(exc) from exc
    return True


__all__ = ["service_client", "container_client", "delete_blob", "unavailable", "BlobBundleSource", "AzureError"]
