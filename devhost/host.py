"""A local stand-in for the Azure Functions host with the Python language worker.

``func start`` (Azure Functions Core Tools) cannot run everywhere, so devhost serves the HTTP
functions of a Python v2 app the way the host and worker do, split the same way:

* the front (this module) is the host: an HTTP server (werkzeug, threaded), routing, function
  keys, request limits, the reading and writing of blob bindings, and the dispatch of each
  invocation to a worker process (devhost.workers);
* ``FUNCTIONS_WORKER_PROCESS_COUNT`` worker processes (devhost.worker) import and index the app
  and run its functions in ``PYTHON_THREADPOOL_THREAD_COUNT`` threads (async ones on an event
  loop).

Each emulated behaviour names, beside its code, the host or worker source or the document it
follows. See devhost/README.md.
"""
from __future__ import annotations

import argparse
import http
import json
import logging
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Mapping, Optional, Union
from urllib.parse import parse_qsl, urlsplit

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import (
    AppLoadError,
    HttpFunction,
    apply_local_settings,
    describe_all,
    read_function_timeout,
    read_route_prefix,
)
from .auth import Keys, KeysError, authorized, presented_key
from .azurite import Azurite
from .bindings import BindingError, BlobBinding, BlobStore, expand_path, split_blob_path
from .redact import redact, without_query
from .workers import WorkerGone, WorkerPool, WorkerStartError, process_count

log = logging.getLogger("devhost")

DEFAULT_MAX_BODY = 104_857_600  # ScriptConstants.DefaultMaxRequestBodySize (Kestrel's limit in the host)
BODY_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"  # HttpRequestBodySizeMiddleware.cs
THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}
_Keys = Union[Keys, Mapping[str, Any], str, Path]


class Reply:
    """An HTTP response ready to be written; the host's own answers have empty bodies."""

    __slots__ = ("status", "headers", "body", "worker")

    def __init__(self, status: int, headers: Optional[list[tuple[str, str]]] = None, body: bytes = b"",
                 worker: Optional[int] = None) -> None:
        self.status = status
        self.headers = headers or []
        self.body = body
        self.worker = worker


# -- request parts, as the host passes them to the worker -------------------------------------
def header_dict(raw: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated headers joined with "," (StringValues.ToString), empty values
    kept (the Python worker does not ask for IgnoreEmptyValuedRpcHttpHeaders) --
    GrpcMessageConversionExtensions.cs ToRpcHttp."""
    headers: dict[str, str] = {}
    for key, value in raw:
        key = key.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers


def query_dict(query: str) -> dict[str, str]:
    """Query parameters, keys case-insensitive (first spelling kept), repeated values joined with
    "," (ASP.NET Core QueryCollection + StringValues.ToString); empty values included."""
    params: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        key = spelled.setdefault(key.lower(), key)
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def worker_query(params: Mapping[str, str]) -> dict[str, str]:
    """GrpcMessageConversionExtensions.cs ToRpcHttp: without UseNullableValueDictionaryForHttp
    (the Python worker does not declare it) query parameters with empty values are dropped."""
    return {k: v for k, v in params.items() if v}


# -- the WSGI application (the host's request pipeline) ---------------------------------------
class FrontApp:
    """Routes a request, checks its key, reads its body and bindings, invokes, answers."""

    def __init__(self, host: "LocalFunctionsHost") -> None:
        self.host = host

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"].upper()
        split = urlsplit(environ.get("RAW_URI") or environ["PATH_INFO"])  # the raw target: routes match undecoded
        try:
            reply = self.handle(environ, method, split.path, split.query)
        except (ConnectionError, TimeoutError) as exc:  # the client went away mid-request
            log.info("%s %s: the client connection failed (%s)", method, split.path, type(exc).__name__)
            reply = Reply(400)
        except Exception:  # a devhost bug: logged, answered as the host answers its own failures
            log.error("devhost failed on a request:\n%s", without_query(redact(traceback.format_exc())))
            reply = Reply(500)
        headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        try:
            phrase = http.HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        start_response(f"{reply.status} {phrase}".strip(), headers)  # werkzeug closes every connection
        worker = f" worker {reply.worker}" if reply.worker is not None else ""
        log.info("%s %s %d %.1fms%s", method, split.path, reply.status,
                 (time.perf_counter() - started) * 1000, worker)  # never the query: keys travel in it
        return [] if method == "HEAD" else [reply.body]

    def route(self, method: str, path: str) -> Optional[tuple[HttpFunction, dict[str, str]]]:
        """ASP.NET Core routing as the host sets it up: a route whose template matches but whose
        methods do not is simply not a match, so a known path with another method is 404."""
        for function in self.host.functions:
            params = function.route.match(path)
            if params is not None and (function.methods is None or method in function.methods):
                return function, params
        return None

    def handle(self, environ: dict[str, Any], method: str, path: str, query: str) -> Reply:
        host = self.host
        found = self.route(method, path)
        if found is None:
            return Reply(404)  # FunctionInvocationMiddleware.cs NotFoundResult: empty body
        function, route_params = found
        headers = header_dict(environ.get("devhost.headers") or ())
        params = query_dict(query)
        if not authorized(host.keys, function.auth_level, function.name, presented_key(headers, params)):
            return Reply(401)  # FunctionInvocationMiddleware.cs UnauthorizedResult: empty body
        body = self._read_body(environ, headers, host.max_body_bytes)
        if isinstance(body, int):
            return Reply(body)  # 413 (Kestrel MaxRequestBodySize) or 400: the function does not run
        url = f"http://{headers.get('host', host.authority)}{path}{'?' + query if query else ''}"
        inputs: dict[str, Any] = {function.trigger_name: ("http", {
            "method": method, "url": url, "headers": headers, "query": worker_query(params),
            "params": route_params, "body": body})}
        paths = {}
        try:
            if function.unsupported:
                raise BindingError(f"devhost cannot resolve bindings {list(function.unsupported)}")
            for binding in function.blobs:
                paths[binding.name] = expand_path(binding.path, route_params, params)
                if binding.direction == "in":
                    inputs[binding.name] = self._blob_input(binding, paths[binding.name])
        except BindingError as exc:
            return self._failed(function, None, f"binding failed: {exc}", exc)
        try:
            worker, reply = host.pool.invoke(function.name, inputs, host.function_timeout)
        except TimeoutError:
            log.error("Timeout value of %s seconds exceeded by function 'Functions.%s'",
                      host.function_timeout, function.name)
            return Reply(500)
        except (WorkerGone, OSError) as exc:
            return self._failed(function, None, f"the worker process failed: {exc}")
        if not reply["ok"]:
            return self._failed(function, worker.index, reply.get("error") or "")
        try:
            for binding in function.blobs:
                value = reply["outputs"].get(binding.name)
                if binding.direction == "out" and value is not None and value[0] is not None:
                    host.store.upload(binding.connection, paths[binding.name], output_bytes(*value))
        except BindingError as exc:
            return self._failed(function, worker.index, f"binding failed: {exc}", exc)
        response = (reply["outputs"].get(function.response_name) if function.response_name != "$return"
                    else reply["return"])
        return http_reply(response, worker.index)

    @staticmethod
    def _read_body(environ: dict[str, Any], headers: Mapping[str, str], cap: int) -> Union[bytes, int]:
        """The body the host passes to the worker, or the status refusing it: 413 over ``cap``
        (the limit Kestrel enforces in the host), 400 for a malformed Content-Length.

        A chunked body is read (up to the cap, else 413) but passed as empty: the host gives
        out-of-process workers a body only when ``request.ContentLength > 0``
        (GrpcMessageConversionExtensions.cs ToRpcHttp; azure-functions-python-worker#574).
        """
        stream = environ["wsgi.input"]
        if environ.get("wsgi.input_terminated"):  # Transfer-Encoding: chunked, de-chunked by werkzeug
            total = 0
            while chunk := stream.read(65536):
                total += len(chunk)
                if total > cap:
                    return 413
            return b""
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            return 400
        if length < 0:
            return 400
        if length > cap:
            return 413
        if length == 0:
            return b""
        body = stream.read(length)
        if len(body) != length:
            raise ConnectionResetError("the client closed the connection mid-body")
        return body

    def _blob_input(self, binding: BlobBinding, path: str) -> tuple[Optional[str], Any]:
        """What the host sends for a blob input (FunctionBinding.cs, GeneralScriptBindingProvider.cs)."""
        if binding.deferred:  # SDK type: model binding data only (GrpcMessageConversionExtensions.cs ToModelBindingData)
            container, blob = split_blob_path(path)
            content = json.dumps({"Connection": binding.connection, "ContainerName": container,
                                  "BlobName": blob}).encode("utf-8")
            return ("model_binding_data", {"version": "1.0", "source": "AzureStorageBlobs",
                                           "content_type": "application/json", "content": content})
        data = self.host.store.download(binding.connection, path)
        if data is None:
            return (None, None)  # a missing blob is null
        if binding.data_type in ("BINARY", "STREAM"):
            return ("bytes", data)
        # dataType string or unset: the host binds a string (JobHostMetadataProvider's common
        # default), decoded as .NET's StreamReader does (UTF-8, BOM dropped, invalid bytes replaced)
        return ("string", data.decode("utf-8-sig", errors="replace"))

    @staticmethod
    def _failed(function: HttpFunction, worker: Optional[int], detail: str,
                exc: Optional[BaseException] = None) -> Reply:
        """ExceptionMiddleware.cs: a failed invocation is a 500 with an empty body; the
        details (redacted) go to the host's log only."""
        cause = f" ({redact(str(exc.__cause__))})" if exc is not None and exc.__cause__ else ""
        log.error("Executed 'Functions.%s' (Failed)%s: %s%s", function.name,
                  f" on worker {worker}" if worker is not None else "", redact(detail).rstrip(), cause)
        return Reply(500, worker=worker)


def output_bytes(kind: str, value: Any) -> bytes:
    """The bytes the host writes to a blob for an output binding value sent by the worker."""
    if kind == "bytes":
        return value
    if kind in ("string", "json"):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


def http_reply(response: Any, worker: int) -> Reply:
    """The HTTP response for the worker's http output (RpcHttp or a string)."""
    if response is None or response[0] is None:
        return Reply(200, worker=worker)  # FunctionInvocationMiddleware.cs: no response set -> OkResult
    kind, value = response
    if kind == "http":  # RpcHttp from the worker (datumdef.py datum_as_proto)
        headers = [(k, v) for k, v in value["headers"] if k.lower() not in _HOP_BY_HOP]
        headers += [("Set-Cookie", cookie) for cookie in value.get("cookies") or []]
        try:
            status = int(value["status"])
        except ValueError:
            log.error("the function returned an invalid status code %r", value["status"])
            return Reply(500, worker=worker)
        return Reply(status, headers, value["body"], worker)
    if kind == "string":  # HttpBinding.cs CreateResult -> RawScriptResult (strings that parse as a JSON
        # object with a "body" are read as a response object there; devhost does not do that)
        return Reply(200, [("Content-Type", "text/plain; charset=utf-8")], value.encode("utf-8"), worker)
    body = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return Reply(200, [("Content-Type", "application/octet-stream")], body, worker)


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler, with the raw header list and request target kept for the front (its
    environ drops headers with "_" in their name), and no log line holding a query string."""

    timeout = 120  # seconds a connection may stay idle or stall mid-request

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ["devhost.headers"] = list(self.headers.items())
        return environ

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # the front logs one access line per request itself, without the query string

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.ERROR if type == "error" else logging.INFO
        log.log(level, "http: %s", without_query(redact(message % args if args else message)))


# -- public host ------------------------------------------------------------------------------
class LocalFunctionsHost:
    """Serve the HTTP functions of the app in ``app_dir`` on ``host:port`` (``port=0``: free).

    The app settings are ``os.environ`` at :meth:`start`, after ``local.settings.json`` values
    for names not already set (``load_local_settings``); the worker processes get exactly that.

    * ``workers``: worker processes; default ``FUNCTIONS_WORKER_PROCESS_COUNT`` (1 if unset).
    * ``threads``: sets ``PYTHON_THREADPOOL_THREAD_COUNT`` for the workers (default: the setting).
    * ``keys``: enforce function keys (a :class:`devhost.auth.Keys`, a mapping or a keys file
      path); ``None`` (default) leaves them off, as Core Tools does locally.
    * ``max_body_bytes``: request body limit (413 beyond); default ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``,
      else 100 MB, like the host.
    * ``storage_retries``: retries of a blob operation of the front before the binding fails.
    * ``module``: the app's script without ``.py`` (default ``PYTHON_SCRIPT_FILE_NAME`` or
      ``function_app``); ``app_attribute``: which FunctionApp when the module holds several.
    """

    def __init__(self, app_dir: Path | str = ".", *, host: str = "127.0.0.1", port: int = 7071,
                 module: Optional[str] = None, app_attribute: Optional[str] = None,
                 max_body_bytes: Optional[int] = None, load_local_settings: bool = True,
                 storage_retries: int = 2, keys: Optional[_Keys] = None, workers: Optional[int] = None,
                 threads: Optional[int] = None, start_timeout: float = 120.0) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.host = host
        self.keys: Optional[Keys] = Keys.load(keys) if keys is not None else None
        self._max_body_bytes = max_body_bytes
        self.max_body_bytes = DEFAULT_MAX_BODY if max_body_bytes is None else max_body_bytes
        self._port = port
        self._script_file = f"{module}.py" if module else None
        self._app_attribute = app_attribute
        self._load_local_settings = load_local_settings
        self._settings_applied = False
        self._storage_retries = storage_retries
        self._workers = workers
        self._threads = threads
        self._start_timeout = start_timeout
        self.functions: list[HttpFunction] = []
        self.function_timeout: Optional[float] = None
        self.store: Optional[BlobStore] = None
        self.pool: Optional[WorkerPool] = None
        self._server: Optional[BaseWSGIServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- settings and app -----------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        """The app settings: ``os.environ`` after local.settings.json (applied once)."""
        return self._settings()

    def _settings(self) -> dict[str, str]:
        if self._load_local_settings and not self._settings_applied:
            apply_local_settings(self.app_dir)
            self._settings_applied = True
        environ = dict(os.environ)
        if self._threads is not None:
            environ[THREAD_COUNT_SETTING] = str(self._threads)
        return environ

    def _pool(self, environ: dict[str, str], count: int) -> WorkerPool:
        return WorkerPool(self.app_dir, count, environ, script_file=self._script_file,
                          app_attribute=self._app_attribute, start_timeout=self._start_timeout)

    def index(self) -> list[HttpFunction]:
        """Index the app in a short-lived worker (nothing served); return its HTTP functions.

        Settings are resolved against the environment now; :meth:`start` indexes again.
        """
        environ = self._settings()
        try:
            metadata = self._pool(environ, 1).index_only()
        except WorkerStartError as exc:
            raise AppLoadError(str(exc)) from None
        return describe_all(metadata, read_route_prefix(self.app_dir), environ)

    def connection_settings(self, functions: Optional[list[HttpFunction]] = None) -> set[str]:
        """Names of the connection settings used by the app's blob bindings."""
        return {b.connection or "AzureWebJobsStorage" for f in (functions or self.functions) for b in f.blobs}

    # -- server ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self._port

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.authority}"

    def start(self) -> "LocalFunctionsHost":
        """Start the workers (they index the app), resolve settings, bind the port and serve in
        a background thread. Raises :class:`devhost.app.AppLoadError` if the app cannot start."""
        if self._server is not None:
            return self
        environ = self._settings()
        if self._max_body_bytes is None:
            try:
                self.max_body_bytes = int(environ.get(BODY_LIMIT_SETTING) or DEFAULT_MAX_BODY)
            except ValueError:
                self.max_body_bytes = DEFAULT_MAX_BODY  # HttpRequestBodySizeMiddleware.cs: unparsable -> ignored
        try:
            self.pool = self._pool(environ, process_count(environ, self._workers))
            metadata = self.pool.start()
            self.functions = describe_all(metadata, read_route_prefix(self.app_dir), environ)
            self.function_timeout = read_function_timeout(self.app_dir)
            self.store = BlobStore(environ, retry_total=self._storage_retries)
            self._server = make_server(self.host, self._port, FrontApp(self), threaded=True,
                                       request_handler=_RequestHandler)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, WorkerStartError):
                raise AppLoadError(str(exc)) from None
            raise
        self._server._server_version = "devhost"  # werkzeug's Server header
        self._thread = threading.Thread(target=self._server.serve_forever, name="devhost",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        self._log_startup()
        return self

    def _log_startup(self) -> None:
        assert self.pool is not None
        log.info("devhost serving %d HTTP function(s) of %s at %s with %d worker process(es)",
                 len(self.functions), self.app_dir, self.url, len(self.pool.workers))
        if not self.functions:
            log.warning("No HTTP functions found in %s", self.app_dir)
        for function in self.functions:
            methods = ",".join(sorted(function.methods)) if function.methods else "ALL"
            log.info("  %s: [%s] %s/%s (%s)", function.name, methods, self.url, function.route.template,
                     function.auth_level)
            if function.unsupported:
                log.warning("  %s declares bindings devhost cannot resolve: %s",
                            function.name, ", ".join(function.unsupported))
        if self.keys is None and any(f.auth_level != "anonymous" for f in self.functions):
            log.info("function keys are not enforced (as with Core Tools); configure keys to enforce them")

    def worker_stats(self) -> list[dict[str, Any]]:
        """Per worker process: index, pid, invocations (in all and by function), failures, in
        flight, sync threads, and the median front->worker hop in ms (round trip minus the
        function's own time)."""
        return self.pool.stats() if self.pool is not None else []

    def stop(self) -> None:
        """Stop serving, then stop the worker processes (SIGTERM, then SIGKILL). Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        pool, self.pool = self.pool, None
        if pool is not None:
            if pool.workers and all(w.threads is not None for w in pool.workers):
                log.info("devhost worker stats: %s", json.dumps(pool.stats()))
            pool.stop()

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
    parser.add_argument("--max-body-bytes", type=int, default=None,
                        help=f"default: {BODY_LIMIT_SETTING}, else {DEFAULT_MAX_BODY}")
    parser.add_argument("--keys-file", type=Path, default=None,
                        help="JSON function keys to enforce (see devhost/README.md); default: none")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: FUNCTIONS_WORKER_PROCESS_COUNT, else 1)")
    return parser.parse_args(argv)


def _is_development_storage(value: Optional[str]) -> bool:
    return bool(value) and value.replace(" ", "").rstrip(";").lower() == "usedevelopmentstorage=true"


def _point_at_azurite(host: LocalFunctionsHost, azurite: Azurite) -> None:
    """Point storage settings at the started Azurite: ``AzureWebJobsStorage``, every setting
    holding ``UseDevelopmentStorage=true`` (which means "the local emulator"), and the app's
    blob connection settings that are still unset (found by indexing the app; an app that needs
    a setting at import cannot be indexed before: give it ``UseDevelopmentStorage=true``).
    A setting holding anything else is left as is. Logs names only.
    """
    def point(name: str) -> None:
        current = os.environ.get(name) or os.environ.get(f"AzureWebJobs{name}")
        if current and not _is_development_storage(current):
            log.warning("--azurite: %s is already set; leaving it as is", name)
        else:
            os.environ[name] = azurite.connection_string
            log.info("--azurite: %s -> Azurite at port %d", name, azurite.port)

    environ = host.settings()
    for name in sorted({"AzureWebJobsStorage"} | {k for k, v in environ.items() if _is_development_storage(v)}):
        point(name)
    try:
        names = host.connection_settings(host.index())
    except AppLoadError as exc:
        log.warning("--azurite: the app could not be indexed to find its blob connection settings "
                    "(%s); unset ones are not pointed at Azurite", str(exc).splitlines()[-1][:300])
        return
    for name in sorted(names - set(os.environ)):
        point(name)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m devhost``: serve in the foreground until Ctrl-C or SIGTERM (exit code 0)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)

    def _terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one shutdown, however many signals follow
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    azurite = None
    try:
        host = LocalFunctionsHost(args.app_dir, host=args.host, port=args.port,
                                  max_body_bytes=args.max_body_bytes, keys=args.keys_file,
                                  workers=args.workers)
    except (KeysError, OSError) as exc:
        log.error("cannot read the keys file: %s", exc)
        return 2
    try:
        if args.azurite:
            azurite = Azurite(host="127.0.0.1", port=args.azurite_port).start()
            _point_at_azurite(host, azurite)
        host.start()
        print(f"devhost listening on {host.url}", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        log.info("shutting down")
    except AppLoadError as exc:
        log.error("the app cannot start: %s", exc)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        host.stop()
        if azurite is not None:
            azurite.stop()
    return 0
