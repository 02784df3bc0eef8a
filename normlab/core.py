"""The one core every activation norm is built on.

A norm is "pick the reduction set S, standardize over it, then scale/shift". Here S is given by
`axes` (local array axes) plus `axis_name` (named mesh/vmap axes whose shards are reduced across
devices with `lax.psum`), and an optional `mask` that removes elements from S. Statistics are
accumulated in at least float32 with the two-pass formula, so inputs whose |mean| >> std keep their
precision (Flax's default one-pass `E[x^2] - E[x]^2` does not).

`standardize` has a custom VJP: the backward pass needs only two reductions over S,
sum(g) and sum(g * x_hat), instead of re-deriving the statistics' graph. Its gradient is the closed form

    dx = r * (g - m * (sum(g) + x_hat * sum(g * x_hat)) / n),   r = 1/sqrt(var + eps),

with m the mask and n the number of valid elements (sums run over all of S, masked positions too,
since their outputs also depend on the statistics). Seed document 002 (section 2.5.1) prints this with
`+ x_hat_i * sum_j x_hat_j g_j`: the sign of that last term is wrong (d sigma / d x_i has the sign of
x_i - mu, so the variance path *subtracts*); `tests/test_core.py` checks ours against autodiff.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

AxisName = str | Sequence[str] | None


class Moments(NamedTuple):
  """Mean and (biased) variance over a reduction set; running statistics use the same type."""
  mean: jax.Array
  var: jax.Array


def stats_dtype(dtype) -> jnp.dtype:
  """Statistics are accumulated in at least float32 (float64 stays float64)."""
  return jnp.promote_types(dtype, jnp.float32)


def _names(axis_name: AxisName) -> tuple[str, ...]:
  if axis_name is None:
    return ()
  return (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)


def check_axis_name(axis_name: AxisName, *, fn: str) -> tuple[str, ...]:
  """Raises a ValueError for names not bound by an enclosing shard_map/vmap/pmap."""
  names = _names(axis_name)
  for name in names:
    try:
      lax.axis_size(name)
    except NameError:
      raise ValueError(f"{fn}: axis_name {name!r} is not bound here; call it inside jax.shard_map "
                       f"(or vmap/pmap) over a mesh that has an axis named {name!r}") from None
  return names


def psum(x, axis_name: AxisName):
  names = _names(axis_name)
  return lax.psum(x, names) if names else x


def pmax(x, axis_name: AxisName):
  names = _names(axis_name)
  return lax.pmax(x, names) if names else x


def count(x_shape, axes: tuple[int, ...], mask, axis_name: AxisName, dtype) -> jax.Array:
  """Number of valid elements in S (kept dims), summed over devices."""
  if mask is None:
    n = jnp.asarray(math.prod(x_shape[a] for a in axes), dtype)
    return psum(n, axis_name)
  m = jnp.broadcast_to(mask, x_shape).astype(dtype)
  return psum(jnp.sum(m, axes, keepdims=True), axis_name)


def moments(x, axes: tuple[int, ...], *, axis_name: AxisName = None, mask=None,
            center: bool = True) -> tuple[Moments, jax.Array]:
  """Two-pass mean/variance of `x` over `axes` (+ devices on `axis_name`), weighted by `mask`.

  Returns (Moments with kept dims, valid count n). With `center=False` the mean is 0 and `var` is the
  mean square (RMS-type norms). Empty masks give mean 0, var 0 instead of NaN.
  """
  dt = stats_dtype(x.dtype)
  xs = x.astype(dt)
  m = None if mask is None else jnp.broadcast_to(mask, x.shape).astype(dt)
  n = count(x.shape, axes, mask, axis_name, dt)
  n_safe = jnp.maximum(n, 1)
  if center:
    s = jnp.sum(xs if m is None else xs * m, axes, keepdims=True)
    mean = psum(s, axis_name) / n_safe
    d = xs - mean
  else:
    mean = jnp.zeros(n.shape, dt)
    d = xs
  d2 = d * d if m is None else d * d * m
  var = psum(jnp.sum(d2, axes, keepdims=True), axis_name) / n_safe
  return Moments(mean, var), n


def _standardize_fwd(x, mask, axes, eps, axis_name, center):
  stats, n = moments(x, axes, axis_name=axis_name, mask=mask, center=center)
  rstd = lax.rsqrt(stats.var + eps)
  x_hat = (x.astype(rstd.dtype) - stats.mean) * rstd
  return (x_hat, stats), (x, mask, stats.mean, rstd, n)


def _standardize_bwd(axes, eps, axis_name, center, res, cts):
  x, mask, mean, rstd, n = res
  g, _ = cts  # the returned statistics are stop-gradient'ed by `standardize`
  g = g.astype(rstd.dtype)
  x_hat = (x.astype(rstd.dtype) - mean) * rstd
  n_safe = jnp.maximum(n, 1)
  s2 = psum(jnp.sum(g * x_hat, axes, keepdims=True), axis_name)
  inner = x_hat * s2
  if center:
    inner = inner + psum(jnp.sum(g, axes, keepdims=True), axis_name)
  inner = inner / n_safe
  if mask is not None:
    inner = inner * jnp.broadcast_to(mask, x.shape).astype(inner.dtype)
  dx = (rstd * (g - inner)).astype(x.dtype)
  return dx, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _standardize(x, mask, axes, eps, axis_name, center):
  return _standardize_fwd(x, mask, axes, eps, axis_name, center)[0]


_standardize.defvjp(_standardize_fwd, _standardize_bwd)


def standardize(x, axes: tuple[int, ...], *, eps: float, axis_name: AxisName = None, mask=None,
                center: bool = True) -> tuple[jax.Array, Moments]:
  """(x - mean) / sqrt(var + eps) over S, in the statistics dtype; also returns the statistics.

  The statistics are returned without gradient (they feed running averages); the gradient of the
  output is the closed form in the module docstring.
  """
  axis_name = tuple(_names(axis_name)) or None
  x_hat, stats = _standardize(x, mask, tuple(axes), float(eps), axis_name, bool(center))
  return x_hat, Moments(lax.stop_gradient(stats.mean), lax.stop_gradient(stats.var))


def normalize_with(x, stats: Moments, eps: float) -> jax.Array:
  """(x - mean) / sqrt(var + eps) with given statistics (eval mode / frozen BN)."""
  dt = stats_dtype(x.dtype)
  return (x.astype(dt) - stats.mean.astype(dt)) * lax.rsqrt(stats.var.astype(dt) + eps)


def affine(x_hat, scale, bias, out_dtype) -> jax.Array:
  """y = x_hat * scale + bias in the statistics dtype, cast back to the input dtype."""
  y = x_hat
  if scale is not None:
    y = y * jnp.asarray(scale, y.dtype)
  if bias is not None:
    y = y + jnp.asarray(bias, y.dtype)
  return y.astype(out_dtype)
