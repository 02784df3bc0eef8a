"""The in-memory `Dataset` handed to training code, and static `DatasetInfo`.

`Dataset.x` is channels-last, indexed by an integer index array:
  * float32 for the embedded datasets (mnist1d, digits);
  * uint8 0..255 for standard image datasets (cifar, mnist, ...): 4x less
    memory; `get_batch` converts each batch to float32 in [0, 1];
  * a lazy random-access reader (see `lazy.py`) for imagenet2012, which does
    not fit in memory: it decodes only the requested batch.
`Dataset.y` is int32 (or the matching lazy label column).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What configs need to know about a dataset without loading it."""

    name: str
    input_shape: tuple[int, ...]  # per example, channels-last
    num_classes: int
    splits: tuple[str, ...]
    kind: str  # "embedded" (our TFDS builder), "tfds" (in memory) or "tfds_lazy" (per-batch reads)
    tfds_name: str  # name of the TFDS builder / directory under data_dir
    mean: tuple[float, ...] | None = None  # per channel, on the [0, 1] scale
    std: tuple[float, ...] | None = None
    build_flags: str = ""  # extra `tfds build` flags for the not-prepared message


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One split: x (N, *input_shape), y (N,) int32. numpy arrays given to it are made read-only."""

    name: str
    x: Any  # np.ndarray (float32 or uint8) or a lazy column with __getitem__(indices)
    y: Any  # np.ndarray int32 or a lazy column
    num_classes: int
    mean: tuple[float, ...] | None = None  # per channel, for optional normalization
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")
        for arr in (self.x, self.y):
            if isinstance(arr, np.ndarray):
                arr.setflags(write=False)  # frozen means the arrays too

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_examples(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])
