"""Which path a job takes, how records stream into full batches, and where the client runs.

Batches are in coefficient lanes: one ciphertext per sent feature carries up to N records
(8,192), so a batch costs the same whatever its record count. Records therefore stream into
full batches across the caller's chunk boundaries (:func:`full_batches`), and only the last,
partial batch of a job is smaller.

When to batch: :func:`batch_pays_off` compares the measured cost of single requests with one
batch (``make bench``'s figures, README "Measured"); ``ScoringClient(batch_threshold=...)``
overrides it.

Where the client runs: inside a daemonic process (a multiprocessing or Spark worker) or a
Spark task, worker processes cost CPU the executor already uses and a progress bar lands
in executor logs, so :func:`in_executor` turns both off by default.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator

import numpy as np

from scoring.encoding import LaneEncoding

# From `make bench` on a 2-core machine (README, "Measured"), rounded: per record on the single
# path, encrypt + HTTP + decrypt end to end, and its bytes up and down; per sent feature of a
# batch, its share of a full batch's end-to-end time, and one seeded ciphertext.
SINGLE_RECORD_SECONDS = 0.005
SINGLE_RECORD_BYTES = 193_000
BATCH_COLUMN_SECONDS = 0.0015
BATCH_COLUMN_BYTES = 62_000
ASSUMED_BANDWIDTH = 12.5e6  # bytes per second (100 Mbit/s)
PARALLEL_MIN_COLUMNS = 1024  # below this, starting worker processes costs more than it saves


def batch_pays_off(records: int, encoding: LaneEncoding | None, *, bandwidth: float = ASSUMED_BANDWIDTH) -> bool:
    """Whether batches cost less than ``records`` single requests (time plus transfer)."""
    if encoding is None or records < 2:
        return False
    single = records * (SINGLE_RECORD_SECONDS + SINGLE_RECORD_BYTES / bandwidth)
    batches = math.ceil(records / encoding.max_records)
    batched = batches * len(encoding.features) * (BATCH_COLUMN_SECONDS + BATCH_COLUMN_BYTES / bandwidth)
    return batched < single


def in_executor() -> bool:
    """Whether this process is a daemonic worker or runs a Spark task."""
    if multiprocessing.current_process().daemon:
        return True
    pyspark = sys.modules.get("pyspark")
    if pyspark is not None:
        try:
            return pyspark.TaskContext.get() is not None
        except Exception:  # noqa: BLE001 - an unusual pyspark: not a task we can see
            return False
    return False


def default_processes() -> int:
    """Encryption processes: one per core, or none beside this one inside an executor."""
    return 1 if in_executor() else max(1, os.cpu_count() or 1)


def as_records(chunk) -> np.ndarray:
    """A chunk of records (array-like or DataFrame) as a 2-D float64 array."""
    return np.atleast_2d(np.asarray(chunk, dtype=np.float64))


def full_batches(chunks: Iterable, size: int, sizes: list[int]) -> Iterator[np.ndarray]:
    """Records from ``chunks`` in blocks of ``size`` across chunk boundaries; then the rest.

    Appends each chunk's record count to ``sizes`` as it is read, so the caller can cut the
    scores back into the same chunks. Blocks within one chunk are views of it; only a block
    that spans chunks is copied.
    """
    pending: list[np.ndarray] = []  # the pieces of a block that spans chunks
    pending_count = 0
    for chunk in chunks:
        records = as_records(chunk)
        sizes.append(len(records))
        start = 0
        if pending:
            need = size - pending_count
            if len(records) < need:
                pending.append(records)
                pending_count += len(records)
                continue
            yield np.concatenate(pending + [records[:need]])
            pending, pending_count, start = [], 0, need
        while len(records) - start >= size:
            yield records[start:start + size]
            start += size
        if start < len(records):
            pending.append(records[start:])
            pending_count += len(records) - start
    if pending:
        yield np.concatenate(pending)


def cut(scores: list[np.ndarray], sizes: list[int], outputs: int, *, done: bool) -> Iterator[np.ndarray]:
    """Yield the leading chunks whose scores are all in ``scores`` (consumed from both lists).

    ``sizes`` holds the record count of each chunk read so far, in order; ``done`` says no
    more scores will come (then every chunk read is complete).
    """
    while sizes and (done or sizes[0] <= sum(len(s) for s in scores)):
        need = sizes.pop(0)
        taken: list[np.ndarray] = []
        while need and scores:
            head = scores[0]
            if len(head) <= need:
                taken.append(scores.pop(0))
                need -= len(head)
            else:
                taken.append(head[:need])
                scores[0], need = head[need:], 0
        yield taken[0] if len(taken) == 1 else np.concatenate(taken) if taken else np.empty((0, outputs))