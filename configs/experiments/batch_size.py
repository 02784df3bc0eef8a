"""The batch_size study (experiments/batch_size.py): its sweeps, at the preset's budget.

Run:  python -m experiments.batch_size --preset=cpu --workdir=experiments/results/batch_size
Presets: those of configs/sweeps/ (smoke: a few steps per cell; cpu: the committed results; gpu: the paper's scale).
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/batch_size.py")
  c.sweeps = {"sweep": "batch_size", "fixed": "fixed_batch"}  # workdir subfolder -> configs/sweeps/<name>.py
  return c
