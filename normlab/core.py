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

from normlab import checks

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


# --- performance notes --------------------------------------------------------------------------
# The formulas are fixed (two-pass moments, the closed-form VJP); the code below only shapes the
# graph so that XLA compiles it into few passes over memory. Measured on XLA:CPU (jax 0.10, which
# hands reductions to YNNPACK "library fusions"; numbers in BENCH.md):
# - A reduction whose reduced axes are split around a kept one with a reduced innermost axis
#   (group norm's (N, H, W, G, C/G) over (1, 2, 4)) is a strided loop there, ~20x slower than a
#   plain reduction. `_View` merges that innermost axis into the kept axis before it, sums over
#   the outer axes on that (N, H, W, C) view and adds up the groups on the tiny partial result.
# - A library fusion can only take in an elementwise expression that nothing else uses; an
#   expression shared with another fusion is first written to memory in full (one more write and
#   read of the activation). XLA merges identical expressions (CSE), so every reduction here is
#   fed by its own spelling of the centred input: the variance pass by `x + (-mean)`, the
#   normalized output (whose only reader in a training step is the affine parameters' gradient)
#   by `(x - mean) * rstd`, and the backward pass by `_copy`-ed statistics. These are the same
#   numbers (IEEE x + (-m) == x - m), only different expressions.
# - A library fusion also grows from a reduction into the elementwise pass that consumes its result
#   when the statistics have >= 4096 elements (YNNPACK's size threshold; per-channel batch norm
#   statistics never do). Such a fusion does the same work but runs poorly on several threads.
#   `_copy`, an op YNNPACK does not take, keeps them apart where that measured faster on 2 cores:
#   after the variance in the forward rule of the VJP (layer/instance/RMS norm fwd+bwd ~25%
#   faster; the plain forward, used without differentiation, keeps the single fusion, which is
#   faster there), and before the input gradient's per-group factors of a staged reduction.
# - `standardize` then `affine` are two VJPs: the affine one reduces gy and gy * x_hat for the
#   parameter gradients, the standardize one reduces g = gy * scale and g * x_hat again. When scale
#   is constant over the outer reduced axes (batch, instance and group norm's per-channel
#   parameters) `standardize_affine` does both from one set of partial sums, one per kept entry
#   and channel: batch norm's fwd+bwd drops from 13 to 8 passes over memory, group norm's by two.
# - Layer norm and small-image instance norm (no mask, no devices, each group's slab of x <= 1 MiB):
#   YNNPACK runs "mean, x - mean, variance, then an elementwise consumer" over the same rows as ONE
#   fusion over cached rows when the expressions form a single chain, ~2x faster than separate passes that re-read x with stored
#   statistics broadcast into them. `_rows_affine` therefore stores no statistics: its backward
#   pass recomputes them in the chain that also forms the input gradient, and gives the parameter
#   gradients their own spelling of x_hat (layer norm fwd+bwd 0.62-0.99x the time, instance norm
#   on 32x32 / 14x14 images 0.68 / 0.94x). Measured the same way: batch and group norm 2.7-6.5x
#   slower, instance norm over 1024 x 1024 slabs 2.4x slower, RMS norm 1.5-1.9x slower: they keep
#   the paths above.
# - Not done, measured: one-pass statistics (E[x^2] - E[x]^2) save about one pass in some cases and
#   lose in others on XLA:CPU, and give up the two-pass precision; variadic (multi-output) reduces
#   run 3-30x slower than two plain ones. bfloat16 inputs: XLA materializes the shared float32
#   convert of x (and of the cotangent) once, whatever the spelling of each consumer's convert.


_LIBRARY_FUSION_MIN_SIZE = 4096


def _copy(t: jax.Array) -> jax.Array:
  """t, bit for bit (a NaN stays a NaN), as an expression XLA does not merge with t (see above)."""
  return jnp.where(jnp.isnan(t), jnp.asarray(jnp.nan, t.dtype), t)


class _View:
  """Where the statistics are computed: `x` itself, or, when the innermost axis is reduced along
  with others but the axis before it is kept (group norm's (..., G, C/G)), a view that merges those
  two axes, so the reduction is a plain one over the outer axes; the innermost axis is then summed
  on the small partial result. Statistics in view layout are expanded over that merged axis, so
  broadcasting them back touches only the outer reduced axes."""

  def __init__(self, shape: tuple[int, ...], axes: tuple[int, ...]):
    self.shape, self.axes = tuple(shape), tuple(sorted(a % len(shape) for a in axes))
    last = len(shape) - 1
    self.inner = 1
    if len(self.axes) > 1 and last in self.axes and last - 1 not in self.axes and shape[last] > 1:
      self.inner = shape[last]
      self.vshape = self.shape[:-2] + (shape[-2] * shape[-1],)
      self.vaxes = self.axes[:-1]
    else:
      self.vshape, self.vaxes = self.shape, self.axes
    self.kshape = tuple(1 if a in self.axes else d for a, d in enumerate(self.shape))

  def to(self, t):
    return t.reshape(self.vshape)

  def back(self, t):
    return t.reshape(self.shape)

  def partial(self, t):
    """Sum over the outer reduced axes only (view layout, kept dims): per (kept, merged) entry."""
    return jnp.sum(t, self.vaxes, keepdims=True)

  def stage(self, s):
    """Partial sums -> sums over S on this device, expanded over the merged axis again."""
    if self.inner > 1:
      vk = s.shape
      s = jnp.sum(s.reshape(vk[:-1] + (vk[-1] // self.inner, self.inner)), -1, keepdims=True)
      s = jnp.broadcast_to(s, s.shape[:-1] + (self.inner,)).reshape(vk)
    return s

  def sum(self, t, axis_name: AxisName = None):
    """Sum over S (kept dims, view layout), over devices too."""
    return psum(self.stage(self.partial(t)), axis_name)

  def to_kept(self, param):
    """A parameter broadcastable to x -> view layout with the outer reduced axes kept at size 1,
    or None when it varies along one of them."""
    aligned = _broadcast_axes(param, self.shape)[0]
    if any(aligned[a] != 1 and self.shape[a] != 1 for a in self.vaxes):
      return None
    full = tuple(1 if a in self.vaxes else d for a, d in enumerate(self.shape))
    t = jnp.broadcast_to(jnp.reshape(param, aligned), full)
    return t.reshape(full[:-2] + (full[-2] * full[-1],)) if self.inner > 1 else t

  def kept(self, t):
    """A statistic in view layout -> kept dims of the input's shape."""
    if self.inner > 1:
      t = t.reshape(t.shape[:-1] + (t.shape[-1] // self.inner, self.inner))[..., :1]
    return t.reshape(self.kshape)


def _view_moments(view: _View, x, mask, axis_name: AxisName, center: bool):
  """Two-pass moments in view layout: (x in the stats dtype, mask or None, mean or None, var, n)."""
  dt = stats_dtype(x.dtype)
  xs = view.to(x).astype(dt)
  m = None if mask is None else view.to(jnp.broadcast_to(mask, x.shape) != 0).astype(dt)
  if m is None:
    n = psum(jnp.asarray(math.prod(x.shape[a] for a in view.axes), dt), axis_name)
  else:
    n = view.sum(m, axis_name)
  n_safe = jnp.maximum(n, 1)
  # Masked-out elements enter the statistics as 0 (a select, not a product: NaN/inf there stay out).
  xv = xs if m is None else jnp.where(m > 0, xs, 0)
  if center:
    mean = view.sum(xv, axis_name) / n_safe
    d = xv + (-mean)  # the same numbers as `xs - mean`, a different expression: see the notes
  else:
    mean, d = None, xv
  d2 = d * d if m is None else d * d * m
  var = view.sum(d2, axis_name) / n_safe
  return xs, m, mean, var, n


def moments(x, axes: tuple[int, ...], *, axis_name: AxisName = None, mask=None,
            center: bool = True) -> tuple[Moments, jax.Array]:
  """Two-pass mean/variance of `x` over `axes` (+ devices on `axis_name`), over the valid (nonzero)
  elements of `mask` only.

  Returns (Moments with kept dims, valid count n). With `center=False` the mean is 0 and `var` is the
  mean square (RMS-type norms). Empty masks give mean 0, var 0 instead of NaN.
  """
  checks.check_x(x, fn="moments")
  checks.check_mask_array(mask, x.shape, fn="moments")
  view = _View(x.shape, tuple(axes))
  _, _, mean, var, n = _view_moments(view, x, mask, axis_name, center)
  dt = var.dtype
  mean = jnp.zeros(view.kshape, dt) if mean is None else view.kept(mean)
  return Moments(mean, view.kept(var)), (n if mask is None else view.kept(n))


def _standardize_fwd(x, mask, axes, eps, axis_name, center, under_vjp=True):
  view = _View(x.shape, axes)
  xs, _, mean, var, n = _view_moments(view, x, mask, axis_name, center)
  rstd = lax.rsqrt(var + eps)
  if under_vjp and rstd.size >= _LIBRARY_FUSION_MIN_SIZE:
    rstd = _copy(rstd)  # keep the variance reduction and the normalize pass apart: see the notes
  x_hat = (xs - mean) * rstd if center else xs * rstd
  stats = Moments(jnp.zeros(view.kshape, var.dtype) if mean is None else view.kept(mean), view.kept(var))
  return (view.back(x_hat), stats), (x, mask, mean, rstd, n)


def _masked_product(g, centred, mask):
  """g * (x - mean), where a zero cotangent gives 0 even if x is NaN/inf (only with a mask: masked-out
  elements may hold anything, and a loss over the valid outputs puts a zero cotangent on them)."""
  return g * centred if mask is None else jnp.where(g == 0, 0, g * centred)


def _standardize_bwd(axes, eps, axis_name, center, res, cts):
  x, mask, mean, rstd, n = res
  g, _ = cts  # the returned statistics are stop-gradient'ed by `standardize`
  view = _View(x.shape, axes)
  dt = rstd.dtype
  g = view.to(g).astype(dt)
  xs = view.to(x).astype(dt)
  n_safe = jnp.maximum(n, 1)
  # The module docstring's closed form with r = rstd distributed over the bracket:
  #   dx = r g - m (r sum(g) / n + (x - mean) r^3 sum(g (x - mean)) / n),
  # as x_hat r sum(g x_hat) = (x - mean) r^3 sum(g (x - mean)); the per-group factors are computed
  # on the statistics, so the elementwise pass is one multiply-add per term.
  r_sum, r_out = _copy(rstd), _copy(_copy(rstd))
  if center:
    centred_sum, centred_out = xs - _copy(mean), xs - _copy(_copy(mean))
  else:
    centred_sum = centred_out = xs
  # After a staged (group norm) reduction, keep the per-group factors out of the elementwise pass
  # (after a one-stage reduction the fused form measured faster).
  apart = _copy if view.inner > 1 else (lambda t: t)
  s_gx = view.sum(_masked_product(g, centred_sum, mask), axis_name)
  inner = centred_out * apart(r_sum * (r_sum * (r_sum * s_gx / n_safe)))
  if center:
    inner = inner + apart(r_sum * view.sum(g, axis_name) / n_safe)
  if mask is not None:
    inner = jnp.where(view.to(jnp.broadcast_to(mask, x.shape) != 0), inner, 0)
  dx = g * r_out - inner
  return view.back(dx).astype(x.dtype), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _standardize(x, mask, axes, eps, axis_name, center):
  return _standardize_fwd(x, mask, axes, eps, axis_name, center, under_vjp=False)[0]


_standardize.defvjp(_standardize_fwd, _standardize_bwd)


def standardize(x, axes: tuple[int, ...], *, eps: float, axis_name: AxisName = None, mask=None,
                center: bool = True) -> tuple[jax.Array, Moments]:
  """(x - mean) / sqrt(var + eps) over S, in the statistics dtype; also returns the statistics.

  The statistics are returned without gradient (they feed running averages); the gradient of the
  output is the closed form in the module docstring.
  """
  checks.check_x(x, fn="standardize")
  checks.check_mask_array(mask, x.shape, fn="standardize")
  axis_name = tuple(_names(axis_name)) or None
  axes = tuple(sorted(a % x.ndim for a in axes))
  x_hat, stats = _standardize(x, mask, axes, float(eps), axis_name, bool(center))
  return x_hat, Moments(lax.stop_gradient(stats.mean), lax.stop_gradient(stats.var))


def _broadcast_axes(param, x_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(param's shape aligned to x's rank, the axes of x it is broadcast along)."""
  shape = jnp.shape(param)
  aligned = (1,) * (len(x_shape) - len(shape)) + tuple(shape)
  return aligned, tuple(a for a, (p, d) in enumerate(zip(aligned, x_shape)) if p == 1 and d != 1)


def _fused_affine_fwd(x, mask, scale, bias, axes, eps, axis_name, center, out_dtype, under_vjp=True):
  (x_hat, stats), (_, _, mean, rstd, n) = _standardize_fwd(x, mask, axes, eps, axis_name, center, under_vjp)
  y = affine(x_hat, scale, bias, out_dtype)
  return (y, stats), (x, mask, mean, rstd, n, scale, bias)


def _fused_affine_bwd(axes, eps, axis_name, center, out_dtype, res, cts):
  x, mask, mean, rstd, n, scale, bias = res
  gy, _ = cts  # statistics: stop-gradient'ed by `standardize_affine`
  view = _View(x.shape, axes)
  dt = rstd.dtype
  gy = view.to(gy).astype(dt)
  xs = view.to(x).astype(dt)
  n_safe = jnp.maximum(n, 1)
  s = view.to_kept(jnp.asarray(scale, dt))
  # Partial sums of this device's gy and gy (x - mean) over the outer reduced axes, one per kept
  # entry (and channel of a merged group): the parameter gradients add them up over the other kept
  # axes; the input gradient, with g = s gy, needs sum(g) and sum(g (x - mean)) over S, which add
  # s times them up over the group's channels (`stage`) and over devices.
  centred_sum, centred_out = (xs - _copy(mean), xs - _copy(_copy(mean))) if center else (xs, xs)
  p_g = view.partial(gy)
  p_gx = view.partial(_masked_product(gy, centred_sum, mask))
  s_gx = psum(view.stage(s * p_gx), axis_name)
  apart = _copy if view.inner > 1 else (lambda t: t)  # as in `_standardize_bwd`
  r = _copy(rstd)
  inner = centred_out * apart(r * (r * (r * s_gx / n_safe)))
  if center:
    inner = inner + apart(r * psum(view.stage(s * p_g), axis_name) / n_safe)
  if mask is not None:
    inner = jnp.where(view.to(jnp.broadcast_to(mask, x.shape) != 0), inner, 0)
  dx = gy * apart(_copy(s) * r) - inner

  def param_grad(param, per_entry):
    full = tuple(1 if a in view.vaxes else d for a, d in enumerate(x.shape))
    aligned = _broadcast_axes(param, x.shape)[0]
    rest = tuple(a for a in range(x.ndim) if aligned[a] == 1 and full[a] != 1)
    # `_copy`: XLA would otherwise merge this sum of partial sums into one more reduction over x's size
    t = jnp.sum(_copy(per_entry).reshape(full), rest, keepdims=True) if rest else per_entry.reshape(full)
    return t.reshape(jnp.shape(param)).astype(jnp.result_type(param))

  return (view.back(dx).astype(x.dtype), None, param_grad(scale, rstd * p_gx), param_grad(bias, p_g))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _fused_affine(x, mask, scale, bias, axes, eps, axis_name, center, out_dtype):
  return _fused_affine_fwd(x, mask, scale, bias, axes, eps, axis_name, center, out_dtype, under_vjp=False)[0]


_fused_affine.defvjp(_fused_affine_fwd, _fused_affine_bwd)


def _chained_moments(xs, axes, eps):
  """(x - mean, mean, var, rstd) over `axes`, spelled as one chain (each value used by the next) so
  that XLA:CPU runs the statistics and their consumer as one fusion over cached rows."""
  mean = jnp.mean(xs, axes, keepdims=True)
  d = xs - mean
  var = jnp.mean(d * d, axes, keepdims=True)
  return d, mean, var, lax.rsqrt(var + eps)


def _rows_affine_primal(x, scale, bias, axes, eps, out_dtype):
  d, mean, var, rstd = _chained_moments(x.astype(stats_dtype(x.dtype)), axes, eps)
  return affine(d * rstd, scale, bias, out_dtype), Moments(mean, var)


def _rows_affine_fwd(x, scale, bias, axes, eps, out_dtype):
  return _rows_affine_primal(x, scale, bias, axes, eps, out_dtype), (x, scale, bias)


def _rows_affine_bwd(axes, eps, out_dtype, res, cts):
  x, scale, bias = res
  gy, _ = cts  # statistics: stop-gradient'ed by `standardize_affine`
  dt = stats_dtype(x.dtype)
  xs, gy = x.astype(dt), gy.astype(dt)
  # The input gradient recomputes the statistics in the same chain as the forward pass (one fused
  # pass over x and gy on XLA:CPU: cheaper than reading stored statistics back in separate passes):
  #   dx = r (g - mean(g) - x_hat mean(g x_hat)) over S, g = gy * scale (the module docstring's
  #   closed form with n folded into the means).
  d, _, _, r = _chained_moments(xs, axes, eps)
  x_hat = d * r
  g = gy if scale is None else gy * jnp.asarray(scale, dt)
  dx = (r * (g - jnp.mean(g, axes, keepdims=True) - x_hat * jnp.mean(g * x_hat, axes, keepdims=True)))

  def param_grad(param, per_element):
    if param is None:
      return None
    t = jnp.sum(per_element, _broadcast_axes(param, x.shape)[1], keepdims=True)
    return t.reshape(jnp.shape(param)).astype(jnp.result_type(param))

  # The parameter gradients reduce over the other axes; their x_hat is spelled differently
  # (`x + (-mean)`, the same numbers) so that XLA does not share it with the fused pass above.
  d2 = xs + (-jnp.mean(xs, axes, keepdims=True))
  x_hat2 = d2 * lax.rsqrt(jnp.mean(d2 * d2, axes, keepdims=True) + eps)
  return dx.astype(x.dtype), param_grad(scale, gy * x_hat2), param_grad(bias, gy)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _rows_affine(x, scale, bias, axes, eps, out_dtype):
  return _rows_affine_primal(x, scale, bias, axes, eps, out_dtype)


_rows_affine.defvjp(_rows_affine_fwd, _rows_affine_bwd)


_ROWS_MAX_GROUP_ELEMENTS = 1 << 18  # one group's slab of x, 1 MiB in float32


def _cache_sized_groups(shape, axes) -> bool:
  """Whether `_rows_affine` suits S = `axes`: not the batch axis, no staged view, and each group's
  contiguous slab of x (from its first reduced axis on) small enough to stay in cache while one
  fusion computes its statistics and output (see the notes; measured on XLA:CPU: layer norm rows,
  instance norm on 32x32 and 14x14 images are faster this way, instance norm on 1024 x 1024
  sequences 2.4x slower, batch and group norm slower)."""
  if not axes or 0 in axes or _View(shape, axes).inner > 1:
    return False
  return math.prod(shape[min(axes):]) <= _ROWS_MAX_GROUP_ELEMENTS


def _varying_axes(t) -> frozenset:
  """The manual mesh axes t's type says it varies over (`vma`; jax 0.10 spells it
  `manual_axis_type.varying`); empty outside shard_map or with check_vma=False."""
  aval = jax.typeof(t)
  if hasattr(aval, "vma"):
    return frozenset(aval.vma)
  mat = getattr(aval, "manual_axis_type", None)
  return frozenset(getattr(mat, "varying", ()))


def _vary_like(param, x):
  """`param`, typed as varying over the mesh axes x varies over (under shard_map's default
  check_vma=True; a no-op elsewhere). A replicated parameter meeting per-device activations gets
  per-device gradients from the VJP below; the cast makes that their declared type, and autodiff
  transposes the cast into the psum over devices, as it does for the unfused composition."""
  if param is None:
    return None
  missing = tuple(sorted(_varying_axes(x) - _varying_axes(param)))
  return lax.pcast(param, missing, to="varying") if missing else param


def standardize_affine(x, axes: tuple[int, ...], scale, bias, *, eps: float, axis_name: AxisName = None,
                       mask=None, center: bool = True, out_dtype=None) -> tuple[jax.Array, Moments]:
  """`affine(standardize(x, axes, ...)[0], scale, bias, out_dtype)` and the statistics, in one VJP.

  The same values and gradients as the composition (`out_dtype` defaults to x's dtype). When
  `scale` and `bias` are constant over the outer reduced axes (per-channel parameters of batch,
  instance and group norm; group norm's innermost C/G axis may vary), the backward pass derives the
  parameter gradients from the partial sums the input gradient needs instead of reducing over the
  activations again. For layer norm and instance norm on small images (no mask, no devices, each
  group's slab of x within 1 MiB), the backward pass recomputes the statistics inside the fused
  pass that forms the input gradient. Otherwise it is the composition. BENCH.md has the speed-ups.
  """
  axis_name = tuple(_names(axis_name)) or None
  axes = tuple(sorted(a % x.ndim for a in axes))
  out_dtype = x.dtype if out_dtype is None else out_dtype
  if center and mask is None and axis_name is None and _cache_sized_groups(x.shape, axes):
    # Layer norm, and instance norm on small images: statistics recomputed in the backward pass.
    y, stats = _rows_affine(x, _vary_like(scale, x), _vary_like(bias, x), axes, float(eps), out_dtype)
    return y, Moments(lax.stop_gradient(stats.mean), lax.stop_gradient(stats.var))
  view = _View(x.shape, axes)
  if scale is None or bias is None or view.to_kept(scale) is None or view.to_kept(bias) is None:
    x_hat, stats = standardize(x, axes, eps=eps, axis_name=axis_name, mask=mask, center=center)
    return affine(x_hat, scale, bias, out_dtype), stats
  scale, bias = _vary_like(scale, x), _vary_like(bias, x)
  y, stats = _fused_affine(x, mask, scale, bias, axes, float(eps), axis_name, bool(center), out_dtype)
  return y, Moments(lax.stop_gradient(stats.mean), lax.stop_gradient(stats.var))


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
