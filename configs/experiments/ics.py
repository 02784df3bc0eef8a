"""Internal covariate shift (Santurkar et al. 2018, section 2.2, Figure 5), with and without BN.

Run:  python -m experiments.ics --preset=cpu --workdir=experiments/results/ics
  or  python -m experiments.ics --config=configs/experiments/ics.py:cpu --workdir=DIR --config.num_steps=400
Each run in `runs` trains twice (norm='batch' and norm='none', same init seed, same optimizer and
learning rate) with normlab.train's step; every `measure_every` steps the exact ICS of every layer
(||G - G'|| and cos(G, G'), earlier layers moved by that very step) is measured on the step's batch.
Presets: smoke (~1 min on 2 CPU cores: a tiny VGG and DLN, 20 steps), cpu (a 4-conv VGG, ResNet-20
at 1/2 width (1-D convs), a 10-layer DLN on mnist1d, 200 steps; a few minutes on 2 cores), gpu (the
paper's networks on CIFAR-10: VGG-11, ResNet-20, 25-layer DLN; needs a prepared TFDS dir; untested here).
Expected (paper): ICS with BN similar or larger than without; cos(G, G') well below 1 for both.
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/ics.py")
  preset = c.preset
  c.norms = ("batch", "none")
  c.measure_every = 25
  c.runs = mlc.ConfigDict()
  # VGG-style (1-D on mnist1d): 4 conv layers (plain VGG-11 does not train with SGD here: see _common.VGG4).
  c.runs.vgg = _common.train_defaults(model="vgg", model_options={"config": _common.VGG4}, learning_rate=0.05)
  c.runs.resnet20 = _common.train_defaults(model="resnet20", model_options={"width": 0.5, "conv_dims": 1},
                                           learning_rate=0.02)
  c.runs.dln = _common.train_defaults(model="dln", model_options={"depth": 10, "width": 32},
                                      optimizer="sgd", learning_rate=0.02)
  _common.set_all_runs(c, {"num_steps": 200, **_common.MNIST1D})
  if preset == "smoke":
    del c.runs["resnet20"]
    c.runs.vgg.model_options.config = (8, "M", 16, "M", 16, "M")
    c.runs.dln.model_options.depth = 4
    _common.set_all_runs(c, {"num_steps": 20, "batch_size": 32})
    c.measure_every = 10
  elif preset == "gpu":  # the paper's setting: CIFAR-10 (needs a prepared TFDS dir), VGG-11, 25-layer DLN
    del c.runs["vgg"]
    c.runs.vgg11 = _common.train_defaults(model="vgg11", learning_rate=0.1)
    c.runs.resnet20.model_options = mlc.ConfigDict({"width": 1.0})
    c.runs.dln.model_options.depth = 25
    _common.set_all_runs(c, {"num_steps": 3000, "batch_size": 128, **_common.CIFAR10})
    c.measure_every = 100
  return c
