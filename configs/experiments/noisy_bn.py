"""Noisy batch norm (Santurkar et al. 2018, section 2.1, Figure 2): no BN vs BN vs noisy BN.

Run:  python -m experiments.noisy_bn --preset=cpu --workdir=/tmp/noisy_bn
Each seed trains the same network (same init) with norm 'none', 'batch' and 'noisy_batch' (at the default
noise and at `weak_noise`) on normlab.train's one loop; every `measure_every` steps, quantiles of every norm layer's output on a
fixed training batch (train mode, the step's noise); at the end, test accuracy with clean recollected
running statistics and in train mode.
Presets: smoke (a 2-conv VGG, 30 steps: ~3 min on 2 loaded CPU cores), cpu (a 6-conv 1-D VGG on
mnist1d_noisy, 9,000 steps, 4 arms, 3 seeds: ~31 core-min estimated from pilots' CPU time, 49 min scaling
the 1,500-step run's 369 s wall), gpu (the paper's
VGG-11 on CIFAR-10, lr 0.1; needs a prepared TFDS dir, else fails at once naming the `tfds build` command).
Expected (paper): BN and noisy BN reach similar accuracy, both above and faster than no BN; noisy BN's
activation distributions drift far more.
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/noisy_bn.py")
  preset = c.preset
  c.norms = ("none", "batch", "noisy_batch")
  c.norm_options = mlc.ConfigDict()  # per norm name, e.g. {"noisy_batch": {"mean_range": 1.0, "std_range": 2.0}}
  # The second, weaker noise level (arm 'noisy_batch_weak', its own claim rows; None: not run), chosen before the
  # study's run: a quarter of the default's offsets, mean ~ U(-0.25, 0.25), std ~ U(1, 1.25). The layer's noise
  # std cannot go below 1 (normlab.variants.noisy_batch_norm), so this is about the weakest non-zero-mean,
  # non-unit-variance noise it can draw. Pilots (seed 0) saw 45.8% train accuracy at 1,500 steps (BN: 84.5%).
  c.weak_noise = mlc.ConfigDict({"mean_range": 0.25, "std_range": 1.25})
  c.seeds = (0, 1, 2)
  c.measure_every = 900
  c.dist_batch = 256        # the fixed batch of training examples the activation probes use
  c.dist_units = 3          # quantiles kept for this many units per layer (means/stds for all units)
  c.recollect_batches = 20  # training batches for the clean running statistics after training
  # Budget (chosen before the run, under the plateau rule of experiments/_study.py): 1500 -> 9000 steps. Pilots
  # (seed 0, the fixed-subset loss over the last two tenths): at 1500 plain 0.545 -> 0.534 (2.2%), BN 0.449 -> 0.438
  # (2.5%); at 3000 5.7% and 8.1%; at 6000 0.035 -> 0.022 and 0.049 -> 0.042 nats; at 9000 both fit the training
  # set (train accuracy 100%): plain 0.0018 -> 0.0016, BN 0.0134 -> 0.0122 nats (4x below PLATEAU_ABS).
  # Seed 1 at 9000: plain 0.0023 -> 0.0019, BN 0.0137 -> 0.0126 nats; test accuracy 71.7% vs 72.5% (seed 1).
  # Noisy BN at 9000: 0.896 -> 0.887 (1.0%, default noise), 0.707 -> 0.702 (0.6%, weak_noise); train accuracy
  # 66.5% and 74.5% (BN 100%). At 1500 both noise levels had already plateaued (0.2-0.5%).
  # measure_every 150 -> 900: the same 10 drift checkpoints.
  c.train = _common.lagging_task(preset, num_steps=9000, batch_size=128)
  if preset == "smoke":
    c.seeds = (0, 1)
    c.train = _common.lagging_task(preset, num_steps=30, batch_size=32)
    c.measure_every = 10
    c.dist_batch = 64
    c.recollect_batches = 2
  elif preset == "gpu":  # the paper's setting (needs a prepared TFDS cifar10)
    c.train = _common.lagging_task(preset, num_steps=10000, batch_size=128)
    c.measure_every = 500
  return c
