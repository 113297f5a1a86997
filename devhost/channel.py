"""The front <-> worker channel: length-prefixed ``marshal`` frames over a Unix socket pair.

It stands in for the host's gRPC stream to the language worker (FunctionRpc.proto): one
connection per worker process, many invocations in flight on it, each message tagged with its
invocation id. Messages are plain dicts of ``str``/``bytes``/``int``/``float``/``bool``/``None``/
lists/dicts (what ``marshal`` writes: fast, and no objects of the app ever cross). Both ends
run the same interpreter, so the ``marshal`` format matches.
"""
from __future__ import annotations

import marshal
import socket
import struct
import threading
from typing import Any, BinaryIO

_HEADER = struct.Struct("!I")
MAX_FRAME = 2**32 - 1


class ChannelClosed(EOFError):
    """The other end closed the channel (its process exited)."""


class Channel:
    """One end of the socket pair: :meth:`send` from any thread, :meth:`receive` from one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader: BinaryIO = sock.makefile("rb", buffering=256 * 1024)
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        payload = marshal.dumps(message)
        if len(payload) > MAX_FRAME:
            raise ValueError(f"message of {len(payload)} bytes is too large for the channel")
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(payload)))
            self.sock.sendall(payload)

    def receive(self) -> dict[str, Any]:
        header = self._reader.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise ChannelClosed
        (size,) = _HEADER.unpack(header)
        payload = self._reader.read(size)
        if len(payload) < size:
            raise ChannelClosed
        return marshal.loads(payload)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.close()
        self.sock.close()
