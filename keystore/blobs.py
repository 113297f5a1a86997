"""Key bundles as blobs: the service's bundle source, uploads, deletions, and pending challenges.

Storage failures become the service's own answer: a 503 with ``Retry-After`` within seconds
(:func:`storage_error`), never the SDK's default retries of 15 s and more.
"""

from __future__ import annotations

import logging

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient, ContainerClient, LinearRetry

from scoring.errors import KeysRejected, ProofRequired, ScoringError, ServiceUnavailable
from scoring.keys import MAX_BUNDLE_BYTES, key_id_of, load_bundle
from scoring.ownership import Challenge

from .connection import KEYS_CONTAINER_SETTING, ConfigurationError, StorageConnection, check_container_name

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
# Fail fast when storage is down: the caller gets a 503 with Retry-After instead of a hang.
CLIENT_OPTIONS = {"connection_timeout": 5, "read_timeout": 20,
                  "retry_policy": LinearRetry(backoff=0.5, random_jitter_range=0.2, retry_total=1)}
# Per call, for clients built by others (the SDK-type binding's BlobClient, whose default
# exponential retry would wait 15 s and more): fail at once, the client retries on 503.
CALL_OPTIONS = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 20}
CHALLENGE_NONCE, CHALLENGE_EXPIRES = "hescoringchallenge", "hescoringchallengeexpires"


def unavailable(exc: AzureError) -> ScoringError:
    """The 503 a host answers when storage cannot be reached."""
    return ServiceUnavailable(f"blob storage is unreachable ({type(exc).__name__}); retry shortly",
                              headers={"Retry-After": RETRY_AFTER_SECONDS})


def storage_error(exc: AzureError) -> ScoringError:
    """Connection failures and storage-side 5xx: retry later; anything else: storage refused."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)) or (
            isinstance(exc, HttpResponseError) and (exc.status_code or 0) >= 500):
        return unavailable(exc)
    return ServiceUnavailable(f"blob storage refused the request ({type(exc).__name__})")


class BlobBundleSource:
    """A key bundle in blob storage, reached through a BlobClient (``scoring.bundles.BundleSource``)."""

    def __init__(self, client: BlobClient) -> None:
        self.client = client

    def exists(self) -> bool:
        try:
            self.client.get_blob_properties(**CALL_OPTIONS)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise storage_error(exc) from exc
        return True

    def read(self) -> bytes | None:
        try:
            download = self.client.download_blob(offset=0, length=MAX_BUNDLE_BYTES + 1, **CALL_OPTIONS)
            data = download.readall()  # at most one byte past the cap is ever read
            if len(data) > MAX_BUNDLE_BYTES:
                raise KeysRejected(f"the stored key bundle is {download.properties.size} bytes; no served "
                                   f"parameter set needs more than {MAX_BUNDLE_BYTES}")
            return data
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(exc) from exc


def pending_challenge(client: BlobClient) -> tuple[tuple[str, float] | None, str | None]:
    """The challenge kept beside a bundle (nonce, expiry) or None, and the blob's ETag (None if
    no bundle is stored).

    Raises:
        ServiceUnavailable: if storage cannot be reached.
    """
    try:
        properties = client.get_blob_properties(**CALL_OPTIONS)
    except ResourceNotFoundError:
        return None, None
    except AzureError as exc:
        raise storage_error(exc) from exc
    metadata = properties.metadata or {}
    nonce, expires = metadata.get(CHALLENGE_NONCE), metadata.get(CHALLENGE_EXPIRES)
    pending = (nonce, float(expires)) if nonce and expires and expires.isdigit() else None
    return pending, properties.etag


def keep_challenge(client: BlobClient, challenge: Challenge, etag: str) -> bool:
    """Keep a new challenge's nonce and expiry in the bundle blob's metadata, if the blob is
    still as read (``etag``); False if another request changed it first.

    Raises:
        ServiceUnavailable: if storage cannot be reached.
    """
    try:
        client.set_blob_metadata({CHALLENGE_NONCE: challenge.nonce, CHALLENGE_EXPIRES: str(int(challenge.expires))},
                                 etag=etag, match_condition=MatchConditions.IfNotModified, **CALL_OPTIONS)
    except (ResourceModifiedError, ResourceNotFoundError):
        return False
    except AzureError as exc:
        raise storage_error(exc) from exc
    return True


def delete_proven(client: BlobClient, check) -> bool:
    """Delete a bundle blob if ``check(nonce, expires)`` accepts the answer to its pending challenge.

    Returns False if no bundle is stored. The deletion is conditional on the blob being as it
    was when the challenge was read.

    Raises:
        ProofRequired: from ``check``, or if the blob changed in between.
        ServiceUnavailable: if storage cannot be reached.
    """
    pending, etag = pending_challenge(client)
    if etag is None:
        return False
    check(*(pending or (None, None)))
    try:
        client.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified, **CALL_OPTIONS)
    except ResourceNotFoundError:
        return False
    except ResourceModifiedError as exc:
        raise ProofRequired("the key bundle changed while it was being deleted; ask for a challenge again") from exc
    except AzureError as exc:
        raise storage_error(exc) from exc
    return True


def container_client(connection: StorageConnection, container: str) -> ContainerClient:
    """The container of key bundles over ``connection``, failing fast."""
    return connection.service_client(**CLIENT_OPTIONS).get_container_client(container)


def upload_bundle(bundle: bytes, *, setting: str | None = None, connection_string: str | None = None,
                  account_url: str | None = None, credential=None, container: str | None = None) -> str:
    """Upload ``bundle`` as ``<container>/<sha256 of bundle>`` to your own storage; return the key id.

    Args:
        bundle: a public key bundle (``SecretKeys.public_bundle()``).
        setting: a connection setting name read from the environment by the services' own
            rule (:class:`keystore.connection.StorageConnection`), the container from
            ``SCORING_KEYS_CONTAINER`` (required, as for the services) unless given; or
        connection_string: a storage connection string; or
        account_url: the blob endpoint, with ``credential`` (SAS, key or azure-identity).
        container: created if absent; with a connection string or account URL, ``hekeys``
            unless given.

    Raises:
        KeysRejected: if the bundle holds a secret key, does not parse or is visibly malformed
            (the service's own check); nothing is sent.
        ValueError: if no way to reach storage is given, or the setting is not usable.
        azure.core.exceptions.AzureError: from the storage service, as raised.
    """
    load_bundle(bundle)  # what the service would refuse is not stored
    client = _container(setting, connection_string, account_url, credential, container)
    try:
        client.create_container()
    except ResourceExistsError:
        pass
    key_id = key_id_of(bundle)
    client.upload_blob(key_id, bundle, overwrite=True)
    return key_id


def delete_bundle(key_id: str, *, setting: str | None = None, connection_string: str | None = None,
                  account_url: str | None = None, credential=None, container: str | None = None) -> bool:
    """Delete ``<container>/<key_id>`` straight from your storage; False if it was not there."""
    try:
        _container(setting, connection_string, account_url, credential, container).delete_blob(key_id)
    except ResourceNotFoundError:
        return False
    return True


def _container(setting, connection_string, account_url, credential, container) -> ContainerClient:
    import os

    from azure.storage.blob import BlobServiceClient

    if setting:
        connection = StorageConnection.from_env(setting)
        if connection is None:
            raise ConfigurationError(f"app setting {setting} (or {setting}__serviceUri) is not set")
        name = container or os.environ.get(KEYS_CONTAINER_SETTING)
        if not name:  # the services have no default either: no upload lands where they do not look
            raise ConfigurationError(f"with setting=, the container is {KEYS_CONTAINER_SETTING}, as the services "
                                     "read it; it is not set (or give container=)")
        return connection.service_client().get_container_client(check_container_name(KEYS_CONTAINER_SETTING, name))
    name = check_container_name("container", container or "hekeys")
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string).get_container_client(name)
    if account_url:
        return BlobServiceClient(account_url, credential=credential).get_container_client(name)
    raise ValueError("give setting=, connection_string=, or account_url= with a credential")
