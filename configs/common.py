"""Shared defaults of every experiment config, and the preset machinery.

An experiment config (configs/mlp.py, ...) declares its model/dataset defaults and its presets, both
as {dotted.key: value} overrides of `get_base_config()`; `get_config(arg)` builds it with `build`:

    DEFAULTS = {"model": "mlp", "model_options.widths": (256, 256), "num_steps": 3000, ...}
    PRESETS = {"smoke": {"num_steps": 50, "model_options.widths": (32,)}, "cpu": {}, "gpu": {...}}
    def get_config(arg=None):
      return common.build(DEFAULTS, PRESETS, arg, "configs/mlp.py")

Every key here is checked by `normlab.train.validate` (types, ranges, names); a key not listed here
is an error there. Keys that do not change the result (how often to log, checkpoint, keep) are the
only ones a finished or resumed run may differ in.
"""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections as mlc

DEFAULT_PRESET = "cpu"


def get_base_config() -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  # Model: a name from normlab.models.MODEL_NAMES; options are its constructor fields.
  c.model = "mlp"
  c.model_options = mlc.ConfigDict()
  # Norm: a name from normlab.registry.NORM_NAMES; options are its layer fields (not axis_name: see bn_mode).
  c.norm = "batch"
  c.norm_options = mlc.ConfigDict()
  c.norm_placement = "before_activation"  # or "after_activation"
  c.bn_mode = "sync"  # "sync": batch statistics over the global batch; "local": over each device's shard
  # Data: a name from normlab.data.DATASET_NAMES.
  c.dataset = "mnist1d"
  c.data_dir = ""  # "" = $NORMLAB_DATA_DIR, else ~/.cache/normlab/tfds
  c.augment = False  # random crop (pad 4) + horizontal flip, for images
  c.normalize_inputs = False  # per-channel mean/std of the dataset
  c.batch_size = 128  # global: split over the devices (must divide evenly)
  c.eval_batch_size = 512  # global; the last eval batch is padded and masked
  # Optimization.
  c.optimizer = "momentum"  # sgd | momentum | adam | adamw
  c.learning_rate = 0.1  # peak learning rate
  c.momentum = 0.9  # for "momentum"
  c.nesterov = False
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.schedule = "cosine"  # constant | cosine (to 0 at num_steps) | warmup_cosine
  c.warmup_steps = 0  # for warmup_cosine (must be > 0 there)
  c.weight_decay = 0.0  # on kernels only; decoupled for adamw, L2 otherwise
  c.grad_clip_norm = 0.0  # 0 = no clipping
  c.label_smoothing = 0.0
  c.num_steps = 1000
  # Bookkeeping (in steps).
  c.eval_every = 500  # plus at the end
  c.log_every = 50
  c.checkpoint_every = 500  # plus at the end
  c.keep_checkpoints = 2
  c.seed = 0  # model init, data order (with the step) and noise/dropout (with the step)
  c.nan_policy = "stop"  # "stop": stop at the first non-finite loss/grad; "skip": skip that update
  c.num_devices = 0  # 0 = all of jax.devices(); else the first N
  c.debug_nan_at_step = 0  # testing: >0 makes the loss NaN at that step (1-based)
  return c


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
  """Apply preset `arg` (default 'cpu'): its {dotted.key: value} overrides; unknown preset -> ValueError."""
  preset = arg or DEFAULT_PRESET
  if preset not in presets:
    raise ValueError(f"unknown preset {preset!r} for {source}; valid presets: {', '.join(presets)}")
  return override(config, presets[preset])


def build(defaults: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]], arg: str | None,
          source: str) -> mlc.ConfigDict:
  """`get_base_config()` with a model family's `defaults`, then preset `arg` (see `with_preset`)."""
  return with_preset(override(get_base_config(), defaults), presets, arg, source)
