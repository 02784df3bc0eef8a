"""Shared pieces of the Group Norm sweeps (batch_size, ghost_batch, group_count, remedies, sync_bn): the
paper's protocol scaled down, the model and data per preset, the norm variants.

Protocol (Wu & He 2018, sec. 4.1, scaled down), the same for every cell of every sweep:
  * 8 devices, bn_mode=local: BN's statistics over each device's b examples, gradients over the global batch
    8 b. devices='auto': 8 real devices where they exist, else one device runs the 8 devices' math
    (normlab.train.devices; a CPU-only machine needs no XLA_FLAGS);
  * batch units: `batch_size` is per device (b, in the grid, cell ids and reports), `global_batch` = 8 b;
  * SGD momentum 0.9, weight decay 1e-4, lr = BASE_LR x global_batch / 256 (BASE_LR fixed for b = 32 before the
    sweeps ran: the paper's 0.1), linear warmup over the first WARMUP_FRACTION of the steps, then cosine to 0;
  * the same number of epochs for every cell; the train loss logged in LOG_POINTS windows, which the studies'
    convergence rule reads (experiments/_study.py).
Data and model per preset:
  smoke  mnist1d (4000 train / 1000 test), ResNet-1D 1+1 blocks 8/16 channels, 1/4 epoch: machinery only.
  cpu    mnist1d_large (300,000 train / 10,000 test, mnist1d_noisy's noise: a training set the budget cannot
         memorise, so the training loss reaches a floor; normlab/data/mnist1d_builder.py says why), ResNet-1D
         1+1+1 blocks, 8/16/32 channels, EPOCHS["cpu"] epochs (the budget pilot's choice, experiments/pilot.py).
  gpu    ResNet-20 on CIFAR-10 (the paper's experiment at CIFAR scale), 8 GPUs, ~100 epochs.
"""
from __future__ import annotations

import ml_collections as mlc

from configs import common

PRESETS = ("smoke", "cpu", "gpu")
NUM_DEVICES = 8
BASE_LR = 0.1  # at per-device batch 32 (global 256): lr = BASE_LR * 8b / 256
REFERENCE_GLOBAL_BATCH = 256
PER_DEVICE_BATCHES = (2, 4, 8, 16, 32)
WARMUP_FRACTION = 0.05
LOG_POINTS = 20
SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "gpu": (0, 1, 2)}
# cpu: 4 epochs of mnist1d_large. The budget pilot (experiments/results/pilot: 1 and 2 epochs; epochs4_pilot: 4)
# found no candidate that meets its margin (every run's last-fifth change < 1%). At 2 epochs 11 of 12 runs met the
# plateau rule itself (1.0-2.2%); at 4 epochs every run did (0.8-1.6%), 4 of 12 by the margin (BN b=8 0.8-1.0%, GN 1.0-1.1%,
# LN 1.1-1.2%, IN 1.1-1.6%); the pilot cells' eval error moved 0.6-1.3 pts from 2 to 4 epochs (1.3-3.9 from 1 to 2). 4 epochs is chosen outside the pilot's rule, as 2 was at cdb2356: it is the largest
# candidate the pilot ran, and each cell is judged by the unchanged plateau rule. The reports at 2 epochs (cdb2356)
# and 1 epoch (budget_scale 0.5, e8bc615) stay in the reports' history: the verdicts against the budget.
EPOCHS = {"smoke": 0.25, "cpu": 4, "gpu": 100}
TRAIN_EXAMPLES = {"smoke": 4000, "cpu": 300000, "gpu": 50000}

BASES = {"smoke": "configs/resnet.py:cpu", "cpu": "configs/resnet.py:cpu", "gpu": "configs/resnet.py:gpu"}
DATASETS = {"smoke": "mnist1d", "cpu": "mnist1d_large", "gpu": "cifar10"}
MODELS = {
    "smoke": {"model": "resnet", "model_options": {"stage_sizes": (1, 1), "widths": (8, 16), "kernel_size": 5,
                                                   "stem_kernel": 5}},
    "cpu": {"model": "resnet", "model_options": {"stage_sizes": (1, 1, 1), "widths": (8, 16, 32),
                                                 "kernel_size": 5, "stem_kernel": 5}},
    "gpu": {"model": "resnet20", "model_options": {}},
}
# GN groups: the paper's G=32 on ResNet-50 leaves >= 2 channels per group in the narrowest layer
# (64 channels); ours keeps that ratio: narrowest width / 2. Fixed before any run (not tuned).
GN_GROUPS = {"smoke": 4, "cpu": 4, "gpu": 8}


def check_preset(arg: str, source: str) -> str:
  """`arg` if it is a preset; else a one-line UserError naming `source`, the close match and the presets."""
  return common.check_preset(arg or "smoke", PRESETS, source)


def gn(preset: str, groups: int | None = None) -> dict:
  return {"norm": "group", "norm_options": {"num_groups": groups or GN_GROUPS[preset]}}


def norm_variants(preset: str) -> dict:
  """The GN paper's norms (its Figure 1 definitions): LN = GN with one group (all of C x L), IN = GN with
  one channel per group, GN with GN_GROUPS[preset] groups; BN and no norm."""
  return {"BN": {"norm": "batch"}, "GN": gn(preset), "LN": gn(preset, 1), "IN": {"norm": "instance"},
          "none": {"norm": "none"}}


def base_sweep(preset: str, *, title: str, x_key: str = "batch_size", line_key: str = "variant") -> mlc.ConfigDict:
  """A sweep config with the base, the model and data for `preset` and the shared protocol."""
  c = mlc.ConfigDict()
  c.base = BASES[preset]
  c.title = title
  c.x_key = x_key
  c.line_key = line_key
  c.num_devices = NUM_DEVICES
  c.lr_scaling = "linear"
  c.reference_global_batch = REFERENCE_GLOBAL_BATCH
  c.warmup_fraction = WARMUP_FRACTION
  c.log_points = LOG_POINTS
  # The fixed-subset training loss at the end of every tenth (the studies' plateau rule,
  # experiments/_study.py: SUBSET_EXAMPLES); measured on one run at a time, so seeds are not vmapped.
  c.subset_loss_examples = 5000
  c.vmap_seeds = False
  c.checkpoints_per_cell = 2
  c.budget_examples = int(TRAIN_EXAMPLES[preset] * EPOCHS[preset])
  c.grid = mlc.ConfigDict()
  c.grid.seed = SEEDS[preset]
  o = c.overrides = mlc.ConfigDict()
  o.dataset = DATASETS[preset]
  o.model = MODELS[preset]["model"]
  if MODELS[preset]["model_options"]:
    o.model_options = mlc.ConfigDict(MODELS[preset]["model_options"])
  o.bn_mode = "local"
  o.num_devices = NUM_DEVICES
  o.devices = "auto"  # real devices where NUM_DEVICES exist, else emulated on one (the same math)
  o.optimizer = "momentum"
  o.learning_rate = BASE_LR
  o.momentum = 0.9
  o.nesterov = False
  o.weight_decay = 1e-4
  o.schedule = "warmup_cosine"
  o.eval_batch_size = 1000  # 10 batches of the 10,000 test examples (divides over 8 devices)
  return c
