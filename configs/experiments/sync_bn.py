"""The sync_bn study (experiments/sync_bn.py): its sweeps, at the preset's budget.

Run:  python -m experiments.sync_bn --preset=cpu --workdir=experiments/results/sync_bn
Presets: those of configs/sweeps/ (smoke: a few steps per cell; cpu: the committed results; gpu: the paper's scale).
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/sync_bn.py")
  c.sweeps = {"sweep": "sync_bn"}  # workdir subfolder -> configs/sweeps/<name>.py
  return c
