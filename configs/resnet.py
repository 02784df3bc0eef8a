"""ResNets + batch norm: ResNet-1D on MNIST-1D (default), a 2-D ResNet on sklearn digits, CIFAR ResNets.

Run:  python scripts/train.py --config=configs/resnet.py:cpu --workdir=/tmp/resnet
Presets (measured on 2 shared, heavily loaded CPU cores, jax 0.10.2; wall = whole process):
  smoke    1-stage ResNet-1D (32 channels, kernel 5), 60 steps on MNIST-1D: ~9 s wall (compile ~4 s);
           ~62% accuracy, meaningless.
  cpu      resnet1d (3 stages x 2 basic blocks, 32/64/128 channels, kernel 5), momentum 0.1, wd 5e-4,
           800 steps: 99.0% test accuracy (target >= 94%, the MNIST-1D paper's CNN: 94%) in ~2 min
           (9 steps/s).
  digits   2-D ResNet (3 stages x 1 block, 16/32/64) on 8x8 sklearn digits, 800 steps: 100.0% test
           accuracy (360/360; target >= 97%) in ~40 s (52 steps/s).
  gpu      ResNet-20 on CIFAR-10 (He et al. 2016 recipe: batch 128, lr 0.1, wd 1e-4, crop+flip, 64k
           steps): they report 91.3%; not measured here (no GPU, no CIFAR). Needs CIFAR-10 prepared
           (the error says how).
  cifar100 ResNet-18 (CIFAR stem) on CIFAR-100, 60k steps: expect ~75%; not measured here. Needs
           CIFAR-100 prepared.
"""

from configs import common

DEFAULTS = {
    "model": "resnet1d",  # 3 stages x 2 basic blocks, 32/64/128 channels, kernel 5
    "norm": "batch",
    "dataset": "mnist1d",
    "batch_size": 128,
    "optimizer": "momentum",
    "learning_rate": 0.1,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "num_steps": 800,
    "eval_every": 200,
    "log_every": 50,
    "checkpoint_every": 400,
}

_CIFAR = {"optimizer": "momentum", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True,
          "schedule": "cosine", "weight_decay": 5e-4, "batch_size": 128, "eval_batch_size": 1000,
          "augment": True, "normalize_inputs": True, "eval_every": 2000, "log_every": 200,
          "checkpoint_every": 2000}

PRESETS = {
    "smoke": {"model": "resnet", "model_options.stage_sizes": (1,), "model_options.widths": (32,),
              "model_options.kernel_size": 5, "batch_size": 64, "num_steps": 60, "eval_every": 60,
              "log_every": 20, "checkpoint_every": 30},
    "cpu": {},
    "digits": {"model": "resnet", "dataset": "digits", "model_options.stage_sizes": (1, 1, 1),
               "model_options.widths": (16, 32, 64), "batch_size": 64, "eval_batch_size": 360,
               "normalize_inputs": True, "num_steps": 800, "eval_every": 200, "log_every": 50,
               "checkpoint_every": 400},
    "gpu": {**_CIFAR, "model": "resnet20", "dataset": "cifar10", "num_steps": 64000, "weight_decay": 1e-4,
            "nesterov": False},
    "cifar100": {**_CIFAR, "model": "resnet", "dataset": "cifar100", "model_options.stage_sizes": (2, 2, 2, 2),
                 "model_options.widths": (64, 128, 256, 512), "num_steps": 60000},
}


def get_config(arg=None):
  return common.build(DEFAULTS, PRESETS, arg, "configs/resnet.py")
