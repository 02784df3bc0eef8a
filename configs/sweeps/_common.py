"""Shared pieces of the Group Norm sweeps (batch_size, group_count, remedies, sync_bn): model per preset,
the norm variants, the training settings every cell shares.

Every sweep trains a ResNet-1D on mnist1d (`model="resnet"` with explicit options, so the sweep does
not move when configs/resnet.py's presets change): basic blocks, kernel 5, widths doubling per stage.
  smoke  1+1 blocks, 8/16 channels: seconds per cell, numbers meaningless.
  cpu    1+1+1 blocks, 16/32/64 channels.
  gpu    2+2+2 blocks, 32/64/128 channels (the resnet1d of normlab.models).
Training (Wu & He 2018, sec. 4.1, scaled down): SGD momentum 0.9, lr 0.1 per 32 examples (linear
scaling with the batch), weight decay 5e-4, cosine schedule, the same number of epochs per cell.
"""
from __future__ import annotations

import ml_collections as mlc

PRESETS = ("smoke", "cpu", "gpu")
BASE = "configs/resnet.py:cpu"
MNIST1D_TRAIN = 4000  # examples in mnist1d's train split

MODELS = {
    "smoke": {"stage_sizes": (1, 1), "widths": (8, 16)},
    "cpu": {"stage_sizes": (1, 1, 1), "widths": (16, 32, 64)},
    "gpu": {"stage_sizes": (2, 2, 2), "widths": (32, 64, 128)},
}
# GN groups: the paper's G=32 on ResNet-50 leaves >= 2 channels per group in the narrowest layer
# (64 channels); ours keeps that ratio: narrowest width / 2. Fixed before any run (not tuned).
GN_GROUPS = {"smoke": 4, "cpu": 8, "gpu": 16}


def check_preset(arg: str, source: str) -> str:
  if arg not in PRESETS:
    raise ValueError(f"unknown preset {arg!r} for {source}; valid presets: {', '.join(PRESETS)}")
  return arg


def norm_variants(preset: str) -> dict:
  """The GN paper's norms (its Figure 1 definitions): LN = GN with one group (all of C x L), IN = GN with
  one channel per group, GN with GN_GROUPS[preset] groups; BN and no norm."""
  return {
      "BN": {"norm": "batch"},
      "GN": {"norm": "group", "norm_options": {"num_groups": GN_GROUPS[preset]}},
      "LN": {"norm": "group", "norm_options": {"num_groups": 1}},
      "IN": {"norm": "instance"},
      "none": {"norm": "none"},
  }


def base_sweep(preset: str, *, title: str, x_key: str = "batch_size", line_key: str = "variant") -> mlc.ConfigDict:
  """A sweep config with the base, the model for `preset` and the shared training overrides."""
  c = mlc.ConfigDict()
  c.base = BASE
  c.title = title
  c.x_key = x_key
  c.line_key = line_key
  c.lr_scaling = "linear"
  c.reference_batch_size = 32
  c.vmap_seeds = preset != "smoke"
  # XLA:CPU runs the vmapped (grouped) convs slower than separate runs above ~16 examples per device
  # (batch 64: 0.6 vmapped steps/s of 2 seeds); on a GPU vmap all of them.
  c.vmap_seeds_max_batch = 16 if preset == "cpu" else 0
  c.checkpoints_per_cell = 1  # the final one: cells are short, resume restarts them
  c.grid = mlc.ConfigDict()
  o = c.overrides = mlc.ConfigDict()
  o.model = "resnet"
  o.model_options = mlc.ConfigDict({**MODELS[preset], "kernel_size": 5, "stem_kernel": 5})
  o.bn_mode = "local"
  o.num_devices = 1
  o.optimizer = "momentum"
  o.learning_rate = 0.1
  o.momentum = 0.9
  o.weight_decay = 5e-4
  o.schedule = "cosine"
  o.log_every = 100
  o.eval_batch_size = 1000  # the whole mnist1d test split in one batch (divides over 8 devices)
  return c
