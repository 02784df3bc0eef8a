"""Norms that act on kernels, not activations: weight norm, weight standardization, spectral norm.

Kernels are (..., fan_in, out) as in Flax (Dense: (in, out); Conv: (*window, in, out)); each output
unit's weight vector is every axis but the last.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from normlab import checks
from normlab.core import stats_dtype


def _fan_in_axes(w) -> tuple[int, ...]:
  checks.check_min_rank(w.ndim, 2, fn="reparam", layout="kernel (..., fan_in, out)")
  return tuple(range(w.ndim - 1))


def weight_norm(v, g=None, *, eps: float = 1e-12):
  """Weight normalization (Salimans & Kingma 2016): w = g * v / ||v|| per output unit."""
  eps = checks.check_eps(eps, fn="weight_norm")
  dt = stats_dtype(v.dtype)
  vs = v.astype(dt)
  w = vs * lax.rsqrt(jnp.sum(vs * vs, _fan_in_axes(v), keepdims=True) + eps)
  if g is not None:
    w = w * jnp.asarray(g, dt)
  return w.astype(v.dtype)


def weight_norm_data_init(pre_activations, *, eps: float = 1e-6):
  """Data-dependent init of weight norm: given t = x @ (v/||v||) on a batch, returns (g, b)
  = (1/std(t), -mean(t)/std(t)) so that the first batch's pre-activations are standardized."""
  eps = checks.check_eps(eps, fn="weight_norm_data_init")
  axes = tuple(range(pre_activations.ndim - 1))
  t = pre_activations.astype(stats_dtype(pre_activations.dtype))
  mean = jnp.mean(t, axes)
  std = jnp.sqrt(jnp.mean(jnp.square(t - mean), axes) + eps)
  return 1.0 / std, -mean / std


def weight_standardize(w, *, eps: float = 1e-5):
  """Weight standardization (Qiao et al. 2019): zero mean, unit variance per output unit."""
  eps = checks.check_eps(eps, fn="weight_standardize")
  axes = _fan_in_axes(w)
  ws = w.astype(stats_dtype(w.dtype))
  mean = jnp.mean(ws, axes, keepdims=True)
  var = jnp.mean(jnp.square(ws - mean), axes, keepdims=True)
  return ((ws - mean) * lax.rsqrt(var + eps)).astype(w.dtype)


def spectral_normalize(w, u, *, n_iters: int = 1, eps: float = 1e-12):
  """Spectral norm (Miyato et al. 2018): w / sigma_max(w), sigma from `n_iters` power iterations.

  `u` (shape (out,)) is the persistent left vector estimate; returns (w_sn, u_new, sigma). The power
  iteration is not differentiated (as in the paper); sigma is, through u^T W v.
  """
  checks.check_positive(n_iters, fn="spectral_normalize", what="n_iters")
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
