"""Group-count ablation for Group Norm (Wu & He 2018, Table 3): error vs number of groups G at a fixed
per-device batch of 32, from G=1 (= LN over C x L) to one channel per group (= IN), BN as reference.

Run: python scripts/sweep.py --config=configs/sweeps/group_count.py:smoke --workdir=/tmp/sweep_gc
(the study: python -m experiments.group_count --preset=smoke --workdir=DIR).
`G=k` sets norm_options.num_groups=k in every norm layer (k must divide every width); `IN` is GN with
group_size=1 (one channel per group in every layer). Presets (configs/sweeps/_common.py for the model):
  smoke  G in {1, 4}, IN x 1 seed, 1/4 epoch: < 1 min.
  cpu    G in {1, 2, 4, 8, 16}, IN, BN x 2 seeds (vmapped), 8 epochs (1000 steps): ~4 min on 2 idle cores.
  gpu    G in {1, 2, 4, 8, 16, 32}, IN, BN x 3 seeds, 30 epochs.
"""

from configs.sweeps import _common

GROUPS = {"smoke": (1, 4), "cpu": (1, 2, 4, 8, 16), "gpu": (1, 2, 4, 8, 16, 32)}
EPOCHS = {"smoke": 0.25, "cpu": 8, "gpu": 30}
BATCH = 32


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/group_count.py")
  c = _common.base_sweep(preset, title=f"mnist1d ResNet-1D, GN: eval error vs number of groups (batch {BATCH})",
                         x_key="variant")
  c.variants = {f"G={g}": {"norm": "group", "norm_options": {"num_groups": g}} for g in GROUPS[preset]}
  c.variants["IN"] = {"norm": "group", "norm_options": {"group_size": 1}}
  c.variants["BN"] = {"norm": "batch"}
  names = [f"G={g}" for g in GROUPS[preset]] + ["IN"] + ([] if preset == "smoke" else ["BN"])
  c.grid.variant = tuple(names)
  c.grid.seed = (0,) if preset == "smoke" else ((0, 1) if preset == "cpu" else (0, 1, 2))
  c.overrides.batch_size = BATCH
  c.extra_columns = ("norm", "norm_options.num_groups", "norm_options.group_size")
  c.budget_examples = int(_common.MNIST1D_TRAIN * EPOCHS[preset])
  return c
