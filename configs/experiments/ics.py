"""Internal covariate shift (Santurkar et al. 2018, section 2.2, Definition 2.1, Figure 5), with and without BN.

Run:  python -m experiments.ics --preset=cpu --workdir=experiments/results/ics
  or  python -m experiments.ics --config=configs/experiments/ics.py:cpu --workdir=DIR --config.seeds=0,1
Every run in `runs` trains with each norm in `norms` ('batch', 'none') and each seed in `seeds` (same seed:
same init stream and batches), with normlab.train's step; every `measure_every` steps the exact ICS of every
layer (||G - G'|| and cos(G, G'), earlier layers moved by that very step) is measured on the step's batch.
  vgg          VGG-11 (8 convs), the paper's lr 0.1 (SGD momentum 0.9, constant lr), batch 128
  vgg_shallow  the first 4 convs of VGG-11 (same widths and training): for "ICS is common in deeper nets"
  dln          a 25-layer deep linear network (the paper's depth) on synthetic Gaussian data with a linear
               softmax teacher (`teacher`, experiments/_teacher.py), SGD at `dln_lr`, where the plain DLN trains
paper_dln    (section `paper_dln`, run by normlab.analysis.paper_dln.run_config) the paper's own DLN (section 2.2,
             Appendix A): k = 25 square 10 x 10 layers, ||W_k...W_1 x - A x||^2 summed over 1,000 Gaussian
             examples, full-batch GD for 10,000 steps at lr 1e-6 and 1e-7 and over `lr_grid`, BN (affine) after
             every layer but the last vs none, 3 data draws, float64 (x64 scoped to the computation)
Presets: smoke (~1 min idle: tiny nets, 2 seeds, 30 steps), cpu (1/8-width VGGs on mnist1d_noisy, 1-D convs, 2000
steps, 3 seeds), gpu (the paper's setting: full-width VGG-11 on CIFAR-10; needs a prepared TFDS dir).
"""

import ml_collections as mlc

from configs.experiments import _common

VGG11_FIRST4 = (64, "M", 128, "M", 256, 256, "M")  # VGG-11's first 4 convs (and its first 3 pools)
# The paper DLN's lr axis: from 100x below the paper's 1e-7 to past the plain net's instability edge. The edge,
# measured before the study (full preset, plain net, 10,000 steps, seeds 0-2, paper_dln.instability_edge): 2e-6
# (seed 1 non-finite; seed 2 at 3e-6, all three at 7e-6; at 1.5e-6 seed 2's loss spikes to 2x its start and
# ends 5x above its 1e-6 value); the BN net stays finite up to 2e-5, its final loss lowest at 1e-6 to 1.5e-6.
PAPER_DLN_LR_GRID = (1e-9, 1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 1.5e-6, 2e-6, 3e-6)


def paper_dln(preset: str) -> mlc.ConfigDict:
  """The paper's DLN section (normlab.analysis.paper_dln). `lrs` are the paper's two; `lr_grid` spans from well
  below 1e-7 up to past the plain net's instability edge (PAPER_DLN_LR_GRID); the study runs their union. The
  cpu and gpu presets are the paper's setting (it is small: one CPU core runs it); smoke is a 6-layer DLN."""
  c = mlc.ConfigDict({"depth": 25, "width": 10, "examples": 1000, "steps": 10000, "lrs": (1e-6, 1e-7),
                      "seeds": (0, 1, 2), "measure_every": 50, "lr_grid": PAPER_DLN_LR_GRID, "affine": True,
                      "eps": 1e-5, "dtype": "float64", "plot_layers": (9, 17)})
  if preset == "smoke":  # seconds: a 6-layer DLN, 200 steps
    c.update({"depth": 6, "examples": 100, "steps": 200, "measure_every": 20, "seeds": (0, 1),
              "lr_grid": (1e-8, 1e-5, 1e-4, 1e-3), "plot_layers": (3, 5)})
  return c


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/ics.py")
  preset = c.preset
  c.norms = ("batch", "none")
  c.seeds = (0, 1, 2)
  c.measure_every = 100
  c.teacher = mlc.ConfigDict({"dim": 40, "num_classes": 10, "scale": 3.0, "seed": 1234})
  c.synthetic_runs = ("dln",)
  c.only = ()  # run names to train (empty: all), e.g. --config.only="('vgg', 'vgg_shallow')" for a controlled variant  # runs trained on the teacher's batches (the config's dataset gives only shapes)
  vgg = {"optimizer": "momentum", "momentum": 0.9, "learning_rate": 0.1, "batch_size": 128, **_common.MNIST1D,
         "dataset": "mnist1d_noisy"}
  c.runs = mlc.ConfigDict()
  c.runs.vgg = _common.train_defaults(model="vgg11", model_options={"width": 1 / 8}, **vgg)
  c.runs.vgg_shallow = _common.train_defaults(model="vgg", model_options={"config": VGG11_FIRST4, "width": 1 / 8},
                                              **vgg)
  c.runs.dln = _common.train_defaults(model="dln", model_options={"depth": 25, "width": 32}, optimizer="sgd",
                                      learning_rate=0.05, batch_size=128, **_common.MNIST1D)
  _common.set_all_runs(c, {"num_steps": 2000, "schedule": "constant"})
  c.paper_dln = paper_dln(preset)
  if preset == "smoke":
    c.seeds = (0, 1)
    c.runs.vgg.model = "vgg"
    c.runs.vgg.model_options = mlc.ConfigDict({"config": (8, "M", 8, 8, "M", 16, 16, "M"), "width": 1.0})
    c.runs.vgg_shallow.model_options = mlc.ConfigDict({"config": (8, "M", 16, "M"), "width": 1.0})
    c.runs.dln.model_options.depth = 6
    _common.set_all_runs(c, {"num_steps": 30, "batch_size": 32})
    c.measure_every = 10
  elif preset == "gpu":  # the paper's setting: CIFAR-10 (needs a prepared TFDS dir), full-width VGG-11
    for name in ("vgg", "vgg_shallow"):
      c.runs[name].model_options.width = 1.0
      for k, v in _common.CIFAR10.items():
        c.runs[name][k] = v
    c.runs.dln.model_options.width = 100
    _common.set_all_runs(c, {"num_steps": 10000})
    c.measure_every = 250
  return c
