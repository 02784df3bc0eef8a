"""The remedies study (experiments/remedies.py): its sweeps, at the preset's budget.

Run:  python -m experiments.remedies --preset=cpu --workdir=experiments/results/remedies
Presets: those of configs/sweeps/ (smoke: a few steps per cell; cpu: the committed results; gpu: the paper's scale).
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/remedies.py")
  c.sweeps = {"sweep": "remedies"}  # workdir subfolder -> configs/sweeps/<name>.py
  return c
