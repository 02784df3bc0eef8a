"""SyncBN (statistics over all 8 devices) against local BN and GN at small per-device batches.

Run:  python -m experiments.sync_bn --preset=smoke|cpu|gpu --workdir=DIR  (sweeps in configs/sweeps/)
"""
from configs.experiments import _common


def get_config(arg=None):
  return _common.sweep_study(arg, "configs/experiments/sync_bn.py", sweep="sync_bn")
