"""BN's train/inference statistics gap vs batch size, BN vs GN (seed 000, BN's problems 1 and 4).

Run:  python -m experiments.train_eval_gap --preset=cpu --workdir=/tmp/train_eval_gap
For each norm and training batch size: train with normlab.train's step, then evaluate the test set in
train mode (test batches of the training batch size, their own statistics) and eval mode (running
statistics) on the same examples.
Presets: smoke (2 batch sizes, 20 steps: ~30 s on 2 CPU cores), cpu (a 4-conv VGG on 8x8 digits,
batch sizes 2..128, 9600 examples each (6.7 epochs), linearly scaled lr: ~3 min on 2 idle cores), gpu (ResNet-20 on CIFAR-10, needs a prepared
TFDS dir; untested here).
Expected: BN's modes differ, most at small batch; GN's gap is exactly 0.
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/train_eval_gap.py")
  preset = c.preset
  c.norms = ("batch", "group")
  c.norm_options = mlc.ConfigDict({"group": {"num_groups": 4}})
  c.batch_sizes = (2, 4, 8, 32, 128)  # ascending
  c.seeds = (0,)
  c.probe_batch_size = 32
  c.test_batch_sizes = (1, 2, 4, 8, 32, 128)
  # The GN paper's protocol: the same number of training examples at every batch size and a learning
  # rate proportional to it (lr at base_batch_size = train.learning_rate). examples_per_run = 0 trains
  # train.num_steps steps at every batch size instead; linear_lr = False keeps one learning rate.
  c.examples_per_run = 9600
  c.linear_lr = True
  c.base_batch_size = 32
  c.train = _common.train_defaults(model="vgg", model_options={"config": _common.VGG4}, dataset="digits",
                                   learning_rate=0.02, num_steps=300)
  if preset == "smoke":
    c.batch_sizes = (4, 32)
    c.test_batch_sizes = (4, 32)
    c.train.model_options.config = _common.VGG2
    c.train.num_steps = 20
    c.examples_per_run = 0
  elif preset == "gpu":
    c.seeds = (0, 1, 2)
    c.batch_sizes = (2, 4, 8, 16, 32, 64, 128, 256)
    c.test_batch_sizes = (1, 2, 4, 8, 32, 128, 512)
    c.examples_per_run = 640000
    c.train = _common.train_defaults(model="resnet20", dataset="cifar10", learning_rate=0.05, num_steps=5000)
  return c
