"""The shared TFDS builder of our embedded datasets (mnist1d, digits): arrays made locally, no download.

A subclass sets `name`, `VERSION`, `RELEASE_NOTES`, `code_path`, `X_SHAPE` and `NUM_CLASSES`, and
returns its splits from `_arrays()`: {split: (x (N, *X_SHAPE) float32, y (N,) int)}. The dataset's
description is the docstring of the subclass's module.
Features: `x` float32 `X_SHAPE` (channels-last), `label` ClassLabel(NUM_CLASSES); examples are stored
in the order `_arrays()` gives (TFDS shuffling disabled).
"""

from __future__ import annotations

import abc
import sys

import numpy as np
import tensorflow_datasets as tfds


class ArraysBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the embedded-data builders (abstract: TFDS registers only the subclasses)."""

    X_SHAPE: tuple[int, ...] = ()
    NUM_CLASSES: int = 10

    @abc.abstractmethod
    def _arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{split name: (x, y)}."""

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=sys.modules[type(self).__module__].__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "x": tfds.features.Tensor(shape=tuple(self.X_SHAPE), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=self.NUM_CLASSES),
                }
            ),
            supervised_keys=("x", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {name: self._generate_examples(*xy) for name, xy in self._arrays().items()}

    def _generate_examples(self, x, y):
        for i in range(len(y)):
            yield i, {"x": x[i], "label": int(y[i])}
