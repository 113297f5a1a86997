"""The client's batch path: encrypt feature-major in parallel, stream batches, decrypt.

Records are split into batches of at most N/2 (one slot each). A batch's feature columns
are encrypted by worker processes (``spawn``: TenSEAL holds the GIL, and a fork after SEAL
objects exist can deadlock), one share of the columns each, while the previous batch is
on the wire; results are decrypted as they come back. Workers receive the secret key
through their start-up arguments (a pipe to a child process on this machine); it never
leaves the machine.

When to batch: :func:`bulk_pays_off` compares the measured cost of N single requests with
one batch (see the README's figures); ``ScoringClient(bulk_threshold=...)`` overrides it.
"""

from __future__ import annotations

import concurrent.futures as futures
import math
import multiprocessing
import os
from collections.abc import Callable, Iterator

import numpy as np

from scoring.bulk import BulkEncoding

from .keys import SecretKeys

# From `make bench` on a 2-core machine (README, "Measured"), rounded: per record on the single
# path, encrypt + whole server request + decrypt (2.5 + 4.4 + 1.3 ms) and 197 KB on the wire; per
# feature column on the batch path, a 4,096-record batch's end-to-end time over its 717 columns
# (1.8 s / 717) and one 66 KB ciphertext.
SINGLE_RECORD_SECONDS = 0.008
SINGLE_RECORD_BYTES = 197_000
BULK_COLUMN_SECONDS = 0.0025
BULK_COLUMN_BYTES = 66_000
ASSUMED_BANDWIDTH = 12.5e6  # bytes per second (100 Mbit/s)
PARALLEL_MIN_COLUMNS = 1024  # below this, starting worker processes costs more than it saves
# (once started, the workers are kept for the client's life and used for every batch)


def bulk_pays_off(records: int, encoding: BulkEncoding | None, *, bandwidth: float = ASSUMED_BANDWIDTH) -> bool:
    """Whether one batch costs less than ``records`` single requests (time plus transfer)."""
    if encoding is None or records < 2:
        return False
    single = records * (SINGLE_RECORD_SECONDS + SINGLE_RECORD_BYTES / bandwidth)
    batches = math.ceil(records / encoding.max_records)
    bulk = batches * len(encoding.features) * (BULK_COLUMN_SECONDS + BULK_COLUMN_BYTES / bandwidth)
    return bulk < single


class ColumnEncryptor:
    """Encrypts batches feature-major, in worker processes when the work is large enough."""

    def __init__(self, keys: SecretKeys, encoding: BulkEncoding, processes: int | None) -> None:
        self.keys = keys
        self.encoding = encoding
        self.processes = max(1, processes or os.cpu_count() or 1)
        self._pool: futures.ProcessPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    def encrypt(self, X: np.ndarray, *, parallel: bool) -> tuple[bytes, ...]:
        if not parallel or self.processes == 1:
            return self.keys.encrypt_columns(self.encoding, X)
        columns = self.encoding.columns(X)
        shares = np.array_split(np.arange(len(columns)), self.processes)
        pool = self._start()
        parts = pool.map(_encrypt_share, [columns[share] for share in shares if share.size])
        return tuple(blob for part in parts for blob in part)

    def _start(self) -> futures.ProcessPoolExecutor:
        if self._pool is None:
            rt = self.keys.runtime
            self._pool = futures.ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                initargs=(self.keys.parameters, rt.save(self.keys.secret_key), self.encoding.input_scale))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


_worker: dict = {}


def _init_worker(parameters, secret_blob: bytes, scale: float) -> None:
    import tenseal.sealapi as seal

    from scoring.ckks import runtime

    rt = runtime(parameters)
    _worker.update(rt=rt, scale=scale,
                   encryptor=seal.Encryptor(rt.context, rt.load(seal.SecretKey(), secret_blob)))


def _encrypt_share(columns: np.ndarray) -> list[bytes]:
    rt, encryptor, scale = _worker["rt"], _worker["encryptor"], _worker["scale"]
    return [rt.save_canonical(encryptor.encrypt_symmetric(rt.encode_slots(column, scale))) for column in columns]


def batches(X: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(X), size):
        yield X[start:start + size]


def stream(X: np.ndarray, encryptor: ColumnEncryptor, send: Callable[[tuple[bytes, ...], int], tuple[bytes, ...]],
           decrypt: Callable[[tuple[bytes, ...], int], np.ndarray], *, progress: bool = True) -> np.ndarray:
    """Score ``X`` batch by batch: batch k is on the wire while batch k+1 is encrypted."""
    from tqdm.auto import tqdm

    size = encryptor.encoding.max_records
    parallel = encryptor.started or len(encryptor.encoding.features) * math.ceil(len(X) / size) >= PARALLEL_MIN_COLUMNS
    results: list[np.ndarray] = []
    with futures.ThreadPoolExecutor(1) as wire, tqdm(total=len(X), unit="record", disable=not progress,
                                                      desc="encrypted scoring") as bar:
        pending = None
        for batch in batches(X, size):
            ciphertexts = encryptor.encrypt(batch, parallel=parallel)
            if pending is not None:
                results.append(_finish(pending, decrypt, bar))
            pending = (wire.submit(send, ciphertexts, len(batch)), len(batch))
        results.append(_finish(pending, decrypt, bar))
    return np.vstack(results)


def _finish(pending, decrypt, bar) -> np.ndarray:
    future, records = pending
    scores = decrypt(future.result(), records)
    bar.update(records)
    return scores
