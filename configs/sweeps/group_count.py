"""Group-count ablation for Group Norm (Wu & He 2018, Table 3): error vs number of groups G at per-device
batch 32 on the batch-size study's protocol (configs/sweeps/_common.py: 8 devices, lr 0.1, warmup, equal
epochs), from G=1 (= LN over C x L) to one channel per group (= IN, G = C), BN as reference.

Run the study: python -m experiments.group_count --preset=smoke|cpu|gpu --workdir=DIR.
`G=k` sets norm_options.num_groups=k in every norm layer (k must divide every width, so G stops at the
narrowest width: 8 for the cpu model's 8/16/32 channels, 16 for ResNet-20); `IN` is GN with group_size=1.
Presets: smoke (G in {1, 4}, IN, 1 seed, 1/4 epoch), cpu (G in {1, 2, 4, 8}, IN, BN x 3 seeds), gpu (CIFAR-10).
"""

from configs.sweeps import _common

GROUPS = {"smoke": (1, 4), "cpu": (1, 2, 4, 8), "gpu": (1, 2, 4, 8, 16)}


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/group_count.py")
  c = _common.base_sweep(preset, title="GN: eval error vs number of groups (8 devices x 32)", x_key="variant")
  c.variants = {f"G={g}": {"norm": "group", "norm_options": {"num_groups": g}} for g in GROUPS[preset]}
  c.variants["IN"] = {"norm": "group", "norm_options": {"group_size": 1}}
  c.variants["BN"] = {"norm": "batch"}
  names = [f"G={g}" for g in GROUPS[preset]] + ["IN"] + ([] if preset == "smoke" else ["BN"])
  c.grid.variant = tuple(names)
  c.grid.batch_size = (32,)  # per device
  c.extra_columns = ("norm", "norm_options.num_groups", "norm_options.group_size")
  return c
