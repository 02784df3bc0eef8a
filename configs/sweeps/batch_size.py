"""Batch-size sweep for the Group Norm claim (Wu & He 2018): error vs per-device batch, BN vs GN/LN/IN.

Run: python scripts/sweep.py --config=configs/sweeps/batch_size.py:smoke --workdir=/tmp/sweep_bs
Every cell trains the base config with `bn_mode="local"` (BN statistics over the per-device batch, as
in the paper), the same number of training examples (epochs) per batch size, and the learning rate
scaled linearly with the batch (the paper's rule, reference batch 32).
Presets: smoke (2 norms x 2 batch sizes x 1 seed, a few minutes on 2 CPU cores), cpu (5 norms x 6 batch
sizes x 2 seeds on mnist1d, about an hour on 2 cores), gpu (3 seeds, longer budget).
"""
import ml_collections as mlc

PRESETS = ("smoke", "cpu", "gpu")


def get_config(arg: str = "smoke") -> mlc.ConfigDict:
  if arg not in PRESETS:
    raise ValueError(f"unknown preset {arg!r} for configs/sweeps/batch_size.py; valid presets: {', '.join(PRESETS)}")
  c = mlc.ConfigDict()
  c.title = "mnist1d ResNet-1D: eval error vs per-device batch size"
  c.x_key = "batch_size"
  c.line_key = "norm"
  c.lr_scaling = "linear"
  c.reference_batch_size = 32
  c.vmap_seeds = False
  c.grid = mlc.ConfigDict()
  c.overrides = mlc.ConfigDict()
  c.overrides.bn_mode = "local"
  if arg == "smoke":
    c.base = "configs/resnet.py:smoke"
    c.grid.norm = ("batch", "group")
    c.grid.batch_size = (4, 32)
    c.grid.seed = (0,)
    c.budget_examples = 1280
  elif arg == "cpu":
    c.base = "configs/resnet.py:cpu"
    c.grid.norm = ("batch", "group", "layer", "instance", "none")
    c.grid.batch_size = (2, 4, 8, 16, 32, 64)
    c.grid.seed = (0, 1)
    c.budget_examples = 4000 * 20  # 20 epochs of mnist1d
  else:
    c.base = "configs/resnet.py:gpu"
    c.grid.norm = ("batch", "group", "layer", "instance", "none")
    c.grid.batch_size = (2, 4, 8, 16, 32, 64)
    c.grid.seed = (0, 1, 2)
    c.budget_examples = 4000 * 60
  return c
