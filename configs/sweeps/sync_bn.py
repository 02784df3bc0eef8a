"""SyncBN vs local BN at small per-device batch on 8 devices (Wu & He 2018 sec. 4.1 use local BN; Peng et
al. 2018 / MegDet argue for synchronized statistics): same global batch 8 x b, BN statistics over the
global batch (bn_mode=sync) or over each device's b examples (bn_mode=local); GN as a batch-independent
reference.

Needs 8 devices: on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=8 before jax is imported
(experiments/sync_bn.py sets it). Run the study: python -m experiments.sync_bn --preset=smoke --workdir=DIR.
`batch_size` is the global batch; lr = 0.1 x global / 32. Presets: smoke (b in {2} per device, BN
sync/local, 1 seed, 1/2 epoch: ~1 min), cpu (b in {2, 4, 8}, BN sync/local + GN, 2 seeds vmapped,
4 epochs: ~6 min on 2 idle cores), gpu (3 seeds, 30 epochs, wider model).
"""

from configs.sweeps import _common

NUM_DEVICES = 8
EPOCHS = {"smoke": 0.5, "cpu": 4, "gpu": 30}


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/sync_bn.py")
  c = _common.base_sweep(preset, title=f"mnist1d ResNet-1D on {NUM_DEVICES} devices: SyncBN vs local BN",
                         x_key="per_device_batch", line_key="variant")
  gn = {"norm": "group", "norm_options": {"num_groups": _common.GN_GROUPS[preset]}}
  c.variants = {"BN sync": {"norm": "batch", "bn_mode": "sync"}, "BN local": {"norm": "batch", "bn_mode": "local"},
                "GN": gn}
  c.grid.variant = ("BN sync", "BN local") if preset == "smoke" else ("BN sync", "BN local", "GN")
  per_device = (2,) if preset == "smoke" else (2, 4, 8)
  c.grid.batch_size = tuple(NUM_DEVICES * b for b in per_device)
  c.grid.seed = (0,) if preset == "smoke" else ((0, 1) if preset == "cpu" else (0, 1, 2))
  c.overrides.num_devices = NUM_DEVICES
  c.x_key = "batch_size"
  c.extra_columns = ("norm", "bn_mode")
  c.budget_examples = int(_common.MNIST1D_TRAIN * EPOCHS[preset])
  return c
