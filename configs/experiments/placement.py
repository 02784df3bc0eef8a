"""Norm before vs after the activation (seed 000), BN and GN, several seeds.

Run:  python -m experiments.placement --preset=cpu --workdir=/tmp/placement
For each run in `runs`, norm in `norms` and placement (before / after the ReLU), `seeds` trainings on
normlab.train's step; final test accuracy (eval mode) mean ± std and the paired difference.
Presets: smoke (1 run, 2 seeds, 20 steps: ~1 min on 2 CPU cores), cpu (a 4-conv VGG on 8x8 digits and
a 1-D VGG on MNIST-1D, 3 seeds, 300 steps: ~5 min on 2 idle cores), gpu (ResNet-20 on CIFAR-10 and
the 1-D VGG on MNIST-1D, 5 seeds; untested here).
Expected (seed): after the activation is better.
"""

import ml_collections as mlc

from configs.experiments import _common

VGG1D = (32, "M", 64, "M", 64, "M")


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/placement.py")
  preset = c.preset
  c.norms = ("batch", "group")
  c.norm_options = mlc.ConfigDict({"group": {"num_groups": 4}})
  c.seeds = (0, 1, 2)
  c.measure_every = 100
  c.runs = mlc.ConfigDict()
  c.runs.digits = _common.train_defaults(model="vgg", model_options={"config": _common.VGG4}, dataset="digits",
                                         learning_rate=0.05, batch_size=64, num_steps=300,
                                         norm_placement="before_activation")
  c.runs.mnist1d = _common.train_defaults(model="vgg", model_options={"config": VGG1D}, dataset="mnist1d",
                                          normalize_inputs=False, learning_rate=0.05, batch_size=64,
                                          num_steps=300, norm_placement="before_activation")
  if preset == "smoke":
    del c.runs["mnist1d"]
    c.seeds = (0, 1)
    c.runs.digits.model_options.config = _common.VGG2
    c.runs.digits.num_steps = 20
    c.measure_every = 10
  elif preset == "gpu":
    c.seeds = (0, 1, 2, 3, 4)
    c.runs.digits = _common.train_defaults(model="resnet20", dataset="cifar10", learning_rate=0.05, batch_size=128,
                                           num_steps=5000, norm_placement="before_activation")
    c.runs.mnist1d.num_steps = 2000
    c.measure_every = 500
  return c
