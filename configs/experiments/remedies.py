"""Small-batch remedies for BN (batch renormalization, ghost BN, SyncBN, frozen statistics) against GN.

Run:  python -m experiments.remedies --preset=smoke|cpu|gpu --workdir=DIR  (sweeps in configs/sweeps/)
"""
from configs.experiments import _common


def get_config(arg=None):
  return _common.sweep_study(arg, "configs/experiments/remedies.py", sweep="remedies")
