"""Loss landscape along the gradient (Santurkar et al. 2018, section 3.1, Figure 4), with and without BN.

Run:  python -m experiments.landscape --preset=cpu --workdir=experiments/results/landscape
Each run trains twice (norm='batch' and norm='none', same seed/optimizer/learning rate) with
normlab.train's step; every `measure_every` steps, on that step's batch, we move along the gradient
by eta = lr * m for m in `step_multipliers` and record the loss range ("loss variation"), the range
of ||grad L(theta - eta g) - grad L(theta)|| ("gradient predictiveness") and the effective
beta-smoothness max_eta ||grad diff|| / ||eta g||.
Presets: smoke (~1 min on 2 CPU cores), cpu (a 4-conv VGG and a 3x128 MLP on mnist1d, 300 steps, a
few minutes on 2 cores), gpu (VGG-11 and the MLP on CIFAR-10; needs a prepared TFDS dir; untested here).
Expected (paper): all three are smaller, and vary less over training, with BN.
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/landscape.py")
  preset = c.preset
  c.norms = ("batch", "none")
  c.measure_every = 20
  c.step_multipliers = (0.0, 0.5, 1.0, 2.0, 4.0)
  c.runs = mlc.ConfigDict()
  # VGG-style, 4 convs, 1-D on mnist1d (plain VGG-11 does not train with SGD here: see _common.VGG4)
  c.runs.vgg = _common.train_defaults(model="vgg", model_options={"config": _common.VGG4}, learning_rate=0.05)
  c.runs.mlp = _common.train_defaults(model="mlp", model_options={"widths": (128, 128, 128)}, learning_rate=0.05)
  _common.set_all_runs(c, {"num_steps": 300, **_common.MNIST1D})
  if preset == "smoke":
    c.runs.vgg.model_options.config = (8, "M", 16, "M", 16, "M")
    c.runs.mlp.model_options.widths = (32, 32)
    _common.set_all_runs(c, {"num_steps": 20, "batch_size": 32})
    c.measure_every = 10
  elif preset == "gpu":  # the paper's setting: VGG-11 on CIFAR-10 (needs a prepared TFDS dir; untested here)
    del c.runs["vgg"]
    c.runs.vgg11 = _common.train_defaults(model="vgg11", learning_rate=0.1)
    _common.set_all_runs(c, {"num_steps": 3000, "batch_size": 128, **_common.CIFAR10})
    c.measure_every = 50
  return c
