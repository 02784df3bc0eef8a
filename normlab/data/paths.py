"""Where prepared datasets live on disk.

One place decides the TFDS data dir so every loader (and the error messages
that tell users how to prepare data) agrees on it.
"""

from __future__ import annotations

import os

ENV_VAR = "NORMLAB_DATA_DIR"
DEFAULT_DATA_DIR = os.path.join("~", ".cache", "normlab", "tfds")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """Return an absolute data dir: the argument, else $NORMLAB_DATA_DIR, else ~/.cache/normlab/tfds."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
