"""ResNets + batch norm: ResNet-1D on MNIST-1D (default), a 2-D ResNet on sklearn digits, CIFAR ResNets.

Run:  python scripts/train.py --config=configs/resnet.py:cpu --workdir=/tmp/resnet
Presets (2 CPU cores unless noted):
  smoke    2-stage ResNet-1D (8/16 channels), 60 steps on MNIST-1D: ~15 s; accuracy meaningless.
  cpu      ResNet-1D (3 stages x 2 blocks, 16/32/64 channels), 1000 steps on MNIST-1D:
           test accuracy ~99% in about a minute (MNIST-1D paper's CNN: 94%).
  digits   2-D ResNet (3 stages x 1 block, 16/32/64) on 8x8 sklearn digits, 1500 steps: ~98%, ~1-2 min.
  gpu      ResNet-20 on CIFAR-10 (He et al. 2016: 64k steps, batch 128, lr 0.1, wd 1e-4, crop+flip):
           ~91.5% on one GPU in ~30 min. Needs CIFAR-10 prepared (the error says how).
  cifar100 ResNet-18 (CIFAR stem) on CIFAR-100, 60k steps: ~76% on one GPU. Needs CIFAR-100 prepared.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # loaded by file path (config_flags, the sweep): make `configs` importable
  sys.path.insert(0, _ROOT)
from configs import common  # noqa: E402

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
               "model_options.widths": (32, 64, 128), "batch_size": 64, "eval_batch_size": 360,
               "normalize_inputs": True, "num_steps": 1500, "eval_every": 500, "log_every": 100,
               "checkpoint_every": 500},
    "gpu": {**_CIFAR, "model": "resnet20", "dataset": "cifar10", "num_steps": 64000, "weight_decay": 1e-4,
            "nesterov": False},
    "cifar100": {**_CIFAR, "model": "resnet", "dataset": "cifar100", "model_options.stage_sizes": (2, 2, 2, 2),
                 "model_options.widths": (64, 128, 256, 512), "num_steps": 60000},
}


def get_config(arg=None):
  c = common.get_base_config()
  c.model = "resnet1d"  # 3 stages x 2 basic blocks, 32/64/128 channels, kernel 5
  c.norm = "batch"
  c.dataset = "mnist1d"
  c.batch_size = 128
  c.optimizer = "momentum"
  c.learning_rate = 0.1
  c.weight_decay = 5e-4
  c.schedule = "cosine"
  c.num_steps = 800
  c.eval_every = 200
  c.log_every = 50
  c.checkpoint_every = 400
  return common.with_preset(c, PRESETS, arg, "configs/resnet.py")
