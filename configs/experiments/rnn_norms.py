"""Normalization in RNNs on variable-length MNIST-1D sequences (seed 000, BN's problem 3).

Run:  python -m experiments.rnn_norms --preset=cpu --workdir=/tmp/rnn_norms
A GRU with each recurrent norm in `rnn_norms` (none / layer / per-step batch / shared batch), at each
batch size in `batch_sizes` (ascending) and sequence-length factor in `factors` (T = 40 x factor),
trained on normlab.train's step with padding masks.
Presets: smoke (8 hidden units, 15 steps: ~1 min on 2 CPU cores), cpu (32 hidden units, T = 40 and 80,
batch 8 and 64, 1200 steps: ~6 min on 2 idle cores), gpu (128 units, T = 40 and 160, 3 seeds, 3000
steps; untested here).
Expected (seed): LN works at every batch size; per-step BN suffers at small batch and on long sequences.
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/rnn_norms.py")
  preset = c.preset
  c.rnn_norms = ("none", "layer", "batch", "batch_shared")
  c.batch_sizes = (8, 64)  # ascending: the first is "small", the last "large"
  c.factors = (1, 2)       # sequence length 40 x factor (each value repeated factor times)
  c.seeds = (0,)
  c.measure_every = 200
  c.train = _common.train_defaults(model="gru", model_options={"hidden": 32}, dataset="mnist1d",
                                   normalize_inputs=False, optimizer="adam", learning_rate=3e-3,
                                   grad_clip_norm=1.0, num_steps=1200)
  if preset == "smoke":
    c.factors = (1,)
    c.rnn_norms = ("layer", "batch")
    c.batch_sizes = (4, 16)
    c.train.model_options.hidden = 8
    c.train.num_steps = 15
    c.measure_every = 10
  elif preset == "gpu":
    c.factors = (1, 4)
    c.seeds = (0, 1, 2)
    c.train.model_options.hidden = 128
    c.train.num_steps = 3000
    c.measure_every = 250
  return c
