"""Child processes and free ports for the repository's local tooling (devhost, Azurite, bench).

One way to do each thing, used by every tool here:

* :func:`start_child` starts a program in a session of its own (so Ctrl-C in a terminal reaches
  only the parent, which then stops its children in order) and, on Linux, asks the kernel to
  send it SIGTERM if the parent dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
* :func:`stop_child` / :func:`stop_children` stop a child's process group: SIGTERM, a grace
  period, then SIGKILL; always reaped.
* :func:`free_port` / :func:`port_or_free` pick TCP ports on 127.0.0.1.

The parent-death signal is tied by Linux to the *thread* that started the child, so it is only
requested from the main thread; a child started from another thread must notice its parent's
death by other means (devhost workers also exit when their pipe to the front closes).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any, Iterable, Optional, Sequence, Union

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _PRCTL = None

_File = Union[None, int, IO[Any]]


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when the thread that started it dies.

    Safe to call in a ``preexec_fn`` (one system call through a pre-resolved function) or at
    the start of a child. Does nothing where ``prctl`` is unavailable.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(sig))


def start_child(cmd: Sequence[str], *, cwd: Optional[os.PathLike | str] = None,
                env: Optional[dict[str, str]] = None, stdin: _File = subprocess.DEVNULL,
                stdout: _File = None, stderr: _File = None, pass_fds: Iterable[int] = (),
                parent_death: bool = True) -> subprocess.Popen:
    """Start ``cmd`` in its own session; on Linux it gets SIGTERM when this process dies.

    ``parent_death`` is honoured only when called from the main thread (see the module doc).
    """
    preexec = None
    if parent_death and _PRCTL is not None and threading.current_thread() is threading.main_thread():
        preexec = set_parent_death_signal
    return subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            pass_fds=tuple(pass_fds), start_new_session=True,
                            preexec_fn=preexec)  # noqa: PLW1509 - one prctl call, no lock taken


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # own session: the process group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def stop_children(procs: Iterable[subprocess.Popen], timeout: float = 5.0,
                  name: str = "child process") -> None:
    """SIGTERM the process group of every running ``proc``, wait up to ``timeout`` seconds in
    all, then SIGKILL the groups still alive. Every process is reaped. Idempotent."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s %d did not stop within %.0fs of SIGTERM; killing it", name, proc.pid, timeout)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def stop_child(proc: Optional[subprocess.Popen], timeout: float = 5.0,
               name: str = "child process") -> Optional[int]:
    """Stop one child as :func:`stop_children` does; returns its exit code (None if no child)."""
    if proc is None:
        return None
    stop_children([proc], timeout, name)
    return proc.returncode


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_or_free(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing accepts connections on it, else a free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((host, preferred)) != 0:
            return preferred
    return free_port(host)
