"""The budget pilot of the Group Norm studies (experiments/pilot.py): their slowest cells on their protocol
(configs/sweeps/_common.py: 8 devices, local BN, lr 0.1 x 8b/256, warmup then cosine, 3 seeds):
GN, LN (GN with one group) and IN at per-device batch_size 32, and BN at 8 (a cell that missed convergence
once). The study runs this sweep at each candidate budget (its `epochs`), overriding `budget_examples`.
Presets: smoke (mnist1d, tiny), cpu (mnist1d_large, the studies' model), gpu (ResNet-20 on CIFAR-10).
"""
from configs.sweeps import _common

TRAIN_EXAMPLES = _common.TRAIN_EXAMPLES


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/pilot.py")
  c = _common.base_sweep(preset, title="budget pilot: the slowest cells of the Group Norm studies")
  norms = _common.norm_variants(preset)
  c.variants = {f"{n} b={b}": {**norms[n], "batch_size": b} for n, b in (("GN", 32), ("LN", 32), ("IN", 32),
                                                                         ("BN", 8))}
  c.grid.variant = tuple(c.variants)
  return c
