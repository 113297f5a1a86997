"""``python -m devhost.worker``: one language-worker process of the dev host.

The front (devhost.host) starts ``FUNCTIONS_WORKER_PROCESS_COUNT`` of these with ``subprocess``
(never multiprocessing: nothing of the caller's ``__main__`` is re-imported), hands each one end
of a Unix socket pair, and talks to it over devhost.channel. Like azure-functions-python-worker
(dispatcher.py), a worker:

* imports and indexes the app (devhost.indexing) and answers with the function metadata, or
  with the load error;
* runs async functions on its asyncio event loop and sync functions in a ``ThreadPoolExecutor``
  sized from ``PYTHON_THREADPOOL_THREAD_COUNT`` (unset: ``None``, i.e. Python's default
  ``min(32, os.cpu_count() + 4)``, for Python 3.9+). The real worker decodes and encodes every
  invocation on its event loop thread and hands sync calls to the pool; devhost hands a sync
  invocation to the pool whole (decoding and encoding included), which saves two thread
  hand-offs per request and leaves the pool's size and the concurrency of calls unchanged;
* converts inputs with the ``azure.functions`` converters (HttpRequest, blob, generic) and
  SDK-type bindings with the extension's own converter from model binding data; encodes the
  return value and output bindings the same way and sends them back.

It exits when its channel closes (the front is gone), on SIGTERM (default action), and, on
Linux, when the front dies (parent-death signal set by devhost.processes).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any, Optional

from . import indexing
from .channel import Channel, ChannelClosed
from .redact import redact

log = logging.getLogger("devhost.worker")

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"  # azure_functions_worker/constants.py


def sync_pool_max_workers() -> Optional[int]:
    """dispatcher.py _get_sync_tp_max_workers: the setting if it is an integer >= 1, else None
    (Python 3.9+: no limit set by the worker, so ThreadPoolExecutor's own default applies)."""
    value = os.environ.get(THREAD_COUNT_SETTING)
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        log.warning("%s must be an integer", THREAD_COUNT_SETTING)
        return None
    if count < 1:
        log.warning("%s must be set to a value between 1 and sys.maxint. Reverting to default value "
                    "for max_workers", THREAD_COUNT_SETTING)
        return None
    return count


class Out:
    """azure_functions_worker/bindings/out.py: the value of an output binding parameter."""

    def __init__(self) -> None:
        self.__value: Any = None

    def set(self, val: Any) -> None:
        self.__value = val

    def get(self) -> Any:
        return self.__value


class Context:
    """azure_functions_worker/bindings/context.py: the ``context`` parameter."""

    def __init__(self, func_name: str, func_dir: str, invocation_id: str) -> None:
        self.__func_name = func_name
        self.__func_dir = func_dir
        self.__invocation_id = invocation_id
        self.__thread_local_storage = threading.local()
        self.__trace_context = types.SimpleNamespace(trace_parent="", trace_state="", attributes={})
        self.__retry_context = types.SimpleNamespace(retry_count=0, max_retry_count=0, exception=None)

    @property
    def invocation_id(self) -> str:
        return self.__invocation_id

    @property
    def thread_local_storage(self) -> threading.local:
        return self.__thread_local_storage

    @property
    def function_name(self) -> str:
        return self.__func_name

    @property
    def function_directory(self) -> str:
        return self.__func_dir

    @property
    def trace_context(self) -> Any:
        return self.__trace_context

    @property
    def retry_context(self) -> Any:
        return self.__retry_context


# -- data conversion (azure_functions_worker/bindings/meta.py, datumdef.py) -------------------
def _datum(kind: Optional[str], value: Any) -> Any:
    from azure.functions.meta import Datum

    return None if kind is None else Datum(value=value, type=kind)


def _http_datum(http: dict[str, Any]) -> Any:
    """datumdef.py Datum.from_typed_data for RpcHttp (body always bytes: RawHttpBodyBytes)."""
    from azure.functions.meta import Datum

    def strings(mapping: dict[str, str]) -> dict[str, Any]:
        return {k: Datum(v, "string") for k, v in mapping.items()}

    return Datum(type="http", value={
        "method": Datum(http["method"], "string"), "url": Datum(http["url"], "string"),
        "headers": strings(http["headers"]), "body": Datum(http["body"], "bytes"),
        "params": strings(http["params"]), "query": strings(http["query"])})


def _flatten(datum: Any) -> Any:
    """A Datum as a (type, value) pair the channel can carry (datumdef.py datum_as_proto)."""
    if datum is None or datum.type is None:
        return (None, None)
    kind, value = datum.type, datum.value
    if kind in ("string", "bytes", "int", "double", "bool"):
        return (kind, value)
    if kind in ("dict", "list"):
        return ("json", json.dumps(value))
    if kind == "json":
        return ("json", value)
    if kind == "http":
        cookies = []
        for cookie in value.get("cookies") or []:
            cookies += [morsel.OutputString() for morsel in cookie.values()]
        body = value.get("body")
        body_bytes = b""
        if body is not None and body.value is not None:
            body_bytes = body.value if isinstance(body.value, bytes) else str(body.value).encode("utf-8")
        return ("http", {"status": str(value["status_code"].value),
                         "headers": [(k, str(v.value)) for k, v in value["headers"].items()],
                         "cookies": cookies, "body": body_bytes})
    raise TypeError(f"unable to encode outgoing TypedData: unsupported type {kind!r}")


def _encode(binding_name: str, obj: Any, pytype: Optional[type]) -> Any:
    """meta.py get_datum: the binding's converter encodes the value, else TypeError."""
    binding = indexing.get_binding(binding_name)
    try:
        datum = binding.encode(obj, expected_type=pytype)
    except NotImplementedError:
        raise TypeError(f'unable to encode outgoing TypedData: unsupported type "{binding}" for '
                        f'Python type "{type(obj).__name__}"') from None
    return _flatten(datum)


class Worker:
    """Serves invocation requests from the front over one channel."""

    def __init__(self, registry: dict[str, Any], channel: Channel, index: int) -> None:
        self.registry = registry
        self.channel = channel
        self.index = index
        self.loop = asyncio.new_event_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=sync_pool_max_workers(),
                                                          thread_name_prefix="invocation")
        self._deferred_cache: dict[tuple, Any] = {}  # meta.py deferred_bindings_cache
        self._deferred_lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()

    @property
    def max_threads(self) -> int:
        return self.pool._max_workers  # dispatcher.py get_sync_tp_workers_set reads the same

    def serve(self) -> None:
        reader = threading.Thread(target=self._read, name="channel-reader", daemon=True)
        reader.start()
        try:
            self.loop.run_forever()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # do not wait for sync invocations still running: the front is gone

    def _read(self) -> None:
        try:
            while True:
                message = self.channel.receive()
                function = self.registry.get(message["function"])
                if function is not None and not function[1].is_async:
                    self.pool.submit(self._invoke_sync, message, function[1])
                else:
                    self.loop.call_soon_threadsafe(self._start, message)
        except (ChannelClosed, OSError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)

    def _start(self, message: dict[str, Any]) -> None:
        task = self.loop.create_task(self._invoke_async(message))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def _decode(self, name: str, info: Any, kind: Optional[str], value: Any, function_name: str) -> Any:
        """meta.py from_incoming_proto (and deferred_bindings_decode for SDK types)."""
        binding = indexing.get_binding(info.binding_name, info.deferred_bindings_enabled)
        if kind == "http":
            return binding.decode(_http_datum(value), trigger_metadata={})
        if kind == "model_binding_data":
            from azurefunctions.extensions.base import meta

            data = types.SimpleNamespace(**value)
            key = (name, info.pytype, data.content, function_name)
            with self._deferred_lock:
                if key not in self._deferred_cache:
                    datum = meta.Datum(value=data, type="model_binding_data")
                    self._deferred_cache[key] = binding.decode(datum, trigger_metadata={}, pytype=info.pytype)
                return self._deferred_cache[key]
        return binding.decode(_datum(kind, value), trigger_metadata={})

    def _arguments(self, message: dict[str, Any], fi: Any) -> tuple[dict[str, Any], Context]:
        """The function's arguments: decoded inputs, Out objects, the context if it asks."""
        args = {name: self._decode(name, fi.input_types[name], kind, value, fi.name)
                for name, (kind, value) in message["inputs"].items()}
        context = Context(fi.name, fi.directory, message["invocation_id"])
        context.thread_local_storage.invocation_id = message["invocation_id"]
        if fi.requires_context:
            args["context"] = context
        for name in fi.output_types:
            args[name] = Out()
        return args, context

    @staticmethod
    def _reply(message: dict[str, Any], fi: Any, args: dict[str, Any], result: Any, function_ns: int
               ) -> dict[str, Any]:
        """The invocation response: return value and output bindings, encoded as the worker does."""
        if result is not None and not fi.has_return:
            raise RuntimeError(f"function {fi.name!r} without a $return binding"
                               "returned a non-None value")
        outputs = {}
        for name, info in fi.output_types.items():
            value = args[name].get()
            if value is not None:
                outputs[name] = _encode(info.binding_name, value, info.pytype)
        returned = None
        if fi.return_type is not None:
            returned = _encode(fi.return_type.binding_name, result, fi.return_type.pytype)
        return {"invocation_id": message["invocation_id"], "ok": True, "return": returned,
                "outputs": outputs, "function_ns": function_ns}

    @staticmethod
    def _failure(message: dict[str, Any], exc: BaseException, function_ns: int) -> dict[str, Any]:
        return {"invocation_id": message["invocation_id"], "ok": False, "function_ns": function_ns,
                "error": redact("".join(traceback.format_exception(exc)))}

    def _send(self, reply: dict[str, Any]) -> None:
        sys.stdout.flush()  # dispatcher.py: "Actively flush customer print() function to console"
        try:
            self.channel.send(reply)
        except OSError:
            self.loop.call_soon_threadsafe(self.loop.stop)

    def _invoke_sync(self, message: dict[str, Any], fi: Any) -> None:
        """A sync function, in a thread of the pool (dispatcher.py _run_sync_func); the inputs
        are decoded and the outputs encoded in the same thread."""
        function_ns = 0
        try:
            args, context = self._arguments(message, fi)
            started = time.perf_counter_ns()
            try:
                result = fi.func(**args)
            finally:
                function_ns = time.perf_counter_ns() - started
                context.thread_local_storage.invocation_id = None
            reply = self._reply(message, fi, args, result, function_ns)
        except Exception as exc:  # the host sees a failed invocation (StatusResult.Failure)
            reply = self._failure(message, exc, function_ns)
        self._send(reply)

    async def _invoke_async(self, message: dict[str, Any]) -> None:
        """An async function, on the worker's event loop (dispatcher.py _run_async_func)."""
        function_ns = 0
        try:
            _function, fi = self.registry[message["function"]]
            args, _context = self._arguments(message, fi)
            started = time.perf_counter_ns()
            try:
                result = await fi.func(**args)
            finally:
                function_ns = time.perf_counter_ns() - started
            reply = self._reply(message, fi, args, result, function_ns)
        except Exception as exc:
            reply = self._failure(message, exc, function_ns)
        self._send(reply)


# -- command line ------------------------------------------------------------------------------
def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost.worker",
                                     description="a devhost language worker (started by devhost)")
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--fd", type=int, required=True, help="this end of the socket pair")
    parser.add_argument("--index", type=int, default=0, help="worker number, for logs")
    parser.add_argument("--script-file", default=None, help="default: PYTHON_SCRIPT_FILE_NAME or function_app.py")
    parser.add_argument("--app-attribute", default=None)
    parser.add_argument("--index-only", action="store_true", help="report the metadata and exit")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the front's; it stops the workers
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [worker {args.index}] %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    channel = Channel(socket.socket(fileno=args.fd))
    app_dir = args.app_dir.resolve()
    try:
        indexing._registry()  # dispatcher.py: bindings.load_binding_registry() at worker init
        indexing._deferred_registry()
        registry, metadata = indexing.index(app_dir, indexing.script_file_name(args.script_file),
                                            args.app_attribute)
    except BaseException as exc:  # noqa: BLE001 - reported to the front, which fails the start
        channel.send({"op": "indexed", "ok": False, "pid": os.getpid(),
                      "error": redact("".join(traceback.format_exception_only(exc)).strip()),
                      "traceback": redact("".join(traceback.format_exception(exc)))})
        return 1
    worker = Worker(registry, channel, args.index)
    channel.send({"op": "indexed", "ok": True, "pid": os.getpid(), "functions": metadata,
                  "threads": worker.max_threads})
    log.info("indexed %d function(s) of %s; sync threads: %d", len(metadata), app_dir, worker.max_threads)
    if args.index_only:
        return 0
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
