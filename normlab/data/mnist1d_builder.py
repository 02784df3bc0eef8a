"""TFDS builder for MNIST-1D, generated locally by the `mnist1d` package.

MNIST-1D (Greydanus 2020) is a tiny 1-D signal classification task that
still separates model families, so normalization experiments run in seconds.
We call `mnist1d.data.make_dataset` with the package's default arguments
(seed 42: 5000 examples, 80/20 split -> 4000 train / 1000 test, 40 steps,
10 classes). That path never touches the network (`get_dataset` may try to
download a pickle; we do not use it). The package standardizes the signal
(global mean 0, std 1); we keep those values.

Features: `x` float32 (40, 1), a channels-last 1-D signal a conv net consumes
as (N, 40, 1) and an MLP can flatten; `label` ClassLabel(10). Examples are
stored in the package's order (TFDS shuffling disabled).
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from normlab.data.base_builder import ArraysBuilder

SEQ_LEN = 40
NUM_CLASSES = 10


def generate_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Generate MNIST-1D; returns {'train': (x, y), 'test': (x, y)} with x (N, 40, 1) float32.

    `make_dataset` reseeds the global numpy/python RNGs; we restore them.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)

    def arrays(x, y):
        return np.asarray(x, np.float32)[..., None], np.asarray(y, np.int64)

    return {"train": arrays(data["x"], data["y"]), "test": arrays(data["x_test"], data["y_test"])}


class NormlabMnist1d(ArraysBuilder):
    """MNIST-1D as an array_record TFDS dataset (no download)."""

    name = "normlab_mnist1d"
    VERSION = tfds.core.Version("1.0.0")
    # Explicit so TFDS need not resolve `normlab` (possibly a namespace package) itself.
    code_path = epath.Path(__file__)
    RELEASE_NOTES = {"1.0.0": "mnist1d.make_dataset with default args (seed 42)."}
    X_SHAPE = (SEQ_LEN, 1)
    NUM_CLASSES = NUM_CLASSES

    def _arrays(self):
        return generate_arrays()  # looked up at call time (tests count the calls)
