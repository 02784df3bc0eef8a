"""The fixed-SGD-batch arm of the batch-size study: the SGD batch (8 x 32), the steps and the lr of the b = 32
cells of configs/sweeps/batch_size.py, and
  * ghost BN with statistics over v in {2, 4, 8, 16} examples inside each device's 32 (v = 32 is plain BN): only
    the examples that BN's statistics cover change, which separates the statistics batch from optimization
    (step count, gradient noise, lr) -- the controlled arm;
  * LN, IN and no norm at b = 32 (the claim's order BN <= GN < LN < IN is stated at 32 only).

Run it with the study: python -m experiments.batch_size --preset=smoke|cpu|gpu --workdir=DIR.
"""
from configs.sweeps import _common

GHOST_SIZES = (2, 4, 8, 16)


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/fixed_batch.py")
  c = _common.base_sweep(preset, title="fixed SGD batch 8x32: ghost BN statistics batch; LN, IN, none")
  sizes = (2,) if preset == "smoke" else GHOST_SIZES
  c.variants = {f"ghostBN v={v}": {"norm": "ghost_batch", "norm_options": {"virtual_batch_size": v}}
                for v in sizes}
  norms = _common.norm_variants(preset)
  names = () if preset == "smoke" else ("LN", "IN", "none")
  c.variants.update({n: norms[n] for n in names})
  c.grid.variant = tuple(c.variants)
  c.grid.batch_size = (32,)  # per device
  c.extra_columns = ("norm_options.virtual_batch_size",)
  return c
