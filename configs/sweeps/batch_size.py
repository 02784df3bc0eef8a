"""Batch-size sweep for the Group Norm claim (Wu & He 2018, Fig. 1 / Table 2), on the paper's protocol
scaled down (configs/sweeps/_common.py): 8 devices with local BN, per-device batch b in {2, 4, 8, 16, 32},
global batch 8b, lr 0.1 x 8b/256, the same warmup fraction and epochs for every cell; BN and GN at every b
(LN, IN and no norm are run at b = 32 only, in configs/sweeps/fixed_batch.py: the claim orders them at 32).

Run the study (verdicts, report): python -m experiments.batch_size --preset=smoke|cpu|gpu --workdir=DIR.
`batch_size` in the grid is per device (b); the global batch is 8b (`global_batch` in results.csv).
Presets: smoke (BN, GN x b in {2, 32}, 1 seed, 1/4 epoch of mnist1d: ~1 min), cpu (BN, GN x 5 batches x 3
seeds on mnist1d_large, _common.EPOCHS["cpu"] epochs), gpu (ResNet-20 on CIFAR-10, 100 epochs, 3 seeds: needs CIFAR-10 prepared).
"""

from configs.sweeps import _common


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/batch_size.py")
  c = _common.base_sweep(preset, title="eval error vs per-device batch size (8 devices, local BN)")
  c.variants = _common.norm_variants(preset)
  c.grid.variant = ("BN", "GN")
  c.grid.batch_size = (2, 32) if preset == "smoke" else _common.PER_DEVICE_BATCHES
  return c
