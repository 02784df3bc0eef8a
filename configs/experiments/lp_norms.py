"""l_p batch norm (Santurkar et al. 2018, section 3.3): BN vs l1 / l2 / l_inf batch norm.

Run:  python -m experiments.lp_norms --preset=cpu --workdir=/tmp/lp_norms
Each seed trains the same network (same init) with each norm in `norms` on normlab.train's step,
evaluates the test set every `measure_every` steps, and at the end measures the shape (excess
kurtosis, skewness) of every norm layer's output on `probe_batch` training examples.
Presets: smoke (a 2-conv VGG, 30 steps: ~30 s on 2 CPU cores), cpu (a 4-conv VGG on 8x8 digits,
500 steps, 2 seeds: ~3 min on 2 idle cores), gpu (VGG-11 on CIFAR-10, needs a prepared TFDS dir;
untested here).
Expected (paper): the l_p variants train as well as BN, with larger distributional shift than no norm;
(issue 7) their activations are not Gaussian.
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/lp_norms.py")
  preset = c.preset
  c.norms = ("none", "batch", "l1_batch", "l2_batch", "linf_batch")
  c.seeds = (0, 1)
  c.measure_every = 50
  c.probe_batch = 512  # the end-of-training shape statistics
  c.dist_batch = 256   # the activation-drift probe every measure_every steps (as in noisy_bn)
  c.dist_units = 2
  c.threshold = 0.9
  c.train = _common.vgg_train(preset)
  if preset == "smoke":
    c.seeds = (0,)
    c.measure_every = 15
    c.probe_batch = 64
    c.dist_batch = 64
  elif preset == "gpu":
    c.seeds = (0, 1, 2)
    c.measure_every = 250
  return c
