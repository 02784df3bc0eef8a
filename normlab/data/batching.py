"""Deterministic, stateless batching: the batch at step s depends only on (seed, s).

Epoch e = step // steps_per_epoch visits the permutation
`np.random.default_rng([seed, e]).permutation(n)` in consecutive chunks of
`batch_size`, dropping the remainder, so resuming from a checkpointed step is
exact and needs no iterator state. Evaluation instead walks the split in
order and pads the last batch to full size with a 0/1 `mask`, so every
example counts exactly once and jitted shapes never change.
All hot paths are numpy fancy indexing (no per-example Python loops).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from normlab.data import augment as augment_lib
from normlab.data.dataset import Dataset


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the remainder is dropped); raises if there are none."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if batch_size > num_examples:
        raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} examples of the split")
    return num_examples // batch_size


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
    perm.setflags(write=False)  # shared by the cache
    return perm


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices (int64, shape (batch_size,)) of the training batch at global `step`."""
    if seed < 0 or step < 0:
        raise ValueError(f"seed and step must be non-negative, got seed={seed} step={step}")
    per_epoch = steps_per_epoch(num_examples, batch_size)
    epoch, within = divmod(int(step), per_epoch)
    perm = _epoch_permutation(int(num_examples), int(seed), epoch)
    return perm[within * batch_size : (within + 1) * batch_size].copy()


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 [0, 1]; float input is returned as float32."""
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out *= np.float32(1.0 / 255.0)
        return out
    return x.astype(np.float32, copy=False)


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
    """Per-channel (x - mean) / std over the last axis (x on the [0, 1] scale)."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return (x - mean) / std


def _finish(ds: Dataset, x: np.ndarray, normalize_inputs: bool) -> np.ndarray:
    """Raw batch -> float32, optionally normalized; one fused scale+shift for uint8."""
    if not normalize_inputs:
        return to_float(x)
    if ds.mean is None or ds.std is None:
        raise ValueError(f"dataset {ds.name!r} has no mean/std for normalization")
    mean = np.asarray(ds.mean, np.float32)
    std = np.asarray(ds.std, np.float32)
    out = x.astype(np.float32)  # always a fresh copy, safe to modify in place
    out *= (1.0 / 255.0 / std) if x.dtype == np.uint8 else (1.0 / std)
    out -= mean / std
    return out


def get_batch(ds: Dataset, indices: np.ndarray, *, normalize_inputs: bool = False) -> dict[str, np.ndarray]:
    """{'x': float32 (B, *input_shape), 'y': int32 (B,)} for `indices`.

    uint8 images become float32 in [0, 1]. With `normalize_inputs`, the
    dataset's per-channel mean/std are applied as well.
    """
    indices = np.asarray(indices)
    x = _finish(ds, np.asarray(ds.x[indices]), normalize_inputs)
    return {"x": x, "y": np.asarray(ds.y[indices], np.int32)}


def train_batch(
    ds: Dataset,
    batch_size: int,
    seed: int,
    step: int,
    *,
    augment: bool = False,
    normalize_inputs: bool = False,
) -> dict[str, np.ndarray]:
    """The training batch at `step`: indices, optional crop+flip (on raw pixels), float, optional normalization."""
    indices = batch_indices(len(ds), batch_size, seed, step)
    x = np.asarray(ds.x[indices])
    if augment:
        x = augment_lib.random_crop_flip(x, seed, step)
    return {"x": _finish(ds, x, normalize_inputs), "y": np.asarray(ds.y[indices], np.int32)}


def num_eval_batches(num_examples: int, batch_size: int) -> int:
    """Batches `eval_batches` yields (the last one may be padded)."""
    return -(-num_examples // batch_size)


def eval_batches(
    ds: Dataset, batch_size: int, *, normalize_inputs: bool = False
) -> Iterator[dict[str, np.ndarray]]:
    """Yield every example once, in order, as {'x', 'y', 'mask'} batches of exactly `batch_size`.

    The final partial batch is padded by repeating index 0; its padded rows
    have mask 0.0 (real rows 1.0), so metrics are `sum(metric * mask) / sum(mask)`.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(ds)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        indices = np.zeros(batch_size, np.int64)
        indices[: stop - start] = np.arange(start, stop)
        batch = get_batch(ds, indices, normalize_inputs=normalize_inputs)
        mask = np.zeros(batch_size, np.float32)
        mask[: stop - start] = 1.0
        batch["mask"] = mask
        yield batch
