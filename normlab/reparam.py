"""Norms that act on kernels, not activations: weight norm, weight standardization, spectral norm.

Kernels are (..., fan_in, out) as in Flax (Dense: (in, out); Conv: (*window, in, out)); each output
unit's weight vector is every axis but the last.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from normlab import checks
from normlab.core import stats_dtype


def _fan_in_axes(w, *, fn: str, what: str) -> tuple[int, ...]:
  """Checks a kernel (a float array of rank >= 2) and returns its fan-in axes."""
  checks.check_x(w, fn=fn, what=what)
  checks.check_min_rank(w.ndim, 2, fn=fn, layout=f"{what}: a kernel (..., fan_in, out)")
  return tuple(range(w.ndim - 1))


def _check_out_vector(t, w, *, fn: str, what: str) -> None:
  """`t` (g or u) holds one value per output unit: shape (out,) of a (..., fan_in, out) kernel."""
  checks.check_param(t, w.shape, (w.ndim - 1,), fn=fn, what=what,
                     axes_doc="one value per output unit, the kernel's last axis")


def weight_norm(v, g=None, *, eps: float = 1e-12):
  """Weight normalization (Salimans & Kingma 2016): w = g * v / ||v|| per output unit."""
  fn = "weight_norm"
  eps = checks.check_eps(eps, fn=fn)
  axes = _fan_in_axes(v, fn=fn, what="v")
  _check_out_vector(g, v, fn=fn, what="g")
  dt = stats_dtype(v.dtype)
  vs = v.astype(dt)
  w = vs * lax.rsqrt(jnp.sum(vs * vs, axes, keepdims=True) + eps)
  if g is not None:
    w = w * jnp.asarray(g, dt)
  return w.astype(v.dtype)


def weight_norm_data_init(pre_activations, *, eps: float = 1e-6):
  """Data-dependent init of weight norm: given t = x @ (v/||v||) on a batch, returns (g, b)
  = (1/std(t), -mean(t)/std(t)) so that the first batch's pre-activations are standardized."""
  fn = "weight_norm_data_init"
  checks.check_x(pre_activations, fn=fn, what="pre_activations")
  checks.check_min_rank(pre_activations.ndim, 2, fn=fn, layout="pre_activations: (N, ..., out)")
  eps = checks.check_eps(eps, fn=fn)
  axes = tuple(range(pre_activations.ndim - 1))
  t = pre_activations.astype(stats_dtype(pre_activations.dtype))
  mean = jnp.mean(t, axes)
  std = jnp.sqrt(jnp.mean(jnp.square(t - mean), axes) + eps)
  return 1.0 / std, -mean / std


def weight_standardize(w, *, eps: float = 1e-5):
  """Weight standardization (Qiao et al. 2019): zero mean, unit variance per output unit."""
  eps = checks.check_eps(eps, fn="weight_standardize")
  axes = _fan_in_axes(w, fn="weight_standardize", what="w")
  ws = w.astype(stats_dtype(w.dtype))
  mean = jnp.mean(ws, axes, keepdims=True)
  var = jnp.mean(jnp.square(ws - mean), axes, keepdims=True)
  return ((ws - mean) * lax.rsqrt(var + eps)).astype(w.dtype)


def spectral_normalize(w, u, *, n_iters: int = 1, eps: float = 1e-12):
  """Spectral norm (Miyato et al. 2018): w / sigma_max(w), sigma from `n_iters` power iterations.

  `u` (shape (out,)) is the persistent left vector estimate; returns (w_sn, u_new, sigma). The power
  iteration is not differentiated (as in the paper); sigma is, through u^T W v.
  """
  fn = "spectral_normalize"
  if isinstance(n_iters, bool) or not isinstance(n_iters, int):
    raise ValueError(f"{fn}: n_iters must be an int > 0, got {n_iters!r}")
  checks.check_positive(n_iters, fn=fn, what="n_iters")
  _fan_in_axes(w, fn=fn, what="w")
  checks.check_x(u, fn=fn, what="u")
  if tuple(u.shape) != (w.shape[-1],):
    raise ValueError(f"{fn}: u has shape {tuple(u.shape)}, expected ({w.shape[-1]},): one value per output "
                     f"unit of w of shape {tuple(w.shape)}")
  dt = stats_dtype(w.dtype)
  mat = w.astype(dt).reshape(-1, w.shape[-1]).T  # (out, fan_in)
  u = lax.stop_gradient(u.astype(dt))
  m = lax.stop_gradient(mat)
  for _ in range(n_iters):
    v = m.T @ u
    v = v / (jnp.linalg.norm(v) + eps)
    u = m @ v
    u = u / (jnp.linalg.norm(u) + eps)
  v = lax.stop_gradient(v)
  u = lax.stop_gradient(u)
  sigma = u @ mat @ v
  return (w.astype(dt) / sigma).astype(w.dtype), u, sigma
