"""Simple image augmentation (random crop with padding + horizontal flip), pure numpy.

The standard CIFAR recipe. Randomness comes from
`np.random.default_rng([seed, step, 1])`, so it is as reproducible as the
batch order itself (the trailing 1 keeps it apart from the permutation stream).
Vectorized: one pad and a single gather producing all crops (flips folded
into the column indices).
"""

from __future__ import annotations

import numpy as np

_STREAM_TAG = 1


def random_crop_flip(x: np.ndarray, seed: int, step: int, *, pad: int = 4, flip: bool = True) -> np.ndarray:
    """Zero-pad each (B, H, W, C) image by `pad`, crop a random HxW window, flip half horizontally.

    Works on any dtype (cheapest on uint8, before conversion to float).
    """
    if x.ndim != 4:
        raise ValueError(f"random_crop_flip expects (B, H, W, C) images, got shape {x.shape}")
    b, h, w, c = x.shape
    rng = np.random.default_rng([seed, step, _STREAM_TAG])
    ph, pw = h + 2 * pad, w + 2 * pad
    padded = np.zeros((b, ph, pw, c), x.dtype)
    padded[:, pad : pad + h, pad : pad + w] = x
    oy = rng.integers(0, 2 * pad + 1, size=b)
    ox = rng.integers(0, 2 * pad + 1, size=b)
    flips = rng.random(b) < 0.5 if flip else np.zeros(b, bool)
    col_order = np.where(flips[:, None], np.arange(w)[::-1], np.arange(w))  # (B, W), flip folded in
    rows = oy[:, None] + np.arange(h)  # (B, H)
    cols = ox[:, None] + col_order  # (B, W)
    flat = (np.arange(b)[:, None, None] * ph + rows[:, :, None]) * pw + cols[:, None, :]  # (B, H, W)
    return np.take(padded.reshape(b * ph * pw, c), flat, axis=0)  # faster than [flat]
