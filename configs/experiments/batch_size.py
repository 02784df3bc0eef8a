"""Wu & He 2018, Fig. 1 / Table 2: error against the per-device batch size, BN vs GN (LN, IN at 32),
and the fixed-SGD-batch arm (ghost BN statistics over v examples).

Run:  python -m experiments.batch_size --preset=smoke|cpu|gpu --workdir=DIR  (sweeps in configs/sweeps/)
"""
from configs.experiments import _common


def get_config(arg=None):
  return _common.sweep_study(arg, "configs/experiments/batch_size.py", sweep="batch_size", fixed="fixed_batch")
