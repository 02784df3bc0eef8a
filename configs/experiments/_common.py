"""Shared pieces of the claim-study configs (theory, ics, landscape): training defaults and presets.

A study config holds study keys plus `runs`: {run name: ConfigDict of training keys}, each trained
with and without the norm(s) in `norms` by `normlab.analysis.training` (normlab.train's step).
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


MNIST1D = {"dataset": "mnist1d", "normalize_inputs": False}  # (4000, 40, 1), already standardized


def set_all_runs(config: mlc.ConfigDict, values: Mapping[str, Any]) -> None:
  for run in config.runs.values():
    for k, v in values.items():
      run[k] = v
