"""Numeric checks of Santurkar et al. (2018) section 4: the BN gradient, Theorems 4.1 and 4.2, Lemma 4.5.

Run:  python -m experiments.theory --preset=cpu --workdir=experiments/results/theory
Everything is float64. Theorem checks run on random one-channel instances (normlab.analysis.theory)
of four kinds of downstream loss (isotropic / PSD / indefinite quadratic, a small tanh network) in two
regimes (gamma <= sigma, gamma > sigma). The initialization study trains an MLP with and without BN
from the same kernels and compares the distance from the init to the weights found (up to scale
for BN, whose hidden kernels are scale-invariant).
Presets: smoke (well under a minute), cpu (a few minutes on 2 CPU cores), gpu (= cpu, more instances).
Expected: the closed-form gradient matches autodiff to ~1e-15, the seed's '+' does not; Thm 4.1
holds everywhere (an identity at eps = 0); (4.2a) is an identity; (4.2b) holds under its condition.
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/theory.py")
  preset = c.preset
  c.seed = 0
  c.bn_grad = mlc.ConfigDict({"shape": (32, 8), "eps": 1e-5, "trials": 50})
  c.survey = mlc.ConfigDict({"m": 8, "n": 250, "eps": 0.0, "kinds": ("isotropic", "psd", "indefinite", "network")})
  c.eps_check = 1e-5  # Theorem 4.1 also with this eps (an inequality then, not an identity)
  c.identity_trials = 1000
  c.init = mlc.ConfigDict()
  c.init.seeds = (0, 1, 2)
  c.init.train = _common.train_defaults(model="mlp", model_options={"widths": (64, 64)}, optimizer="adam",
                                        learning_rate=1e-3, num_steps=1500, batch_size=128,
                                        dataset="digits", normalize_inputs=True)
  if preset == "smoke":
    c.bn_grad.trials = 5
    c.survey.n = 16
    c.survey.m = 4
    c.identity_trials = 50
    c.init.seeds = (0,)
    c.init.train.num_steps = 100
  elif preset == "gpu":
    c.survey.n = 2000
    c.init.seeds = (0, 1, 2, 3, 4)
    c.init.train.num_steps = 5000
  return c
