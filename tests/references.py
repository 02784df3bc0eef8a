"""The float64 references of the tests, written from the papers' formulas and the norms'
definitions, never from normlab's code (nothing here imports normlab or jax).

1. Per-norm references (`batch_norm`, `group_norm`, ..., `weight_norm`, ...): NumPy arrays in
   (channels-last, (N, ..., C)), float64 with the plain two-pass mean / biased variance, float64 out.
2. Reduction-set references (`fuzz.REFERENCES[name]`, for tests/test_fuzz.py): every norm as
   "gather each reduction set S into one row, standardize the row, scale/shift", generic in `xp`.
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


def f64(a):
    return np.asarray(a, dtype=np.float64)


def sample(shape, scale=1.5, shift=0.3, seed=0):
    """A reproducible float64 test input: normal with std `scale` and mean `shift`."""
    return np.random.default_rng(seed).normal(size=shape) * scale + shift


def max_abs_diff(a, b):
    """max |a - b| in float64."""
    return float(np.max(np.abs(f64(a) - f64(b))))


def _affine(y, gamma, beta):
    if gamma is not None:
        y = y * f64(gamma)
    if beta is not None:
        y = y + f64(beta)
    return y


def standardize(x, axes, eps, mask=None, center=True):
    """(x - mu) / sqrt(sigma^2 + eps) over `axes`, statistics over the elements where mask != 0."""
    x = f64(x)
    axes = tuple(axes)
    m = np.ones_like(x) if mask is None else np.broadcast_to(f64(mask), x.shape)
    n = m.sum(axes, keepdims=True)
    mu = (x * m).sum(axes, keepdims=True) / n if center else np.zeros_like(n)
    var = ((x - mu) ** 2 * m).sum(axes, keepdims=True) / n
    return (x - mu) / np.sqrt(var + eps)


# ----- the big four + RMS (Ioffe & Szegedy 2015; Ba et al. 2016; Ulyanov et al. 2016; Wu & He 2018;
# Zhang & Sennrich 2019) --------------------------------------------------------------------------


def batch_norm(x, gamma=None, beta=None, eps=1e-5, mask=None):
    """BN (Alg. 1): mu_B, sigma_B^2 over every axis but the channels; x_hat = (x - mu)/sqrt(var + eps)."""
    x = f64(x)
    return _affine(standardize(x, range(x.ndim - 1), eps, mask), gamma, beta)


def batch_stats(x, mask=None):
    """Per-channel (mean, biased var) over every axis but the last."""
    x = f64(x)
    axes = tuple(range(x.ndim - 1))
    m = np.ones_like(x) if mask is None else np.broadcast_to(f64(mask), x.shape)
    n = m.sum(axes)
    mu = (x * m).sum(axes) / n
    var = ((x - mu) ** 2 * m).sum(axes) / n
    return mu, var


def batch_norm_eval(x, mean, var, gamma=None, beta=None, eps=1e-5):
    return _affine((f64(x) - f64(mean)) / np.sqrt(f64(var) + eps), gamma, beta)


def layer_norm(x, gamma=None, beta=None, eps=1e-5, axes=(-1,)):
    """LN: statistics over the hidden units of one example (here: `axes`)."""
    x = f64(x)
    return _affine(standardize(x, [a % x.ndim for a in axes], eps), gamma, beta)


def rms_norm(x, gamma=None, eps=1e-6, axes=(-1,)):
    """RMSNorm: x / sqrt(mean(x^2) + eps)."""
    x = f64(x)
    ms = np.mean(x * x, axis=tuple(axes), keepdims=True)
    return _affine(x / np.sqrt(ms + eps), gamma, None)


def instance_norm(x, gamma=None, beta=None, eps=1e-5):
    """IN: statistics over H, W (spatial) of one example and one channel."""
    x = f64(x)
    return _affine(standardize(x, range(1, x.ndim - 1), eps), gamma, beta)


def group_norm(x, num_groups, gamma=None, beta=None, eps=1e-5):
    """GN (Wu & He, Fig. 3 code, channels-last): reshape C -> (G, C/G), statistics over spatial + C/G."""
    x = f64(x)
    n, c = x.shape[0], x.shape[-1]
    out = np.empty_like(x)
    gs = c // num_groups
    for i in range(n):
        for g in range(num_groups):
            blk = x[i, ..., g * gs:(g + 1) * gs]
            mu = blk.mean()
            var = ((blk - mu) ** 2).mean()
            out[i, ..., g * gs:(g + 1) * gs] = (blk - mu) / np.sqrt(var + eps)
    return _affine(out, gamma, beta)


# ----- variants ----------------------------------------------------------------------------------


def ghost_batch_norm(x, virtual_batch_size, gamma=None, beta=None, eps=1e-5):
    """Ghost BN (Hoffer et al. 2017, Alg. 1): BN applied to each chunk of `virtual_batch_size` examples."""
    x = f64(x)
    chunks = [batch_norm(x[i:i + virtual_batch_size], eps=eps)
              for i in range(0, x.shape[0], virtual_batch_size)]
    return _affine(np.concatenate(chunks, 0), gamma, beta)


def batch_renorm(x, running_mean, running_var, r_max, d_max, gamma=None, beta=None, eps=1e-5):
    """Batch Renorm (Ioffe 2017, Alg. 1): x_hat = (x - mu_B)/sigma_B * r + d,
    r = clip(sigma_B/sigma, 1/r_max, r_max), d = clip((mu_B - mu)/sigma, -d_max, d_max),
    sigma_B = sqrt(var_B + eps), sigma = sqrt(running_var + eps)."""
    x = f64(x)
    mu, var = batch_stats(x)
    sb = np.sqrt(var + eps)
    sr = np.sqrt(f64(running_var) + eps)
    r = np.clip(sb / sr, 1.0 / r_max, r_max)
    d = np.clip((mu - f64(running_mean)) / sr, -d_max, d_max)
    return _affine((x - mu) / sb * r + d, gamma, beta)


def lp_batch_norm(x, p, gamma=None, beta=None, eps=1e-5):
    """l_p BN (Santurkar et al. 2018, sec. 3.3 / app. C): (x - mu_B) / (s_p + eps), with
    s_1 = mean|x - mu|, s_2 = sqrt(mean (x - mu)^2), s_inf = max|x - mu| over the batch (per channel)."""
    x = f64(x)
    axes = tuple(range(x.ndim - 1))
    d = x - x.mean(axes, keepdims=True)
    if p == 1:
        s = np.abs(d).mean(axes, keepdims=True)
    elif p == 2:
        s = np.sqrt((d * d).mean(axes, keepdims=True))
    else:
        s = np.abs(d).max(axes, keepdims=True)
    return _affine(d / (s + eps), gamma, beta)


def noisy_batch_norm(x, mu, sigma, noise, gamma=None, beta=None, eps=1e-5):
    """Santurkar et al. 2018 sec. 2.1: BN output y, then z = y + mu_c + sigma_c * n (n ~ N(0, 1) per activation)."""
    y = batch_norm(x, gamma, beta, eps)
    return y + f64(mu) + f64(sigma) * f64(noise)


def filter_response_norm(x, gamma=None, beta=None, tau=None, eps=1e-6):
    """FRN + TLU (Singh & Krishnan 2020, eq. 1-2): nu^2 = mean_{H,W} x^2; y = gamma x/sqrt(nu^2+eps) + beta;
    z = max(y, tau)."""
    x = f64(x)
    nu2 = np.mean(x * x, axis=tuple(range(1, x.ndim - 1)), keepdims=True)
    y = _affine(x / np.sqrt(nu2 + eps), gamma, beta)
    return y if tau is None else np.maximum(y, f64(tau))


def evonorm_b0(x, gamma, beta, v, eps=1e-5, running_var=None):
    """EvoNorm-B0 (Liu et al. 2020, Table 1): x / max(sqrt(s^2_{b,w,h}(x) + eps), v x + sqrt(s^2_{w,h}(x)+eps))."""
    x = f64(x)
    sp = tuple(range(1, x.ndim - 1))
    var_b = batch_stats(x)[1] if running_var is None else f64(running_var)
    mu_i = x.mean(sp, keepdims=True)
    var_i = ((x - mu_i) ** 2).mean(sp, keepdims=True)
    den = np.maximum(np.sqrt(var_b + eps), f64(v) * x + np.sqrt(var_i + eps))
    return _affine(x / den, gamma, beta)


def evonorm_s0(x, gamma, beta, v, num_groups, eps=1e-5):
    """EvoNorm-S0: x * sigmoid(v x) / sqrt(s^2_{w,h,c/g}(x) + eps), then affine."""
    x = f64(x)
    c = x.shape[-1]
    gs = c // num_groups
    std = np.empty_like(x)
    for i in range(x.shape[0]):
        for g in range(num_groups):
            blk = x[i, ..., g * gs:(g + 1) * gs]
            std[i, ..., g * gs:(g + 1) * gs] = np.sqrt(blk.var() + eps)
    num = x / (1.0 + np.exp(-f64(v) * x))
    return _affine(num / std, gamma, beta)


def _softmax(z):
    z = f64(z)
    e = np.exp(z - z.max())
    return e / e.sum()


def switchable_norm(x, mean_logits, var_logits, gamma=None, beta=None, eps=1e-5):
    """Switchable Norm (Luo et al. 2019, eq. 3): mu = sum_k w_k mu_k, var = sum_k w'_k var_k over
    k in (IN, LN, BN), each statistic computed directly (two-pass) over its own set."""
    x = f64(x)
    sp = tuple(range(1, x.ndim - 1))

    def mv(axes):
        mu = x.mean(axes, keepdims=True)
        return mu, ((x - mu) ** 2).mean(axes, keepdims=True)

    stats = [mv(sp), mv(sp + (x.ndim - 1,)), mv((0,) + sp)]
    wm, wv = _softmax(mean_logits), _softmax(var_logits)
    mu = sum(w * s[0] for w, s in zip(wm, stats))
    var = sum(w * s[1] for w, s in zip(wv, stats))
    return _affine((x - mu) / np.sqrt(var + eps), gamma, beta)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """LRN (Krizhevsky et al. 2012, sec. 3.3), torch convention (alpha divided by `size`):
    b_c = a_c / (k + alpha/size * sum_{c' = c - size//2}^{c + (size-1)//2} a_c'^2)^beta (clipped to [0, C))."""
    x = f64(x)
    c = x.shape[-1]
    out = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        s = np.sum(x[..., lo:hi + 1] ** 2, axis=-1)
        out[..., ch] = x[..., ch] / (k + alpha / size * s) ** beta
    return out


# ----- kernel norms ------------------------------------------------------------------------------


def _as_matrix(w):
    """Kernel (..., fan_in, out) -> (fan_in_total, out): each column is one output unit's weights."""
    w = f64(w)
    return w.reshape(-1, w.shape[-1])


def weight_norm(v, g=None, eps=0.0):
    """Weight norm (Salimans & Kingma 2016, eq. 2): w = g v / ||v|| per output unit."""
    v = f64(v)
    nrm = np.sqrt((_as_matrix(v) ** 2).sum(0) + eps)
    w = v / nrm
    return w if g is None else w * f64(g)


def weight_norm_data_init(t, eps=0.0):
    """Sec. 3 of Salimans & Kingma: g <- 1/sigma[t], b <- -mu[t]/sigma[t], t = v.x/||v||."""
    t = f64(t).reshape(-1, np.shape(t)[-1])
    mu = t.mean(0)
    sd = np.sqrt(t.var(0) + eps)
    return 1.0 / sd, -mu / sd


def weight_standardize(w, eps=1e-5):
    """Weight standardization (Qiao et al. 2019, eq. 5): per output unit, W_hat = (W - mu)/sqrt(var + eps)."""
    w = f64(w)
    m = _as_matrix(w)
    mu = m.mean(0)
    var = m.var(0)
    return ((m - mu) / np.sqrt(var + eps)).reshape(w.shape)


def spectral_normalize(w, u, n_iters=1, eps=1e-12):
    """Spectral norm (Miyato et al. 2018, Alg. 1) on W = kernel matrix (out, fan_in):
    v <- W^T u/||W^T u||, u <- W v/||W v||; sigma = u^T W v; returns (W/sigma in kernel layout, u, sigma)."""
    w = f64(w)
    mat = _as_matrix(w).T
    u = f64(u)
    for _ in range(n_iters):
        v = mat.T @ u
        v = v / (np.linalg.norm(v) + eps)
        u = mat @ v
        u = u / (np.linalg.norm(u) + eps)
    sigma = u @ mat @ v
    return w / sigma, u, sigma


def spectral_norm_exact(w):
    return np.linalg.svd(_as_matrix(w), compute_uv=False)[0]


# ----- gradients ---------------------------------------------------------------------------------


def bn_input_grad(x, g_y, gamma, eps=0.0, sign=-1.0):
    """Closed-form BN input gradient for a (m, C) batch, per channel:

        dx_i = gamma / (m sigma) * (m g_i - sum_j g_j + sign * x_hat_i * sum_j x_hat_j g_j),

    with g the gradient w.r.t. x_hat (= dL/dy * ... here `g_y` is dL/dy, so dL/dx_hat = gamma g_y and
    the gamma factor is the one in front). sign=-1 is the correct formula; seed 002 prints sign=+1.
    """
    x = f64(x)
    g = f64(g_y)
    m = x.shape[0]
    mu = x.mean(0)
    sigma = np.sqrt(((x - mu) ** 2).mean(0) + eps)
    xh = (x - mu) / sigma
    return f64(gamma) / (m * sigma) * (m * g - g.sum(0) + sign * xh * (xh * g).sum(0))


# ----- 2. reduction-set references (tests/test_fuzz.py) -------------------------------------------

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


def _sets_affine(xp, xhat, scale, bias):
  y = xhat
  if scale is not None:
    y = y * xp.asarray(scale, dtype=xp.float64)
  if bias is not None:
    y = y + xp.asarray(bias, dtype=xp.float64)
  return y


def _out(xp, std, scale, bias, tau=None):
  xhat, r, spread, n, set_max, valid = std
  y = _sets_affine(xp, xhat, scale, bias)
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


def _sets_batch_norm(x, scale=None, bias=None, *, eps=1e-5, feature_axes=-1, mask=None, xp=np):
  std = _norm("batch_norm", xp, x, eps, mask, feature_axes=feature_axes)
  return _out(xp, std, scale, bias)


def _sets_layer_norm(x, scale=None, bias=None, *, eps=1e-5, reduction_axes=-1, mask=None, xp=np):
  std = _norm("layer_norm", xp, x, eps, mask, reduction_axes=reduction_axes)
  return _out(xp, std, scale, bias)


def _sets_rms_norm(x, scale=None, *, eps=1e-6, reduction_axes=-1, xp=np):
  std = _norm("rms_norm", xp, x, eps, center=False, reduction_axes=reduction_axes)
  return _out(xp, std, scale, None)


def _sets_instance_norm(x, scale=None, bias=None, *, eps=1e-5, mask=None, xp=np):
  return _out(xp, _norm("instance_norm", xp, x, eps, mask), scale, bias)


def _sets_group_norm(x, scale=None, bias=None, *, num_groups=None, group_size=None, eps=1e-5, mask=None,
               xp=np):
  std = _norm("group_norm", xp, x, eps, mask, num_groups=num_groups, group_size=group_size)
  return _out(xp, std, scale, bias)


def _sets_ghost_batch_norm(x, scale=None, bias=None, *, virtual_batch_size, eps=1e-5, xp=np):
  std = _norm("ghost_batch_norm", xp, x, eps, virtual_batch_size=virtual_batch_size)
  return _out(xp, std, scale, bias)


def _sets_lp_batch_norm(x, scale=None, bias=None, *, p=1, eps=1e-5, mask=None, xp=np):
  return _out(xp, _norm("lp_batch_norm", xp, x, eps, mask, lp=p), scale, bias)


def _sets_filter_response_norm(x, scale=None, bias=None, tau=None, *, eps=1e-6, xp=np):
  std = _norm("filter_response_norm", xp, x, eps, center=False)
  return _out(xp, std, scale, bias, tau)


_SET_REFERENCES = {f.__name__[len("_sets_"):]: f for f in (
    _sets_batch_norm, _sets_layer_norm, _sets_rms_norm, _sets_instance_norm, _sets_group_norm,
    _sets_ghost_batch_norm, _sets_lp_batch_norm, _sets_filter_response_norm)}


class fuzz:  # noqa: N801 (a namespace: `from references import fuzz as ref` in tests/test_fuzz.py)
  """The reduction-set references by the names tests/test_fuzz.py uses."""
  DEFAULT_EPS = DEFAULT_EPS
  RefOut = RefOut
  REFERENCES = _SET_REFERENCES
  _Sets = _Sets
  set_view = staticmethod(set_view)
  lp_batch_norm = staticmethod(_sets_lp_batch_norm)
