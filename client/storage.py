"""Upload a public key bundle straight to your own Azure Blob Storage.

For users who manage their storage themselves, as the original tutorial did. The
credentials stay with this client: the scoring service is only ever told the key id.
"""

from __future__ import annotations

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from scoring.keys import key_id_of, parse_bundle


def upload_bundle(bundle: bytes, *, connection_string: str | None = None, account_url: str | None = None,
                  credential=None, container: str = "hekeys") -> str:
    """Upload ``bundle`` as ``<container>/<sha256 of bundle>``; return the key id.

    Args:
        bundle: a public key bundle (``SecretKeys.public_bundle()``).
        connection_string: a storage connection string, or
        account_url: the blob endpoint, with ``credential`` (SAS, key or azure-identity).
        container: created if absent.

    Raises:
        KeysRejected: if the bundle holds a secret key or does not parse; nothing is sent.
        ValueError: if neither a connection string nor an account URL is given.
        azure.core.exceptions.AzureError: from the storage service, as raised.
    """
    parse_bundle(bundle)
    if connection_string:
        service = BlobServiceClient.from_connection_string(connection_string)
    elif account_url:
        service = BlobServiceClient(account_url, credential=credential)
    else:
        raise ValueError("give connection_string, or account_url with a credential")
    container_client = service.get_container_client(container)
    try:
        container_client.create_container()
    except ResourceExistsError:
        pass
    key_id = key_id_of(bundle)
    container_client.upload_blob(key_id, bundle, overwrite=True)
    return key_id


def delete_bundle(key_id: str, *, connection_string: str, container: str = "hekeys") -> bool:
    """Delete ``<container>/<key_id>`` straight from your blob storage; False if it was not there."""
    blob = BlobServiceClient.from_connection_string(connection_string).get_blob_client(container, key_id)
    try:
        blob.delete_blob()
    except ResourceNotFoundError:
        return False
    return True
