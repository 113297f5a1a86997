"""Front side: the language-worker processes and the dispatch of invocations to them.

Like the Functions host (RpcFunctionInvocationDispatcher), the front starts
``FUNCTIONS_WORKER_PROCESS_COUNT`` worker processes (default 1, at most 10 --
RpcWorkerConfigFactory.cs GetWorkerProcessCount), takes the function metadata from the first
one's indexing, and sends each invocation to one worker, round-robin
(RpcFunctionInvocationDispatcherLoadBalancer.cs). Workers are ``python -m devhost.worker``
programs started with ``subprocess`` (devhost.processes), each with one end of a Unix socket
pair (devhost.channel). Unlike the host, which starts the extra workers one by one
(``ProcessStartupInterval``), all are started at once and the host serves when all are ready.
"""
from __future__ import annotations

import collections
import logging
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from .channel import Channel, ChannelClosed
from .processes import start_child, stop_children

log = logging.getLogger("devhost")

PROCESS_COUNT_SETTING = "FUNCTIONS_WORKER_PROCESS_COUNT"
MAX_PROCESS_COUNT = 10  # WorkerProcessCountOptions.cs MaxProcessCount
_DEVHOST_PARENT = str(Path(__file__).resolve().parent.parent)


class WorkerStartError(RuntimeError):
    """A worker could not start or index the app (the message is the worker's error)."""


class WorkerGone(RuntimeError):
    """The worker process exited while an invocation was in flight."""


def process_count(environ: dict[str, str], override: Optional[int] = None) -> int:
    """RpcWorkerConfigFactory.cs: the setting if set (values < 1 mean 1), at most 10."""
    if override is not None:
        count = override
    else:
        value = environ.get(PROCESS_COUNT_SETTING)
        if not value:
            return 1
        try:
            count = int(value)
        except ValueError:
            raise WorkerStartError(f"{PROCESS_COUNT_SETTING}={value!r} is not an integer") from None
        count = max(count, 1)
    if not 1 <= count <= MAX_PROCESS_COUNT:
        raise WorkerStartError(f"ProcessCount must not be greater than MaxProcessCount ({MAX_PROCESS_COUNT}); "
                               f"{count} worker processes were requested")
    return count


def worker_environment(environ: dict[str, str]) -> dict[str, str]:
    """The workers' environment: the app settings, with devhost importable after the app's own
    packages (as the real worker's folder is appended to PYTHONPATH, python/prodV4/worker.py)."""
    env = dict(environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _DEVHOST_PARENT not in paths:
        paths.append(_DEVHOST_PARENT)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class _Pending:
    """One invocation awaiting its reply: a lock released by the reader thread (a cheaper
    one-shot event than a Future's condition variable)."""

    __slots__ = ("lock", "reply", "error")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.reply: Optional[dict[str, Any]] = None
        self.error: Optional[BaseException] = None

    def set(self, reply: Optional[dict[str, Any]], error: Optional[BaseException] = None) -> None:
        self.reply, self.error = reply, error
        self.lock.release()

    def wait(self, timeout: Optional[float]) -> dict[str, Any]:
        if not self.lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return self.reply


class WorkerProcess:
    """One worker process and its channel; many invocations may be in flight on it."""

    def __init__(self, index: int, proc: subprocess.Popen, channel: Channel) -> None:
        self.index = index
        self.proc = proc
        self.channel = channel
        self.pid = proc.pid
        self.threads: Optional[int] = None
        self.alive = True
        self.invocations = 0
        self.failures = 0
        self.by_function: collections.Counter[str] = collections.Counter()
        self.hop_ns: collections.deque[int] = collections.deque(maxlen=4096)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        self.stopping = False

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def wait_indexed(self, timeout: float) -> dict[str, Any]:
        """The worker's first message: its metadata, or its load error."""
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.channel.sock], [], [], 0.2)
            if ready:
                break
            if self.proc.poll() is not None:
                raise WorkerStartError(f"worker {self.index} exited with code {self.proc.returncode} "
                                       "before indexing the app")
            if time.monotonic() > deadline:
                raise WorkerStartError(f"worker {self.index} did not index the app within {timeout:.0f}s")
        try:
            message = self.channel.receive()
        except ChannelClosed:
            raise WorkerStartError(f"worker {self.index} exited before indexing the app") from None
        if not message.get("ok"):
            raise WorkerStartError(message.get("error") or "the worker could not index the app")
        self.threads = message.get("threads")
        return message

    def start_reader(self) -> None:
        self._reader = threading.Thread(target=self._read, name=f"devhost-worker-{self.index}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                reply = self.channel.receive()
                with self._lock:
                    pending = self._pending.pop(reply["invocation_id"], None)
                if pending is not None:
                    pending.set(reply)
        except (ChannelClosed, OSError, ValueError):
            pass
        self.alive = False
        if not self.stopping:
            log.error("worker %d (pid %d) exited unexpectedly (code %s); its invocations failed",
                      self.index, self.pid, self.proc.poll())
        with self._lock:
            waiting, self._pending = self._pending, {}
        for pending in waiting.values():
            pending.set(None, WorkerGone(f"worker {self.index} exited"))

    def invoke(self, message: dict[str, Any], timeout: Optional[float]) -> dict[str, Any]:
        """Send one invocation and wait for its reply (TimeoutError after ``timeout`` s)."""
        pending = _Pending()
        invocation_id = message["invocation_id"]
        with self._lock:
            if not self.alive:
                raise WorkerGone(f"worker {self.index} is not running")
            self._pending[invocation_id] = pending
            self.invocations += 1
            self.by_function[message["function"]] += 1
        started = time.perf_counter_ns()
        try:
            self.channel.send(message)
            reply = pending.wait(timeout)
        except BaseException:
            with self._lock:
                self._pending.pop(invocation_id, None)
                self.failures += 1
            raise
        self.hop_ns.append(time.perf_counter_ns() - started - int(reply.get("function_ns") or 0))
        if not reply.get("ok"):
            self.failures += 1
        return reply

    def stats(self) -> dict[str, Any]:
        hops = list(self.hop_ns)
        return {"index": self.index, "pid": self.pid, "alive": self.alive, "threads": self.threads,
                "invocations": self.invocations, "failures": self.failures, "in_flight": self.in_flight,
                "by_function": dict(self.by_function),
                "hop_ms_p50": statistics.median(hops) / 1e6 if hops else None}


class WorkerPool:
    """The worker processes of one host, started together, dispatched to round-robin."""

    def __init__(self, app_dir: Path, count: int, environ: dict[str, str], *,
                 script_file: Optional[str] = None, app_attribute: Optional[str] = None,
                 start_timeout: float = 120.0, stop_timeout: float = 5.0) -> None:
        self.app_dir = app_dir
        self.count = count
        self.environ = worker_environment(environ)
        self.script_file = script_file
        self.app_attribute = app_attribute
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.workers: list[WorkerProcess] = []
        self._counter = 0
        self._lock = threading.Lock()

    def _spawn(self, index: int, index_only: bool = False) -> WorkerProcess:
        front, back = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [sys.executable, "-m", "devhost.worker", "--app-dir", str(self.app_dir),
               "--fd", str(back.fileno()), "--index", str(index)]
        if self.script_file:
            cmd += ["--script-file", self.script_file]
        if self.app_attribute:
            cmd += ["--app-attribute", self.app_attribute]
        if index_only:
            cmd.append("--index-only")
        try:
            # the app folder is the worker's working directory, as on Azure (/home/site/wwwroot)
            proc = start_child(cmd, cwd=self.app_dir, env=self.environ, pass_fds=[back.fileno()])
        except BaseException:
            front.close()
            raise
        finally:
            back.close()
        return WorkerProcess(index, proc, Channel(front))

    def index_only(self) -> list[dict[str, Any]]:
        """Index the app in a short-lived worker; return the function metadata."""
        worker = self._spawn(0, index_only=True)
        try:
            return worker.wait_indexed(self.start_timeout)["functions"]
        finally:
            worker.stopping = True
            worker.channel.close()
            stop_children([worker.proc], self.stop_timeout, name="devhost worker")

    def start(self) -> list[dict[str, Any]]:
        """Start every worker; return the metadata of the first (all must index the app)."""
        try:
            self.workers = [self._spawn(i) for i in range(self.count)]
            indexed = [worker.wait_indexed(self.start_timeout) for worker in self.workers]
        except BaseException:
            self.stop()
            raise
        for worker in self.workers:
            worker.start_reader()
            log.info("worker process %d started (pid %d, %s sync threads)", worker.index, worker.pid,
                     worker.threads)
        return indexed[0]["functions"]

    def pick(self) -> WorkerProcess:
        """RpcFunctionInvocationDispatcherLoadBalancer.cs: round-robin over running workers."""
        with self._lock:
            live = [w for w in self.workers if w.alive]
            if not live:
                raise WorkerGone("no worker process is running")
            if len(live) == 1:
                return live[0]
            self._counter += 1
            return live[self._counter % len(live)]

    def invoke(self, function: str, inputs: dict[str, Any], timeout: Optional[float]
               ) -> tuple[WorkerProcess, dict[str, Any]]:
        worker = self.pick()
        message = {"invocation_id": str(uuid.uuid4()), "function": function, "inputs": inputs}
        return worker, worker.invoke(message, timeout)

    def stats(self) -> list[dict[str, Any]]:
        return [worker.stats() for worker in self.workers]

    def stop(self) -> None:
        """SIGTERM every worker (then SIGKILL); close the channels. Idempotent."""
        for worker in self.workers:
            worker.stopping = True
        stop_children([w.proc for w in self.workers], self.stop_timeout, name="devhost worker")
        for worker in self.workers:
            worker.channel.close()
