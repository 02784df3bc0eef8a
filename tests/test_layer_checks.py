"""The Flax layers raise the same one-line errors as the functions they wrap (bad dtype, bad mask), and
their single-value-per-channel error names the layer's `allow_single_value` option; a config that
trains on one value per channel names `norm_options.allow_single_value`. Everything is traced with
jax.eval_shape (no compilation) except the one training-loop test.
"""
from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normlab as nl
from normlab.checks import SingleValueError
from normlab.registry import make_norm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, C = 4, 8
RNGS = {"params": jax.random.key(0, impl="rbg"), "noise": jax.random.key(1, impl="rbg")}
RUNNING = nl.Moments(jnp.zeros(C), jnp.ones(C))
OPTIONS = {"group": {"num_groups": 4}, "ghost_batch": {"virtual_batch_size": 2}}
# registry name -> (the function it wraps in train mode, in eval mode, a call of that function)
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
CALLS = {
    "group_norm": lambda x, **kw: nl.group_norm(x, num_groups=4, **kw),
    "ghost_batch_norm": lambda x, **kw: nl.ghost_batch_norm(x, virtual_batch_size=2, **kw),
    "batch_renorm": lambda x, **kw: nl.batch_renorm(x, running=RUNNING, **kw),
    "frozen_batch_norm": lambda x, **kw: nl.frozen_batch_norm(x, RUNNING.mean, RUNNING.var),
    "noisy_batch_norm": lambda x, **kw: nl.noisy_batch_norm(x, RNGS["noise"], **kw),
    "evonorm_s0": lambda x, **kw: nl.evonorm_s0(x, num_groups=4),
    "rms_norm": lambda x, **kw: nl.rms_norm(x),
    "filter_response_norm": lambda x, **kw: nl.filter_response_norm(x),
    "local_response_norm": lambda x, **kw: nl.local_response_norm(x),
}
BATCH_STATS = ("batch", "ghost_batch", "batch_renorm", "l1_batch", "l2_batch", "linf_batch", "noisy_batch",
               "evonorm_b0", "switchable")


def _error(f):
  with pytest.raises((ValueError, TypeError)) as info:
    f()
  msg = str(info.value)
  assert "\n" not in msg, msg
  return type(info.value), msg


NO_MASK = ("frozen_batch_norm", "evonorm_s0", "rms_norm", "filter_response_norm", "local_response_norm")


def _function_error(fn, x, **kw):
  call = CALLS.get(fn, lambda x, **kw: getattr(nl, fn)(x, **kw))
  return _error(lambda: jax.eval_shape(lambda: call(x, **kw)))


def _layer_error(name, x, *, train, mask=None):
  mod = make_norm(name, **OPTIONS.get(name, {}))()
  good = jnp.zeros(x.shape, jnp.float32)
  variables = jax.eval_shape(lambda: mod.init(RNGS, good, train=False))
  return _error(lambda: jax.eval_shape(lambda v: mod.apply(v, x, train=train, mask=mask, rngs=RNGS,
                                                          mutable=["batch_stats"]), variables))


@pytest.mark.parametrize("name", sorted(WRAPS))
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.complex64])
def test_layer_dtype_error_is_the_functions(name, dtype):
  x = jnp.zeros((N, 3, 3, C), dtype)
  for train, fn in zip((True, False), WRAPS[name]):
    got = _layer_error(name, x, train=train)
    assert got[1].startswith(f"{fn}: x has dtype {np.dtype(dtype).name}"), (train, got)
    assert got == _function_error(fn, x), (name, train)


@pytest.mark.parametrize("name", sorted(WRAPS))
def test_layer_mask_error_is_the_functions(name):
  x, mask = jnp.zeros((N, 3, 3, C)), jnp.ones((N - 1, 1, 1, 1), bool)
  fn = WRAPS[name][0]
  got = _layer_error(name, x, train=True, mask=mask)
  assert got[1].startswith(f"{fn}: mask of shape (3, 1, 1, 1) does not broadcast"), got
  if fn not in NO_MASK:  # these functions take no mask: their layers check it under the function's name
    assert got == _function_error(fn, x, mask=mask)
  complex_mask = _layer_error(name, x, train=True, mask=jnp.ones((N, 1, 1, 1), jnp.complex64))
  assert complex_mask[0] is TypeError and complex_mask[1].startswith(f"{fn}: mask has dtype complex64")


@pytest.mark.parametrize("name", BATCH_STATS)
def test_layer_single_value_error_names_the_layer_option(name):
  x = jnp.ones((1, 1, C))
  mod = make_norm(name)()
  layer = type(mod).__name__
  exc, msg = _layer_error(name, x, train=True)
  assert exc is SingleValueError
  assert msg.startswith(f"{layer} ({WRAPS[name][0]}): training-mode batch statistics over 1 value per channel")
  assert msg.endswith(f"set {layer}(allow_single_value=True)")
  allowed = make_norm(name, allow_single_value=True)()
  variables = jax.eval_shape(lambda: allowed.init(RNGS, x, train=False))
  y, _ = jax.eval_shape(lambda v: allowed.apply(v, x, train=True, rngs=RNGS, mutable=["batch_stats"]),
                        variables)
  assert y.shape == x.shape
  assert jax.eval_shape(lambda v: mod.apply(v, x, train=False, rngs=RNGS), variables).shape == x.shape  # eval


@pytest.mark.devices(8)
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
