"""Learning-rate range per norm (Santurkar et al. 2018, Fig. 1: VGG with and without BN at lr 0.1 and 0.5; seed 000:
BN "可以调大学习率", lets one raise the learning rate): test accuracy and stability against the learning rate.

Run the study (verdicts, report): python -m experiments.lr_range --preset=smoke|cpu|gpu --workdir=DIR.
Every cell: one norm (BN, GN, LN = GN with one group, none), one peak lr from LEARNING_RATES, one seed; SGD
momentum 0.9, weight decay 5e-4, cosine to 0 without warmup (a warmup would itself let the plain net take a
larger lr), the same number of epochs at every lr; one device. A run whose loss goes non-finite stops there
and is recorded as diverged.
Presets: smoke (VGG-2 on mnist1d, BN and none x lr {0.1, 1}, 1 seed, 1/4 epoch: ~1 min), cpu (VGG-11 at 1/8
width, 1-D convs, on mnist1d_large, 4 norms x 5 lrs x 3 seeds, EPOCHS["cpu"] epochs), gpu (VGG-11 on
CIFAR-10, 3 seeds: the paper's setting; needs CIFAR-10 prepared).
Convergence: the studies' plateau rule on the fixed-subset training loss (experiments/_study.py). The cpu preset
moved from 3 epochs of mnist1d_noisy (15,000 examples: the old per-step rule left BN's cells at lr >= 0.1
unconverged, and the fixed-subset loss falls while a net memorises them) to mnist1d_large (300,000 examples),
at the budget of its pilot (configs/sweeps/lr_range_pilot.py, experiments/pilot.py).
"""
import ml_collections as mlc

from configs.sweeps import _common

LEARNING_RATES = {"smoke": (0.1, 1.0), "cpu": (0.01, 0.03, 0.1, 0.3, 1.0), "gpu": (0.01, 0.03, 0.1, 0.3, 0.5, 1.0)}
# cpu: 1 epoch, the larger candidate of the pilot (experiments/results/lr_range_pilot: no candidate met its margin;
# BN's last-fifth fall grows with the lr under the cosine anneal, 10-14% at lr 1).
EPOCHS = {"smoke": 0.25, "cpu": 1, "gpu": 60}
TRAIN_EXAMPLES = {"smoke": 4000, "cpu": 300000, "gpu": 50000}
DATASETS = {"smoke": "mnist1d", "cpu": "mnist1d_large", "gpu": "cifar10"}
BASES = {"smoke": "configs/vgg.py:smoke", "cpu": "configs/vgg.py:cpu", "gpu": "configs/vgg.py:gpu"}
GN_GROUPS = {"smoke": 4, "cpu": 4, "gpu": 32}  # divides every width (cpu: 8..64 channels; gpu: 64..512)


def get_config(arg: str = "smoke"):
  preset = _common.check_preset(arg, "configs/sweeps/lr_range.py")
  c = mlc.ConfigDict()
  c.base = BASES[preset]
  c.title = "test error vs peak learning rate per norm"
  c.x_key = "learning_rate"
  c.line_key = "variant"
  c.lr_scaling = "none"
  c.log_points = 20
  c.checkpoints_per_cell = 1
  c.subset_loss_examples = 5000  # the plateau rule's fixed-subset loss (measured one run at a time)
  c.budget_examples = int(TRAIN_EXAMPLES[preset] * EPOCHS[preset])
  c.variants = {"BN": {"norm": "batch"}, "GN": {"norm": "group", "norm_options": {"num_groups": GN_GROUPS[preset]}},
                "LN": {"norm": "group", "norm_options": {"num_groups": 1}}, "none": {"norm": "none"}}
  c.grid = mlc.ConfigDict()
  c.grid.variant = ("BN", "none") if preset == "smoke" else ("BN", "GN", "LN", "none")
  c.grid.learning_rate = LEARNING_RATES[preset]
  c.grid.seed = (0,) if preset == "smoke" else (0, 1, 2)
  o = c.overrides = mlc.ConfigDict()
  o.dataset = DATASETS[preset]
  o.num_devices = 1
  o.optimizer = "momentum"
  o.momentum = 0.9
  o.weight_decay = 5e-4
  o.schedule = "cosine"
  o.eval_batch_size = 1000
  c.extra_columns = ("norm",)
  return c
