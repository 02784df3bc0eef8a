"""Loss landscape along the gradient (Santurkar et al. 2018, section 3.1, Figure 4), with and without BN.

Run:  python -m experiments.landscape --preset=cpu --workdir=experiments/results/landscape
Each seed trains twice (norm='batch' and norm='none', same init, optimizer and learning rate) on
normlab.train's one loop; every `measure_every` steps, on that step's batch, we move along the
normalized gradient by each distance in `distances` (equal eta ||g|| for both networks) and record the
loss and the gradient change; early and late training are summarized separately (`window`).
Presets: smoke (~1 min on 2 loaded CPU cores), cpu (the 6-conv 1-D VGG on mnist1d_noisy where the plain
net lags BN, 3 seeds: ~10 min on 2 loaded cores), gpu (VGG-11 on CIFAR-10, lr 0.1; needs a prepared TFDS
dir, else fails at once naming the `tfds build` command).
Expected (paper): loss variation, gradient change and beta are all smaller with BN.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
from configs.experiments import _common  # noqa: E402


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/landscape.py")
  preset = c.preset
  c.norms = ("batch", "none")
  c.seeds = (0, 1, 2)
  c.measure_every = 50
  c.window = 0.2  # early = the first 20% of the steps, late = the last 20%
  # parameter-space distances along g/||g||, 0 included; they reach where the plain net's loss rises
  c.distances = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
  c.train = _common.lagging_task(preset, num_steps=1500, batch_size=128)
  if preset == "smoke":
    c.seeds = (0, 1)
    c.train = _common.lagging_task(preset, num_steps=20, batch_size=32)
    c.measure_every = 4
    c.window = 0.3
  elif preset == "gpu":  # the paper's setting: VGG-11 on CIFAR-10 (needs a prepared TFDS dir)
    c.train = _common.lagging_task(preset, num_steps=10000, batch_size=128)
    c.measure_every = 100
  return c
