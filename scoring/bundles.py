"""Where the service gets a caller's key bundle, and the bounded cache of parsed bundles.

A host hands the service a :class:`BundleSource`: the Azure Functions app wraps the
``BlobClient`` its SDK-type blob input binding provides; the container wraps its own blob
client; tests and inline requests wrap bytes.

A key id is the SHA-256 of the bundle's own bytes, so a cached bundle can never be stale:
only its deletion matters. The cache therefore uses a parsed bundle without asking storage
for ``revalidate_seconds`` after it was last confirmed, then asks once whether it still
exists. A bundle deleted from storage by any means is refused (404) within that bound on
every instance; the instance that serves a DELETE forgets it at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from .keys import PublicBundle


class BundleSource(Protocol):
    """The stored bundle for one key id, as a host reaches it."""

    def exists(self) -> bool:
        """Whether a bundle is stored under the key id.

        Raises:
            ServiceUnavailable: if storage cannot be reached.
        """

    def read(self) -> bytes | None:
        """The stored bytes, or None if none are stored.

        Raises:
            ServiceUnavailable: if storage cannot be reached.
            KeysRejected: if the stored object is far larger than any bundle.
        """


class InlineBundle:
    """A bundle the host already holds as bytes (or None: nothing stored)."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data

    def exists(self) -> bool:
        return self.data is not None

    def read(self) -> bytes | None:
        return self.data


class BundleCache:
    """A thread-safe LRU of parsed bundles by key id, with when each was last confirmed.

    Bounded in entries: each holds a public key and an encryptor, about 0.3 MB at N=8192
    (``make bench`` measures it), so the default 64 entries stay under 20 MB.
    """

    def __init__(self, max_entries: int, revalidate_seconds: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max(1, max_entries)
        self.revalidate_seconds = revalidate_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, PublicBundle]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str) -> tuple[PublicBundle, bool] | None:
        """The cached bundle and whether it was confirmed within the bound, or None."""
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                return None
            self._entries.move_to_end(key_id)
            confirmed, bundle = entry
            return bundle, self._clock() - confirmed < self.revalidate_seconds

    def put(self, bundle: PublicBundle) -> list[str]:
        """Cache (or confirm) a bundle now; return the key ids evicted to make room."""
        with self._lock:
            self._entries[bundle.key_id] = (self._clock(), bundle)
            self._entries.move_to_end(bundle.key_id)
            evicted = []
            while len(self._entries) > self.max_entries:
                evicted.append(self._entries.popitem(last=False)[0])
            return evicted

    def contains(self, key_id: str) -> bool:
        with self._lock:
            return key_id in self._entries

    def discard(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)

    def __len__(self) -> int:
        return len(self._entries)
