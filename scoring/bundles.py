"""Where the service gets a caller's key bundle, and the bounded cache of parsed bundles.

A host hands the service a :class:`BundleSource`: the Azure Functions app wraps the
``BlobClient`` its SDK-type blob input binding provides; tests and inline requests wrap
bytes. The cache keeps parsed bundles by key id together with the stored version (the
blob's ETag); every request asks the source for the current version, so a bundle
deleted from storage is refused on the next request (404), on every instance, even
while it is cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

from .keys import PublicBundle, key_id_of


class BundleSource(Protocol):
    """The stored bundle for one key id, as a host reaches it."""

    def version(self) -> str | None:
        """The stored bundle's current version (ETag), or None if none is stored.

        Raises:
            ServiceUnavailable: if storage cannot be reached.
        """

    def read(self) -> tuple[bytes, str] | None:
        """The stored bytes and their version, or None if none is stored.

        Raises:
            ServiceUnavailable: if storage cannot be reached.
        """


class InlineBundle:
    """A bundle the host already holds as bytes (or None: nothing stored)."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data

    def version(self) -> str | None:
        return None if self.data is None else key_id_of(self.data)

    def read(self) -> tuple[bytes, str] | None:
        return None if self.data is None else (self.data, key_id_of(self.data))


class BundleCache:
    """A thread-safe LRU of parsed bundles by key id with their stored version.

    Bounded in entries: each holds a public key and an encryptor, about 0.3 MB at
    N=8192, so the default 64 entries stay under 20 MB.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: OrderedDict[str, tuple[str, PublicBundle]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str, version: str) -> PublicBundle | None:
        """The cached bundle if it was parsed from this version of the stored bytes."""
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key_id)
            return entry[1]

    def contains(self, key_id: str) -> bool:
        with self._lock:
            return key_id in self._entries

    def put(self, version: str, bundle: PublicBundle) -> None:
        with self._lock:
            self._entries[bundle.key_id] = (version, bundle)
            self._entries.move_to_end(bundle.key_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)

    def __len__(self) -> int:
        return len(self._entries)
