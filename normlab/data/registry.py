"""Registry of dataset names and the single entry point `load`.

`get_dataset_info` answers shape / class-count questions from this table
alone, so configs can be validated before any data is touched.
"""

from __future__ import annotations

import os
import re

from normlab.data import embedded, paths, standard
from normlab.errors import unknown
from normlab.data.dataset import Dataset, DatasetInfo

_ALL_DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("mnist1d", (40, 1), 10, ("train", "test"), "embedded", "normlab_mnist1d",
                    mean=(0.0,), std=(1.0,)),  # the mnist1d package already standardizes
        DatasetInfo("mnist1d_noisy", (40, 1), 10, ("train", "test"), "embedded", "normlab_mnist1d_noisy",
                    mean=(0.0,), std=(1.0,)),  # 15,000 / 10,000 examples, more noise (mnist1d_builder)
        DatasetInfo("mnist1d_large", (40, 1), 10, ("train", "test"), "embedded", "normlab_mnist1d_large",
                    mean=(0.0,), std=(1.0,)),  # 300,000 / 10,000 examples, mnist1d_noisy's noise
        DatasetInfo("digits", (8, 8, 1), 10, ("train", "test"), "embedded", "normlab_digits",
                    mean=(0.3054,), std=(0.3760,)),  # train split, values in [0, 1]
        DatasetInfo("mnist", (28, 28, 1), 10, ("train", "test"), "tfds", "mnist",
                    mean=(0.1307,), std=(0.3081,)),
        DatasetInfo("fashion_mnist", (28, 28, 1), 10, ("train", "test"), "tfds", "fashion_mnist",
                    mean=(0.2860,), std=(0.3530,)),
        DatasetInfo("cifar10", (32, 32, 3), 10, ("train", "test"), "tfds", "cifar10",
                    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
        DatasetInfo("cifar100", (32, 32, 3), 100, ("train", "test"), "tfds", "cifar100",
                    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
        DatasetInfo("imagenet2012", (224, 224, 3), 1000, ("train", "validation"), "tfds_lazy",
                    "imagenet2012", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                    build_flags="--manual_dir=<dir with ILSVRC2012_img_{train,val}.tar>"),
    ]
}
DATASET_NAMES: tuple[str, ...] = tuple(_ALL_DATASETS)

_LOADERS = {"embedded": embedded.load, "tfds": standard.load_in_memory, "tfds_lazy": standard.load_lazy}


def get_dataset_info(name: str) -> DatasetInfo:
    """Static facts (input_shape, num_classes, splits, ...) for `name`; loads nothing."""
    try:
        return _ALL_DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(unknown("dataset", name, _ALL_DATASETS)) from None


def _check_split(info: DatasetInfo, split: str) -> None:
    """Accept a split name or a TFDS slice of one ('train[:90%]'); reject other names."""
    base = re.split(r"[\[+]", split, maxsplit=1)[0] if isinstance(split, str) else None
    if base not in info.splits:
        raise ValueError(unknown("split", split, info.splits, prefix=f"dataset {info.name!r}"))


def load(name: str, split: str, *, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load one split of dataset `name` as a `Dataset`.

    `data_dir` defaults to $NORMLAB_DATA_DIR, else ~/.cache/normlab/tfds.
    Embedded datasets (mnist1d, digits) are generated there on first use;
    standard TFDS datasets must already be prepared as array_record there
    (else `DatasetNotPreparedError`, whose message gives the `tfds build`
    command). Nothing is ever downloaded.
    """
    info = get_dataset_info(name)
    _check_split(info, split)
    return _LOADERS[info.kind](info, split, paths.resolve_data_dir(data_dir))
