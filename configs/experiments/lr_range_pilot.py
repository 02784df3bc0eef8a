"""The budget pilot of the lr_range study: configs/sweeps/lr_range_pilot.py at each candidate budget in `epochs`.

Run:  python -m experiments.pilot --config=configs/experiments/lr_range_pilot.py:cpu --workdir=DIR
The choice rule is experiments/pilot.py's (committed before this pilot ran): the smallest candidate at which every
run passes the plateau rule with margin. Presets: smoke (machinery only), cpu (1/2 and 1 epoch of mnist1d_large:
150,000 and 300,000 examples per run, 3.3x and 6.7x the study's old 3 epochs of mnist1d_noisy), gpu (CIFAR-10).
"""
from configs.experiments import _common

EPOCHS = {"smoke": (0.25, 0.5), "cpu": (0.5, 1), "gpu": (30, 60)}


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/lr_range_pilot.py")
  c.sweep = "lr_range_pilot"  # configs/sweeps/<name>.py
  c.title = "Budget pilot of the lr_range study: epochs at which BN's cells plateau at every lr"
  c.epochs = EPOCHS[c.preset]
  return c
