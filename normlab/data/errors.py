"""Exceptions of the data layer."""


class DatasetNotPreparedError(ValueError):
    """A standard TFDS dataset is missing from the data dir (or not in array_record format).

    We never download: the one-line message says which `tfds build` command
    prepares it.
    """
