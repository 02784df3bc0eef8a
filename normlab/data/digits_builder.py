"""TFDS builder for scikit-learn's handwritten digits (8x8, ships with sklearn).

A second tiny, offline image task (2-D, unlike MNIST-1D) for quick checks of
conv nets and normalization layers. `sklearn.datasets.load_digits` has 1797
images with values 0..16; we scale them to [0, 1].

Split (deterministic): `perm = np.random.default_rng(0).permutation(1797)`;
train = perm[:1437], test = perm[1437:] (360), each kept in `perm` order.

Features: `x` float32 (8, 8, 1) channels-last in [0, 1]; `label` ClassLabel(10).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from normlab.data.base_builder import ArraysBuilder

NUM_TRAIN = 1437
SPLIT_SEED = 0
NUM_CLASSES = 10


def generate_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load sklearn digits and split; returns {'train': (x, y), 'test': (x, y)}, x (N, 8, 8, 1) float32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (np.asarray(digits.images, np.float32) / 16.0)[..., None]
    y = np.asarray(digits.target, np.int64)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    train, test = perm[:NUM_TRAIN], perm[NUM_TRAIN:]
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


class NormlabDigits(ArraysBuilder):
    """sklearn digits as an array_record TFDS dataset (no download)."""

    name = "normlab_digits"
    VERSION = tfds.core.Version("1.0.0")
    # Explicit so TFDS need not resolve `normlab` (possibly a namespace package) itself.
    code_path = epath.Path(__file__)
    RELEASE_NOTES = {"1.0.0": "load_digits / 16, split by default_rng(0) permutation, 1437/360."}
    X_SHAPE = (8, 8, 1)
    NUM_CLASSES = NUM_CLASSES

    def _arrays(self):
        return generate_arrays()  # looked up at call time (tests count the calls)
