"""Pieces every model shares: the injected norm, kernels with the norm's reparam, norm+act, capture.

A normalized block is `linear/conv -> norm -> act` (placement 'before_activation') or
`linear/conv -> act -> norm` ('after_activation'). A norm that `replaces_activation` (FRN, EvoNorm)
is its own nonlinearity: the ReLU after it is skipped in both placements, so they coincide.

Capture: `norm_act` sows into the 'intermediates' collection, in the calling module's scope,
  `<name>_preact`  the linear/conv output (the norm's input in 'before_activation'),
  `<name>_normed`  the norm's output,
so `model.apply(vars, x, mutable=['intermediates'])` returns them; `flatten_intermediates` turns the
nested tree into {'stage1_block0/norm1_preact': array, ...}.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from normlab import layers
from normlab.registry import NormFactory, as_factory

PLACEMENTS = ("before_activation", "after_activation")


def as_norm(norm: Any) -> NormFactory:
  """A norm name, a `make_norm` factory or any flax module constructor (flax's own norms included)."""
  return as_factory(norm)


def check_placement(placement: str, *, model: str, valid: Sequence[str] = PLACEMENTS) -> str:
  if placement not in valid:
    raise ValueError(f"{model}: unknown placement {placement!r}; valid placements: {', '.join(valid)}")
  return placement


def norm_layer(norm: NormFactory, axis_name: Any, name: str, train: bool = True, dtype: Any = None) -> nn.Module:
  """Builds the norm module: `use_running_average=not train`, `axis_name` (SyncBN) and the compute
  `dtype`, each only for norms that have that field (see `NormFactory.build`)."""
  return norm.build(train=train, axis_name=axis_name, name=name, dtype=dtype)


def linear_bias(norm: NormFactory, placement: str) -> bool:
  """Whether the linear/conv layer feeding `norm` needs its own bias: not when the norm's centering
  (over the batch or each instance, a fact of its registry entry) cancels it."""
  return not (placement == "before_activation" and norm.bias_cancelling)


def dense(norm: NormFactory, features: int, *, name: str, use_bias: bool = True,
          data_init: bool = False) -> layers.Dense:
  return layers.Dense(features=features, use_bias=use_bias, reparam=norm.reparam, data_init=data_init,
                      name=name)


def conv(norm: NormFactory, features: int, kernel_size: Sequence[int], *, name: str, strides: int = 1,
         use_bias: bool = True, data_init: bool = False) -> layers.Conv:
  return layers.Conv(features=features, kernel_size=tuple(kernel_size), strides=strides, use_bias=use_bias,
                     reparam=norm.reparam, data_init=data_init, name=name)


def example_mask(mask, ndim: int):
  """(N,) per-example validity -> (N, 1, ..., 1), broadcastable to a rank-`ndim` activation."""
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.ndim != 1:
    raise ValueError(f"mask must have shape (N,) (one flag per example), got shape {mask.shape}")
  return mask.reshape(mask.shape + (1,) * (ndim - 1))


def norm_act(module: nn.Module, x, *, norm: NormFactory, placement: str, axis_name: Any, name: str,
             train: bool, mask=None, activation: bool = True, act=nn.relu):
  """Norm + activation in `placement` order, sowing `<name>_preact` and `<name>_normed` on `module`.

  activation=False (e.g. before a residual add) applies the norm alone; `mask` (broadcastable to x)
  keeps invalid examples out of batch statistics.
  """
  module.sow("intermediates", f"{name}_preact", x)
  use_act = activation and not norm.replaces_activation
  layer = norm_layer(norm, axis_name, name, train, dtype=x.dtype)
  if placement == "after_activation" and use_act:
    y = layer(act(x), mask=mask)
    module.sow("intermediates", f"{name}_normed", y)
    return y
  y = layer(x, mask=mask)
  module.sow("intermediates", f"{name}_normed", y)
  return act(y) if use_act else y


def flatten_intermediates(tree) -> dict[str, jax.Array]:
  """{'a': {'b_preact': (v,)}} -> {'a/b_preact': v}: the sown values, keyed by their module path."""
  out = {}

  def visit(prefix, node):
    if not hasattr(node, "items"):
      out[prefix] = node[-1] if isinstance(node, tuple) and node else node
      return
    for key, value in node.items():
      visit(f"{prefix}/{key}" if prefix else key, value)

  if "intermediates" in tree and not isinstance(tree["intermediates"], tuple):
    tree = tree["intermediates"]
  visit("", tree)
  return out
