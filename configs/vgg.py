"""VGG-11 + batch norm (Santurkar et al. 2018's "How does BN help optimization?" setting).

Run:  python scripts/train.py --config=configs/vgg.py:cpu --workdir=/tmp/vgg
Presets (measured on 2 shared CPU cores, jax 0.10.2; wall = whole process):
  smoke  a 3-conv VGG (16/32/64 channels) on MNIST-1D, 40 steps: ~10-19 s wall; ~65%, meaningless.
  cpu    VGG-11 at 1/8 width on MNIST-1D (1-D convs), 2000 steps: 96.8% test accuracy in ~45 s
         (95 steps/s).
  gpu    VGG-11 on CIFAR-10 (crop+flip), 30000 steps, batch 128: not measured here (no GPU, no
         CIFAR); Santurkar et al. report ~90%. Needs CIFAR-10 prepared (the error says how).
"""

from configs import common

DEFAULTS = {
    "model": "vgg11",
    "model_options.width": 1 / 8,
    "norm": "batch",
    "dataset": "mnist1d",
    "batch_size": 128,
    "optimizer": "momentum",
    "learning_rate": 0.05,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "num_steps": 2000,
    "eval_every": 500,
    "log_every": 100,
    "checkpoint_every": 1000,
}

PRESETS = {
    "smoke": {"model": "vgg", "model_options.config": (16, "M", 32, "M", 64, "M"), "model_options.width": 1.0,
              "batch_size": 64, "num_steps": 40, "eval_every": 40, "log_every": 10, "checkpoint_every": 20},
    "cpu": {},
    "gpu": {"model_options.width": 1.0, "dataset": "cifar10", "augment": True, "normalize_inputs": True,
            "learning_rate": 0.05, "weight_decay": 5e-4, "num_steps": 30000, "eval_batch_size": 1000,
            "eval_every": 2000, "log_every": 200, "checkpoint_every": 2000},
}


def get_config(arg=None):
  return common.build(DEFAULTS, PRESETS, arg, "configs/vgg.py")
