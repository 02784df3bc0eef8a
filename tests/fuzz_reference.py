"""Float64 reference implementations for the numerics fuzz test (tests/test_fuzz.py).

Written from the norms' definitions (docstrings of normlab.norms / normlab.variants and the papers),
not from normlab's code: every norm is "gather each reduction set S into one row, standardize the
row, scale/shift". Nothing here imports normlab.

Each function takes `xp` (numpy for the forward reference, jax.numpy for the gradient reference,
which is differentiated with jax autodiff in float64) and mirrors the keyword arguments of the
normlab function of the same name, so a test can call both with one kwargs dict. It returns a
`RefOut`: the output `y` plus, for the tolerance model of the test, the per-element quantities

  xhat     the normalized value before the affine map,
  r        1 / denominator of the element's set (1/sqrt(var + eps), 1/(s_p + eps), ...),
  spread   the set's spread statistic before eps is added (var, mean square, or l_p scale),
  n        the number of elements of the set (valid or not, i.e. |S|),
  set_max  a function mapping an x-shaped array to the max over each element's set, broadcast.
  valid    the number of valid (unmasked) elements of the element's set.

Mask semantics (normlab's documented contract): statistics use only the valid elements, every
element of S (masked ones too) is normalized with them, and a set with no valid element has
mean 0 and spread 0 (so its outputs are x / sqrt(eps), or x / eps for l_p norms) instead of NaN.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

DEFAULT_EPS = {
    "batch_norm": 1e-5, "layer_norm": 1e-5, "rms_norm": 1e-6, "instance_norm": 1e-5,
    "group_norm": 1e-5, "ghost_batch_norm": 1e-5, "lp_batch_norm": 1e-5, "filter_response_norm": 1e-6,
}


class RefOut(NamedTuple):
  y: object
  xhat: object
  r: object
  spread: object
  n: int
  set_max: Callable
  valid: object  # number of valid (unmasked) elements of the element's set


def _axes(axes, ndim):
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  return tuple(sorted(a % ndim for a in axes))


class _Sets:
  """Moves the reduction axes of `shape` last and flattens them: x -> rows of shape (G, |S|)."""

  def __init__(self, shape, axes):
    self.shape = tuple(shape)
    keep = [a for a in range(len(shape)) if a not in axes]
    self.perm = keep + list(axes)
    self.inv = [self.perm.index(a) for a in range(len(shape))]
    self.tshape = tuple(shape[a] for a in self.perm)
    self.n = math.prod(shape[a] for a in axes)

  def rows(self, xp, a):
    return xp.transpose(a, self.perm).reshape((-1, self.n))

  def back(self, xp, rows):
    return xp.transpose(rows.reshape(self.tshape), self.inv)


def _bcast(xp, a, shape):
  return xp.broadcast_to(xp.asarray(a, dtype=xp.float64), shape)


def set_view(name, shape, **kw):
  """(view_shape, axes): `x.reshape(view_shape)` has the reduction sets of norm `name` over `axes`."""
  shape = tuple(shape)
  ndim = len(shape)
  if name in ("batch_norm", "lp_batch_norm"):
    feats = _axes(kw.get("feature_axes", -1), ndim)
    return shape, tuple(a for a in range(ndim) if a not in feats)
  if name in ("layer_norm", "rms_norm"):
    return shape, _axes(kw.get("reduction_axes", -1), ndim)
  if name in ("instance_norm", "filter_response_norm"):
    return shape, tuple(range(1, ndim - 1))
  if name == "group_norm":
    c = shape[-1]
    g = kw["num_groups"] if kw.get("num_groups") is not None else c // kw["group_size"]
    return shape[:-1] + (g, c // g), tuple(range(1, ndim - 1)) + (ndim,)
  if name == "ghost_batch_norm":
    v = kw["virtual_batch_size"]
    return (shape[0] // v, v) + shape[1:], tuple(range(1, ndim))
  raise ValueError(name)


def _standardize(xp, x, axes, eps, mask=None, center=True, lp=None):
  """Rows-based reference standardization; lp=None: (x-mu)/sqrt(var+eps), else (x-mu)/(s_p+eps)."""
  sets = _Sets(x.shape, axes)
  f = sets.rows(xp, x)
  m = xp.ones_like(f) if mask is None else sets.rows(xp, _bcast(xp, mask, x.shape) != 0).astype(f.dtype)
  cnt = xp.maximum(xp.sum(m, axis=1, keepdims=True), 1.0)  # empty set: mean 0, spread 0
  mu = xp.sum(f * m, axis=1, keepdims=True) / cnt if center else xp.zeros_like(cnt)
  d = f - mu
  if lp is None:
    spread = xp.sum(d * d * m, axis=1, keepdims=True) / cnt
    denom = xp.sqrt(spread + eps)
  elif lp == 1:
    spread = xp.sum(xp.abs(d) * m, axis=1, keepdims=True) / cnt
    denom = spread + eps
  elif lp == 2:
    ms = xp.sum(d * d * m, axis=1, keepdims=True) / cnt
    pos = ms > 0
    # sqrt with a zero (sub)gradient at 0: the l2 scale is not differentiable where the set has no
    # spread, but the output d / (s + eps) is (d = 0 there), with derivative (I - 1/n) / eps.
    spread = xp.where(pos, xp.sqrt(xp.where(pos, ms, 1.0)), 0.0)
    denom = spread + eps
  elif lp == "inf":
    spread = xp.max(xp.abs(d) * m, axis=1, keepdims=True)
    denom = spread + eps
  else:
    raise ValueError(lp)
  xhat = d / denom
  ones = xp.ones_like(f)

  def set_max(a, sets=sets):
    rows = sets.rows(np, np.asarray(a, np.float64))
    return sets.back(np, np.broadcast_to(rows.max(axis=1, keepdims=True), rows.shape))

  return (sets.back(xp, xhat), sets.back(xp, ones / denom), sets.back(xp, ones * spread), sets.n,
          set_max, sets.back(xp, ones * xp.sum(m, axis=1, keepdims=True)))


def _affine(xp, xhat, scale, bias):
  y = xhat
  if scale is not None:
    y = y * xp.asarray(scale, dtype=xp.float64)
  if bias is not None:
    y = y + xp.asarray(bias, dtype=xp.float64)
  return y


def _out(xp, std, scale, bias, tau=None):
  xhat, r, spread, n, set_max, valid = std
  y = _affine(xp, xhat, scale, bias)
  if tau is not None:
    y = xp.maximum(y, xp.asarray(tau, dtype=xp.float64))
  return RefOut(y, xhat, r, spread, n, set_max, valid)


def _norm(name, xp, x, eps, mask=None, center=True, lp=None, **kw):
  """Standardizes x over the reduction sets of norm `name` (see `set_view`), in x's shape."""
  vshape, axes = set_view(name, x.shape, **kw)
  mv = None if mask is None else _bcast(xp, mask, x.shape).reshape(vshape)
  xhat, r, spread, n, set_max, valid = _standardize(xp, x.reshape(vshape), axes, eps, mv, center, lp)

  def set_max_x(a):
    return set_max(np.asarray(a, np.float64).reshape(vshape)).reshape(x.shape)

  return (xhat.reshape(x.shape), r.reshape(x.shape), spread.reshape(x.shape), n, set_max_x,
          valid.reshape(x.shape))


def batch_norm(x, scale=None, bias=None, *, eps=1e-5, feature_axes=-1, mask=None, xp=np):
  std = _norm("batch_norm", xp, x, eps, mask, feature_axes=feature_axes)
  return _out(xp, std, scale, bias)


def layer_norm(x, scale=None, bias=None, *, eps=1e-5, reduction_axes=-1, mask=None, xp=np):
  std = _norm("layer_norm", xp, x, eps, mask, reduction_axes=reduction_axes)
  return _out(xp, std, scale, bias)


def rms_norm(x, scale=None, *, eps=1e-6, reduction_axes=-1, xp=np):
  std = _norm("rms_norm", xp, x, eps, center=False, reduction_axes=reduction_axes)
  return _out(xp, std, scale, None)


def instance_norm(x, scale=None, bias=None, *, eps=1e-5, mask=None, xp=np):
  return _out(xp, _norm("instance_norm", xp, x, eps, mask), scale, bias)


def group_norm(x, scale=None, bias=None, *, num_groups=None, group_size=None, eps=1e-5, mask=None,
               xp=np):
  std = _norm("group_norm", xp, x, eps, mask, num_groups=num_groups, group_size=group_size)
  return _out(xp, std, scale, bias)


def ghost_batch_norm(x, scale=None, bias=None, *, virtual_batch_size, eps=1e-5, xp=np):
  std = _norm("ghost_batch_norm", xp, x, eps, virtual_batch_size=virtual_batch_size)
  return _out(xp, std, scale, bias)


def lp_batch_norm(x, scale=None, bias=None, *, p=1, eps=1e-5, mask=None, xp=np):
  return _out(xp, _norm("lp_batch_norm", xp, x, eps, mask, lp=p), scale, bias)


def filter_response_norm(x, scale=None, bias=None, tau=None, *, eps=1e-6, xp=np):
  std = _norm("filter_response_norm", xp, x, eps, center=False)
  return _out(xp, std, scale, bias, tau)


REFERENCES = {f.__name__: f for f in (batch_norm, layer_norm, rms_norm, instance_norm, group_norm,
                                      ghost_batch_norm, lp_batch_norm, filter_response_norm)}
