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


# mnist1d_noisy: the same generator with 5x the examples (15,000 train / 10,000 test, so one test-error
# point is >= 3 standard errors at errors up to ~40%) and 5x the i.i.d. noise of the defaults (0.1 vs 0.02),
# so that a ResNet-1D stays far from 0% error at convergence and norms can differ. Chosen before the
# batch-size sweeps ran: a ResNet-1D (16/32/64) without normalization reached 22.7% test error after 20
# epochs at batch 256 (train loss 0.50), against ~1-3% on the default data.
NOISY_ARGS = {"num_samples": 25000, "train_split": 0.6, "iid_noise_scale": 0.1, "seed": 43}
# mnist1d_large: mnist1d_noisy's generator settings with 20x the training examples (300,000 train / 10,000 test).
# The Group Norm studies' pilot at defd5c8 found that the ResNet-1D keeps fitting the 15,000 noisy training
# examples (its fixed-subset training loss fell 1-8% over the last fifth at every budget up to 40 epochs): a
# training set the budget visits at most a few times cannot be memorised, so its training loss can reach a floor.
LARGE_ARGS = {**NOISY_ARGS, "num_samples": 310000, "train_split": 30 / 31, "seed": 44}


def generate_arrays(**overrides) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Generate MNIST-1D; returns {'train': (x, y), 'test': (x, y)} with x (N, 40, 1) float32.

    `overrides` replace fields of `mnist1d.data.get_dataset_args()` (none: the package's defaults).
    `make_dataset` reseeds the global numpy/python RNGs; we restore them.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for key, value in overrides.items():
        setattr(args, key, value)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
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
    ARGS: dict = {}  # overrides of the package's dataset arguments (none: its defaults)

    def _arrays(self):
        return generate_arrays(**self.ARGS)  # looked up at call time (tests count the calls)


class NormlabMnist1dNoisy(NormlabMnist1d):
    """MNIST-1D with more noise and more examples (NOISY_ARGS): 15,000 train / 10,000 test."""

    name = "normlab_mnist1d_noisy"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "mnist1d.make_dataset with NOISY_ARGS."}
    ARGS = NOISY_ARGS


class NormlabMnist1dLarge(NormlabMnist1d):
    """MNIST-1D with mnist1d_noisy's noise and 20x its training examples (LARGE_ARGS): 300,000 / 10,000."""

    name = "normlab_mnist1d_large"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "mnist1d.make_dataset with LARGE_ARGS."}
    ARGS = LARGE_ARGS
