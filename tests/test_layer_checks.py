"""The Flax layers' one-line errors for bad inputs (dtype, mask) name the layer or the function it wraps;
integer inputs are promoted as flax promotes them. Their single-value-per-channel error names the
layer's `allow_single_value` option; a config that trains on one value per channel names
`norm_options.allow_single_value`. Everything is traced with jax.eval_shape (no compilation) except the
one training-loop test.
"""
from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from normlab.checks import SingleValueError
from normlab.registry import make_norm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, C = 4, 8
RNGS = {"params": jax.random.key(0, impl="rbg"), "noise": jax.random.key(1, impl="rbg")}
OPTIONS = {"group": {"num_groups": 4}, "ghost_batch": {"virtual_batch_size": 2}}
# registry name -> (the function it wraps in train mode, in eval mode)
WRAPS = {
    "batch": ("batch_norm", "batch_norm"),
    "layer": ("layer_norm", "layer_norm"),
    "instance": ("instance_norm", "instance_norm"),
    "group": ("group_norm", "group_norm"),
    "rms": ("rms_norm", "rms_norm"),
    "ghost_batch": ("ghost_batch_norm", "batch_norm"),
    "batch_renorm": ("batch_renorm", "batch_norm"),
    "frozen_batch": ("frozen_batch_norm", "frozen_batch_norm"),
    "l1_batch": ("lp_batch_norm", "lp_batch_norm"),
    "l2_batch": ("lp_batch_norm", "lp_batch_norm"),
    "linf_batch": ("lp_batch_norm", "lp_batch_norm"),
    "noisy_batch": ("noisy_batch_norm", "batch_norm"),
    "frn": ("filter_response_norm", "filter_response_norm"),
    "evonorm_b0": ("evonorm_b0", "evonorm_b0"),
    "evonorm_s0": ("evonorm_s0", "evonorm_s0"),
    "switchable": ("switchable_norm", "switchable_norm"),
    "local_response": ("local_response_norm", "local_response_norm"),
}
BATCH_STATS = ("batch", "ghost_batch", "batch_renorm", "l1_batch", "l2_batch", "linf_batch", "noisy_batch",
               "evonorm_b0", "switchable")


def _error(f):
  with pytest.raises((ValueError, TypeError)) as info:
    f()
  msg = str(info.value)
  assert "\n" not in msg, msg
  return type(info.value), msg


def _apply(name, x, *, train, mask=None, **options):
  """The registry's layer for `name` applied to x in train or eval mode (shapes only)."""
  factory = make_norm(name, **OPTIONS.get(name, {}), **options)
  good = jnp.zeros(x.shape, jnp.float32)
  variables = jax.eval_shape(lambda: factory.build(train=False).init(RNGS, good))
  mod = factory.build(train=train)
  return jax.eval_shape(lambda v: mod.apply(v, x, mask=mask, rngs=RNGS, mutable=["batch_stats"])[0], variables)


def _names(name):
  """The names an error of this layer may start with: the layer's class or the function it wraps."""
  return (type(make_norm(name, **OPTIONS.get(name, {})).build(train=True)).__name__,) + WRAPS[name]


@pytest.mark.parametrize("name", sorted(WRAPS))
@pytest.mark.parametrize("dtype", [jnp.complex64, jnp.bool_])
def test_layer_dtype_error_is_one_line_naming_the_layer(name, dtype):
  x = jnp.zeros((N, 3, 3, C), dtype)
  for train in (True, False):
    exc, msg = _error(lambda: _apply(name, x, train=train))
    assert exc is TypeError and msg.split(":")[0] in _names(name), msg
    assert f"x has dtype {np.dtype(dtype).name}" in msg and "float32" in msg, msg


@pytest.mark.parametrize("name", sorted(WRAPS))
def test_layer_promotes_integer_input_as_flax(name):
  assert _apply(name, jnp.zeros((N, 3, 3, C), jnp.int32), train=True).dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(WRAPS))
def test_layer_mask_error_is_one_line_naming_the_layer(name):
  x = jnp.zeros((N, 3, 3, C))
  exc, msg = _error(lambda: _apply(name, x, train=True, mask=jnp.ones((N - 1, 1, 1, 1), bool)))
  assert exc is ValueError and msg.split(":")[0] in _names(name), msg
  assert "mask of shape (3, 1, 1, 1) does not broadcast" in msg, msg
  exc, msg = _error(lambda: _apply(name, x, train=True, mask=jnp.ones((N, 1, 1, 1), jnp.complex64)))
  assert exc is TypeError and msg.split(":")[0] in _names(name) and "mask has dtype complex64" in msg, msg


@pytest.mark.parametrize("name", BATCH_STATS)
def test_layer_single_value_error_names_the_layer_option(name):
  x = jnp.ones((1, 1, C))
  layer = type(make_norm(name).build(train=True)).__name__
  exc, msg = _error(lambda: _apply(name, x, train=True))
  assert exc is SingleValueError
  assert msg.split(":")[0] in (layer, f"{layer} ({WRAPS[name][0]})"), msg
  assert "training-mode batch statistics over 1 value per channel" in msg, msg
  assert msg.endswith(f"set {layer}(allow_single_value=True)")
  assert _apply(name, x, train=True, allow_single_value=True).shape == x.shape
  assert _apply(name, x, train=False).shape == x.shape  # eval mode uses the running statistics


@pytest.mark.devices(8)
@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_config_single_value_error_names_the_config_option(tmp_path):
  """8 examples on 8 fake devices, local batch norm: one value per channel per device (MLP)."""
  from normlab.train import ConfigError, train_and_evaluate
  spec = importlib.util.spec_from_file_location("cfg_mlp", os.path.join(REPO_ROOT, "configs", "mlp.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.model_options.widths = (16,)
  config.batch_size, config.num_steps, config.norm, config.bn_mode = 8, 4, "batch", "local"
  with pytest.raises(ConfigError) as info:
    train_and_evaluate(config, str(tmp_path / "w"))
  msg = str(info.value)
  assert "\n" not in msg and "1 value per channel" in msg, msg
  assert "--config.norm_options.allow_single_value=True" in msg, msg
  print(msg)
