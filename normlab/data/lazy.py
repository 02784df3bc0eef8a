"""Random-access, per-batch reader for datasets too large for memory (ImageNet).

The TFDS array_record data source supports `__getitems__(indices)`; we read
only the requested batch, decode its JPEGs (PIL, via TFDS) and resize each to
a fixed square: shorter side to `size / 0.875`, then a center crop of `size`.
That is eval-style preprocessing, also used for training for now (no
random-resized-crop yet). Decoding is per example by nature; keep batches on
the host pipeline, not in the step function.

`x` and `y` columns share one reader with a one-batch cache, so
`get_batch` (which indexes x then y with the same indices) decodes once.
"""

from __future__ import annotations

import numpy as np

from normlab.data import tfds_utils

RESIZE_RATIO = 0.875


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to round(size / 0.875) and center-crop to (size, size, 3) uint8."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image).squeeze()).convert("RGB")
    w, h = img.size
    short = round(size / RESIZE_RATIO)
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), np.uint8)


class BatchReader:
    """Reads (images, labels) for an index array from a TFDS data source."""

    def __init__(self, source, image_size: int, image_key: str = "image", label_key: str = "label"):
        self.source = source
        self.image_size = image_size
        self.image_key = image_key
        self.label_key = label_key
        self._cache_key: bytes | None = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self.images = _Column(self, 0, (image_size, image_size, 3), np.uint8)
        self.labels = _Column(self, 1, (), np.int32)

    def __len__(self) -> int:
        return len(self.source)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        key = indices.tobytes()
        if key != self._cache_key:
            with tfds_utils.quiet():
                records = self.source.__getitems__(indices.tolist())
            images = np.stack([resize_center_crop(r[self.image_key], self.image_size) for r in records])
            labels = np.asarray([r[self.label_key] for r in records], np.int32)
            self._cache_key, self._cache = key, (images, labels)
        return self._cache


class _Column:
    """Array-like view (len, shape, dtype, fancy indexing) of one field of a BatchReader."""

    def __init__(self, reader: BatchReader, which: int, item_shape: tuple[int, ...], dtype):
        self._reader, self._which = reader, which
        self.dtype = np.dtype(dtype)
        self._item_shape = item_shape

    def __len__(self) -> int:
        return len(self._reader)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) + self._item_shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, indices) -> np.ndarray:
        if isinstance(indices, slice):
            indices = np.arange(len(self))[indices]
        indices = np.asarray(indices, np.int64)
        indices = np.where(indices < 0, indices + len(self), indices)
        if indices.ndim != 1:
            raise IndexError("lazy columns take a 1-D index array or a slice")
        return self._reader.read(indices)[self._which]
