"""Loss landscape along the gradient (Santurkar et al. 2018, section 3.1, Figure 4), with and without BN.

Run:  python -m experiments.landscape --preset=cpu --workdir=experiments/results/landscape
Each seed trains twice (norm='batch' and norm='none', same init, optimizer and learning rate) on
normlab.train's one loop; every `measure_every` steps, on that step's batch, we move along the
normalized gradient by each distance in `distances` (equal eta ||g|| for both networks) and record the
loss and the gradient change; early and late training are summarized separately (`window`).
Presets: smoke (~3 min on 2 loaded CPU cores), cpu (the 6-conv 1-D VGG on mnist1d_noisy where the plain
net lags BN, 9,000 steps, 3 seeds: ~10 core-min estimated from pilots' CPU time, 27 min scaling the
1,500-step run's 266 s wall), gpu (VGG-11 on CIFAR-10, lr 0.1; needs a prepared TFDS
dir, else fails at once naming the `tfds build` command).
Expected (paper): loss variation, gradient change and beta are all smaller with BN.
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/landscape.py")
  preset = c.preset
  c.norms = ("batch", "none")
  c.seeds = (0, 1, 2)
  c.measure_every = 300
  c.window = 0.2  # early = the first 20% of the steps, late = the last 20%
  # parameter-space distances along g/||g||, 0 included; they reach where the plain net's loss rises
  c.distances = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
  # Budget (chosen before the run, under the plateau rule of experiments/_study.py): 1500 -> 9000 steps. Pilots
  # (seed 0, the fixed-subset loss over the last two tenths): at 1500 plain 0.545 -> 0.534 (2.2%), BN 0.449 -> 0.438
  # (2.5%); at 3000 5.7% and 8.1%; at 6000 0.035 -> 0.022 and 0.049 -> 0.042 nats; at 9000 both fit the training
  # set (train accuracy 100%): plain 0.0018 -> 0.0016, BN 0.0134 -> 0.0122 nats (4x below PLATEAU_ABS).
  # Seed 1 at 9000: plain 0.0023 -> 0.0019, BN 0.0137 -> 0.0126 nats; test accuracy 71.7% vs 72.5% (seed 1).
  # measure_every 50 -> 300: the same 30 measurements, 6 per window.
  c.train = _common.lagging_task(preset, num_steps=9000, batch_size=128)
  if preset == "smoke":
    c.seeds = (0, 1)
    c.train = _common.lagging_task(preset, num_steps=20, batch_size=32)
    c.measure_every = 4
    c.window = 0.3
  elif preset == "gpu":  # the paper's setting: VGG-11 on CIFAR-10 (needs a prepared TFDS dir)
    c.train = _common.lagging_task(preset, num_steps=10000, batch_size=128)
    c.measure_every = 100
  return c
