"""Shared defaults of every experiment config, and the preset machinery.

An experiment config (configs/mlp.py, ...) declares its model/dataset defaults and its presets, both
as {dotted.key: value} overrides of `get_base_config()`; `get_config(arg)` builds it with `build`:

    DEFAULTS = {"model": "mlp", "model_options.widths": (256, 256), "num_steps": 3000, ...}
    PRESETS = {"smoke": {"num_steps": 50, "model_options.widths": (32,)}, "cpu": {}, "gpu": {...}}
    def get_config(arg=None):
      return common.build(DEFAULTS, PRESETS, arg, "configs/mlp.py")

`get_base_config()` (normlab.train.base_config: every key, its default and so its type) is what
`normlab.train.validate` checks against; a key not there is an error. Keys that do not change the
result (how often to log, checkpoint, keep) are the only ones a finished or resumed run may differ in.
`check_preset` is the one preset check of the model and study configs.
"""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections as mlc

from normlab.errors import UserError, unknown
from normlab.train.base_config import get_base_config  # noqa: F401 (the configs' base)

DEFAULT_PRESET = "cpu"
PRESET_NAMES = ("smoke", "cpu", "gpu")  # every config file has these


def check_preset(arg: str | None, valid, source: str) -> str:
  """`arg` (default 'cpu') if it is one of `valid`; else a one-line UserError (a ValueError) naming
  `source` and the valid presets."""
  preset = arg or DEFAULT_PRESET
  if preset not in valid:
    raise UserError(unknown("preset", preset, valid, prefix=source))
  return preset


def _set(config: mlc.ConfigDict, dotted: str, value: Any) -> None:
  *parents, last = dotted.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[last] = value


def override(config: mlc.ConfigDict, values: Mapping[str, Any]) -> mlc.ConfigDict:
  """Set {dotted.key: value} `values` on `config`."""
  for key, value in values.items():
    _set(config, key, value)
  return config


def with_preset(config: mlc.ConfigDict, presets: Mapping[str, Mapping[str, Any]], arg: str | None,
                source: str) -> mlc.ConfigDict:
  """Apply preset `arg` (default 'cpu'): its {dotted.key: value} overrides (see `check_preset`)."""
  return override(config, presets[check_preset(arg, tuple(presets), source)])


def build(defaults: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]], arg: str | None,
          source: str) -> mlc.ConfigDict:
  """`get_base_config()` with a model family's `defaults`, then preset `arg` (see `with_preset`)."""
  return with_preset(override(get_base_config(), defaults), presets, arg, source)
