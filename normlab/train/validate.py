"""Config validation before anything is loaded or compiled: every mistake is one line.

`validate(config)` raises `ConfigError` naming the key, the bad value and the valid choices, e.g.

    config.norm: unknown norm 'btach'; valid choices: none, batch, layer, ...
    config.batch_size: 100 is not divisible by the 8 devices; use a multiple of 8 (or set num_devices)

The schema is `normlab.train.base_config.get_base_config()`: its keys are the full set (any other
key is an error, so a typo never silently falls back to a default) and each key's type is its
default's; models, norms, placements and datasets are named by their registries.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import ml_collections as mlc

from normlab.errors import unknown as unknown_message
from normlab.train.base_config import get_base_config
from normlab.train.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
BN_MODES = ("sync", "local")
NAN_POLICIES = ("stop", "skip")


def _kind(default: Any) -> Any:
  return "options" if isinstance(default, mlc.ConfigDict) else type(default)


# key -> expected type: int, float (ints accepted), str, bool, or "options" (a ConfigDict / dict).
SCHEMA: dict[str, Any] = {k: _kind(v) for k, v in get_base_config().items()}
# Keys that do not change a run's results: a finished/resumed run may differ in these only.
HARMLESS_KEYS = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "data_dir",
                 "devices")  # devices: real or emulated, the same math (normlab.train.devices)


def _fail(key: str, message: str) -> None:
  raise ConfigError(f"config.{key}: {message}")


def _check_type(key: str, value: Any, kind: Any) -> None:
  if kind == "options":
    if not isinstance(value, (mlc.ConfigDict, dict)):
      _fail(key, f"{value!r} is not a dict of options")
    return
  ok = {
      bool: lambda v: isinstance(v, bool),
      int: lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
      float: lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
      str: lambda v: isinstance(v, str),
  }[kind](value)
  if not ok:
    _fail(key, f"{value!r} is not a {kind.__name__}")


def _check_choice(key: str, value: str, valid, what: str, aliases=None) -> None:
  if value not in valid:
    raise ConfigError(unknown_message(what, value, valid, prefix=f"config.{key}", aliases=aliases))


def _check(key: str, value, cond: Callable[[Any], bool], requirement: str) -> None:
  if not cond(value):
    _fail(key, f"{value!r} is invalid: must be {requirement}")


def _models():
  from normlab import models  # the model zoo (flax), imported only when validating
  return models


def model_choices() -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(MODEL_NAMES, PLACEMENTS) from normlab.models."""
  models = _models()
  return tuple(models.MODEL_NAMES), tuple(models.PLACEMENTS)


def device_count() -> int:
  import jax
  return jax.device_count()


def check_devices(config: mlc.ConfigDict, available: int) -> None:
  """config.devices against config.num_devices and the `available` devices (normlab.train.devices)."""
  import jax

  from normlab.train import devices
  devices.choose(config.devices, config.num_devices, available, jax.process_count())


def validate(config: mlc.ConfigDict, *, num_available_devices: int | None = None) -> int:
  """Checks `config`; returns the number of devices the run uses. Raises ConfigError (one line)."""
  from normlab import data, registry

  keys = set(config.keys())
  unknown = sorted(keys - set(SCHEMA))
  if unknown:
    raise ConfigError(unknown_message("config key", unknown[0], sorted(SCHEMA), prefix=f"config.{unknown[0]}"))
  missing = [k for k in SCHEMA if k not in keys]
  if missing:
    raise ConfigError(f"config.{missing[0]}: missing (start the config from get_base_config(), "
                      f"normlab.train.base_config or configs/common.py)")
  for key, kind in SCHEMA.items():
    _check_type(key, config[key], kind)

  model_names, placements = model_choices()
  _check_choice("model", config.model, model_names, "model")
  _check_choice("norm", config.norm, registry.NORM_NAMES, "norm", registry.NORM_ALIASES)
  _check_choice("dataset", config.dataset, data.DATASET_NAMES, "dataset")
  _check_choice("optimizer", config.optimizer, OPTIMIZERS, "optimizer")
  _check_choice("schedule", config.schedule, SCHEDULES, "schedule")
  _check_choice("norm_placement", config.norm_placement, placements, "placement")
  _check_choice("bn_mode", config.bn_mode, BN_MODES, "bn_mode")
  _check_choice("nan_policy", config.nan_policy, NAN_POLICIES, "nan_policy")

  input_shape = data.get_dataset_info(config.dataset).input_shape
  if config.augment and len(input_shape) != 3:
    _fail("augment", f"True needs images (H, W, C); dataset {config.dataset!r} has examples of shape "
          f"{input_shape}")

  positive = lambda v: v > 0  # noqa: E731
  for key in ("batch_size", "eval_batch_size", "num_steps", "learning_rate", "eval_every", "log_every",
              "checkpoint_every", "keep_checkpoints"):
    _check(key, config[key], positive, "> 0")
  non_negative = lambda v: v >= 0  # noqa: E731
  for key in ("weight_decay", "grad_clip_norm", "seed", "num_devices", "warmup_steps", "debug_nan_at_step"):
    _check(key, config[key], non_negative, ">= 0")
  for key in ("momentum", "adam_b1", "adam_b2", "label_smoothing"):
    _check(key, config[key], lambda v: 0 <= v < 1, "in [0, 1)")
  if config.schedule == "warmup_cosine":
    _check("warmup_steps", config.warmup_steps, lambda v: 0 < v < config.num_steps,
           f"in (0, num_steps={config.num_steps}) for schedule 'warmup_cosine'")

  norm_valid = tuple(o for o in registry.valid_options(config.norm) if o != "axis_name")
  for option, value in config.norm_options.items():
    if option == "axis_name":
      _fail("norm_options.axis_name", "is set by bn_mode ('sync' or 'local'), not in norm_options")
    if option not in norm_valid:
      raise ConfigError(unknown_message(f"{config.norm} norm option", option, norm_valid,
                                        prefix=f"config.norm_options.{option}"))
  try:
    registry.make_norm(config.norm, **dict(config.norm_options))
  except (TypeError, ValueError) as e:
    _fail("norm_options", str(e).splitlines()[0])

  model_valid = tuple(_models().model_options(config.model))
  for option in config.model_options.keys():
    if option not in model_valid:
      raise ConfigError(unknown_message(f"{config.model} model option", option, model_valid,
                                        prefix=f"config.model_options.{option}"))

  _check_model_builds(config, input_shape)

  available = device_count() if num_available_devices is None else num_available_devices
  check_devices(config, available)
  n = config.num_devices or available
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % n:
      _fail(key, f"{config[key]} is not divisible by the {n} devices; use a multiple of {n} "
            f"(or set num_devices)")
  return n


def _check_model_builds(config: mlc.ConfigDict, input_shape) -> None:
  """Option values that only the data can check (e.g. num_groups against the channel counts): trace
  the model's init on one example's shape (no compute) and report its error as one line."""
  import jax
  import jax.numpy as jnp

  from normlab import data, models, registry
  try:
    model = models.get_model(config.model, num_classes=data.get_dataset_info(config.dataset).num_classes,
                             norm=registry.make_norm(config.norm, **dict(config.norm_options)),
                             placement=config.norm_placement, **config.model_options.to_dict())
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2,) + tuple(input_shape)), train=False))
  except (TypeError, ValueError) as e:
    opts = {f"norm_options.{k}": v for k, v in config.norm_options.items()}
    opts.update({f"model_options.{k}": v for k, v in config.model_options.items()})
    where = ", ".join(f"{k}={v!r}" for k, v in opts.items()) or "the defaults"
    _fail("model", f"{config.model!r} with norm {config.norm!r} ({where}) does not build on "
          f"{config.dataset!r}: {str(e).splitlines()[0]}")


def check_batch_fits(config: mlc.ConfigDict, num_train_examples: int) -> None:
  """After loading: the global batch must fit in the train split (no partial epochs)."""
  if config.batch_size > num_train_examples:
    _fail("batch_size", f"{config.batch_size} is larger than the {num_train_examples} training examples "
          f"of {config.dataset!r}")
