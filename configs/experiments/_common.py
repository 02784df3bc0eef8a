"""Shared pieces of the claim-study configs: the preset check, training defaults, common settings.

A study config (`study_config(arg, source)`: the preset in `preset`) holds study keys plus its
training keys: `train` (one ConfigDict of training keys) or `runs` ({run name: ConfigDict}), trained
by `normlab.analysis.training` (normlab.train's step) with each norm the study compares.
"""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections as mlc

PRESETS = ("smoke", "cpu", "gpu")


def train_defaults(**overrides: Any) -> mlc.ConfigDict:
  """The training keys `normlab.analysis.training` reads (normlab.train's names and meanings)."""
  c = mlc.ConfigDict()
  c.model = "mlp"
  c.model_options = mlc.ConfigDict()
  c.norm_options = mlc.ConfigDict()
  c.dataset = "digits"
  c.normalize_inputs = True
  c.batch_size = 64
  c.optimizer = "momentum"
  c.learning_rate = 0.05
  c.momentum = 0.9
  c.nesterov = False
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.schedule = "constant"
  c.warmup_steps = 0
  c.weight_decay = 0.0
  c.grad_clip_norm = 0.0
  c.num_steps = 200
  c.seed = 0
  for k, v in overrides.items():
    c[k] = mlc.ConfigDict(v) if isinstance(v, dict) else v
  return c


def check_preset(arg: str | None, source: str) -> str:
  preset = arg or "cpu"
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r} for {source}; valid presets: {', '.join(PRESETS)}")
  return preset


def study_config(arg: str | None, source: str) -> mlc.ConfigDict:
  """An empty study config for preset `arg` (default 'cpu'; unknown -> ValueError naming `source`)."""
  c = mlc.ConfigDict()
  c.preset = check_preset(arg, source)
  return c


MNIST1D = {"dataset": "mnist1d", "normalize_inputs": False}  # (4000, 40, 1), already standardized
CIFAR10 = {"dataset": "cifar10", "normalize_inputs": True}   # the papers' setting: needs a prepared TFDS dir
# VGG-style conv stacks (normlab.models "vgg": channels, "M" = max-pool). Plain VGG-11 (8 convs,
# lecun-normal init) does not train with SGD in a few hundred steps on the small CPU datasets (loss
# stays at ln 10), so the cpu presets use VGG4 and the smoke presets VGG2.
VGG4 = (16, "M", 32, "M", 64, 64, "M")
VGG2 = (8, "M", 16, "M")


def vgg_train(preset: str) -> mlc.ConfigDict:
  """The training setup of the VGG studies of Santurkar et al. (noisy_bn, lp_norms): VGG4 on 8x8
  digits, batch 64, 500 steps (cpu); VGG2, batch 32, 30 steps (smoke); the paper's VGG-11 on
  CIFAR-10, lr 0.1, batch 128, 10000 steps (gpu)."""
  if preset == "gpu":
    return train_defaults(model="vgg11", learning_rate=0.1, batch_size=128, num_steps=10000, **CIFAR10)
  small = preset == "smoke"
  return train_defaults(model="vgg", model_options={"config": VGG2 if small else VGG4}, dataset="digits",
                        learning_rate=0.05, batch_size=32 if small else 64, num_steps=30 if small else 500)


def set_all_runs(config: mlc.ConfigDict, values: Mapping[str, Any]) -> None:
  for run in config.runs.values():
    for k, v in values.items():
      run[k] = v
