"""Santurkar et al. 2018: the range of learning rates that train, with and without BN.

Run:  python -m experiments.lr_range --preset=smoke|cpu|gpu --workdir=DIR  (sweeps in configs/sweeps/)
"""
from configs.experiments import _common


def get_config(arg=None):
  return _common.sweep_study(arg, "configs/experiments/lr_range.py", sweep="lr_range")
