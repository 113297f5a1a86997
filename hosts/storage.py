"""Blob storage access for the hosts, from a connection *setting name* as Azure Functions uses it.

A connection setting ``NAME`` is either an environment variable holding a connection
string (``UseDevelopmentStorage=true`` included), or identity-based:
``NAME__blobServiceUri`` (or ``NAME__serviceUri``) with ``DefaultAzureCredential``
(managed identity in Azure). Nothing here logs a connection string.
"""

from __future__ import annotations

import functools
import os

from azure.core.exceptions import AzureError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient

from scoring.errors import ScoringError, ServiceUnavailable

RETRY_AFTER_SECONDS = "5"
# Fail fast when storage is down: the caller gets a 503 with Retry-After instead of a hang.
CLIENT_OPTIONS = {"connection_timeout": 5, "read_timeout": 20, "retry_total": 1}


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


def delete_blob(setting: str, container: str, name: str) -> bool:
    """Delete a blob; return False if it did not exist.

    Raises:
        ServiceUnavailable: if storage cannot be reached.
    """
    try:
        container_client(setting, container).delete_blob(name)
    except ResourceNotFoundError:
        return False
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise unavailable(exc) from exc
    return True


__all__ = ["service_client", "container_client", "delete_blob", "unavailable", "AzureError"]
