"""Batch, layer, instance, group and RMS norm: each is one choice of the reduction set S over `core`.

Inputs are channels-last, (N, ..., C). `scale`/`bias` are optional arrays broadcastable to the
input (per-channel (C,) for batch/instance/group norm; over the normalized axes for layer/RMS norm).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from normlab import checks
from normlab.core import (AxisName, Moments, affine, check_axis_name, normalize_with, standardize,
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


def batch_norm(x, scale=None, bias=None, *, eps: float = 1e-5, feature_axes: int | Sequence[int] = -1,
               axis_name: AxisName = None, mask=None, running: Moments | None = None,
               return_stats: bool = False):
  """Batch norm: S = every axis but the feature axes (+ the devices on `axis_name`: SyncBN).

  Train mode (running=None) standardizes with the batch statistics; with `return_stats=True` it also
  returns them (feature-shaped `Moments`) for `update_running_stats`. Eval mode: pass `running`.
  With `mask`, only valid elements enter the statistics, weighted by count across devices.
  Grouped SyncBN: on a 2-D mesh ("group", "batch") pass axis_name="batch" to reduce within groups.
  """
  fn = "batch_norm"
  eps = checks.check_eps(eps, fn=fn)
  axes = batch_reduction_axes(x.ndim, feature_axes, fn=fn)
  feats = tuple(a for a in range(x.ndim) if a not in axes)
  if running is not None:
    y = affine(normalize_with(x, _expand(running, feats, x.ndim, x.shape), eps), scale, bias, x.dtype)
    return (y, running) if return_stats else y
  check_axis_name(axis_name, fn=fn)
  if mask is not None:
    checks.check_mask(jnp.shape(mask), x.shape, fn=fn)
  y, stats = standardize_affine(x, axes, scale, bias, eps=eps, axis_name=axis_name, mask=mask)
  return (y, _squeeze(stats, axes)) if return_stats else y


def update_running_stats(running: Moments, batch: Moments, momentum: float = 0.9) -> Moments:
  """Exponential moving average: running * momentum + batch * (1 - momentum) (torch's 0.1 = our 0.9)."""
  if not 0.0 <= momentum <= 1.0:
    raise ValueError(f"update_running_stats: momentum must be in [0, 1], got {momentum!r}")
  return Moments(*(momentum * r + (1.0 - momentum) * b.astype(r.dtype) for r, b in zip(running, batch)))


def layer_norm(x, scale=None, bias=None, *, eps: float = 1e-5,
               reduction_axes: int | Sequence[int] = -1, mask=None):
  """Layer norm: S = `reduction_axes` of each example (default the last axis)."""
  fn = "layer_norm"
  eps = checks.check_eps(eps, fn=fn)
  axes = checks.canonical_axes(reduction_axes, x.ndim, fn=fn, what="reduction_axes")
  if mask is not None:
    checks.check_mask(jnp.shape(mask), x.shape, fn=fn)
  return standardize_affine(x, axes, scale, bias, eps=eps, mask=mask)[0]


def rms_norm(x, scale=None, *, eps: float = 1e-6, reduction_axes: int | Sequence[int] = -1):
  """RMS norm: x / sqrt(mean(x^2) + eps) over `reduction_axes` (no centering, no bias)."""
  fn = "rms_norm"
  eps = checks.check_eps(eps, fn=fn)
  axes = checks.canonical_axes(reduction_axes, x.ndim, fn=fn, what="reduction_axes")
  return standardize_affine(x, axes, scale, None, eps=eps, center=False)[0]


def spatial_axes(ndim: int, *, fn: str) -> tuple[int, ...]:
  """Axes between batch (0) and channels (-1) of a channels-last input."""
  checks.check_min_rank(ndim, 3, fn=fn, layout="(N, spatial..., C): it needs at least one spatial axis")
  return tuple(range(1, ndim - 1))


def instance_norm(x, scale=None, bias=None, *, eps: float = 1e-5, mask=None):
  """Instance norm: S = the spatial axes of one example and one channel; input (N, ..., C)."""
  fn = "instance_norm"
  eps = checks.check_eps(eps, fn=fn)
  axes = spatial_axes(x.ndim, fn=fn)
  if mask is not None:
    checks.check_mask(jnp.shape(mask), x.shape, fn=fn)
  return standardize_affine(x, axes, scale, bias, eps=eps, mask=mask)[0]


def group_norm(x, scale=None, bias=None, *, num_groups: int | None = None,
               group_size: int | None = None, eps: float = 1e-5, mask=None):
  """Group norm: channels split into groups; S = spatial axes + the channels of one group.

  Input (N, ..., C), rank >= 2 (rank 2 = MLP features). Channels-last lets the group split be a
  free reshape (N, ..., G, C/G): no transpose. num_groups=1 is layer norm, num_groups=C instance norm.
  """
  fn = "group_norm"
  eps = checks.check_eps(eps, fn=fn)
  checks.check_min_rank(x.ndim, 2, fn=fn, layout="(N, ..., C)")
  channels = x.shape[-1]
  groups = checks.check_groups(channels, num_groups, group_size, fn=fn)
  split = lambda t: t.reshape(*t.shape[:-1], groups, t.shape[-1] // groups)
  xg = split(x)
  axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
  mg = None
  if mask is not None:
    checks.check_mask(jnp.shape(mask), x.shape, fn=fn)
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
