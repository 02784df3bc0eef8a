"""Small-batch remedies for BN vs Group Norm: batch renormalization (Ioffe 2017) and ghost BN (Hoffer et
al. 2017) at per-device batch 2 and 4, with BN and GN at the same batches and BN at 32 as references.

Run: python scripts/sweep.py --config=configs/sweeps/remedies.py:smoke --workdir=/tmp/sweep_rem
(the study: python -m experiments.remedies --preset=smoke --workdir=DIR).
Each variant sets its norm, options and batch (`<norm>/b=<batch>`): BRN uses normlab's fixed r_max=3,
d_max=5 (no warm-up schedule) and momentum 0.99; ghost BN at batch 32 with virtual batches of 2 or 4
separates the two things a small batch changes: BN's statistics (ghost: small) and the SGD batch
(ghost: large). Same epochs per cell, linear lr scaling, bn_mode local, one device.
Presets: smoke (BN, BRN, GN at b=4, ghost v=4 at b=32; 1 seed, 1/4 epoch: ~1 min), cpu (all variants x 2
seeds vmapped, 3 epochs: ~5 min on 2 idle cores), gpu (3 seeds, 30 epochs, wider model).
"""

from configs.sweeps import _common

EPOCHS = {"smoke": 0.25, "cpu": 3, "gpu": 30}


def variants(preset: str) -> dict:
  gn = {"norm": "group", "norm_options": {"num_groups": _common.GN_GROUPS[preset]}}
  v = {}
  for b in (2, 4):
    v[f"BN/b={b}"] = {"norm": "batch", "batch_size": b}
    v[f"BRN/b={b}"] = {"norm": "batch_renorm", "batch_size": b}
    v[f"GN/b={b}"] = {**gn, "batch_size": b}
  for vb in (2, 4):
    v[f"ghostBN/b=32,v={vb}"] = {"norm": "ghost_batch", "norm_options": {"virtual_batch_size": vb}, "batch_size": 32}
  v["BN/b=32"] = {"norm": "batch", "batch_size": 32}
  v["GN/b=32"] = {**gn, "batch_size": 32}
  return v


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/remedies.py")
  c = _common.base_sweep(preset, title="mnist1d ResNet-1D: small-batch remedies for BN", x_key="batch_size",
                         line_key="norm")
  c.variants = variants(preset)
  if preset == "smoke":
    c.grid.variant = ("BN/b=4", "BRN/b=4", "GN/b=4", "ghostBN/b=32,v=4")
    c.grid.seed = (0,)
  else:
    c.grid.variant = tuple(c.variants)
    c.grid.seed = (0, 1) if preset == "cpu" else (0, 1, 2)
  c.extra_columns = ("norm", "batch_size", "norm_options.virtual_batch_size")
  c.budget_examples = int(_common.MNIST1D_TRAIN * EPOCHS[preset])
  return c
