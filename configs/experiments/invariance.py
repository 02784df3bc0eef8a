"""The re-scaling invariance table (seed 000; Ba et al. 2016 Table 1), measured on project models.

Run:  python -m experiments.invariance --preset=cpu --workdir=/tmp/invariance
For BN / LN / IN / GN / WN and a small VGG and MLP from normlab.models: relative change of the first
normed block's output after re-scaling one unit's weights, the data, the whole first kernel, or one
example by each phi in `phis`.
Presets: smoke (1 seed, a few seconds), cpu (3 seeds, < 1 min), gpu (= cpu; nothing to scale up).
Expected: BN and IN invariant to all three of the seed's re-scalings, LN and GN not to weight-vector
re-scaling, WN not to data re-scaling.
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/invariance.py")
  preset = c.preset
  c.norms = ("batch", "layer", "instance", "group", "weight")
  c.norm_options = mlc.ConfigDict({"group": {"num_groups": 2}})
  c.models = mlc.ConfigDict({
      "conv": {"model": "vgg", "options": {"config": (8, "M", 16)}},
      "mlp": {"model": "mlp", "options": {"widths": (16, 16)}},
  })
  c.phis = (0.5, 3.0)
  c.unit = 2
  c.batch_size = 32
  c.seeds = (0, 1, 2)
  c.invariant_below = 1e-3
  c.changed_above = 1e-2
  if preset == "smoke":
    c.seeds = (0,)
  return c
