"""Internal covariate shift (Santurkar et al. 2018, section 2.2, Definition 2.1, Figure 5), with and without BN.

Run:  python -m experiments.ics --preset=cpu --workdir=experiments/results/ics
  or  python -m experiments.ics --config=configs/experiments/ics.py:cpu --workdir=DIR --config.seeds=0,1
Two stages (`only` picks among them: run names and 'paper_dln'; empty: all):
paper_dln    (section `paper_dln`, run by normlab.analysis.paper_dln.run_config) the paper's own DLN (section 2.2,
             Appendix A): k = 25 square 10 x 10 layers, ||W_k...W_1 x - A x||^2 summed over 1,000 Gaussian
             examples, full-batch GD for 10,000 steps at lr 1e-6 and 1e-7 and over `lr_grid`, BN (affine) after
             every layer but the last vs none, 3 data draws, float64 (x64 scoped to the computation)
runs         our controlled variants on normlab.train's loop: every run in `runs` at every lr of `lr_grid[run]`
             with each norm in `norms` (`run_norms[run]` narrows it) and each seed in `seeds` (same seed: same init
             stream and batches); every `measure_every` steps (and at the last) the exact ICS of every layer
             (||G - G'||, cos(G, G'), ||G - G'|| / ||dW_(<i)||, ||G - G'|| / ||G||; the earlier layers moved by
             that very step) on the step's batch; `plot_layers[run]` are the layers drawn over training.
  vgg          VGG-11 (8 convs + the classifier), SGD momentum 0.9, constant lr, batch 128
  vgg_shallow  the first 4 convs of VGG-11 (same widths and training), plain only: for "ICS is common in deeper nets"
  dln          a 25-layer width-32 deep linear network (the paper's depth) on synthetic Gaussian data with a linear
               softmax teacher (`teacher`, experiments/_teacher.py), cross-entropy, plain SGD, batch 128
Presets:
  smoke  ~2 min on a core: tiny nets, 2 seeds, 30 steps, 2-lr grids; the 6-layer paper_dln smoke section.
  cpu    1/8-width VGGs on mnist1d_noisy (1-D convs) and the width-32 DLN, 2000 steps, 3 seeds, the lr grids below;
         the paper's DLN as the paper runs it. About 23 min on one core (51 runs; the estimate is below).
  gpu    the paper's VGG experiment exactly: VGG-11 (full width) with BN vs without on CIFAR-10, plain SGD (no
         momentum, no weight decay), batch 128, constant lr 0.1 and 0.01, 15,000 steps, ICS every 250 steps, the
         per-layer curves at layers 5 and 10 (layer 10 is clipped to our VGG-11's last, 9th, weight layer: 8 convs
         and one classifier); plus the paper's DLN. Needs a prepared TFDS CIFAR-10 (fails at once otherwise).
"""

import ml_collections as mlc

from configs.experiments import _common

VGG11_FIRST4 = (64, "M", 128, "M", 256, 256, "M")  # VGG-11's first 4 convs (and its first 3 pools)
# The paper DLN's lr axis: from 100x below the paper's 1e-7 to past the plain net's instability edge. The edge,
# measured before the study (full preset, plain net, 10,000 steps, seeds 0-2, paper_dln.instability_edge): 2e-6
# (seed 1 non-finite; seed 2 at 3e-6, all three at 7e-6; at 1.5e-6 seed 2's loss spikes to 2x its start and
# ends 5x above its 1e-6 value); the BN net stays finite up to 2e-5, its final loss lowest at 1e-6 to 1.5e-6.
PAPER_DLN_LR_GRID = (1e-9, 1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 1.5e-6, 2e-6, 3e-6)
# The controlled runs' lr axes (cpu preset, 2000 steps, constant lr): one half-decade grid for both nets, from well
# below the best lr up to the plain net's instability edge, chosen before the study from:
#  * the width-32 DLN (sgd): both nets' best lr 0.02 and the plain net diverging at 0.1 (issue 28's measurement);
#    a pilot (seed 0, plain, 2000 steps) still trains at 0.002 (train loss 2.27 -> 1.60);
#  * the 1/8-width VGG-11 (momentum 0.9): at lr 0.1 one plain seed of three stayed at chance (loss 2.30; the
#    committed results of commit 366a5e1), so 0.1 is the plain net's edge; a pilot (seed 0, plain) at 0.003 trains
#    (2.13 -> 0.86).
# Four lrs each keep the cpu preset near 23 min on one core (CPU seconds of 2000-step pilot runs, ICS measured
# every 100 steps: VGG-11 plain 34.5 s, BN 42.2 s; DLN plain 11.2 s, BN 18.8 s; vgg_shallow 15.1 s; the paper DLN
# stage 48 s: 4 x 3 x (76.7 + 30.0) + 3 x 15.1 + 48 = 1374 s, plus start-up and the report); a fifth DLN lr
# would take it to ~25 min. vgg_shallow (plain only) serves the depth claim at one lr of the VGG grid.
DLN_LR_GRID = (0.003, 0.01, 0.03, 0.1)
VGG_LR_GRID = (0.003, 0.01, 0.03, 0.1)


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
  c.synthetic_runs = ("dln",)  # runs trained on the teacher's batches (the config's dataset gives only shapes)
  c.only = ()  # stages to run (empty: all): run names and/or 'paper_dln', e.g. --config.only="('paper_dln',)"
  vgg = {"optimizer": "momentum", "momentum": 0.9, "learning_rate": 0.1, "batch_size": 128, **_common.MNIST1D,
         "dataset": "mnist1d_noisy"}
  c.runs = mlc.ConfigDict()
  c.runs.vgg = _common.train_defaults(model="vgg11", model_options={"width": 1 / 8}, **vgg)
  c.runs.vgg_shallow = _common.train_defaults(model="vgg", model_options={"config": VGG11_FIRST4, "width": 1 / 8},
                                              **vgg)
  c.runs.dln = _common.train_defaults(model="dln", model_options={"depth": 25, "width": 32}, optimizer="sgd",
                                      learning_rate=0.05, batch_size=128, **_common.MNIST1D)
  _common.set_all_runs(c, {"num_steps": 2000, "schedule": "constant", "eval_every": 2000})  # no mid-run test evals
  c.lr_grid = mlc.ConfigDict({"vgg": VGG_LR_GRID, "dln": DLN_LR_GRID, "vgg_shallow": (0.03,)})
  c.run_norms = mlc.ConfigDict({"vgg_shallow": ("none",)})  # vgg_shallow serves only the depth claim
  c.plot_layers = mlc.ConfigDict({"vgg": (5, 10), "dln": (9, 17), "vgg_shallow": (2, 4)})
  c.paper_dln = paper_dln(preset)
  if preset == "smoke":
    c.seeds = (0, 1)
    c.runs.vgg.model = "vgg"
    c.runs.vgg.model_options = mlc.ConfigDict({"config": (8, "M", 8, 8, "M", 16, 16, "M"), "width": 1.0})
    c.runs.vgg_shallow.model_options = mlc.ConfigDict({"config": (8, "M", 16, "M"), "width": 1.0})
    c.runs.dln.model_options.depth = 6
    _common.set_all_runs(c, {"num_steps": 30, "batch_size": 32, "eval_every": 30})
    c.lr_grid = mlc.ConfigDict({"vgg": (0.01, 0.1), "dln": (0.01, 0.05), "vgg_shallow": (0.1,)})
    c.plot_layers = mlc.ConfigDict({"vgg": (2, 5), "dln": (3, 5), "vgg_shallow": (2, 3)})
    c.measure_every = 10
  elif preset == "gpu":  # the paper's VGG experiment (section 2.2, Fig. 5) and the paper's DLN, nothing else
    c.only = ("paper_dln", "vgg")
    c.runs.vgg = _common.train_defaults(model="vgg11", model_options={"width": 1.0}, optimizer="sgd", batch_size=128,
                                        num_steps=15000, schedule="constant", eval_every=15000,
                                        **_common.CIFAR10)
    c.lr_grid = mlc.ConfigDict({"vgg": (0.01, 0.1), "dln": DLN_LR_GRID, "vgg_shallow": (0.03,)})
    c.measure_every = 250
  return c
