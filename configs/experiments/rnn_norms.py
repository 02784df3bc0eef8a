"""Normalization in RNNs on variable-length MNIST-1D sequences, and unseen lengths (seed 000, problem 3).

Run:  python -m experiments.rnn_norms --preset=cpu --workdir=/tmp/rnn_norms
A GRU with each recurrent norm in `rnn_norms` (none / layer / per-step batch [/ shared batch]) at each
batch size in `batch_sizes` (ascending: the first is "small", the last "large"), `epochs` epochs at
every batch size, a cosine schedule, the lr grid `learning_rates` on the first seed (the lowest final
train loss kept), tested on the training lengths and on `long_factor` x longer sequences.
Presets: smoke (8 hidden units, 2 norms, a fraction of an epoch: ~1 min on 2 CPU cores), cpu (32 hidden
units, batch 8 and 64, 8 epochs, lr grid 6e-3 / 2e-2 / 5e-2, 3 seeds: ~20 core-min estimated; does not
converge), gpu (128
units, batch 8 and 64, 20 epochs, 4 norms, 3 seeds; MNIST-1D is embedded, so no TFDS directory is needed).
Expected (seed): LN works at every batch size; per-step BN suffers at small batch and on unseen lengths.
"""

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/rnn_norms.py")
  preset = c.preset
  c.rnn_norms = ("none", "layer", "batch")
  c.batch_sizes = (8, 64)  # ascending: the first is "small", the last "large"
  # No budget piloted converges under the plateau rule (experiments/_study.py): LN at B=64, lr 0.02 (seed 0), the
  # fixed-subset loss over the last two tenths fell 4.7% at 16 epochs, 2.4% at 48 and 3.9% at 150 (0.208 -> 0.200):
  # the GRU keeps fitting. The cpu preset cannot decide this study this session; 8 epochs are kept.
  c.epochs = 8.0           # the same number of epochs at every batch size
  c.train_examples = 4000  # MNIST-1D's training split (steps = epochs x this / batch size)
  # grid on the first seed per (batch size, norm); 0.05 added: the old grid's top (0.02) won every cell, and at 16
  # epochs, B=64 (seed 0) per-step BN did better at 0.05 (final fixed-subset loss 0.380 vs 0.403), LN worse (0.349 vs 0.327)
  c.learning_rates = (6e-3, 2e-2, 5e-2)
  c.long_factor = 2        # the unseen-length test: every value repeated this many times
  c.seeds = (0, 1, 2)
  c.measures = 6           # test-set measurements per run
  c.train = _common.train_defaults(model="gru", model_options={"hidden": 32}, dataset="mnist1d",
                                   normalize_inputs=False, optimizer="adam", learning_rate=3e-3,
                                   schedule="cosine", grad_clip_norm=1.0, num_steps=1)
  if preset == "smoke":
    c.rnn_norms = ("layer", "batch")
    c.batch_sizes = (4, 16)
    c.epochs = 0.02
    c.learning_rates = (3e-3,)
    c.seeds = (0, 1)
    c.measures = 2
    c.train.model_options.hidden = 8
  elif preset == "gpu":
    c.rnn_norms = ("none", "layer", "batch", "batch_shared")
    c.epochs = 20.0
    c.learning_rates = (1e-3, 3e-3, 1e-2)
    c.train.model_options.hidden = 128
  return c
