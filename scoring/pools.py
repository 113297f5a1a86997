"""Masked encryptions of zero prepared off the request path, a bounded pool per key bundle.

Every single-record result gets one fresh masked encryption of zero under the caller's
public key (:meth:`scoring.kernels.single.CoefficientKernel.masked_zero`): about 1.4 ms of
SEAL work, most of a request's server time, and independent of the request. So the service
keeps up to ``depth`` of them per result ciphertext for the ``max_bundles`` most recently used
bundles, each used exactly once, and a background thread refills what requests take. A
request takes from its pool and computes inline only what the pool lacks (an empty pool
under load, or the first request of a bundle): always correct, only slower.

Memory: ``depth * max_bundles * products`` ciphertexts of 2*N*8 bytes (131 KB at N = 8192):
8.4 MB for the defaults (4 x 16, one product) on the tutorial model.

TenSEAL holds the GIL during each SEAL call, so the filler runs between requests rather
than beside them: it starts a masked zero only when no request is in progress
(:meth:`ZeroPools.busy`) and none ended in the last ``quiet_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator

import tenseal.sealapi as seal

from .keys import PublicBundle
from .kernels.single import CoefficientKernel

logger = logging.getLogger(__name__)


class ZeroPools:
    """Per-bundle pools of masked zeros for one kernel; thread-safe."""

    def __init__(self, kernel: CoefficientKernel, *, depth: int, max_bundles: int,
                 quiet_seconds: float = 0.0002) -> None:
        self.kernel = kernel
        self.depth = depth
        self.max_bundles = max(1, max_bundles)
        self.quiet_seconds = quiet_seconds
        self._pools: OrderedDict[str, tuple[PublicBundle, list[deque]]] = OrderedDict()
        self._work = threading.Condition()
        self._last_request = 0.0
        self._in_progress = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.prepared = self.inline = 0  # counters, for tests and the benchmark

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Around a request: the filler waits until no request is in progress."""
        with self._work:
            self._in_progress += 1
        try:
            yield
        finally:
            with self._work:
                self._in_progress -= 1
                self._last_request = time.monotonic()
                self._work.notify()

    def take(self, bundle: PublicBundle) -> list[seal.Ciphertext]:
        """One masked zero per result ciphertext for ``bundle``, never handed out twice."""
        products = self.kernel.layout.n_products
        taken: list[seal.Ciphertext | None] = [None] * products
        if self.depth:
            with self._work:
                entry = self._pools.get(bundle.key_id)
                if entry is None or entry[0] is not bundle:
                    entry = (bundle, [deque() for _ in range(products)])
                    self._pools[bundle.key_id] = entry
                    while len(self._pools) > self.max_bundles:
                        self._pools.popitem(last=False)
                self._pools.move_to_end(bundle.key_id)
                for product, queue in enumerate(entry[1]):
                    if queue:
                        taken[product] = queue.popleft()
                self._start()
                self._work.notify()
        for product, zero in enumerate(taken):
            if zero is None:
                taken[product] = self.kernel.masked_zero(bundle.encryptor, product)
                self.inline += 1
        return taken

    def discard(self, key_id: str) -> None:
        """Drop a bundle's pool (deleted or evicted from the bundle cache)."""
        with self._work:
            self._pools.pop(key_id, None)

    def size(self, key_id: str) -> int:
        """Masked zeros ready for ``key_id`` (all products)."""
        with self._work:
            entry = self._pools.get(key_id)
            return 0 if entry is None else sum(len(q) for q in entry[1])

    def close(self) -> None:
        with self._work:
            self._closed = True
            self._work.notify_all()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="zero-pools", daemon=True)
            self._thread.start()

    def _next_job(self) -> tuple[PublicBundle, int, deque] | None:
        for bundle, queues in reversed(self._pools.values()):  # most recently used first
            for product, queue in enumerate(queues):
                if len(queue) < self.depth:
                    return bundle, product, queue
        return None

    def _fill(self) -> None:
        while True:
            with self._work:
                while not self._closed and (self._in_progress or (job := self._next_job()) is None):
                    self._work.wait()
                if self._closed:
                    return
                idle = time.monotonic() - self._last_request
            if idle < self.quiet_seconds:  # a request just ended: another may follow at once
                time.sleep(self.quiet_seconds - idle)
                continue
            bundle, product, queue = job
            try:
                zero = self.kernel.masked_zero(bundle.encryptor, product)
            except Exception:  # noqa: BLE001 - the request path computes inline instead
                logger.exception("preparing a masked zero failed")
                time.sleep(1.0)
                continue
            with self._work:
                entry = self._pools.get(bundle.key_id)
                if entry is not None and entry[0] is bundle and entry[1][product] is queue and len(queue) < self.depth:
                    queue.append(zero)
                    self.prepared += 1
