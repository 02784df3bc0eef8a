"""The group_count study (experiments/group_count.py): its sweeps, at the preset's budget.

Run:  python -m experiments.group_count --preset=cpu --workdir=experiments/results/group_count
Presets: those of configs/sweeps/ (smoke: a few steps per cell; cpu: the committed results; gpu: the paper's scale).
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/group_count.py")
  c.sweeps = {"sweep": "group_count"}  # workdir subfolder -> configs/sweeps/<name>.py
  return c
