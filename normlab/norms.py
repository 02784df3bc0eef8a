"""Batch, layer, instance, group and RMS norm: each is one choice of the reduction set S over `core`.

Inputs are channels-last, (N, ..., C). `scale`/`bias` are optional arrays broadcastable to the
input (per-channel (C,) for batch/instance/group norm; over the normalized axes for layer/RMS norm).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
from jax import lax

from normlab import checks
from normlab.core import (AxisName, Moments, affine, check_axis_name, normalize_with,
                          standardize_affine)


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


def batch_norm(x, scale=None, bias=None, *, eps: float = 1e-5, feature_axes: int | Sequence[int] = -1,
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


def update_running_stats(running: Moments, batch: Moments, momentum: float = 0.9) -> Moments:
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


def _feature_axes(reduction_axes, ndim: int) -> tuple[int, ...]:
  """Where layer/RMS norm parameters may vary: the normalized axes and the channels (last axis)."""
  return tuple(sorted(set(reduction_axes) | {ndim - 1}))


def layer_norm(x, scale=None, bias=None, *, eps: float = 1e-5,
               reduction_axes: int | Sequence[int] = -1, mask=None):
  """Layer norm: S = `reduction_axes` of each example (default the last axis)."""
  fn = "layer_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes = checks.canonical_axes(reduction_axes, x.ndim, fn=fn, what="reduction_axes")
  check_params(x, _feature_axes(axes, x.ndim), fn=fn, scale=scale, bias=bias,
               axes_doc=f"over reduction_axes={reduction_axes!r} or the last axis")
  checks.check_mask_array(mask, x.shape, fn=fn)
  return standardize_affine(x, axes, scale, bias, eps=eps, mask=mask)[0]


def rms_norm(x, scale=None, *, eps: float = 1e-6, reduction_axes: int | Sequence[int] = -1):
  """RMS norm: x / sqrt(mean(x^2) + eps) over `reduction_axes` (no centering, no bias)."""
  fn = "rms_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes = checks.canonical_axes(reduction_axes, x.ndim, fn=fn, what="reduction_axes")
  check_params(x, _feature_axes(axes, x.ndim), fn=fn, scale=scale,
               axes_doc=f"over reduction_axes={reduction_axes!r} or the last axis")
  return standardize_affine(x, axes, scale, None, eps=eps, center=False)[0]


def spatial_axes(ndim: int, *, fn: str) -> tuple[int, ...]:
  """Axes between batch (0) and channels (-1) of a channels-last input."""
  checks.check_min_rank(ndim, 3, fn=fn, layout="(N, spatial..., C): it needs at least one spatial axis")
  return tuple(range(1, ndim - 1))


def instance_norm(x, scale=None, bias=None, *, eps: float = 1e-5, mask=None):
  """Instance norm: S = the spatial axes of one example and one channel; input (N, ..., C)."""
  fn = "instance_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes = spatial_axes(x.ndim, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias)
  checks.check_mask_array(mask, x.shape, fn=fn)
  return standardize_affine(x, axes, scale, bias, eps=eps, mask=mask)[0]


def group_norm(x, scale=None, bias=None, *, num_groups: int | None = None,
               group_size: int | None = None, eps: float = 1e-5, mask=None):
  """Group norm: channels split into groups; S = spatial axes + the channels of one group.

  Input (N, ..., C), rank >= 2 (rank 2 = MLP features). Channels-last lets the group split be a
  free reshape (N, ..., G, C/G): no transpose. num_groups=1 is layer norm, num_groups=C instance norm.
  """
  fn = "group_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  checks.check_min_rank(x.ndim, 2, fn=fn, layout="(N, ..., C)")
  channels = x.shape[-1]
  groups = checks.check_groups(channels, num_groups, group_size, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias)
  checks.check_mask_array(mask, x.shape, fn=fn)
  split = lambda t: t.reshape(*t.shape[:-1], groups, t.shape[-1] // groups)
  xg = split(x)
  axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
  mg = None
  if mask is not None:
    mg = split(jnp.broadcast_to(mask, x.shape))
  y, _ = standardize_affine(xg, axes, _split_param(scale, x.shape, split), _split_param(bias, x.shape, split),
                            eps=eps, mask=mg)
  return y.reshape(x.shape)


def _split_param(param, x_shape, split):
  """A parameter broadcastable to (N, ..., C) -> broadcastable to (N, ..., G, C/G)."""
  if param is None:
    return None
  aligned = jnp.reshape(param, (1,) * (len(x_shape) - jnp.ndim(param)) + jnp.shape(param))
  return split(jnp.broadcast_to(aligned, aligned.shape[:-1] + x_shape[-1:]))
