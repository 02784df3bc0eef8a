"""The budget pilot (experiments/pilot.py): configs/sweeps/pilot.py at each candidate budget in `epochs`.

Run:  python -m experiments.pilot --preset=cpu --workdir=experiments/results/pilot
Presets: smoke (two tiny budgets: machinery only), cpu (10, 20 and 40 epochs of mnist1d_noisy), gpu (the
ResNet-20 / CIFAR-10 protocol at 50, 100 and 200 epochs).
"""

from configs.experiments import _common

EPOCHS = {"smoke": (0.25, 0.5), "cpu": (10, 20, 40), "gpu": (50, 100, 200)}


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/pilot.py")
  c.sweep = "pilot"  # configs/sweeps/<name>.py
  c.epochs = EPOCHS[c.preset]
  return c
