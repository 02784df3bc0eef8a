"""SyncBN vs local BN at small per-device batch on 8 devices, at the paper's lr (configs/sweeps/_common.py:
lr 0.1 x 8b/256, warmup, equal epochs): the same global batch 8b, BN statistics over the global batch
(bn_mode=sync) or over each device's b examples (bn_mode=local); GN as a batch-independent reference.

Run the study: python -m experiments.sync_bn --preset=smoke|cpu|gpu --workdir=DIR. `batch_size` is per device
(b); the global batch is 8b.
Presets: smoke (b=2, BN sync/local, 1 seed, 1/4 epoch), cpu (b in {2, 4, 8}, BN sync/local + GN, 3 seeds),
gpu (CIFAR-10, 8 GPUs).
"""

from configs.sweeps import _common


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/sync_bn.py")
  c = _common.base_sweep(preset, title="SyncBN vs local BN (8 devices)", x_key="batch_size", line_key="variant")
  c.variants = {"BN sync": {"norm": "batch", "bn_mode": "sync"}, "BN local": {"norm": "batch", "bn_mode": "local"},
                "GN": _common.gn(preset)}
  c.grid.variant = ("BN sync", "BN local") if preset == "smoke" else ("BN sync", "BN local", "GN")
  c.grid.batch_size = (2,) if preset == "smoke" else (2, 4, 8)  # per device
  c.extra_columns = ("norm", "bn_mode")
  return c
