"""Batch, layer, instance, group and RMS norm: each is one choice of the reduction set S over `core`.

These functions are the math every normlab layer runs: `normlab.layers` (flax.linen) and `normlab.nnx`
(flax.nnx) create the parameters and running statistics and call them. Inputs are channels-last by
default, (N, ..., C). `scale`/`bias` are optional arrays broadcastable to the input (per-channel (C,)
for batch/instance/group norm; over the normalized or feature axes for layer/RMS norm).

Defaults, one table (the only place these numbers are written):

    default                       functions, configs (normlab)    flax drop-ins (normlab.layers, normlab.nnx)
    momentum                      MOMENTUM = 0.9                  FLAX_MOMENTUM = 0.99
    epsilon, batch-type norms     EPS = 1e-5                      FLAX_BN_EPS = 1e-5
    epsilon, LN/GN/IN             EPS = 1e-5                      FLAX_EPS = 1e-6
    epsilon, RMS norm and FRN     EPS_RMS = 1e-6                  FLAX_EPS = 1e-6

Why they differ: the flax drop-ins take flax's values so that swapping the import changes nothing (a flax
recipe and checkpoint behave the same); the functions and the registry (configs, studies) take torch's
and the papers' values (torch's momentum 0.1 is our 0.9; eps 1e-5 is torch's and the GN paper's), under
which the studies' results were produced.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
from jax import lax

from normlab import checks
from normlab.core import (AxisName, Moments, affine, check_axis_name, normalize_with,
                          standardize_affine)

MOMENTUM, EPS, EPS_RMS = 0.9, 1e-5, 1e-6
FLAX_MOMENTUM, FLAX_BN_EPS, FLAX_EPS = 0.99, 1e-5, 1e-6


def _squeeze(stats: Moments, axes: tuple[int, ...]) -> Moments:
  return Moments(jnp.squeeze(stats.mean, axes), jnp.squeeze(stats.var, axes))


def _expand(stats: Moments, feature_axes: tuple[int, ...], ndim: int, shape) -> Moments:
  """Running statistics of feature shape -> broadcastable to the input."""
  bshape = [shape[a] if a in feature_axes else 1 for a in range(ndim)]
  return Moments(jnp.reshape(stats.mean, bshape), jnp.reshape(stats.var, bshape))


def batch_reduction_axes(ndim: int, feature_axes: int | Sequence[int], *, fn: str) -> tuple[int, ...]:
  feats = checks.canonical_axes(feature_axes, ndim, fn=fn, what="feature_axes")
  axes = tuple(a for a in range(ndim) if a not in feats)
  checks.check_nonempty(axes, fn=fn, why=f"feature_axes {feature_axes!r} cover every axis of a rank-{ndim} input")
  return axes


def num_devices(axis_name: AxisName, *, fn: str) -> int:
  """How many devices the statistics span: the product of the bound `axis_name` sizes (1 if None)."""
  return math.prod(lax.axis_size(n) for n in check_axis_name(axis_name, fn=fn))


def check_params(x, axes: tuple[int, ...], *, fn: str, axes_doc: str, **params) -> None:
  """scale=..., bias=...: each None or a real array that varies only along `axes` of x."""
  for what, p in params.items():
    checks.check_param(p, x.shape, axes, fn=fn, what=what, axes_doc=axes_doc)


PER_CHANNEL = "one value per channel, the last axis"


def batch_norm(x, scale=None, bias=None, *, eps: float = EPS, feature_axes: int | Sequence[int] = -1,
               axis_name: AxisName = None, mask=None, running: Moments | None = None,
               return_stats: bool = False, allow_single_value: bool = False):
  """Batch norm: S = every axis but the feature axes (+ the devices on `axis_name`: SyncBN).

  Train mode (running=None) standardizes with the batch statistics; with `return_stats=True` it also
  returns them (feature-shaped `Moments`) for `update_running_stats`. Eval mode: pass `running`.
  With `mask`, only valid elements enter the statistics, weighted by count across devices.
  Grouped SyncBN: on a 2-D mesh ("group", "batch") pass axis_name="batch" to reduce within groups.
  Train mode over a single value per channel raises `checks.SingleValueError` unless
  `allow_single_value=True` (the output is then the bias and the input gradient 0).
  """
  return named_batch_norm(x, scale, bias, eps=eps, feature_axes=feature_axes, axis_name=axis_name, mask=mask,
                          running=running, return_stats=return_stats, allow_single_value=allow_single_value,
                          fn="batch_norm")


def named_batch_norm(x, scale, bias, *, eps, feature_axes, axis_name, mask, running, return_stats,
                     allow_single_value, fn):
  """`batch_norm` whose errors name `fn` (the variant built on it)."""
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes = batch_reduction_axes(x.ndim, feature_axes, fn=fn)
  feats = tuple(a for a in range(x.ndim) if a not in axes)
  doc = f"feature_axes={feature_axes!r}"
  check_params(x, feats, fn=fn, axes_doc=doc, scale=scale, bias=bias)
  checks.check_mask_array(mask, x.shape, fn=fn)
  if running is not None:
    checks.check_running(running, x.shape, feats, fn=fn, axes_doc=doc)
    y = affine(normalize_with(x, _expand(running, feats, x.ndim, x.shape), eps), scale, bias, x.dtype)
    return (y, running) if return_stats else y
  checks.check_batch_values(x.shape, axes, num_devices(axis_name, fn=fn), fn=fn, allow=allow_single_value)
  y, stats = standardize_affine(x, axes, scale, bias, eps=eps, axis_name=axis_name, mask=mask)
  return (y, _squeeze(stats, axes)) if return_stats else y


def update_running_stats(running: Moments, batch: Moments, momentum: float = MOMENTUM) -> Moments:
  """Exponential moving average: running * momentum + batch * (1 - momentum) (torch's 0.1 = our 0.9)."""
  fn = "update_running_stats"
  if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
    raise ValueError(f"{fn}: momentum must be a number in [0, 1], got {momentum!r}")
  for what, m in (("running", running), ("batch", batch)):
    if not isinstance(m, tuple) or len(m) != 2:
      raise TypeError(f"{fn}: {what} must be normlab.Moments(mean, var), got {type(m).__name__}")
  for field, r, b in zip(Moments._fields, running, batch):
    checks.check_x(r, fn=fn, what=f"running.{field}")
    checks.check_x(b, fn=fn, what=f"batch.{field}")
    if jnp.shape(r) != jnp.shape(b):
      raise ValueError(f"{fn}: batch.{field} has shape {jnp.shape(b)}, expected running.{field}'s shape "
                       f"{jnp.shape(r)}")
  return Moments(*(momentum * r + (1.0 - momentum) * b.astype(r.dtype) for r, b in zip(running, batch)))


def _param_axes(x, reduction_axes, feature_axes, *, fn: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Layer/RMS norm: (S, the axes scale/bias may vary along: S and `feature_axes`)."""
  axes = checks.canonical_axes(reduction_axes, x.ndim, fn=fn, what="reduction_axes")
  feats = checks.canonical_axes(feature_axes, x.ndim, fn=fn, what="feature_axes")
  return axes, tuple(sorted(set(axes) | set(feats)))


def layer_norm(x, scale=None, bias=None, *, eps: float = EPS, reduction_axes: int | Sequence[int] = -1,
               feature_axes: int | Sequence[int] = -1, axis_name: AxisName = None, mask=None):
  """Layer norm: S = `reduction_axes` of each example (default the last axis), + the devices on
  `axis_name`; scale/bias vary along S and `feature_axes` (flax's meaning)."""
  fn = "layer_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes, params = _param_axes(x, reduction_axes, feature_axes, fn=fn)
  check_params(x, params, fn=fn, scale=scale, bias=bias,
               axes_doc=f"over reduction_axes={reduction_axes!r} or feature_axes={feature_axes!r}")
  checks.check_mask_array(mask, x.shape, fn=fn)
  check_axis_name(axis_name, fn=fn)
  return standardize_affine(x, axes, scale, bias, eps=eps, axis_name=axis_name, mask=mask)[0]


def rms_norm(x, scale=None, *, eps: float = EPS_RMS, reduction_axes: int | Sequence[int] = -1,
             feature_axes: int | Sequence[int] = -1, axis_name: AxisName = None, mask=None):
  """RMS norm: x / sqrt(mean(x^2) + eps) over `reduction_axes` (no centering, no bias); the rest as
  `layer_norm`."""
  fn = "rms_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes, params = _param_axes(x, reduction_axes, feature_axes, fn=fn)
  check_params(x, params, fn=fn, scale=scale,
               axes_doc=f"over reduction_axes={reduction_axes!r} or feature_axes={feature_axes!r}")
  checks.check_mask_array(mask, x.shape, fn=fn)
  check_axis_name(axis_name, fn=fn)
  return standardize_affine(x, axes, scale, None, eps=eps, axis_name=axis_name, mask=mask, center=False)[0]


def spatial_axes(ndim: int, *, fn: str) -> tuple[int, ...]:
  """Axes between batch (0) and channels (-1) of a channels-last input."""
  checks.check_min_rank(ndim, 3, fn=fn, layout="(N, spatial..., C): it needs at least one spatial axis")
  return tuple(range(1, ndim - 1))


def instance_norm(x, scale=None, bias=None, *, eps: float = EPS, feature_axes: int | Sequence[int] | None = None,
                  axis_name: AxisName = None, mask=None):
  """Instance norm: S = every axis of one example but the feature axes (+ the devices on `axis_name`).

  feature_axes=None: channels-last (N, spatial..., C), which needs a spatial axis. Explicit
  `feature_axes` (flax's meaning, scale/bias over them) may leave S empty: the output is then the bias.
  """
  fn = "instance_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  if feature_axes is None:
    feats, axes = (x.ndim - 1,), spatial_axes(x.ndim, fn=fn)
  else:
    feats = checks.canonical_axes(feature_axes, x.ndim, fn=fn, what="feature_axes")
    if 0 in feats:
      raise ValueError(f"{fn}: feature_axes {feature_axes!r} include the batch axis 0; valid feature axes: "
                       f"1..{x.ndim - 1}")
    axes = tuple(a for a in range(1, x.ndim) if a not in feats)
  check_params(x, feats, fn=fn, axes_doc=PER_CHANNEL if feature_axes is None else f"feature_axes={feature_axes!r}",
               scale=scale, bias=bias)
  checks.check_mask_array(mask, x.shape, fn=fn)
  check_axis_name(axis_name, fn=fn)
  return standardize_affine(x, axes, scale, bias, eps=eps, axis_name=axis_name, mask=mask)[0]


def group_axes(x_shape, num_groups: int | None, group_size: int | None, reduction_axes=None, *,
               fn: str) -> tuple[int, tuple[int, ...]]:
  """(G, S on the grouped view (N, ..., G, C/G)): `reduction_axes` (default: all but the batch axis) must
  include the channels; the group count follows `checks.check_groups`."""
  ndim = len(x_shape)
  checks.check_min_rank(ndim, 2, fn=fn, layout="(N, ..., C)")
  red = tuple(range(1, ndim)) if reduction_axes is None else reduction_axes
  red = checks.canonical_axes(red, ndim, fn=fn, what="reduction_axes")
  if red[-1] != ndim - 1:
    raise ValueError(f"{fn}: reduction_axes {reduction_axes!r} must include the last (channel) axis {ndim - 1}")
  return checks.check_groups(x_shape[-1], num_groups, group_size, fn=fn), red[:-1] + (ndim,)


def group_norm(x, scale=None, bias=None, *, num_groups: int | None = None, group_size: int | None = None,
               eps: float = EPS, reduction_axes: int | Sequence[int] | None = None, axis_name: AxisName = None,
               mask=None):
  """Group norm: channels split into groups; S = `reduction_axes` (default every axis but the batch) with
  the channels of one group (+ the devices on `axis_name`). Give num_groups or group_size.

  Input (N, ..., C), rank >= 2 (rank 2 = MLP features). Channels-last lets the group split be a
  free reshape (N, ..., G, C/G): no transpose. num_groups=1 is layer norm, num_groups=C instance norm.
  """
  fn = "group_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  groups, axes = group_axes(x.shape, num_groups, group_size, reduction_axes, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias)
  checks.check_mask_array(mask, x.shape, fn=fn)
  check_axis_name(axis_name, fn=fn)
  split = lambda t: t.reshape(*t.shape[:-1], groups, t.shape[-1] // groups)  # noqa: E731
  mg = None if mask is None else split(jnp.broadcast_to(mask, x.shape))
  y, _ = standardize_affine(split(x), axes, _split_param(scale, x.shape, split), _split_param(bias, x.shape, split),
                            eps=eps, axis_name=axis_name, mask=mg)
  return y.reshape(x.shape)


def _split_param(param, x_shape, split):
  """A parameter broadcastable to (N, ..., C) -> broadcastable to (N, ..., G, C/G)."""
  if param is None:
    return None
  aligned = jnp.reshape(param, (1,) * (len(x_shape) - jnp.ndim(param)) + jnp.shape(param))
  return split(jnp.broadcast_to(aligned, aligned.shape[:-1] + x_shape[-1:]))
