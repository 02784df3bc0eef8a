"""Quiet, race-safe helpers around tensorflow_datasets (tensorflow not needed).

TFDS prints banners to stdout, draws progress bars and logs absl warnings;
`quiet()` hides all of that. `prepare()` builds an embedded dataset once per
data dir, holding an exclusive file lock so two processes racing on the same
dir do not both generate it (TFDS itself also writes to a temporary dir and
renames it into place).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

FILE_FORMAT = "array_record"


@contextlib.contextmanager
def quiet(silence_stdout: bool = False) -> Iterator[Any]:
    """Import TFDS with progress bars off and absl logging raised to ERROR for the block.

    With `silence_stdout`, stdout is swallowed too (TFDS prints its
    "Downloading and preparing..." banner with `print`).
    """
    absl_logger = logging.getLogger("absl")
    old_level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        import tensorflow_datasets as tfds  # deferred: ~0.3 s import

        tfds.disable_progress_bar()
        if silence_stdout:
            with contextlib.redirect_stdout(io.StringIO()):
                yield tfds
        else:
            yield tfds
    finally:
        absl_logger.setLevel(old_level)


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive advisory lock (fcntl.flock) on `path` for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def prepare(builder_cls: type, data_dir: str):
    """Return a prepared `builder_cls` in `data_dir`, generating it first if needed.

    Cheap when already prepared (no lock taken). Otherwise waits for the lock,
    re-checks (another process may have finished meanwhile) and generates.
    """
    with quiet(silence_stdout=True):
        builder = builder_cls(data_dir=data_dir, file_format=FILE_FORMAT)
        if builder.is_prepared():
            return builder
        os.makedirs(data_dir, exist_ok=True)
        with file_lock(os.path.join(data_dir, f".{builder.name}.lock")):
            builder = builder_cls(data_dir=data_dir, file_format=FILE_FORMAT)
            if not builder.is_prepared():
                builder.download_and_prepare()
                # Fresh instance so its info is read back from disk.
                builder = builder_cls(data_dir=data_dir, file_format=FILE_FORMAT)
        return builder


def read_all(source, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read every record of a TFDS data source into stacked numpy arrays, one per key."""
    with quiet():
        records = source.__getitems__(range(len(source)))
    return {k: np.stack([np.asarray(r[k]) for r in records]) for k in keys}
