"""Readers for standard TFDS datasets the user prepared as array_record.

We never download: `tfds build` needs tensorflow and internet, so it is run
once elsewhere, and here a missing dataset raises `DatasetNotPreparedError`
with the exact command. Small datasets (mnist, cifar) are read whole into
numpy, images kept uint8; imagenet2012 gets a lazy per-batch reader.
"""

from __future__ import annotations

import numpy as np

from normlab.data import lazy, tfds_utils
from normlab.data.dataset import Dataset, DatasetInfo
from normlab.data.errors import DatasetNotPreparedError


def build_command(info: DatasetInfo, data_dir: str) -> str:
    flags = f" {info.build_flags}" if info.build_flags else ""
    return f"tfds build {info.tfds_name} --file_format=array_record --data_dir={data_dir}{flags}"


def open_source(info: DatasetInfo, split: str, data_dir: str):
    """Return the TFDS random-access data source for `split`, or raise DatasetNotPreparedError."""
    with tfds_utils.quiet() as tfds:
        builder = tfds.builder(info.tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            raise DatasetNotPreparedError(
                f"dataset {info.name!r} is not prepared in {data_dir}: run "
                f"`{build_command(info, data_dir)}` on a machine with internet "
                f"(needs tensorflow), or set NORMLAB_DATA_DIR"
            )
        file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
        if file_format != tfds_utils.FILE_FORMAT:
            raise DatasetNotPreparedError(
                f"dataset {info.name!r} in {builder.data_dir} is in {file_format} format, "
                f"not array_record: rebuild with `{build_command(info, data_dir)}`"
            )
        return builder.as_data_source(split=split)


def load_in_memory(info: DatasetInfo, split: str, data_dir: str) -> Dataset:
    """Read a whole split into numpy: x uint8 (N, H, W, C), y int32."""
    arrays = tfds_utils.read_all(open_source(info, split, data_dir), ["image", "label"])
    x = arrays["image"].astype(np.uint8, copy=False)
    y = arrays["label"].astype(np.int32)
    return Dataset(info.name, x, y, info.num_classes, info.mean, info.std)


def load_lazy(info: DatasetInfo, split: str, data_dir: str) -> Dataset:
    """Wrap a split in a per-batch reader: x decodes/resizes to input_shape on demand."""
    reader = lazy.BatchReader(open_source(info, split, data_dir), image_size=info.input_shape[0])
    return Dataset(info.name, reader.images, reader.labels, info.num_classes, info.mean, info.std)
