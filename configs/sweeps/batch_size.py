"""Batch-size sweep for the Group Norm claim (Wu & He 2018, Fig. 1/Table 2): error vs per-device batch, BN
vs GN/LN/IN/none.

Run: python scripts/sweep.py --config=configs/sweeps/batch_size.py:smoke --workdir=/tmp/sweep_bs
(the study with its verdicts: python -m experiments.batch_size --preset=smoke --workdir=DIR).
Every cell trains a ResNet-1D on mnist1d (configs/sweeps/_common.py) with `bn_mode="local"` on one device
(BN statistics over the per-device batch, as in the paper), the same number of epochs per batch size,
and the learning rate scaled linearly with the batch (lr 0.1 per 32 examples, the paper's rule).
Presets:
  smoke  BN, GN x batch {4, 32} x 1 seed, 1/4 epoch: ~1 min on 2 CPU cores (machinery only).
  cpu    BN, GN, LN, IN, none x batch {2, 4, 8, 16, 32, 64} x 2 seeds (vmapped), 3 epochs: ~10 min on 2
         idle cores (16/32/64-channel model).
  gpu    same grid, 3 seeds, 30 epochs, 32/64/128 channels.
"""

from configs.sweeps import _common

BATCH_SIZES = (2, 4, 8, 16, 32, 64)
EPOCHS = {"smoke": 0.25, "cpu": 3, "gpu": 30}


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/batch_size.py")
  c = _common.base_sweep(preset, title="mnist1d ResNet-1D: eval error vs per-device batch size (bn_mode=local)")
  c.variants = _common.norm_variants(preset)
  if preset == "smoke":
    c.grid.variant = ("BN", "GN")
    c.grid.batch_size = (4, 32)
    c.grid.seed = (0,)
  else:
    c.grid.variant = ("BN", "GN", "LN", "IN", "none")
    c.grid.batch_size = BATCH_SIZES
    c.grid.seed = (0, 1) if preset == "cpu" else (0, 1, 2)
  c.budget_examples = int(_common.MNIST1D_TRAIN * EPOCHS[preset])
  return c
