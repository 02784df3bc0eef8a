"""Norms from the field beyond the big four, still built on the same reduction core.

Ghost BN, batch renormalization, frozen BN, l1/l2/linf batch norm, noisy BN (Santurkar et al. 2018,
section 2.1), filter response norm + TLU, EvoNorm-B0/S0, switchable norm and local response norm.
All channels-last, (N, ..., C).
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
from jax import lax

from normlab import checks
from normlab.core import AxisName, Moments, affine, moments, pmax, psum, standardize, stats_dtype
from normlab.norms import (EPS, EPS_RMS, PER_CHANNEL, batch_reduction_axes, check_params, group_axes,
                           named_batch_norm, num_devices, spatial_axes)


def ghost_batch_norm(x, scale=None, bias=None, *, virtual_batch_size: int, eps: float = EPS, mask=None,
                     return_stats: bool = False, allow_single_value: bool = False):
  """Ghost BN (Hoffer et al. 2017): batch norm over virtual batches of `virtual_batch_size` examples.

  Virtual batch k is examples k*v .. k*v + v - 1. With `mask` (broadcastable to x, e.g. (N, 1, ..., 1)),
  each virtual batch's statistics are over its valid elements only. Returned statistics are the mean
  over virtual batches of their means and variances, weighted by their valid counts with a mask
  (a virtual batch without valid elements has weight 0).
  """
  fn = "ghost_batch_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  checks.check_min_rank(x.ndim, 2, fn=fn, layout="(N, ..., C)")
  n = x.shape[0]
  if (isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, int)
      or virtual_batch_size <= 0 or n % virtual_batch_size):
    raise ValueError(f"{fn}: virtual_batch_size={virtual_batch_size!r} must be a positive divisor of "
                     f"the batch size {n}")
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias)
  checks.check_mask_array(mask, x.shape, fn=fn)
  checks.check_batch_values((virtual_batch_size,) + x.shape[1:], tuple(range(x.ndim - 1)), 1, fn=fn,
                            allow=allow_single_value)
  groups = lambda t: t.reshape(n // virtual_batch_size, virtual_batch_size, *x.shape[1:])  # noqa: E731
  xg = groups(x)
  mg = None
  if mask is not None:
    mg = groups(jnp.broadcast_to(mask, x.shape))
  axes = tuple(range(1, xg.ndim - 1))
  x_hat, stats = standardize(xg, axes, eps=eps, mask=mg)
  y = affine(x_hat.reshape(x.shape), scale, bias, x.dtype)
  if not return_stats:
    return y
  per_batch = [s.reshape(-1, x.shape[-1]) for s in stats]  # (virtual batches, C)
  if mg is None:
    return y, Moments(*(s.mean(0) for s in per_batch))
  w = lax.stop_gradient(jnp.sum(mg.astype(per_batch[0].dtype), axes).reshape(-1, x.shape[-1]))  # valid counts
  total = jnp.maximum(jnp.sum(w, 0), 1)
  return y, Moments(*(jnp.sum(w * s, 0) / total for s in per_batch))


def batch_renorm(x, scale=None, bias=None, *, running: Moments, r_max: float = 3.0, d_max: float = 5.0,
                 eps: float = EPS, axis_name: AxisName = None, mask=None, return_stats: bool = False,
                 allow_single_value: bool = False):
  """Batch renormalization (Ioffe 2017): y = x_hat_batch * r + d, with r, d stop-gradient'ed.

  r = clip(sigma_B / sigma_R, 1/r_max, r_max), d = clip((mu_B - mu_R) / sigma_R, -d_max, d_max), where
  R are the running statistics (feature-shaped). r_max=1, d_max=0 is plain batch norm. r_max and d_max may
  be traced scalars (a schedule, as layers.BatchRenorm's ramp).
  """
  fn = "batch_renorm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  if isinstance(r_max, (int, float)) and isinstance(d_max, (int, float)) and (r_max < 1 or d_max < 0):
    raise ValueError(f"{fn}: need r_max >= 1 and d_max >= 0, got r_max={r_max!r}, d_max={d_max!r}")
  axes = batch_reduction_axes(x.ndim, -1, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias)
  checks.check_running(running, x.shape, (x.ndim - 1,), fn=fn)
  checks.check_mask_array(mask, x.shape, fn=fn)
  checks.check_batch_values(x.shape, axes, num_devices(axis_name, fn=fn), fn=fn, allow=allow_single_value)
  x_hat, stats = standardize(x, axes, eps=eps, axis_name=axis_name, mask=mask)
  sigma_b = jnp.sqrt(stats.var + eps)
  sigma_r = jnp.sqrt(running.var.astype(sigma_b.dtype) + eps)
  r = lax.stop_gradient(jnp.clip(sigma_b / sigma_r, 1.0 / r_max, r_max))
  d = lax.stop_gradient(jnp.clip((stats.mean - running.mean.astype(sigma_b.dtype)) / sigma_r, -d_max, d_max))
  y = affine(x_hat * r + d, scale, bias, x.dtype)
  if not return_stats:
    return y
  return y, Moments(jnp.squeeze(stats.mean, axes), jnp.squeeze(stats.var, axes))


def frozen_batch_norm(x, mean, var, scale=None, bias=None, *, eps: float = EPS):
  """Batch norm with fixed statistics in train and eval alike (fine-tuning, detection backbones)."""
  fn = "frozen_batch_norm"
  checks.check_x(x, fn=fn)
  checks.check_min_rank(x.ndim, 1, fn=fn, layout="(N, ..., C)")
  checks.check_running(Moments(mean, var), x.shape, (x.ndim - 1,), fn=fn, names=("mean", "var"))
  return named_batch_norm(x, scale, bias, eps=eps, feature_axes=-1, axis_name=None, mask=None,
                     running=Moments(jnp.asarray(mean), jnp.asarray(var)), return_stats=False,
                     allow_single_value=False, fn=fn)


LP_NORMS = (1, 2, "inf")


def lp_batch_norm(x, scale=None, bias=None, *, p=1, eps: float = EPS, axis_name: AxisName = None,
                  mask=None, running: Moments | None = None, return_stats: bool = False,
                  allow_single_value: bool = False):
  """l_p batch norm (Santurkar et al. 2018, section 3.3): divide x - mu_B by an l_p scale of the batch.

  p=1: mean |x - mu|; p=2: sqrt(mean (x - mu)^2) (= batch norm); p="inf": max |x - mu|. None of them
  makes the activations Gaussian-like, which is the point of the paper's experiment. The returned
  `var` field holds scale^2 so running statistics reuse `Moments`. Eval mode: pass `running` (feature-shaped
  mean and scale^2), y = (x - mean) / (sqrt(var) + eps).
  """
  fn = "lp_batch_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  checks.check_choice(p, LP_NORMS, fn=fn, what="p")
  axes = batch_reduction_axes(x.ndim, -1, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias)
  checks.check_mask_array(mask, x.shape, fn=fn)
  if running is not None:
    checks.check_running(running, x.shape, (x.ndim - 1,), fn=fn)
    dt = stats_dtype(x.dtype)
    mean, var = (jnp.reshape(t, (-1,)).astype(dt) for t in running)
    y = affine((x.astype(dt) - mean) / (jnp.sqrt(var) + eps), scale, bias, x.dtype)
    return (y, running) if return_stats else y
  checks.check_batch_values(x.shape, axes, num_devices(axis_name, fn=fn), fn=fn, allow=allow_single_value)
  (mu, _), n = moments(x, axes, axis_name=axis_name, mask=mask)
  xs = x.astype(mu.dtype)
  valid = None if mask is None else jnp.broadcast_to(mask, x.shape) != 0
  # Masked-out elements enter as mu (deviation 0), so NaN/inf there reach neither the scale nor its gradient.
  dev = jnp.abs((xs if valid is None else jnp.where(valid, xs, mu)) - mu)
  if p == "inf":
    s = pmax(jnp.max(dev, axes, keepdims=True), axis_name)
  else:
    dev_p = dev if p == 1 else dev * dev
    sums = psum(jnp.sum(dev_p, axes, keepdims=True), axis_name)
    s = sums / jnp.maximum(n, 1)
    if p == 2:  # safe sqrt: d sqrt/ds is infinite at 0 (a dead channel), the output's gradient is not
      pos = s > 0
      s = jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)
  inv = 1.0 / (s + eps)
  y = affine((xs - mu) * inv if valid is None else _times_strong_zero(xs - mu, inv), scale, bias, x.dtype)
  if not return_stats:
    return y
  return y, Moments(*(lax.stop_gradient(jnp.squeeze(t, axes)) for t in (mu, s * s)))


@jax.custom_vjp
def _times_strong_zero(a, b):
  """a * b (b broadcast over a), whose gradient takes a zero cotangent as an exact zero even where the
  other factor is NaN/inf: a masked-out input may hold anything, and a loss over the valid outputs
  puts a zero cotangent on it, which must not turn the statistics' gradient into NaN."""
  return a * b


def _times_strong_zero_fwd(a, b):
  return a * b, (a, b)


def _times_strong_zero_bwd(res, g):
  a, b = res
  zero = g == 0
  ga = jnp.where(zero, 0, g * b)
  gb = jnp.where(zero, 0, g * a)
  return ga, jnp.sum(gb, tuple(i for i, d in enumerate(b.shape) if d == 1 and gb.shape[i] != 1), keepdims=True)


_times_strong_zero.defvjp(_times_strong_zero_fwd, _times_strong_zero_bwd)


def noisy_batch_norm(x, key, scale=None, bias=None, *, mean_range: float = 1.0, std_range: float = 2.0,
                     eps: float = EPS, axis_name: AxisName = None, mask=None, return_stats: bool = False,
                     allow_single_value: bool = False):
  """Batch norm followed by non-stationary noise (Santurkar et al. 2018, section 2.1): z = y + n.

  The paper perturbs each activation of each sample with i.i.d. noise of non-zero mean and non-unit
  variance, whose distribution changes at every step. Here every call (training step) draws, per
  channel c, the noise distribution N(mu_c, sigma_c^2) with mu_c ~ U(-mean_range, mean_range) and
  sigma_c ~ U(1, std_range); then every activation of every sample gets its own draw n ~ N(mu_c,
  sigma_c^2). Pass a fresh `key` every step. (The exact distributions are ours: the paper names only
  non-zero mean, non-unit variance, redrawn every step.)
  """
  fn = "noisy_batch_norm"
  if not (isinstance(mean_range, (int, float)) and mean_range >= 0):
    raise ValueError(f"{fn}: mean_range={mean_range!r} must be a number >= 0")
  if not (isinstance(std_range, (int, float)) and std_range >= 1):
    raise ValueError(f"{fn}: std_range={std_range!r} must be a number >= 1 (sigma ~ U(1, std_range))")
  out = named_batch_norm(x, scale, bias, eps=eps, feature_axes=-1, axis_name=axis_name, mask=mask, running=None,
                         return_stats=return_stats, allow_single_value=allow_single_value, fn=fn)
  y, stats = out if return_stats else (out, None)
  noise = noise_draws(key, x.shape, stats_dtype(x.dtype), mean_range=mean_range, std_range=std_range)
  z = (y.astype(noise.dtype) + noise).astype(x.dtype)
  return (z, stats) if return_stats else z


def noise_draws(key, shape, dtype, *, mean_range: float, std_range: float):
  """The noise of `noisy_batch_norm`: per channel (last axis) mu ~ U(-mean_range, mean_range) and
  sigma ~ U(1, std_range) from split(key, 3)[:2], then mu + sigma * N(0, 1) per element from the third."""
  k_m, k_s, k_n = jax.random.split(key, 3)
  c = shape[-1]
  mu = jax.random.uniform(k_m, (c,), dtype, -mean_range, mean_range)
  sigma = jax.random.uniform(k_s, (c,), dtype, 1.0, std_range)
  return mu + sigma * jax.random.normal(k_n, shape, dtype)


def filter_response_norm(x, scale=None, bias=None, tau=None, *, eps: float = EPS_RMS):
  """FRN + TLU (Singh & Krishnan 2020): x / sqrt(mean_spatial(x^2) + eps), affine, then max(., tau)."""
  fn = "filter_response_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes = spatial_axes(x.ndim, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias, tau=tau)
  x_hat, _ = standardize(x, axes, eps=eps, center=False)
  y = affine(x_hat, scale, bias, x_hat.dtype)
  if tau is not None:
    y = jnp.maximum(y, jnp.asarray(tau, y.dtype))
  return y.astype(x.dtype)


def evonorm_b0(x, scale=None, bias=None, v=None, *, eps: float = EPS, axis_name: AxisName = None,
               mask=None, running: Moments | None = None, return_stats: bool = False,
               allow_single_value: bool = False):
  """EvoNorm-B0 (Liu et al. 2020): x / max(sqrt(var_batch + eps), v * x + sqrt(var_instance + eps)).

  var_batch is over (N, spatial) per channel (running value in eval mode); var_instance over spatial.
  With `mask` (broadcastable to x, e.g. (N, 1, ..., 1)) both variances are over the valid elements only.
  """
  fn = "evonorm_b0"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes_i = spatial_axes(x.ndim, fn=fn)
  axes_b = (0,) + axes_i
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias, v=v)
  checks.check_mask_array(mask, x.shape, fn=fn)
  checks.check_running(running, x.shape, (x.ndim - 1,), fn=fn)
  dt = stats_dtype(x.dtype)
  xs = x.astype(dt)
  if running is None:
    checks.check_batch_values(x.shape, axes_b, num_devices(axis_name, fn=fn), fn=fn, allow=allow_single_value)
    stats_b, _ = moments(x, axes_b, axis_name=axis_name, mask=mask)
  else:
    stats_b = Moments(*(jnp.reshape(t, (1,) * (x.ndim - 1) + (-1,)).astype(dt) for t in running))
  stats_i, _ = moments(x, axes_i, mask=mask)
  denom = jnp.sqrt(stats_b.var + eps)
  if v is not None:
    denom = jnp.maximum(denom, jnp.asarray(v, dt) * xs + jnp.sqrt(stats_i.var + eps))
  y = affine(xs / denom, scale, bias, x.dtype)
  if not return_stats:
    return y
  return y, Moments(*(lax.stop_gradient(jnp.squeeze(t, axes_b)) for t in stats_b))


def evonorm_s0(x, scale=None, bias=None, v=None, *, num_groups: int | None = None,
               group_size: int | None = None, eps: float = EPS):
  """EvoNorm-S0 (Liu et al. 2020): x * sigmoid(v * x) / group_std(x), then affine. Batch-independent.

  Groups as `group_norm`: give num_groups or group_size; the std is over the spatial axes and the group."""
  fn = "evonorm_s0"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  groups, axes = group_axes(x.shape, num_groups, group_size, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias, v=v)
  dt = stats_dtype(x.dtype)
  xs = x.astype(dt)
  xg = xs.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
  stats, _ = moments(xg, axes)
  std = jnp.broadcast_to(jnp.sqrt(stats.var + eps), xg.shape).reshape(x.shape)
  num = xs if v is None else xs * jax.nn.sigmoid(jnp.asarray(v, dt) * xs)
  return affine(num / std, scale, bias, x.dtype)


def switchable_norm(x, scale=None, bias=None, mean_logits=None, var_logits=None, *, eps: float = EPS,
                    axis_name: AxisName = None, mask=None, running: Moments | None = None,
                    return_stats: bool = False, allow_single_value: bool = False):
  """Switchable norm (Luo et al. 2019): softmax-weighted mix of instance, layer and batch statistics.

  Logits of shape (3,) weight (IN, LN, BN); LN and BN moments are derived from the IN moments.
  With `mask` (broadcastable to x, e.g. padded examples (N, 1, ..., 1) or time steps (N, T, 1)) the
  instance moments run over each example's valid positions and the batch moments weight them by
  their valid counts, so masked elements enter no statistic. In eval mode `running` holds the BN
  moments (feature-shaped).
  """
  fn = "switchable_norm"
  checks.check_x(x, fn=fn)
  eps = checks.check_eps(eps, fn=fn)
  axes_i = spatial_axes(x.ndim, fn=fn)
  check_params(x, (x.ndim - 1,), fn=fn, axes_doc=PER_CHANNEL, scale=scale, bias=bias)
  for what, logits in (("mean_logits", mean_logits), ("var_logits", var_logits)):
    if logits is not None and tuple(jnp.shape(logits)) != (3,):
      raise ValueError(f"{fn}: {what} has shape {tuple(jnp.shape(logits))}; allowed: (3,), the weights "
                       f"of (instance, layer, batch) statistics")
  checks.check_mask_array(mask, x.shape, fn=fn)
  checks.check_running(running, x.shape, (x.ndim - 1,), fn=fn)
  if running is None:
    checks.check_batch_values(x.shape, (0,) + axes_i, num_devices(axis_name, fn=fn), fn=fn,
                              allow=allow_single_value)
  dt = stats_dtype(x.dtype)
  xs = x.astype(dt)
  (mu_i, var_i), n_i = moments(x, axes_i, mask=mask)
  sq_i = var_i + mu_i * mu_i
  mu_l = jnp.mean(mu_i, -1, keepdims=True)
  var_l = jnp.mean(sq_i, -1, keepdims=True) - mu_l * mu_l
  if running is None:
    w = jnp.broadcast_to(n_i, mu_i.shape).astype(dt)  # each example's valid count per channel
    count = jnp.maximum(psum(jnp.sum(w, 0, keepdims=True), axis_name), 1)
    mu_b = psum(jnp.sum(w * mu_i, 0, keepdims=True), axis_name) / count
    var_b = psum(jnp.sum(w * sq_i, 0, keepdims=True), axis_name) / count - mu_b * mu_b
  else:
    shape = (1,) * (x.ndim - 1) + (-1,)
    mu_b, var_b = (jnp.reshape(t, shape).astype(dt) for t in running)
  wm = jax.nn.softmax(jnp.zeros(3, dt) if mean_logits is None else jnp.asarray(mean_logits, dt))
  wv = jax.nn.softmax(jnp.zeros(3, dt) if var_logits is None else jnp.asarray(var_logits, dt))
  mean = wm[0] * mu_i + wm[1] * mu_l + wm[2] * mu_b
  var = wv[0] * var_i + wv[1] * var_l + wv[2] * var_b
  y = affine((xs - mean) * lax.rsqrt(jnp.maximum(var, 0.0) + eps), scale, bias, x.dtype)
  if not return_stats:
    return y
  return y, Moments(*(lax.stop_gradient(jnp.reshape(t, (-1,))) for t in (mu_b, var_b)))


def local_response_norm(x, *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
  """Local response norm across channels (Krizhevsky et al. 2012), torch's convention:

  y_c = x_c / (k + alpha / size * sum_{c' in window(c)} x_c'^2) ^ beta, window of `size` channels
  centred on c (zero padded).
  """
  fn = "local_response_norm"
  checks.check_x(x, fn=fn)
  checks.check_min_rank(x.ndim, 2, fn=fn, layout="(N, ..., C)")
  checks.check_positive(size, fn=fn, what="size")
  dt = stats_dtype(x.dtype)
  sq = jnp.square(x.astype(dt))
  lo, hi = size // 2, (size - 1) // 2
  window = (1,) * (x.ndim - 1) + (size,)
  pad = [(0, 0)] * (x.ndim - 1) + [(lo, hi)]
  sums = lax.reduce_window(sq, 0.0, lax.add, window, (1,) * x.ndim, pad)
  return (x.astype(dt) / (k + alpha / size * sums) ** beta).astype(x.dtype)
