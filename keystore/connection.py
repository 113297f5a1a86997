"""The one rule for a storage connection setting, shared by every path that touches key bundles.

The Functions app's SDK-type blob binding (``azurefunctions-extensions-bindings-blob``), its
blob output binding (the host's blob extension), the DELETE route, the container and the
client's direct upload all read the same settings, and get the same identity:

* ``NAME``: a connection string (``UseDevelopmentStorage=true`` included); or
* ``NAME__serviceUri`` (or ``NAME__blobServiceUri``): the blob endpoint, with a managed
  identity: the system-assigned one, or a user-assigned one given by
  ``NAME__credential=managedidentity`` and ``NAME__clientId``.

Forms that one of those paths would not honour are refused when settings are read, with a
message naming the setting: ``NAME__accountName`` (the blob extension honours it only for
``AzureWebJobsStorage``; see the SDK binding's ``utils.get_connection_string``), a client id
without ``__credential=managedidentity`` (the SDK binding would ignore it and use the
system-assigned identity), service-principal settings and ``__managedIdentityResourceId``
(the SDK binding builds only ``ManagedIdentityCredential(client_id=...)``), and a connection
string together with identity settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

KEYS_CONTAINER_SETTING = "SCORING_KEYS_CONTAINER"  # the keys' container, on every host and upload path; no default
URI_SUFFIXES = ("__serviceUri", "__blobServiceUri")
CREDENTIAL_SUFFIX, CLIENT_ID_SUFFIX = "__credential", "__clientId"
REFUSED_SUFFIXES = {
    "__accountName": "the blob binding honours __accountName only for AzureWebJobsStorage; set "
                     "{name}__serviceUri=https://<account>.blob.core.windows.net instead",
    "__managedIdentityResourceId": "the SDK-type blob binding selects a user-assigned identity only by "
                                   "{name}__clientId (with {name}__credential=managedidentity)",
    "__tenantId": "service-principal credentials are not honoured by the SDK-type blob binding; use a managed "
                  "identity ({name}__serviceUri, optionally __credential=managedidentity and __clientId)",
    "__clientSecret": "service-principal credentials are not honoured by the SDK-type blob binding",
    "__clientCertificate": "service-principal credentials are not honoured by the SDK-type blob binding",
}
CONTAINER_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")


class ConfigurationError(ValueError):
    """A setting no storage path can honour as given; the message names it."""


@dataclass(frozen=True)
class StorageConnection:
    """Where key bundles are stored and as whom: a connection string, or an endpoint and identity.

    Attributes:
        setting: the connection setting's name (``SCORING_STORAGE``).
        connection_string: the string, for the first form (never logged).
        service_uri: the blob endpoint, for the identity form.
        client_id: a user-assigned identity's client id, or None for the system-assigned one.
    """

    setting: str
    connection_string: str | None = None
    service_uri: str | None = None
    client_id: str | None = None

    @classmethod
    def from_env(cls, setting: str, environ: Mapping[str, str] | None = None) -> StorageConnection | None:
        """Read the connection setting ``setting``; None if none of its forms is set.

        Raises:
            ConfigurationError: for a form some storage path cannot honour, naming the setting.
        """
        env = os.environ if environ is None else environ
        for suffix, why in REFUSED_SUFFIXES.items():
            if env.get(setting + suffix):
                raise ConfigurationError(f"app setting {setting}{suffix} is not supported: "
                                         + why.format(name=setting))
        connection_string = env.get(setting) or None
        uris = {env[setting + s].rstrip("/") for s in URI_SUFFIXES if env.get(setting + s)}
        credential, client_id = env.get(setting + CREDENTIAL_SUFFIX), env.get(setting + CLIENT_ID_SUFFIX)
        if connection_string and (uris or credential or client_id):
            raise ConfigurationError(f"app setting {setting} holds a connection string and {setting}__* identity "
                                     "settings are set too; keep one form")
        if len(uris) > 1:
            raise ConfigurationError(f"app settings {setting}__serviceUri and {setting}__blobServiceUri disagree")
        if credential is not None and credential.lower() != "managedidentity":
            raise ConfigurationError(f"app setting {setting}{CREDENTIAL_SUFFIX} must be managedidentity "
                                     f"(with {setting}{CLIENT_ID_SUFFIX} for a user-assigned identity)")
        if client_id and not credential:
            raise ConfigurationError(f"app setting {setting}{CLIENT_ID_SUFFIX} needs "
                                     f"{setting}{CREDENTIAL_SUFFIX}=managedidentity: without it the SDK-type blob "
                                     "binding would use the system-assigned identity")
        if (credential or client_id) and not uris:
            raise ConfigurationError(f"app setting {setting}__serviceUri is missing: the identity settings need the "
                                     "blob endpoint (https://<account>.blob.core.windows.net)")
        if connection_string:
            return cls(setting, connection_string=connection_string)
        if uris:
            uri = uris.pop()
            if not uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
                raise ConfigurationError(f"app setting {setting}__serviceUri must be an https:// blob endpoint")
            return cls(setting, service_uri=uri, client_id=client_id or None)
        return None

    @property
    def identity(self) -> str:
        """How it authenticates, for logs: never the secret itself."""
        if self.connection_string is not None:
            return "connection string"
        return f"user-assigned managed identity {self.client_id}" if self.client_id else "system-assigned managed identity"

    def service_client(self, **options):
        """A ``BlobServiceClient`` for this connection, as the SDK-type binding builds it."""
        from azure.storage.blob import BlobServiceClient

        if self.connection_string is not None:
            return BlobServiceClient.from_connection_string(self.connection_string, **options)
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=self.client_id) if self.client_id else ManagedIdentityCredential()
        return BlobServiceClient(self.service_uri, credential=credential, **options)


def check_container_name(setting: str, name: str | None) -> str:
    """``name`` if it is a valid blob container name.

    Raises:
        ConfigurationError: if it is missing or not 3-63 lowercase letters, digits and
            single hyphens, starting and ending with a letter or digit.
    """
    if not name:
        raise ConfigurationError(f"app setting {setting} is not set: it names the container of key bundles "
                                 "(e.g. hekeys)")
    if not CONTAINER_NAME.fullmatch(name):
        raise ConfigurationError(f"app setting {setting}={name!r} is not a valid container name (3-63 lowercase "
                                 "letters, digits and single hyphens)")
    return name
