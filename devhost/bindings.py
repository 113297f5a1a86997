"""Front side of blob bindings: paths, connections and storage I/O, as the host does them.

The host (not the worker) reads blob input bindings and writes blob output bindings for
out-of-process languages; SDK-type bindings are the exception: the host sends only "model
binding data" and the worker builds the client (devhost.worker).

Paths: ``%NAME%`` parts are app settings, resolved once when the host starts
(:func:`resolve_settings`; an unset one fails the start, as the WebJobs SDK's
NameResolverExtensions.ResolveWholeString fails the function's indexing). ``{name}`` parts are
route parameters (case-insensitive), ``{Query.x}`` query parameters, ``{rand-guid}`` and
``{DateTime}`` as in Azure, expanded per request. The first path segment is the container.

Connections (:func:`resolve_connection`), by the rules of the storage blob extension
(Microsoft.Azure.WebJobs.Extensions.Storage.Blobs; docs: includes/functions-storage-blob-connections.md):

* the binding's ``connection`` names a configuration section, looked up as ``AzureWebJobs<NAME>``
  first, then ``<NAME>`` (WebJobsConfigurationExtensions.GetWebJobsConnectionStringSection); an
  empty name means ``AzureWebJobsStorage``; names are case-insensitive, ``__`` separates levels;
* a section with a value is a connection string, given as is to
  ``BlobServiceClient.from_connection_string`` (which understands ``UseDevelopmentStorage=true``);
* otherwise it is identity-based: ``<NAME>__blobServiceUri`` (wins, the multi-service form) or
  ``<NAME>__serviceUri``; ``__accountName`` only for ``AzureWebJobsStorage`` (host storage);
  ``<NAME>__credential=managedidentity`` (+ ``<NAME>__clientId`` for a user-assigned identity)
  selects ``ManagedIdentityCredential``, else the developer's identity (``DefaultAzureCredential``,
  as the host uses locally).
"""
from __future__ import annotations

import datetime
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Optional


_SETTING = re.compile(r"%([^%]+)%")
_EXPRESSION = re.compile(r"\{([^{}]+)\}")


class BindingError(Exception):
    """A binding could not be resolved or flushed; the host answers 500 and logs the reason."""


class UnresolvedSetting(Exception):
    """A ``%NAME%`` of a binding has no app setting (NameResolverExtensions.cs)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"'%{name}%' does not resolve to a value.")
        self.name = name


@dataclass(frozen=True)
class BlobBinding:
    """One declared blob binding, with its ``%SETTING%`` parts resolved at start."""

    name: str
    path: str
    connection: str
    direction: str  # "in" or "out"
    data_type: Optional[str] = None  # "STRING", "BINARY", "STREAM" or None
    deferred: bool = False  # SupportsDeferredBinding: the worker builds an SDK client


# -- path expressions -------------------------------------------------------------------------
def resolve_settings(text: str, environ: Mapping[str, str]) -> str:
    """Replace every ``%NAME%`` of ``text`` by its app setting; :class:`UnresolvedSetting` if unset."""
    def setting(match: re.Match) -> str:
        value = environ.get(match.group(1))
        if value is None:
            raise UnresolvedSetting(match.group(1))
        return value

    return _SETTING.sub(setting, text)


def expand_path(template: str, route_params: Mapping[str, str],
                query: Mapping[str, str] | None = None) -> str:
    """Expand the ``{expression}`` parts of a binding path (settings are already resolved)."""
    params = {k.lower(): v for k, v in route_params.items()}
    queries = {k.lower(): v for k, v in (query or {}).items()}

    def expression(match: re.Match) -> str:
        key = match.group(1).strip().lower()
        if key in params:
            return params[key]
        if key.startswith("query.") and key[6:] in queries:
            return queries[key[6:]]
        if key == "rand-guid":
            return str(uuid.uuid4())
        if key == "datetime":
            return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        raise BindingError(f"binding expression {{{match.group(1)}}} in path {template!r} "
                           "has no value for this request")

    return _EXPRESSION.sub(expression, template)


def split_blob_path(path: str) -> tuple[str, str]:
    """``container/blob/name`` -> (``container``, ``blob/name``)."""
    container, _, blob = path.strip("/").partition("/")
    if not container or not blob:
        raise BindingError(f"blob path {path!r} must look like 'container/blob'")
    return container, blob


# -- connections ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Connection:
    """How to reach the blob service of a binding's ``connection`` (never logged whole)."""

    section: str  # the setting (or prefix) that matched, e.g. "AzureWebJobsStorage"
    connection_string: Optional[str] = None
    service_uri: Optional[str] = None
    managed_identity: bool = False
    client_id: Optional[str] = None


def resolve_connection(connection: str, environ: Mapping[str, str]) -> Connection:
    """The connection a blob binding uses, by the extension's rules (see the module doc)."""
    name = connection or "Storage"  # ConnectionStringNames.Storage
    lowered = {key.lower(): value for key, value in environ.items()}
    for section in (f"AzureWebJobs{name}", name):
        value = lowered.get(section.lower())
        prefix = section.lower() + "__"
        children = {key[len(prefix):]: v for key, v in lowered.items() if key.startswith(prefix)}
        if value is not None or children:
            break
    else:
        raise BindingError(f"Storage account connection string 'AzureWebJobs{name}' does not exist. "
                           "Make sure that it is a defined App Setting.")
    if value is not None:
        return Connection(section=section, connection_string=value)
    uri = children.get("blobserviceuri") or children.get("serviceuri")
    if not uri and section.lower() == "azurewebjobsstorage" and children.get("accountname"):
        uri = f"https://{children['accountname']}.blob.core.windows.net"
    if not uri:
        raise BindingError(f"connection {section!r} has neither a connection string nor "
                           f"{section}__blobServiceUri / {section}__serviceUri")
    managed = (children.get("credential") or "").lower() == "managedidentity"
    return Connection(section=section, service_uri=uri, managed_identity=managed,
                      client_id=children.get("clientid") if managed else None)


# -- storage -----------------------------------------------------------------------------------
class BlobStore:
    """Blob service clients per connection (cached), with fail-fast retries (a dev host)."""

    def __init__(self, environ: Mapping[str, str], *, retry_total: int = 2, retry_backoff: float = 0.3,
                 connection_timeout: float = 5.0, read_timeout: float = 60.0) -> None:
        self._environ = dict(environ)
        self._options = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
        self._retry = (retry_total, retry_backoff)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client_options(self) -> dict[str, Any]:
        from azure.storage.blob import LinearRetry

        total, backoff = self._retry
        retry = LinearRetry(backoff=backoff, retry_total=total, random_jitter_range=backoff / 2)
        return {**self._options, "retry_policy": retry}

    def client(self, connection: str) -> Any:
        with self._lock:
            if connection not in self._clients:
                self._clients[connection] = self._create(resolve_connection(connection, self._environ))
            return self._clients[connection]

    def _create(self, connection: Connection) -> Any:
        from azure.storage.blob import BlobServiceClient

        if connection.connection_string is not None:
            try:
                return BlobServiceClient.from_connection_string(connection.connection_string,
                                                                **self._client_options())
            except ValueError:
                raise BindingError(f"setting {connection.section!r} does not hold a valid storage "
                                   "connection string") from None
        try:
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
        except ImportError as exc:
            raise BindingError(f"connection {connection.section!r} is identity-based and needs "
                               "azure-identity, which is not installed") from exc
        credential = (ManagedIdentityCredential(client_id=connection.client_id) if connection.managed_identity
                      else DefaultAzureCredential())
        return BlobServiceClient(connection.service_uri, credential=credential, **self._client_options())

    def download(self, connection: str, path: str) -> Optional[bytes]:
        """The blob's bytes, or ``None`` if the blob (or its container) does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        container, blob = split_blob_path(path)
        try:
            return self.client(connection).get_blob_client(container, blob).download_blob().readall()
        except ResourceNotFoundError:
            return None
        except BindingError:
            raise
        except Exception as exc:
            raise BindingError(f"reading blob {path!r} failed: {type(exc).__name__}") from exc

    def upload(self, connection: str, path: str, data: bytes) -> None:
        """Write ``data`` to the blob (overwrite), creating the container if it is absent."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        container, blob = split_blob_path(path)
        try:
            service = self.client(connection)
            try:
                service.get_blob_client(container, blob).upload_blob(data, overwrite=True)
            except ResourceNotFoundError:
                try:
                    service.create_container(container)
                except ResourceExistsError:
                    pass
                service.get_blob_client(container, blob).upload_blob(data, overwrite=True)
        except BindingError:
            raise
        except Exception as exc:
            raise BindingError(f"writing blob {path!r} failed: {type(exc).__name__}") from exc

