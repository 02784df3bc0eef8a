"""The training state: one pytree holding everything a resume needs (the data order is (seed, step)).

`step` counts completed updates (skipped ones included); `last_train_loss` is the loss of the latest
step (so `final_train_loss` survives a resume). `num_skipped` counts the updates dropped for
a non-finite loss/gradient (nan_policy='skip'); `nonfinite_step` is the first step (1-based) whose
loss/gradient was non-finite, -1 if none: under nan_policy='stop' the state freezes from there on
and the loop stops with that step's number.
"""
from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  num_skipped: jax.Array
  nonfinite_step: jax.Array
  last_train_loss: jax.Array


# XLA's RngBitGenerator keys: they compile several times faster on CPU than threefry (ResNet init:
# ~5 s instead of ~12 s on 2 cores); bit-exact on a given platform, not across CPU/GPU.
PRNG_IMPL = "rbg"


def make_key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl=PRNG_IMPL)


def input_apply(model: nn.Module, x) -> Any:
  """model.apply for inputs `x`: an array, or {'x', 'mask'} (sequences with padding masks), called as
  model(x['x'], mask=x['mask'])."""
  if not isinstance(x, dict):
    return model.apply

  def apply(variables, inp, **kw):
    return model.apply(variables, inp["x"], mask=inp["mask"], **kw)
  return apply


def init_variables(model: nn.Module, x, seed: int) -> dict:
  """Model variables from an example batch (eval mode: no cross-device statistics needed); `x` as in
  `input_apply`."""
  params_key, noise_key, dropout_key = jax.random.split(jax.random.fold_in(make_key(seed), 2**31 - 1), 3)
  rngs = {"params": params_key, "noise": noise_key, "dropout": dropout_key}

  def init(r, x):
    if isinstance(x, dict):
      return model.init(r, x["x"], mask=x["mask"], train=False)
    return model.init(r, x, train=False)
  return jax.jit(init)(rngs, jax.tree.map(jnp.asarray, x))


def create_state(variables: dict, tx: optax.GradientTransformation) -> TrainState:
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      num_skipped=jnp.zeros((), jnp.int32),
      nonfinite_step=jnp.full((), -1, jnp.int32),
      last_train_loss=jnp.full((), jnp.nan, jnp.float32),
  )


def num_params(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def tree_bytes(tree) -> int:
  return int(sum(np.prod(p.shape) * np.dtype(p.dtype).itemsize for p in jax.tree.leaves(tree)))
