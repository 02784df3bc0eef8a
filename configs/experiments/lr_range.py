"""The lr_range study (experiments/lr_range.py): its sweeps, at the preset's budget.

Run:  python -m experiments.lr_range --preset=cpu --workdir=experiments/results/lr_range
Presets: those of configs/sweeps/ (smoke: a few steps per cell; cpu: the committed results; gpu: the paper's scale).
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/lr_range.py")
  c.sweeps = {"sweep": "lr_range"}  # workdir subfolder -> configs/sweeps/<name>.py
  return c
