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

NUM_EXAMPLES = 1797
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


class NormlabDigits(tfds.core.GeneratorBasedBuilder):
    """sklearn digits as an array_record TFDS dataset (no download)."""

    name = "normlab_digits"
    VERSION = tfds.core.Version("1.0.0")
    # Explicit so TFDS need not resolve `normlab` (possibly a namespace package) itself.
    code_path = epath.Path(__file__)
    RELEASE_NOTES = {"1.0.0": "load_digits / 16, split by default_rng(0) permutation, 1437/360."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "x": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("x", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        splits = generate_arrays()
        return {name: self._generate_examples(*xy) for name, xy in splits.items()}

    def _generate_examples(self, x, y):
        for i in range(len(y)):
            yield i, {"x": x[i], "label": int(y[i])}
