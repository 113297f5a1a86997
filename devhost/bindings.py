"""Blob input/output bindings, resolved from the binding metadata an app declares.

Path expressions: ``%NAME%`` is replaced by the environment variable ``NAME`` (app settings are
environment variables in Azure Functions); ``{param}`` by the route parameter of that name
(case-insensitive), ``{Query.x}`` by a query parameter, ``{rand-guid}`` and ``{DateTime}`` as in
Azure. The first path segment is the container, the rest is the blob name.

Connections: the binding's ``connection`` names a setting. ``NAME`` (then ``AzureWebJobsNAME``;
an empty name means ``AzureWebJobsStorage``) may hold a connection string or
``UseDevelopmentStorage=true`` (Azurite on 127.0.0.1:10000). Otherwise ``NAME__blobServiceUri``,
``NAME__serviceUri`` or ``NAME__accountName`` select a service URI used with
``DefaultAzureCredential`` when azure-identity is installed.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import threading
import types
import typing
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.blob import InputStream
from azure.storage.blob import BlobServiceClient, LinearRetry

from .azurite import connection_string_for

_SETTING = re.compile(r"%([^%/{}]+)%")
_EXPRESSION = re.compile(r"\{([^{}]+)\}")
_SECRET = re.compile(r"(?i)\b(sig|accountkey|sharedaccesssignature|code|x-functions-key)=[^&;\s'\"]+")


class BindingError(Exception):
    """A binding could not be resolved or flushed; the host answers 500 and logs the reason."""


def redact(text: str) -> str:
    """Mask account keys, SAS signatures and function keys that may appear in ``text``."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=REDACTED", text)


@dataclass(frozen=True)
class BlobBinding:
    """The metadata of one declared blob binding."""

    name: str
    path: str
    connection: str
    direction: str  # "in" or "out"
    data_type: Optional[str] = None  # "STRING", "BINARY", "STREAM" or None


# -- path expressions -------------------------------------------------------------------------
def expand_path(template: str, route_params: Mapping[str, str],
                query: Mapping[str, str] | None = None) -> str:
    """Expand ``%SETTING%`` parts, then ``{expression}`` parts, of a binding path."""
    def setting(match: re.Match) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise BindingError(f"app setting {match.group(1)!r} used in binding path "
                               f"{template!r} is not set")
        return value

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

    return _EXPRESSION.sub(expression, _SETTING.sub(setting, template))


def split_blob_path(path: str) -> tuple[str, str]:
    """``container/blob/name`` -> (``container``, ``blob/name``)."""
    container, _, blob = path.strip("/").partition("/")
    if not container or not blob:
        raise BindingError(f"blob path {path!r} must look like 'container/blob'")
    return container, blob


# -- values passed to and taken from the function ---------------------------------------------
class Out(func.Out):
    """The object given for an output binding parameter (``func.Out[...]``)."""

    def __init__(self) -> None:
        self._value: Any = None
        self.is_set = False

    def set(self, val: Any) -> None:
        self._value = val
        self.is_set = True

    def get(self) -> Any:
        return self._value


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def input_value(data: Optional[bytes], annotation: Any, data_type: Optional[str]) -> Any:
    """Shape downloaded blob bytes the way the parameter annotation (or dataType) asks for."""
    if data is None:
        return None
    target = _unwrap_optional(annotation)
    as_text = target is str or (not isinstance(target, type) and data_type == "STRING")
    if as_text:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BindingError("blob is not valid UTF-8 text but the parameter expects str") from exc
    if target in (bytes, bytearray) or (not isinstance(target, type) and data_type == "BINARY"):
        return bytes(data)
    return InputStream(data=data)


def sdk_type_value(annotation: Any, connection: str, path: str) -> tuple[bool, Any]:
    """Build an SDK-type binding value (e.g. a BlobClient) as the Python worker does.

    With ``azurefunctions-extensions-bindings-blob``, a parameter annotated with one of its
    types gets a client built by the extension's own converter from "model binding data"
    (connection setting name, container, blob); the host itself reads nothing. Returns
    ``(False, None)`` when the annotation is not an SDK type.
    """
    try:
        from azurefunctions.extensions.base import meta
    except ImportError:
        return False, None
    registry = meta.get_binding_registry()
    target = _unwrap_optional(annotation)
    converter = registry.get("blob") if registry is not None else None
    if converter is None or not registry.check_supported_type(target):
        return False, None
    container, blob = split_blob_path(path)
    content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": blob})
    binding_data = types.SimpleNamespace(version="1.0", source="AzureStorageBlobs",
                                         content_type="application/json", content=content)
    try:
        value = converter.decode(meta.Datum(value=binding_data, type="model_binding_data"),
                                 trigger_metadata=None, pytype=target)
    except ValueError as exc:
        raise BindingError(f"cannot build {target.__name__} for {connection}") from exc
    return True, value


def output_bytes(value: Any) -> bytes:
    """Encode a value set on a blob output binding (str, bytes or a readable object)."""
    if callable(getattr(value, "read", None)):
        value = value.read()
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a blob output binding cannot store a {type(value).__name__}; "
                    "set str, bytes or a readable object")


# -- storage -----------------------------------------------------------------------------------
class BlobStore:
    """Blob service clients per connection setting (cached), with fail-fast retries."""

    def __init__(self, *, retry_total: int = 2, retry_backoff: float = 0.3,
                 connection_timeout: float = 5.0, read_timeout: float = 60.0) -> None:
        self._options = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
        self._retry = (retry_total, retry_backoff)
        self._clients: dict[tuple[str, str], BlobServiceClient] = {}
        self._lock = threading.Lock()

    def _client_options(self) -> dict[str, Any]:
        total, backoff = self._retry
        retry = LinearRetry(backoff=backoff, retry_total=total, random_jitter_range=backoff / 2)
        return {**self._options, "retry_policy": retry}

    def client(self, connection: str) -> BlobServiceClient:
        name, value = self._resolve_setting(connection)
        with self._lock:
            if (name, value) not in self._clients:
                self._clients[(name, value)] = self._create(name, value)
            return self._clients[(name, value)]

    @staticmethod
    def _resolve_setting(connection: str) -> tuple[str, str]:
        names = [connection, f"AzureWebJobs{connection}"] if connection else ["AzureWebJobsStorage"]
        for name in names:
            if os.environ.get(name):
                return name, os.environ[name]
        base = names[0]
        for suffix in ("__blobServiceUri", "__serviceUri"):
            if os.environ.get(base + suffix):
                return base + suffix, os.environ[base + suffix]
        if os.environ.get(base + "__accountName"):
            return base + "__accountName", f"https://{os.environ[base + '__accountName']}.blob.core.windows.net"
        raise BindingError(f"connection setting {base!r} of a blob binding is not set (nor "
                           f"{base}__blobServiceUri / {base}__serviceUri / {base}__accountName)")

    def _create(self, name: str, value: str) -> BlobServiceClient:
        if "__" in name:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError as exc:
                raise BindingError(f"setting {name!r} needs azure-identity, which is not installed") from exc
            return BlobServiceClient(value, credential=DefaultAzureCredential(), **self._client_options())
        if value.strip().rstrip(";").replace(" ", "").lower() == "usedevelopmentstorage=true":
            value = connection_string_for("127.0.0.1", 10000)
        try:
            return BlobServiceClient.from_connection_string(value, **self._client_options())
        except ValueError:
            raise BindingError(f"setting {name!r} does not hold a valid storage connection string") from None

    def download(self, connection: str, path: str) -> Optional[bytes]:
        """The blob's bytes, or ``None`` if the blob (or its container) does not exist."""
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
