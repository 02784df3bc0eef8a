"""The budget pilot (experiments/pilot.py): configs/sweeps/pilot.py at each candidate budget in `epochs`.

Run:  python -m experiments.pilot --preset=cpu --workdir=experiments/results/pilot
Presets: smoke (two tiny budgets: machinery only), cpu (1 and 2 epochs of mnist1d_large: 300,000 and 600,000
examples per run, 2x and 4x the 10 epochs of mnist1d_noisy the studies ran before; 4 epochs ran as a third
candidate, `--config.epochs=(4,)`, at a919425: experiments/results/epochs4_pilot), gpu (the ResNet-20 / CIFAR-10 protocol at
50, 100 and 200 epochs). The pilot at defd5c8 tried 10, 20 and 40 epochs of mnist1d_noisy: none passed, because
the nets memorised its 15,000 training examples.
"""

from configs.experiments import _common

EPOCHS = {"smoke": (0.25, 0.5), "cpu": (1, 2), "gpu": (50, 100, 200)}


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/pilot.py")
  c.sweep = "pilot"  # configs/sweeps/<name>.py (its TRAIN_EXAMPLES: an epoch per preset)
  c.title = "Budget pilot of the Group Norm studies: epochs at which the slowest cells plateau"
  c.epochs = EPOCHS[c.preset]
  return c
