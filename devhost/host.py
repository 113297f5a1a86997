"""A small local host for the HTTP functions of an Azure Functions Python v2 app.

It stands in for ``func start`` (Azure Functions Core Tools) during development and tests:
routes, methods, route parameters and blob bindings all come from the app's own decorators.
Like Core Tools running locally, function keys are not enforced.
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from .app import HttpFunction, apply_local_settings, load_http_functions
from .azurite import Azurite
from .bindings import (
    BindingError,
    BlobStore,
    Out,
    expand_path,
    input_value,
    output_bytes,
    redact,
    sdk_type_value,
)

log = logging.getLogger("devhost")

DEFAULT_MAX_BODY = 100 * 1024 * 1024  # the request size limit of Azure Functions
_QUERY = re.compile(r"\?[^\s'\"]*")
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


@dataclass
class Reply:
    """An HTTP response ready to be written."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def plain(status: int, text: str, headers: Optional[list[tuple[str, str]]] = None) -> Reply:
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])],
                 text.encode("utf-8"))


class _Context(func.Context):
    """The ``context`` argument offered to functions that declare one."""

    def __init__(self, function: HttpFunction, directory: Path) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function.name
        self._directory = str(directory)

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return threading.local()


# -- invocation ----------------------------------------------------------------------------
class Invoker:
    """Resolves bindings, calls a function and turns its result into a :class:`Reply`."""

    def __init__(self, store: BlobStore, app_dir: Path) -> None:
        self.store = store
        self.app_dir = app_dir

    def invoke(self, function: HttpFunction, request: func.HttpRequest) -> Reply:
        try:
            kwargs, outputs, paths = self._inputs(function, request)
        except BindingError as exc:
            return self._binding_failed(function, exc)
        try:
            result = function.user_function(**kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            if function.response_name != "$return":
                result = kwargs[function.response_name].get()
            reply = self._reply(result)
        except Exception:
            log.error("function %s failed:\n%s", function.name, redact(traceback.format_exc()))
            return plain(500, "Internal Server Error")
        try:
            self._flush(function, outputs, paths)
        except BindingError as exc:
            return self._binding_failed(function, exc)
        except TypeError as exc:
            log.error("function %s: %s", function.name, exc)
            return plain(500, "Internal Server Error")
        return reply

    def _inputs(self, function: HttpFunction, request: func.HttpRequest
                ) -> tuple[dict[str, Any], dict[str, Out], dict[str, str]]:
        if function.unsupported:
            raise BindingError(f"devhost cannot resolve bindings {list(function.unsupported)}")
        kwargs: dict[str, Any] = {function.trigger_name: request}
        outputs: dict[str, Out] = {}
        paths: dict[str, str] = {}
        for binding in function.blobs:
            paths[binding.name] = expand_path(binding.path, request.route_params, request.params)
            if binding.direction == "out":
                outputs[binding.name] = kwargs[binding.name] = Out()
            else:
                is_sdk, value = sdk_type_value(function.annotations.get(binding.name), binding.connection,
                                               paths[binding.name])
                if is_sdk:
                    kwargs[binding.name] = value
                    continue
                data = self.store.download(binding.connection, paths[binding.name])
                kwargs[binding.name] = input_value(data, function.annotations.get(binding.name),
                                                   binding.data_type)
        if function.response_name != "$return":
            kwargs[function.response_name] = Out()
        if function.wants_context and "context" not in kwargs:
            kwargs["context"] = _Context(function, self.app_dir)
        return kwargs, outputs, paths

    def _flush(self, function: HttpFunction, outputs: dict[str, Out], paths: dict[str, str]) -> None:
        for binding in function.blobs:
            out = outputs.get(binding.name)
            if out is not None and out.is_set and out.get() is not None:
                self.store.upload(binding.connection, paths[binding.name], output_bytes(out.get()))

    @staticmethod
    def _binding_failed(function: HttpFunction, exc: BindingError) -> Reply:
        cause = f" ({redact(str(exc.__cause__))})" if exc.__cause__ else ""
        log.error("function %s: binding failed: %s%s", function.name, redact(str(exc)), cause)
        return plain(500, "Internal Server Error: a binding of this function failed")

    @staticmethod
    def _reply(result: Any) -> Reply:
        if isinstance(result, str):
            return plain(200, result)
        if not isinstance(result, func.HttpResponse):
            raise TypeError(f"an HTTP function must return func.HttpResponse or str, "
                            f"not {type(result).__name__}")
        headers = [(k, v) for k, v in result.headers.items() if k.lower() not in _HOP_BY_HOP]
        if not any(k.lower() == "content-type" for k, _ in headers):
            mimetype = result.mimetype
            ctype = f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
            headers.append(("Content-Type", ctype))
        return Reply(int(result.status_code), headers, result.get_body() or b"")


# -- HTTP server -----------------------------------------------------------------------------
class _BodyTooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devhost"
    timeout = 120  # seconds a connection may stay idle or stall mid-request
    server: "_Server"

    def _dispatch(self) -> int:
        host = self.server.devhost
        split = urlsplit(self.path)
        found, allowed = host.resolve(self.command, split.path)
        if found is None:
            self.close_connection = self.close_connection or self._has_body()  # body left unread
            if allowed:
                return self._send(plain(405, "Method Not Allowed", [("Allow", ", ".join(allowed))]))
            return self._send(plain(404, "Not Found"))
        function, route_params = found
        try:
            body = self._read_body(host.max_body_bytes)
        except _BodyTooLarge:
            return self._reject_too_large()
        except ValueError:
            self.close_connection = True
            return self._send(plain(400, "Bad Request: malformed body framing"))
        request = func.HttpRequest(
            self.command, f"http://{self.headers.get('Host', host.authority)}{self.path}",
            headers=self._header_dict(), params=self._query(split.query),
            route_params=route_params, body=body)
        return self._send(host.invoker.invoke(function, request))

    def _handle(self) -> None:
        started = time.perf_counter()
        status = 0
        try:
            status = self._dispatch()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception:  # a devhost bug: log it, drop the connection
            log.error("devhost failed on a request:\n%s", redact(traceback.format_exc()))
            self.close_connection = True
        finally:
            log.info("%s %s %s %.1fms", self.command, urlsplit(self.path).path, status or "-",
                     (time.perf_counter() - started) * 1000)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    # -- request parts ------------------------------------------------------------------
    def _header_dict(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    @staticmethod
    def _query(query: str) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        return params

    def _has_body(self) -> bool:
        return ("chunked" in self.headers.get("Transfer-Encoding", "").lower()
                or self.headers.get("Content-Length", "0").strip() not in ("", "0"))

    def _read_body(self, cap: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(cap)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > cap:
            raise _BodyTooLarge
        return self._read_exact(length)

    def _read_exact(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise ConnectionResetError("client closed the connection mid-body")
        return data

    def _read_chunked(self, cap: int) -> bytes:
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                break
            total += size
            if total > cap:
                raise _BodyTooLarge
            chunks.append(self._read_exact(size))
            self.rfile.readline(1024)  # CRLF after the chunk
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (``Expect: 100-continue``)."""
        try:
            too_large = int(self.headers.get("Content-Length") or 0) > self.server.devhost.max_body_bytes
        except ValueError:
            too_large = False
        if too_large:
            self.close_connection = True
            self._send(self._too_large_reply())
            log.info("%s %s 413 (Expect: 100-continue)", self.command, urlsplit(self.path).path)
            return False
        return super().handle_expect_100()

    # -- responses ----------------------------------------------------------------------
    def _too_large_reply(self) -> Reply:
        cap = self.server.devhost.max_body_bytes
        return plain(413, f"Payload Too Large: the limit is {cap} bytes")

    def _reject_too_large(self) -> int:
        """Answer 413 without reading the body, then drain a bounded amount before closing so
        the client can read the answer instead of seeing a connection reset."""
        self.close_connection = True
        self._send(self._too_large_reply())
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline, drained = time.monotonic() + 2.0, 0
            while time.monotonic() < deadline and drained < 64 * 1024 * 1024:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        return 413

    def _send(self, reply: Reply) -> int:
        self.send_response(reply.status)
        for key, value in reply.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)
        return reply.status

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # one access line per request is logged by _handle, without the query string

    def log_message(self, format: str, *args: Any) -> None:
        """http.server's own messages (bad requests...), with any query string removed."""
        log.warning("http: %s", _QUERY.sub("?...", redact(format % args)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    devhost: "LocalFunctionsHost"


# -- public host ------------------------------------------------------------------------------
class LocalFunctionsHost:
    """Serve the HTTP functions of the app in ``app_dir`` on ``host:port``.

    ``port=0`` picks a free port. ``start()`` serves in a background thread; ``stop()`` shuts
    down. ``max_body_bytes`` caps request bodies (413 beyond it). ``storage_retries`` is the
    number of retries of a blob operation before the binding fails (fail fast: dev host).
    """

    def __init__(self, app_dir: Path | str = ".", *, host: str = "127.0.0.1", port: int = 7071,
                 module: str = "function_app", app_attribute: Optional[str] = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY, load_local_settings: bool = True,
                 storage_retries: int = 2) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.invoker = Invoker(BlobStore(retry_total=storage_retries), self.app_dir)
        self._port = port
        self._module_name = module
        self._app_attribute = app_attribute
        self._load_local_settings = load_local_settings
        self._functions: Optional[list[HttpFunction]] = None
        self._module: Any = None
        self._added_sys_path = False
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- app ------------------------------------------------------------------------------
    def load(self) -> list[HttpFunction]:
        """Apply local.settings.json and import the app (once); return its HTTP functions."""
        if self._functions is None:
            if self._load_local_settings:
                apply_local_settings(self.app_dir)
            self._added_sys_path = str(self.app_dir) not in sys.path
            self._module, functions = load_http_functions(self.app_dir, self._module_name,
                                                          self._app_attribute)
            self._functions = sorted(functions, key=lambda f: f.route.precedence)
        return self._functions

    @property
    def functions(self) -> list[HttpFunction]:
        return self.load()

    def connection_settings(self) -> set[str]:
        """Names of the connection settings used by the app's blob bindings."""
        return {b.connection or "AzureWebJobsStorage" for f in self.load() for b in f.blobs}

    def resolve(self, method: str, path: str
                ) -> tuple[Optional[tuple[HttpFunction, dict[str, str]]], list[str]]:
        """The function and route parameters for a request, else the methods the path allows."""
        allowed: set[str] = set()
        for function in self.load():
            params = function.route.match(path)
            if params is None:
                continue
            if function.methods is None or method.upper() in function.methods:
                return (function, params), []
            allowed |= function.methods
        return None, sorted(allowed)

    # -- server ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.authority}"

    def start(self) -> "LocalFunctionsHost":
        """Load the app, bind the port and serve in a background thread."""
        if self._server is not None:
            return self
        functions = self.load()
        self._server = _Server((self.host, self._port), _Handler)
        self._server.devhost = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="devhost",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        self._log_startup(functions)
        return self

    def _log_startup(self, functions: list[HttpFunction]) -> None:
        log.info("devhost serving %d HTTP function(s) of %s at %s", len(functions),
                 self.app_dir, self.url)
        for function in functions:
            methods = ",".join(sorted(function.methods)) if function.methods else "ALL"
            log.info("  %s: [%s] %s/%s", function.name, methods, self.url, function.route.template)
            if function.unsupported:
                log.warning("  %s declares bindings devhost cannot resolve: %s",
                            function.name, ", ".join(function.unsupported))
        if any(f.auth_level != "anonymous" for f in functions):
            log.info("function keys are not enforced locally (as with Core Tools)")

    def stop(self) -> None:
        """Stop serving and forget the loaded app module. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._module is not None and sys.modules.get(self._module_name) is self._module:
            del sys.modules[self._module_name]
        if self._added_sys_path and str(self.app_dir) in sys.path:
            sys.path.remove(str(self.app_dir))
            self._added_sys_path = False

    def __enter__(self) -> "LocalFunctionsHost":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- command line ------------------------------------------------------------------------------
def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", type=Path, default=Path("."), help="folder of function_app.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071, help="0 = any free port")
    parser.add_argument("--azurite", action="store_true",
                        help="start Azurite and point unset blob connection settings at it")
    parser.add_argument("--azurite-port", type=int, default=10000, help="0 = any free port")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY)
    return parser.parse_args(argv)


def _point_at_azurite(host: LocalFunctionsHost, azurite: Azurite) -> None:
    """Point blob connection settings (and AzureWebJobsStorage) at the started Azurite.

    A setting is changed only if it is unset (after local.settings.json) or holds
    ``UseDevelopmentStorage=true`` (which means "the local emulator"). Logs names only.
    """
    for name in sorted(host.connection_settings() | {"AzureWebJobsStorage"}):
        current = os.environ.get(name) or os.environ.get(f"AzureWebJobs{name}")
        if current and current.replace(" ", "").rstrip(";").lower() != "usedevelopmentstorage=true":
            log.warning("--azurite: %s is already set; leaving it as is", name)
        else:
            os.environ[name] = azurite.connection_string
            log.info("--azurite: %s -> Azurite at port %d", name, azurite.port)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m devhost``: serve in the foreground until Ctrl-C or SIGTERM (exit code 0)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    azurite = None
    host = LocalFunctionsHost(args.app_dir, host=args.host, port=args.port,
                              max_body_bytes=args.max_body_bytes)
    try:
        if args.azurite:
            azurite = Azurite(host="127.0.0.1", port=args.azurite_port).start()
        host.load()
        if azurite is not None:
            _point_at_azurite(host, azurite)
        host.start()
        print(f"devhost listening on {host.url}", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        host.stop()
        if azurite is not None:
            azurite.stop()
    return 0
