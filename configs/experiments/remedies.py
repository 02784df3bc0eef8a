"""Small-batch remedies for BN (batch renormalization, SyncBN) against GN at per-device batches 2 and 4.

Run:  python -m experiments.remedies --preset=smoke|cpu|gpu --workdir=DIR  (sweeps in configs/sweeps/)
"""
from configs.experiments import _common


def get_config(arg=None):
  return _common.sweep_study(arg, "configs/experiments/remedies.py", sweep="remedies")
