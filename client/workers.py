"""Encryption in worker processes that never re-run the caller's script.

TenSEAL holds the GIL, so a batch's columns are encrypted in parallel by processes. They
are started as their own program (``python -c`` running :func:`main` here) talking over pipes, not
with multiprocessing: its ``spawn`` and ``forkserver`` re-import the caller's ``__main__``, so
a plain script without ``if __name__ == "__main__":`` would run again in every worker and
die with ``BrokenProcessPool``; and a daemonic process (a Spark or multiprocessing worker)
may not start multiprocessing children at all.

The secret key reaches a worker through its stdin pipe, never its command line or
environment, and never leaves the machine. A worker exits when its stdin closes (the
client closed the pool, or died).
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np

from .keys import SecretKeys, encrypt_coefficients

FRAME = struct.Struct("<Q")
# Not `-m client.workers`: the package imports this module first, and runpy would warn.
WORKER_MAIN = "from client.workers import main; raise SystemExit(main())"
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream):
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        raise EOFError
    (length,) = FRAME.unpack(head)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - from our own child or parent process only


class EncryptionPool:
    """``processes`` workers holding one secret key; each call splits columns among them."""

    def __init__(self, keys: SecretKeys, processes: int) -> None:
        self.keys = keys
        self.processes = max(1, processes)
        self._workers: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop, self._workers)

    def _start(self) -> list[subprocess.Popen]:
        if not self._workers:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT,
                                                                           os.environ.get("PYTHONPATH")]))}
            secret = self.keys.runtime.save(self.keys.secret_key)
            for _ in range(self.processes):
                # -P: the caller's folder is not put on the path, so nothing of theirs is imported
                worker = subprocess.Popen([sys.executable, "-P", "-c", WORKER_MAIN], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=env)
                self._workers.append(worker)
                _send(worker.stdin, (self.keys.parameters, secret))
        return self._workers

    def encrypt(self, columns: np.ndarray, scale: float) -> tuple[bytes, ...]:
        """Encrypt each row of ``columns`` as one plaintext's coefficients, in order.

        Raises:
            RuntimeError: if a worker failed or exited (the pool starts afresh next time).
        """
        with self._lock:
            try:
                workers = self._start()
                shares = [share for share in np.array_split(np.arange(len(columns)), len(workers)) if share.size]
                for worker, share in zip(workers, shares):
                    _send(worker.stdin, (np.ascontiguousarray(columns[share]), scale))
                parts = [_receive(worker.stdout) for worker, _ in zip(workers, shares)]
            except (EOFError, BrokenPipeError, OSError) as exc:
                self.close()
                raise RuntimeError("an encryption worker process exited; see its output above") from exc
        if any(isinstance(part, str) for part in parts):
            raise RuntimeError(f"an encryption worker failed: {next(p for p in parts if isinstance(p, str))}")
        return tuple(blob for part in parts for blob in part)

    def close(self) -> None:
        """Stop the workers (they are also stopped when the pool is garbage collected)."""
        _stop(self._workers)


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        try:
            worker.stdin.close()
        except OSError:
            pass
    for worker in workers:
        try:
            worker.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        worker.stdout.close()
    workers.clear()


def main() -> int:
    """The worker: read the keys, then encrypt column blocks until stdin closes."""
    import tenseal.sealapi as seal

    from scoring.ckks import runtime

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    try:
        parameters, secret = _receive(stdin)
    except EOFError:
        return 0
    rt = runtime(parameters)
    encryptor = seal.Encryptor(rt.context, rt.load(seal.SecretKey(), secret))
    while True:
        try:
            columns, scale = _receive(stdin)
        except EOFError:
            return 0
        try:
            reply = [encrypt_coefficients(rt, encryptor, column, scale) for column in columns]
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
            reply = f"{type(exc).__name__}: {exc}"
        _send(stdout, reply)

