"""Noisy batch norm (Santurkar et al. 2018, section 2.1, Figure 2): no BN vs BN vs noisy BN.

Run:  python -m experiments.noisy_bn --preset=cpu --workdir=/tmp/noisy_bn
Each seed trains the same network (same init) with norm 'none', 'batch' and 'noisy_batch' on
normlab.train's step; every `measure_every` steps: test accuracy (eval mode) and quantiles of every
norm layer's output on a fixed training batch (train mode, the step's noise).
Presets: smoke (a 2-conv VGG, 30 steps: ~30 s on 2 CPU cores), cpu (a 4-conv VGG on 8x8 digits,
500 steps, 2 seeds: ~3 min on 2 idle cores), gpu (the paper's VGG-11 on CIFAR-10, needs a prepared
TFDS dir; untested here).
Expected (paper): BN and noisy BN reach similar accuracy, both faster than no BN; noisy BN's activation
distributions drift far more.
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/noisy_bn.py")
  preset = c.preset
  c.norms = ("none", "batch", "noisy_batch")
  c.norm_options = mlc.ConfigDict()  # per norm name, e.g. {"noisy_batch": {"mean_range": 1.0, "std_range": 2.0}}
  c.seeds = (0, 1)
  c.measure_every = 25
  c.dist_batch = 256  # the fixed batch of training examples the activation probes use
  c.dist_units = 3    # quantiles kept for this many units per layer (means/stds for all units)
  c.threshold = 0.9   # "speed": steps until the 20-step average train accuracy reaches this
  c.train = _common.vgg_train(preset)
  if preset == "smoke":
    c.seeds = (0,)
    c.measure_every = 10
    c.dist_batch = 64
  elif preset == "gpu":  # the paper's setting (needs a prepared TFDS cifar10)
    c.seeds = (0, 1, 2)
    c.measure_every = 250
  return c
