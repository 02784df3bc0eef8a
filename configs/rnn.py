"""GRU / LSTM + layer norm on MNIST-1D read as a sequence (40 steps of 1 value).

Run:  python scripts/train.py --config=configs/rnn.py:cpu --workdir=/tmp/gru
Presets (measured on 2 shared, heavily loaded CPU cores, jax 0.10.2; wall = whole process):
  smoke  GRU with 16 units, 60 steps: ~12 s wall (compile ~7 s); ~16% accuracy, meaningless.
  cpu    GRU with 128 units and layer norm, AdamW 3e-3 with warmup, 1000 steps: 92.5% test accuracy
         (target >= 90%, the MNIST-1D paper's GRU: 91%) in ~3.5 min (5 steps/s).
  lstm   the same with an LSTM cell: 89.8% test accuracy in ~4 min (4.6 steps/s).
  gpu    GRU with 256 units, batch 256, 10000 steps: not measured here (no GPU).
"""

from configs import common

DEFAULTS = {
    "model": "gru",
    "model_options.hidden": 128,
    "norm": "layer",
    "dataset": "mnist1d",
    "batch_size": 128,
    "optimizer": "adamw",
    "learning_rate": 3e-3,
    "weight_decay": 1e-4,
    "grad_clip_norm": 1.0,
    "schedule": "warmup_cosine",
    "warmup_steps": 50,
    "num_steps": 1000,
    "eval_every": 250,
    "log_every": 50,
    "checkpoint_every": 500,
}

PRESETS = {
    "smoke": {"model_options.hidden": 16, "batch_size": 64, "learning_rate": 1e-2, "num_steps": 60,
              "warmup_steps": 10, "eval_every": 60, "log_every": 20, "checkpoint_every": 30},
    "cpu": {},
    "lstm": {"model": "lstm"},
    "gpu": {"model_options.hidden": 256, "batch_size": 256, "num_steps": 10000, "eval_every": 1000,
            "log_every": 200, "checkpoint_every": 2000},
}


def get_config(arg=None):
  return common.build(DEFAULTS, PRESETS, arg, "configs/rnn.py")
