"""Small-batch remedies for BN against Group Norm, on the batch-size study's protocol (configs/sweeps/_common.py:
8 devices, local BN, lr 0.1 x 8b/256, equal epochs): at per-device batch b in {2, 4}, BN, batch renormalization
with Ioffe's (2017) ramp (r_max 1 -> 3 and d_max 0 -> 5 over the first RAMP_FRACTION of the steps, momentum
0.99), SyncBN (statistics over all 8b examples: bn_mode=sync) and GN; BN at b=32 as the reference.
(Ghost BN against BN at the matched SGD batch is the batch-size study's controlled arm: configs/sweeps/ghost_batch.py.)

Run the study: python -m experiments.remedies --preset=smoke|cpu|gpu --workdir=DIR.
Presets: smoke (b=2: BN, BRN, SyncBN, GN; 1 seed, 1/4 epoch), cpu (all variants x 3 seeds), gpu (CIFAR-10).
"""

from configs.sweeps import _common

RAMP_FRACTION = 0.25


def variants(preset: str, budget: int) -> dict:
  v = {}  # batch_size: per device (b); each cell's steps are budget // global batch (8b)
  for b in (2, 4):
    ramp = max(1, int(RAMP_FRACTION * (budget // (_common.NUM_DEVICES * b))))
    v[f"BN/b={b}"] = {"norm": "batch", "batch_size": b}
    v[f"BRN/b={b}"] = {"norm": "batch_renorm", "norm_options": {"ramp_steps": ramp}, "batch_size": b}
    v[f"SyncBN/b={b}"] = {"norm": "batch", "bn_mode": "sync", "batch_size": b}
    v[f"GN/b={b}"] = {**_common.gn(preset), "batch_size": b}
  v["BN/b=32"] = {"norm": "batch", "batch_size": 32}
  return v


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/remedies.py")
  c = _common.base_sweep(preset, title="small-batch remedies for BN (8 devices)", x_key="batch_size",
                         line_key="norm")
  c.variants = variants(preset, c.budget_examples)
  c.grid.variant = (("BN/b=2", "BRN/b=2", "SyncBN/b=2", "GN/b=2") if preset == "smoke" else tuple(c.variants))
  c.extra_columns = ("norm", "bn_mode")
  return c
