"""Norm before vs after the activation (seed 000), BN and GN, several seeds.

Run:  python -m experiments.placement --preset=cpu --workdir=/tmp/placement
For each run in `runs`, norm in `norms` and placement (before / after the ReLU), `seeds` trainings on
normlab.train's step (warmup then cosine decay); final test accuracy (eval mode) mean ± s.e. and one
pooled paired test of after - before.
Presets: smoke (1 run, 2 seeds, 20 steps: ~1 min on 2 CPU cores), cpu (a 1-D VGG on MNIST-1D, where the
plain net does not saturate, 5 seeds, 2000 steps: ~8 min on 2 loaded cores), gpu (ResNet-20 on CIFAR-10
and the 1-D VGG on MNIST-1D, 5 seeds; CIFAR-10 needs a prepared TFDS dir, else the one-line build message).
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
  c.seeds = (0, 1, 2, 3, 4)
  c.measure_every = 500
  c.warmup_frac = 0.05  # warmup_steps = this x num_steps (schedule warmup_cosine)
  c.runs = mlc.ConfigDict()
  # Budget (chosen before the run, under the plateau rule of experiments/_study.py): 2,000 steps, unchanged. Pilot
  # (BN, seed 1, the old report's slowest seed): fixed-subset loss 0.0045 -> 0.0040 (before the ReLU) and 0.0021 ->
  # 0.0017 (after) over the last two tenths, changes 10x below PLATEAU_ABS; the old report's final train losses
  # (0.0009-0.0044, GN and BN) are all below it.
  c.runs.mnist1d = _common.train_defaults(model="vgg", model_options={"config": VGG1D}, dataset="mnist1d",
                                          normalize_inputs=False, learning_rate=0.05, batch_size=64,
                                          num_steps=2000, schedule="warmup_cosine", warmup_steps=1,
                                          norm_placement="before_activation")
  if preset == "smoke":
    c.seeds = (0, 1)
    c.runs.mnist1d.model_options.config = (8, "M", 16, "M")
    c.runs.mnist1d.num_steps = 20
    c.measure_every = 10
  elif preset == "gpu":
    c.runs.cifar10 = _common.train_defaults(model="resnet20", dataset="cifar10", normalize_inputs=True,
                                            learning_rate=0.05, batch_size=128, num_steps=20000,
                                            schedule="warmup_cosine", warmup_steps=1,
                                            norm_placement="before_activation")
    c.runs.mnist1d.num_steps = 4000
    c.measure_every = 1000
  return c
