"""Wu & He 2018, Table 3: GN's error against its number of groups at per-device batch size 32.

Run:  python -m experiments.group_count --preset=smoke|cpu|gpu --workdir=DIR  (sweeps in configs/sweeps/)
"""
from configs.experiments import _common


def get_config(arg=None):
  return _common.sweep_study(arg, "configs/experiments/group_count.py", sweep="group_count")
