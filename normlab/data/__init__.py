"""normlab data layer: offline datasets as numpy arrays plus deterministic batching.

    ds = load("mnist1d", "train")               # Dataset(x float32 (4000, 40, 1), y int32)
    batch = get_batch(ds, batch_indices(len(ds), 128, seed=0, step=s))
    for b in eval_batches(test_ds, 256): ...     # padded, with b["mask"]

Embedded datasets (mnist1d, digits) are generated on first use into the data
dir (arg, else $NORMLAB_DATA_DIR, else ~/.cache/normlab/tfds); standard TFDS
datasets must be prepared there as array_record. Nothing is downloaded.
"""

from normlab.data.augment import random_crop_flip
from normlab.data.batching import (
    batch_indices,
    eval_batches,
    get_batch,
    normalize,
    num_eval_batches,
    steps_per_epoch,
    to_float,
    train_batch,
)
from normlab.data.dataset import Dataset, DatasetInfo
from normlab.data.errors import DatasetNotPreparedError
from normlab.data.paths import resolve_data_dir
from normlab.data.registry import DATASET_NAMES, get_dataset_info, load

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "batch_indices",
    "eval_batches",
    "get_batch",
    "get_dataset_info",
    "load",
    "normalize",
    "num_eval_batches",
    "random_crop_flip",
    "resolve_data_dir",
    "steps_per_epoch",
    "to_float",
    "train_batch",
]
