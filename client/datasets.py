"""Datasets the client reads for users (the command line's MNIST folders) and the demo, tests
and benchmark share.

MNIST is read by path from a folder of the idx files (``MNIST_DIR``, e.g.
``../shared/data/mnist``), never copied into the project. Without it, scikit-learn's
bundled 8x8 digits stand in.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

MNIST_IMAGES = "t10k-images-idx3-ubyte"
MNIST_LABELS = "t10k-labels-idx1-ubyte"


def _open_idx(folder: Path, name: str) -> bytes:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            raw = candidate.read_bytes()
            if candidate.suffix != ".gz":
                return raw
            try:
                return gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                raise ValueError(f"{candidate}: not a complete gzip file ({exc})") from exc
    raise FileNotFoundError(f"{name}[.gz] not found in {folder}")


def load_mnist_test(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set: images as (10000, 784) floats in [0, 1] (pixels / 255, as the
    original tutorial scales them) and labels as integers.

    Raises:
        FileNotFoundError: if the idx files are not in ``folder``.
        ValueError: if a file is not in idx format.
    """
    folder = Path(folder)
    images = _open_idx(folder, MNIST_IMAGES)
    labels = _open_idx(folder, MNIST_LABELS)
    if len(images) < 16 or len(labels) < 8:
        raise ValueError(f"{folder}: the idx files are truncated")
    magic, count, rows, cols = struct.unpack_from(">IIII", images)
    if magic != 2051 or len(images) != 16 + count * rows * cols:
        raise ValueError("not an idx3 image file")
    label_magic, label_count = struct.unpack_from(">II", labels)
    if label_magic != 2049 or label_count != count or len(labels) != 8 + count:
        raise ValueError("not an idx1 label file matching the images")
    X = np.frombuffer(images, dtype=np.uint8, offset=16).reshape(count, rows * cols) / 255.0
    y = np.frombuffer(labels, dtype=np.uint8, offset=8).astype(np.int64)
    return X, y


def load_digits_scaled() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1] (they range 0..16)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def train_digits_model(train_rows: int = 1500):
    """A multinomial LogisticRegression fitted on the first rows of the scaled digits."""
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits_scaled()
    return LogisticRegression(max_iter=5000).fit(X[:train_rows], y[:train_rows])
