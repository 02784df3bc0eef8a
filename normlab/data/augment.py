"""Simple image augmentation (random crop with padding + horizontal flip), pure numpy.

The standard CIFAR recipe. Randomness comes from
`np.random.default_rng([seed, step, 1])`, so it is as reproducible as the
batch order itself (the trailing 1 keeps it apart from the permutation stream).
Vectorized: one pad, one gather of all crops, one `where` for flips.
"""

from __future__ import annotations

import numpy as np

_STREAM_TAG = 1


def random_crop_flip(x: np.ndarray, seed: int, step: int, *, pad: int = 4, flip: bool = True) -> np.ndarray:
    """Zero-pad each (B, H, W, C) image by `pad`, crop a random HxW window, flip half horizontally."""
    if x.ndim != 4:
        raise ValueError(f"random_crop_flip expects (B, H, W, C) images, got shape {x.shape}")
    b, h, w, _ = x.shape
    rng = np.random.default_rng([seed, step, _STREAM_TAG])
    out = x
    if pad > 0:
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        oy = rng.integers(0, 2 * pad + 1, size=b)
        ox = rng.integers(0, 2 * pad + 1, size=b)
        rows = (oy[:, None] + np.arange(h))[:, :, None]  # (B, H, 1)
        cols = (ox[:, None] + np.arange(w))[:, None, :]  # (B, 1, W)
        out = padded[np.arange(b)[:, None, None], rows, cols]  # (B, H, W, C)
    if flip:
        flips = rng.random(b) < 0.5
        out = np.where(flips[:, None, None, None], out[:, :, ::-1], out)
    return out
