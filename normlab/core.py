"""The one core every activation norm is built on.

A norm is "pick the reduction set S, standardize over it, then scale/shift". Here S is given by
`axes` (local array axes) plus `axis_name` (named mesh/vmap axes whose shards are reduced across
devices with `lax.psum`), and an optional `mask` that removes elements from S. Statistics are
accumulated in at least float32 with the two-pass formula, so inputs whose |mean| >> std keep their
precision (Flax's default one-pass `E[x^2] - E[x]^2` does not).

With m the mask, n = sum_S(m), mean_S(t) = sum_S(m t) / n and r = 1 / sqrt(var + eps),

    x_hat = (x - mean_S(x)) r,
    d x_hat = r (dx - mean_S(dx) - x_hat mean_S(x_hat dx))        (the closed-form JVP),
    dx = r (g - m (sum_S(g) + x_hat sum_S(g x_hat)) / n)             (its transpose: the VJP).

`standardize` is a `jax.custom_jvp` with that tangent, so forward mode (`jax.jvp`, `jacfwd`,
`hessian`) and reverse mode (JAX transposes the linear tangent map) both get the closed form.
Without centering (RMS-type norms) the mean terms drop out. The sums over S run over all positions
of the tangent, masked ones too, since their outputs also depend on the statistics. Seed document
002 (section 2.5.1) prints the VJP with `+ x_hat_i * sum_j x_hat_j g_j`: the sign of that term is
wrong; `tests/test_core.py` checks ours against autodiff of the plain formula.

`standardize_affine` is the same with the scale and shift folded into that closed form: every layer's
training step runs it. The one backend-specific spelling (a staged sum for group norm on XLA:CPU: same
numbers, a different graph) is `normlab._platform.reduce_sum`; BENCH.md has its measurements.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from normlab import _platform, checks

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


def _sum_s(t, axes: tuple[int, ...], axis_name: AxisName):
  """Sum over S (kept dims), over devices too."""
  return psum(_platform.reduce_sum(t, axes), axis_name)


def count(x_shape, axes: tuple[int, ...], mask, axis_name: AxisName, dtype) -> jax.Array:
  """Number of valid elements in S (kept dims), summed over devices."""
  if mask is None:
    n = jnp.asarray(math.prod(x_shape[a] for a in axes), dtype)
    return psum(n, axis_name)
  return _sum_s(jnp.broadcast_to(mask, x_shape).astype(dtype), axes, axis_name)


def _canonical(x, axes, axis_name):
  return tuple(sorted(a % x.ndim for a in axes)), (tuple(_names(axis_name)) or None)


def _moments(x, mask, axes, axis_name, center):
  """(x in the statistics dtype, mask as 0/1 in that dtype or None, mean, var, n): two-pass.

  Masked-out elements enter the sums as 0 through a select, not a product, so NaN/inf there stay out."""
  dt = stats_dtype(x.dtype)
  xs = x.astype(dt)
  m = None if mask is None else (jnp.broadcast_to(mask, x.shape) != 0).astype(dt)
  n = count(x.shape, axes, m, axis_name, dt)
  n_safe = jnp.maximum(n, 1)
  xv = xs if m is None else jnp.where(m > 0, xs, 0)
  mean = _sum_s(xv, axes, axis_name) / n_safe if center else None
  d = xv if mean is None else xv - mean
  var = _sum_s(d * d if m is None else d * d * m, axes, axis_name) / n_safe
  return xs, m, mean, var, n


def _stats(mean, var) -> Moments:
  return Moments(jnp.zeros_like(var) if mean is None else mean, var)


def _tangent_x_hat(x_hat, m):
  """x_hat as the tangent formulas read it: with a mask, a non-finite x_hat (from NaN/inf in a masked-out
  element) reads as 0, so it reaches no other element's derivative (its own output is non-finite anyway)."""
  return x_hat if m is None else jnp.where(jnp.isfinite(x_hat), x_hat, 0)


def moments(x, axes: tuple[int, ...], *, axis_name: AxisName = None, mask=None,
            center: bool = True) -> tuple[Moments, jax.Array]:
  """Two-pass mean/variance of `x` over `axes` (+ devices on `axis_name`), over the valid (nonzero)
  elements of `mask` only.

  Returns (Moments with kept dims, valid count n). With `center=False` the mean is 0 and `var` is the
  mean square (RMS-type norms). Empty masks give mean 0, var 0 instead of NaN.
  """
  checks.check_x(x, fn="moments")
  checks.check_mask_array(mask, x.shape, fn="moments")
  axes, axis_name = _canonical(x, axes, axis_name)
  _, _, mean, var, n = _moments(x, mask, axes, axis_name, center)
  return _stats(mean, var), n


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _standardize(x, mask, axes, eps, axis_name, center):
  """(x_hat, mean, var) from one pass of `_moments`; the mask and the statistics carry no derivative."""
  xs, _, mean, var, _ = _moments(x, mask, axes, axis_name, center)
  return ((xs if mean is None else xs - mean) * lax.rsqrt(var + eps), *_stats(mean, var))


def _tangent_terms(x, mask, axes, eps, axis_name, center):
  """(1/sqrt(var + eps), mean_S) as the closed form reads them, from differentiable moments (so the
  tangent itself differentiates: higher orders)."""
  _, m, _, var, n = _moments(x, mask, axes, axis_name, center)
  mean_s = lambda t: _sum_s(t if m is None else t * m, axes, axis_name) / jnp.maximum(n, 1)  # noqa: E731
  return lax.rsqrt(var + eps), mean_s, m


@_standardize.defjvp
def _standardize_jvp(axes, eps, axis_name, center, primals, tangents):
  x, mask = primals
  out = _standardize(x, mask, axes, eps, axis_name, center)
  r, mean_s, m = _tangent_terms(x, mask, axes, eps, axis_name, center)
  x_hat, dx = _tangent_x_hat(out[0], m), tangents[0].astype(out[0].dtype)
  t = dx - x_hat * mean_s(x_hat * dx)
  if center:
    t = t - mean_s(dx)
  return out, (r * t, jnp.zeros_like(out[1]), jnp.zeros_like(out[2]))


def standardize(x, axes: tuple[int, ...], *, eps: float, axis_name: AxisName = None, mask=None,
                center: bool = True) -> tuple[jax.Array, Moments]:
  """(x - mean) / sqrt(var + eps) over S, in the statistics dtype, and the statistics it used.

  The statistics are returned without derivative (they feed running averages); the derivative of the
  output is the closed form in the module docstring, in forward and reverse mode.
  """
  checks.check_x(x, fn="standardize")
  checks.check_mask_array(mask, x.shape, fn="standardize")
  axes, axis_name = _canonical(x, axes, axis_name)
  x_hat, mean, var = _standardize(x, mask, axes, float(eps), axis_name, bool(center))
  return x_hat, Moments(mean, var)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5, 6, 7, 8))
def _standardize_affine(x, mask, scale, bias, axes, eps, axis_name, center, out_dtype):
  x_hat, mean, var = _standardize(x, mask, axes, eps, axis_name, center)
  return affine(x_hat, scale, bias, out_dtype), mean, var


def _param_shape(x_shape, axes, *params) -> tuple[int, ...]:
  """x's shape with size 1 on the axes of S along which every given parameter is constant: the
  parameter terms of the JVP live in this shape, so reverse mode reduces sum(g x_hat) and sum(g)
  over those axes once, for the input and the parameter gradients alike."""
  rank = len(x_shape)
  aligned = [(1,) * (rank - jnp.ndim(p)) + tuple(jnp.shape(p)) for p in params if p is not None]
  return tuple(1 if a in axes and all(al[a] == 1 for al in aligned) else d for a, d in enumerate(x_shape))


@_standardize_affine.defjvp
def _standardize_affine_jvp(axes, eps, axis_name, center, out_dtype, primals, tangents):
  """dy = s r dx + x_hat (ds - s r mean_S(x_hat dx)) + (db - s r mean_S(dx)): the module
  docstring's closed form times the scale s, plus the parameters' own terms."""
  x, mask, scale, bias = primals
  dx, _, dscale, dbias = tangents
  x_hat, mean, var = _standardize(x, mask, axes, eps, axis_name, center)
  y = affine(x_hat, scale, bias, out_dtype)
  r, mean_s, m = _tangent_terms(x, mask, axes, eps, axis_name, center)
  x_hat = _tangent_x_hat(x_hat, m)
  dt = x_hat.dtype
  shape = _param_shape(x.shape, axes, scale, bias)
  in_shape = lambda t: jnp.broadcast_to(jnp.asarray(t, dt), shape)  # noqa: E731
  dx = dx.astype(dt)
  sr = in_shape(r if scale is None else jnp.asarray(scale, dt) * r)
  coef = -sr * mean_s(x_hat * dx)
  if scale is not None:
    coef = coef + in_shape(dscale)
  dy = sr * dx + x_hat * coef
  if center or bias is not None:
    offset = -sr * mean_s(dx) if center else jnp.zeros(shape, dt)
    dy = dy + (offset if bias is None else offset + in_shape(dbias))
  return (y, mean, var), (dy.astype(out_dtype), jnp.zeros_like(mean), jnp.zeros_like(var))


def standardize_affine(x, axes: tuple[int, ...], scale, bias, *, eps: float, axis_name: AxisName = None,
                       mask=None, center: bool = True, out_dtype=None) -> tuple[jax.Array, Moments]:
  """`affine(standardize(x, axes, ...)[0], scale, bias, out_dtype)` and the statistics it used.

  The same values and derivatives as the composition (`out_dtype` defaults to x's dtype), with the
  scale folded into the closed form; the statistics are computed once and carry no derivative.
  """
  axes, axis_name = _canonical(x, axes, axis_name)
  out_dtype = jnp.dtype(x.dtype if out_dtype is None else out_dtype)
  y, mean, var = _standardize_affine(x, mask, scale, bias, axes, float(eps), axis_name, bool(center), out_dtype)
  return y, Moments(mean, var)


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
