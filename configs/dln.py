"""Deep linear network (Dense layers, no nonlinearity) with a norm between layers, on MNIST-1D.

A DLN computes a linear function, so its best test accuracy is a linear classifier's (~30-35% on
MNIST-1D); what the norm changes is how fast and how stably the deep product trains.
Run:  python scripts/train.py --config=configs/dln.py:cpu --workdir=/tmp/dln
Presets (measured on 2 shared CPU cores, jax 0.10.2; wall = whole process):
  smoke  depth 3, width 16, 100 steps: ~9 s wall (compile ~3 s); ~24%.
  cpu    depth 8, width 64, 3000 steps: 32.7% test accuracy in ~20 s (~470 steps/s).
  gpu    depth 16, width 256, batch 512, 10000 steps: not measured here (no GPU).
"""

from configs import common

DEFAULTS = {
    "model": "dln",
    "model_options.depth": 8,
    "model_options.width": 64,
    "norm": "batch",
    "dataset": "mnist1d",
    "batch_size": 128,
    "optimizer": "momentum",
    "learning_rate": 0.02,
    "schedule": "cosine",
    "num_steps": 3000,
    "eval_every": 500,
    "log_every": 100,
    "checkpoint_every": 1000,
}

PRESETS = {
    "smoke": {"model_options.depth": 3, "model_options.width": 16, "batch_size": 64, "num_steps": 100,
              "eval_every": 100, "log_every": 25, "checkpoint_every": 50},
    "cpu": {},
    "gpu": {"model_options.depth": 16, "model_options.width": 256, "batch_size": 512, "num_steps": 10000,
            "eval_every": 1000, "log_every": 200, "checkpoint_every": 2000},
}


def get_config(arg=None):
  return common.build(DEFAULTS, PRESETS, arg, "configs/dln.py")
