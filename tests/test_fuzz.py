"""Numerics fuzz test: normlab's norms against an independent float64 reference (tests/references.py, `fuzz`).

Deterministic: every case is drawn from `np.random.default_rng([SEED, ...])` at collection time, so
the same cases (and ids) run everywhere. Each *configuration* (function, dtype, shape, axes/groups/p/
eps, whether there is a mask/scale/bias/tau) is jit-compiled once and run on several *inputs* of
that shape (different magnitude regimes and mask patterns); every (configuration, input) pair is a
test case of its own. (XLA compiles are the cost here: ~0.1-0.2 s CPU each; ~25 s CPU in all.)
Everything runs under jax.jit, as training code does.

Property checked for every forward case, on the input x rounded to its dtype:
  * output dtype == input dtype, no NaN anywhere;
  * where the float64 reference y (computed on the same rounded x, cast to float64) fits in the
    dtype's range, normlab's output is finite and |y_normlab - y| <= tol (elementwise);
  * where |y| exceeds the dtype's max (float16 outputs of x / sqrt(eps) for fully masked sets),
    the output overflows to the right sign (that is what correct rounding gives).

Tolerance (elementwise), derived rather than tuned. Input rounding is not part of it (the reference
sees the rounded input). With eps_s the epsilon of the statistics dtype (float32 for
float32/bfloat16/float16 inputs: normlab accumulates in >= float32) and eps_o that of the output
dtype, r = 1/denominator of the element's reduction set S (1/sqrt(var + eps), or 1/(s_p + eps)):
    tol = eps_o * |y|  +  tiny_o                                         (rounding the result)
        + c_n * eps_s * ((amp + |x_hat| + 1) * |scale| + |bias| + |tau|)   (computing it)
    amp = max_S |x| * r,   c_n = 4 + |S|
The second line is the error of (x - mu) * r in eps_s arithmetic: a sum of |S| terms can be off by
|S| * eps_s * max|x| (worst-case recursive summation), which shifts the mean by that much, i.e. the
output by eps_s * |S| * max|x| * r = c * eps_s * amp -- this is the conditioning term, large when
|mean| >> max(std, sqrt(eps)) (offset and constant inputs); the variance/rsqrt and the affine map add
a few eps_s relative to |x_hat| and |y|. tiny_o (the smallest subnormal) covers results that round
into the subnormal range. Round-to-nearest makes the first line worth eps_o/2 * |y| at most, so for
bfloat16/float16 outputs the observed max error/tol is ~0.49; for float32 it is ~0.15 (c_n is the
worst-case summation bound, XLA's reductions do better). Loose enough to be deterministic-safe,
tight enough to matter: an unbiased (n-1) variance, eps outside the sqrt, or the seed document's
sign error in the VJP each fail 35-55% of the cases.

Gradients (float32 and float64 inputs, small shapes): jax.grad of sum(g * f(x)) through normlab
(its custom VJP for the standardize-based norms, plain autodiff for lp_batch_norm) against jax.grad
of the jnp float64 reference on the same input. For dx = r * (g - m/n (sum g + x_hat sum(g x_hat)))
an error delta in x_hat (bounded as above) enters multiplied by at most r * G * (1 + x_hat_max)
where G = max_S |g * scale|, and r itself is good to a few eps_s, hence
    tol_grad = c_n * eps_s * (r * G * (1 + x_hat_max)^2 * (1 + amp + x_hat_max) + |dx|)

Magnitude ranges (per dtype; "sigma" is the scale of a clipped N(0, 1) draw, |z| <= 4):
  float32, bfloat16: sigma in 1e-6 .. 1e4 (both have float32's exponent range; |x| <= 4e4, so
                     sums of squares over <= 343 elements stay far below the max in float32).
  float16:           sigma in 1e-6 .. 1e3, so |x| <= ~5e3 < 65504 with offsets; values below 6.1e-5
                     are float16 subnormals (the reference sees the same rounded values).
Offsets: |mean| in 1 .. 1e3 with std in 1e-3 .. 1 (relative to the mean: down to 1e-6, i.e. below
bfloat16/float16 resolution, which makes the rounded input piecewise constant -- on purpose).
Constant inputs: a random constant (its float32 mean is generally inexact), or per-channel dyadic
constants k * 2^e (|k| <= 16, exact in every dtype, so every sum and mean is exact: zero spread).
Masks: random Bernoulli masks, masks that leave exactly one or zero valid elements in many sets,
all-valid masks, and broadcast-shaped masks.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import normlab
from references import fuzz as ref

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


# A failure prints this seed and the case id; NORMLAB_FUZZ_SEED=<seed> pytest tests/test_fuzz.py -k <id>
# reproduces it (any other seed draws a fresh set of cases).
SEED = int(os.environ.get("NORMLAB_FUZZ_SEED", "20260521"))
FUNCS = ("batch_norm", "layer_norm", "rms_norm", "instance_norm", "group_norm", "ghost_batch_norm",
         "lp_batch_norm", "filter_response_norm")
MASKED = ("batch_norm", "layer_norm", "instance_norm", "group_norm", "lp_batch_norm")
NO_BIAS = ("rms_norm",)
DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16),
          "float16": np.dtype(np.float16), "float64": np.dtype(np.float64)}
LOG10_SIGMA = {"float32": (-6.0, 4.0), "bfloat16": (-6.0, 4.0), "float16": (-6.0, 3.0),
               "float64": (-6.0, 4.0)}
# "extreme" magnitudes: from 1e-30 up to what the dtype's statistics hold. A sum of up to 2744 squares
# of |x| <= 4 * sigma must stay finite in the statistics dtype (float32 for 16-bit inputs): sigma <= 1e16
# there, 1e30 in float64 (squares 1e61 << 1.8e308); float16 inputs themselves end at 65504.
LOG10_EXTREME = {"float32": (-30.0, 16.0), "bfloat16": (-30.0, 16.0), "float16": (-30.0, 3.0),
                 "float64": (-30.0, 30.0)}
KINDS = ("normal", "offset", "constant", "const_channel", "tiny", "huge", "mixed", "extreme", "far_offset",
         "poisoned")
GRAD_KINDS = ("normal", "offset", "tiny", "huge", "mixed", "extreme", "far_offset", "poisoned")
# + "const_channel" for every config. "poisoned" (NaN/+-inf in the masked-out positions; only the valid
# outputs are compared) needs a mask: configurations without one draw the next kind instead.
FWD_CONFIGS, FWD_INPUTS = 3, 11   # per (function, dtype): 8 * 4 * 3 * 11 = 1056 forward cases
GRAD_CONFIGS, GRAD_INPUTS = 2, 9  # per function (+1 for lp_batch_norm), in float32 and float64: 306 cases

# Fixed bug (regression tests below): lp_batch_norm(p=2) returned NaN gradients when a channel had zero
# spread (constant channel, or exactly 1 valid element under a mask): d sqrt(s)/ds = inf at s=0 times 0.


# ----------------------------------------------------------------------------- case generation

class Config(NamedTuple):
  fn: str
  dtype: str
  shape: tuple
  static: dict      # keyword arguments that are Python values (axes, eps, groups, p, ...)
  mask_shape: tuple | None
  scale_shape: tuple | None
  bias_shape: tuple | None
  tau_shape: tuple | None
  key: str


class Input(NamedTuple):
  kind: str
  mask_mode: str
  x: np.ndarray        # in the case's dtype
  arrays: dict         # mask / scale / bias / tau (numpy; mask bool, the rest float32-exact)
  g: np.ndarray | None  # cotangent for gradient cases


def _subset(rng, n, *, proper):
  """A random nonempty subset of range(n) (a proper one if `proper`)."""
  while True:
    bits = rng.random(n) < 0.5
    if bits.any() and not (proper and bits.all()):
      return [i for i in range(n) if bits[i]]


def _axes_arg(rng, axes, ndim):
  """Spells a tuple of axes the way a user might: int, negative ints, tuple."""
  axes = [a - ndim if rng.random() < 0.5 else a for a in axes]
  if len(axes) == 1 and rng.random() < 0.5:
    return int(axes[0])
  return tuple(int(a) for a in axes)


# lp_batch_norm configurations in turn: (p, with a mask)
LP_VARIANTS = ((1, True), (2, False), ("inf", True), (2, True), (1, False), ("inf", False))


def _make_config(fn, dtype, rng, idx, *, small, variant):
  maxd, maxc = (4, 4) if small else (7, 8)
  min_rank = 3 if fn in ("instance_norm", "filter_response_norm") else 2
  rank = int(rng.integers(min_rank, 5))
  shape = tuple(int(d) for d in rng.integers(1, maxd + 1, size=rank - 1)) + (int(rng.integers(1, maxc + 1)),)
  ndim = len(shape)
  eps_choices = [ref.DEFAULT_EPS[fn], ref.DEFAULT_EPS[fn], 1e-3, 1e-8]
  static = {"eps": float(eps_choices[int(rng.integers(len(eps_choices)))])}
  param_shape = (shape[-1],)  # per-channel affine
  if fn == "batch_norm" and rng.random() < 0.5:
    feats = _subset(rng, ndim, proper=True)
    static["feature_axes"] = _axes_arg(rng, feats, ndim)
    param_shape = tuple(shape[a] if a in feats else 1 for a in range(ndim))
  elif fn in ("layer_norm", "rms_norm"):
    red = [ndim - 1] if rng.random() < 0.4 else _subset(rng, ndim, proper=False)
    static["reduction_axes"] = _axes_arg(rng, red, ndim)
    param_shape = tuple(shape[a] if a in red else 1 for a in range(ndim))
  elif fn == "group_norm":
    divs = [d for d in range(1, shape[-1] + 1) if shape[-1] % d == 0]
    d = int(divs[int(rng.integers(len(divs)))])
    static["num_groups" if rng.random() < 0.5 else "group_size"] = d
  elif fn == "ghost_batch_norm":
    divs = [d for d in range(1, shape[0] + 1) if shape[0] % d == 0]
    static["virtual_batch_size"] = int(divs[int(rng.integers(len(divs)))])
  elif fn == "lp_batch_norm":
    static["p"] = LP_VARIANTS[variant % len(LP_VARIANTS)][0]
  mask_shape = None
  with_mask = (LP_VARIANTS[variant % len(LP_VARIANTS)][1] if fn == "lp_batch_norm"
               else variant % 2 == 0)
  if fn in MASKED and with_mask:
    if rng.random() < 0.65:
      mask_shape = shape
    else:  # broadcast-shaped mask: some axes of size 1 (trailing ones may be dropped)
      mask_shape = tuple(1 if rng.random() < 0.5 else d for d in shape)
      while len(mask_shape) > 1 and mask_shape[0] == 1 and rng.random() < 0.5:
        mask_shape = mask_shape[1:]
  scale_shape = param_shape if rng.random() < 0.6 else None
  bias_shape = param_shape if fn not in NO_BIAS and rng.random() < 0.6 else None
  tau_shape = (shape[-1],) if fn == "filter_response_norm" and rng.random() < 0.6 else None
  key = f"{fn}-g{idx}" if small else f"{fn}-{dtype}-c{idx}"
  return Config(fn, dtype, shape, static, mask_shape, scale_shape, bias_shape, tau_shape, key)


def _make_x(kind, shape, dtype, rng):
  lo, hi = LOG10_SIGMA[np.dtype(dtype).name]
  z = np.clip(rng.standard_normal(shape), -4.0, 4.0)
  sign = lambda: (-1.0) ** int(rng.integers(2))  # noqa: E731
  if kind == "normal":
    x = 10.0 ** rng.uniform(lo, hi) * z
  elif kind == "tiny":
    x = 10.0 ** rng.uniform(-6.0, -3.0) * z
  elif kind == "huge":
    x = 10.0 ** rng.uniform(2.0, hi) * z
  elif kind == "offset":
    x = sign() * 10.0 ** rng.uniform(0.0, 3.0) + 10.0 ** rng.uniform(-3.0, 0.0) * z
  elif kind == "constant":
    c = 0.0 if rng.random() < 0.25 else sign() * 10.0 ** rng.uniform(lo, 3.0)
    x = np.full(shape, c)
  elif kind == "const_channel":
    k = rng.integers(-16, 17, size=shape[-1])
    e = rng.integers(-4, 5, size=shape[-1])
    x = np.broadcast_to(k * 2.0 ** e, shape).copy()
  elif kind in ("extreme", "poisoned"):  # "poisoned": masked-out positions are overwritten later
    lo_x, hi_x = LOG10_EXTREME[np.dtype(dtype).name] if kind == "extreme" else (lo, hi)
    x = 10.0 ** rng.uniform(lo_x, hi_x) * z
  elif kind == "far_offset":  # |mean| >> std: std down to 1e-12 of the mean
    lo_x, hi_x = LOG10_EXTREME[np.dtype(dtype).name]
    mean = sign() * 10.0 ** rng.uniform(0.0, hi_x)
    x = mean + abs(mean) * 10.0 ** rng.uniform(-12.0, -2.0) * z
  elif kind == "mixed":  # channels of wildly different scales and offsets
    c = shape[-1]
    sig = 10.0 ** rng.uniform(lo, hi, size=c)
    mu = np.where(rng.random(c) < 0.5, 0.0, 10.0 ** rng.uniform(-1.0, 2.0, size=c) * sign())
    x = mu + sig * z
  else:
    raise ValueError(kind)
  return np.asarray(x, np.float64).astype(dtype)


def _make_mask(mode, cfg, rng):
  if mode == "all":
    return np.ones(cfg.mask_shape, bool)
  if cfg.mask_shape != cfg.shape:  # broadcast mask: sparse Bernoulli leaves 0/1-valid sets
    return rng.random(cfg.mask_shape) < (0.2 if mode == "sparse" else 0.6)
  if mode == "bernoulli":
    return rng.random(cfg.shape) < rng.choice([0.3, 0.7])
  # "sparse": in about 60% of the reduction sets keep exactly one or zero valid elements
  vshape, axes = ref.set_view(cfg.fn, cfg.shape, **cfg.static)
  sets = ref._Sets(vshape, axes)
  rows = sets.rows(np, (rng.random(vshape) < 0.5).astype(np.float64)).copy()
  for i in range(rows.shape[0]):
    u = rng.random()
    if u < 0.3:
      rows[i] = 0.0
    elif u < 0.6:
      rows[i] = 0.0
      rows[i, int(rng.integers(rows.shape[1]))] = 1.0
  return sets.back(np, rows).reshape(cfg.shape) != 0


def _f32(a):
  return np.asarray(a, np.float32)


def _valid(cfg, arrays):
  """Where the outputs are compared: everywhere, or the valid positions of a poisoned input."""
  return np.broadcast_to(arrays["mask"], cfg.shape) if "mask" in arrays else np.ones(cfg.shape, bool)


def _make_input(cfg, kind, mask_mode, rng, dtype, *, grad=False):
  x = _make_x(kind, cfg.shape, dtype, rng)
  arrays = {}
  if cfg.mask_shape is not None:
    arrays["mask"] = _make_mask(mask_mode, cfg, rng)
  if cfg.scale_shape is not None:
    s = rng.uniform(0.25, 4.0, size=cfg.scale_shape) * np.where(rng.random(cfg.scale_shape) < 0.2, -1, 1)
    arrays["scale"] = _f32(s)
  if cfg.bias_shape is not None:
    arrays["bias"] = _f32(rng.uniform(-4.0, 4.0, size=cfg.bias_shape))
  if cfg.tau_shape is not None:
    arrays["tau"] = _f32(rng.uniform(-2.0, 2.0, size=cfg.tau_shape))
  g = _f32(rng.standard_normal(cfg.shape)).astype(np.float64) if grad else None
  if kind == "poisoned":
    valid = _valid(cfg, arrays)
    poison = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=cfg.shape)
    x = np.where(valid, x, poison.astype(dtype))
    if g is not None:
      g = np.where(valid, g, 0.0)  # a loss over the valid outputs only
  return Input(kind, mask_mode, x, arrays, g)


def _kind(kinds, n, cfg):
  """The n-th kind in turn, skipping "poisoned" for a configuration without a mask."""
  kind = kinds[n % len(kinds)]
  if kind == "poisoned" and cfg.mask_shape is None:
    kind = kinds[(n + 1) % len(kinds)]
  return kind


def _reference(cfg, x, arrays, xp=np):
  return ref.REFERENCES[cfg.fn](x, **cfg.static, **arrays, xp=xp)


def _param(cfg, inp, case_id, extra=(), marks=()):
  return pytest.param(cfg, inp, *extra, id=case_id, marks=marks)


def _forward_cases():
  cases = []
  mask_modes = ("sparse", "bernoulli", "sparse", "all", "sparse")
  for fi, fn in enumerate(FUNCS):
    for di, dtype in enumerate(DTYPES):
      n = 0
      for ci in range(FWD_CONFIGS):
        rng = np.random.default_rng([SEED, 0, fi, di, ci])
        cfg = _make_config(fn, dtype, rng, ci, small=False, variant=ci + FWD_CONFIGS * di)
        for ii in range(FWD_INPUTS):
          kind = _kind(KINDS, n, cfg)
          mode = mask_modes[(ci + ii) % len(mask_modes)] if cfg.mask_shape else "-"
          if kind == "poisoned" and mode == "all":
            mode = "bernoulli"  # something to poison
          inp = _make_input(cfg, kind, mode, rng, DTYPES[dtype])
          cases.append(_param(cfg, inp, f"{cfg.key}-i{ii}-{kind}" + (f"-mask_{mode}" if cfg.mask_shape else "")))
          n += 1
  return cases


def _grad_cases():
  cases = []
  mask_modes = ("sparse", "bernoulli", "all")
  for fi, fn in enumerate(FUNCS):
    n = 0
    for ci in range(GRAD_CONFIGS + (fn == "lp_batch_norm")):
      rng = np.random.default_rng([SEED, 1, fi, ci])
      cfg = _make_config(fn, "float64", rng, ci, small=True, variant=ci)
      for ii in range(GRAD_INPUTS):
        if ii == 1:  # every configuration sees zero-spread (dyadic per-channel constant) input
          kind = "const_channel"
        else:
          kind = _kind(GRAD_KINDS, n, cfg)
          n += 1
        mode = mask_modes[(ci + ii) % len(mask_modes)] if cfg.mask_shape else "-"
        if kind == "poisoned" and mode == "all":
          mode = "bernoulli"
        for dtype in ("float32", "float64"):
          inp = _make_input(cfg, kind, mode, np.random.default_rng([SEED, 2, fi, ci, ii]), np.dtype(dtype),
                            grad=True)
          marks = ()
          cid = f"{cfg.key}-i{ii}-{kind}" + (f"-mask_{mode}" if cfg.mask_shape else "") + f"-{dtype}"
          cases.append(_param(cfg, inp, cid, extra=(dtype,), marks=marks))
  return cases


FORWARD_CASES = _forward_cases()
GRAD_CASES = _grad_cases()


# ----------------------------------------------------------------------------- running normlab

# batch statistics over one value per channel are refused by default; the fuzz checks their numbers too
SINGLE_VALUE_OK = {"allow_single_value": True}
BATCH_STATS = ("batch_norm", "ghost_batch_norm", "lp_batch_norm")


def _call(cfg, x, arrays):
  extra = SINGLE_VALUE_OK if cfg.fn in BATCH_STATS else {}
  return getattr(normlab, cfg.fn)(x, **cfg.static, **arrays, **extra)


_CONFIGS = {}


def _jit_forward(cfg):
  fn = _CONFIGS.get(("fwd", cfg.key))
  if fn is None:
    fn = _CONFIGS[("fwd", cfg.key)] = jax.jit(functools.partial(_call, cfg))
  return fn


def _jit_grad(cfg, dtype):
  k = ("grad", cfg.key, dtype)
  if k not in _CONFIGS:
    def loss(x, g, arrays):
      return jnp.sum(_call(cfg, x, arrays).astype(jnp.float64) * g)
    _CONFIGS[k] = jax.jit(jax.grad(loss))
  return _CONFIGS[k]


def _jit_ref_grad(cfg):
  k = ("refgrad", cfg.key)
  if k not in _CONFIGS:
    def loss(x, g, arrays):
      return jnp.sum(_reference(cfg, x, arrays, xp=jnp).y * g)
    _CONFIGS[k] = jax.jit(jax.grad(loss))
  return _CONFIGS[k]


def _jax_arrays(arrays):
  return {k: jnp.asarray(v) for k, v in arrays.items()}


# ----------------------------------------------------------------------------- tolerances

def _stats_eps(dtype):
  return float(np.finfo(np.float64 if np.dtype(dtype) == np.float64 else np.float32).eps)


def _abs_param(arrays, name, shape, default):
  if name not in arrays:
    return np.full(shape, default)
  return np.broadcast_to(np.abs(arrays[name].astype(np.float64)), shape)


def _terms(cfg, x64, arrays, r):
  """Per-element pieces of the tolerance model (see the module docstring)."""
  c_n = 4.0 + r.n
  amp = r.set_max(np.abs(x64)) * r.r
  xhat_max = r.set_max(np.abs(r.xhat))
  return c_n, amp, xhat_max


def _forward_tol(cfg, dtype, x64, arrays, r):
  dtype = np.dtype(dtype)
  c_n, amp, _ = _terms(cfg, x64, arrays, r)
  eps_s, eps_o = _stats_eps(dtype), float(ml_dtypes.finfo(dtype).eps)
  tiny_o = float(ml_dtypes.finfo(dtype).smallest_subnormal)
  gam = _abs_param(arrays, "scale", x64.shape, 1.0)
  beta = _abs_param(arrays, "bias", x64.shape, 0.0)
  tau = _abs_param(arrays, "tau", x64.shape, 0.0)
  return (eps_o * np.abs(r.y) + tiny_o
          + c_n * eps_s * ((amp + np.abs(r.xhat) + 1.0) * gam + beta + tau))


def _describe(cfg, inp, dtype, idx, **vals):
  """A copy-pasteable reproducer for a failing element."""
  arrays = {k: v.tolist() for k, v in inp.arrays.items()}
  x_repr = inp.x.astype(np.float64).tolist() if inp.x.size <= 64 else f"<{inp.x.size} values>"
  parts = [f"normlab.{cfg.fn}(jnp.asarray(np.array({x_repr}), jnp.{dtype}), **{cfg.static!r}, "
           f"**{{k: jnp.asarray(v) for k, v in {arrays!r}.items()}})",
           f"kind={inp.kind} mask={inp.mask_mode} shape={cfg.shape} first bad element {idx}:"]
  parts += [f"  {k} = {v!r}" for k, v in vals.items()]
  parts.append(f"reproduce: NORMLAB_FUZZ_SEED={SEED} pytest tests/test_fuzz.py -k '{cfg.key}-'")
  return "\n".join(parts)


def _check_close(got, want, tol, dtype, cfg, inp, what):
  """Elementwise check on the compared positions (all, or the valid ones of a poisoned input)."""
  got64 = np.asarray(got, np.float64)
  compared = _valid(cfg, inp.arrays) if inp.kind == "poisoned" else np.ones(got64.shape, bool)
  assert np.all(np.isfinite(want[compared])), f"{what}: float64 reference is not finite (test bug)"
  big = float(ml_dtypes.finfo(dtype).max)
  in_range = np.abs(want) + tol < big
  over = np.abs(want) - tol > big
  err = np.abs(got64 - want)
  ok = ~np.isnan(got64)
  ok &= ~in_range | (np.isfinite(got64) & (err <= tol))
  ok &= ~over | (np.sign(got64) == np.sign(want))
  ok |= ~compared
  if not ok.all():
    idx = tuple(int(i) for i in np.argwhere(~ok)[0])
    raise AssertionError(f"{what}: {int((~ok).sum())}/{ok.size} elements off\n" + _describe(
        cfg, inp, np.dtype(dtype).name, idx, x=float(inp.x[idx]), expected=float(want[idx]),
        got=float(got64[idx]), tol=float(tol[idx]), max_err_over_tol=float(np.max(
            np.where(in_range, err / tol, 0.0)))))


def _reference_x(cfg, inp):
  """x in float64 for the reference; a poisoned input's masked-out positions (which enter no valid
  output) as 0, so the reference stays finite."""
  x64 = inp.x.astype(np.float64)
  return np.where(_valid(cfg, inp.arrays), x64, 0.0) if inp.kind == "poisoned" else x64


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("cfg, inp", FORWARD_CASES)
def test_forward_matches_float64_reference(cfg, inp):
  dtype = DTYPES[cfg.dtype]
  y = np.asarray(_jit_forward(cfg)(jnp.asarray(inp.x), _jax_arrays(inp.arrays)))
  assert y.dtype == dtype, f"{cfg.fn}: output dtype {y.dtype} != input dtype {dtype}"
  x64 = _reference_x(cfg, inp)
  r = _reference(cfg, x64, inp.arrays)
  _check_close(y, r.y, _forward_tol(cfg, dtype, x64, inp.arrays, r), dtype, cfg, inp, "forward")


@pytest.mark.parametrize("cfg, inp, dtype", GRAD_CASES)
def test_gradient_matches_float64_autodiff(cfg, inp, dtype):
  dtype = np.dtype(dtype)
  arrays = _jax_arrays(inp.arrays)
  dx = np.asarray(_jit_grad(cfg, dtype.name)(jnp.asarray(inp.x), jnp.asarray(inp.g), arrays))
  assert dx.dtype == dtype
  x64 = _reference_x(cfg, inp)
  want = np.asarray(_jit_ref_grad(cfg)(jnp.asarray(x64), jnp.asarray(inp.g), arrays))
  r = _reference(cfg, x64, inp.arrays)
  c_n, amp, xhat_max = _terms(cfg, x64, inp.arrays, r)
  eps_s = _stats_eps(dtype)
  G = r.set_max(np.abs(inp.g) * _abs_param(inp.arrays, "scale", x64.shape, 1.0))
  tol = c_n * eps_s * (r.r * G * (1.0 + xhat_max) ** 2 * (1.0 + amp + xhat_max) + np.abs(want))
  tol += float(ml_dtypes.finfo(dtype).smallest_subnormal)
  if "tau" in inp.arrays:
    # max(y, tau) switches branch where y == tau: there the two gradients differ by O(r * G), and
    # rounding can put normlab and the reference on different sides; check finiteness only.
    near = np.abs(r.y - inp.arrays["tau"]) <= _forward_tol(cfg, dtype, x64, inp.arrays, r)
    if near.any():
      tol = np.full_like(tol, np.inf)
  _check_close(dx, want, tol, dtype, cfg, inp, "gradient")


def test_case_counts_and_coverage():
  """The fuzz really covers what it claims: case counts, dtypes, kinds, shapes with size-1 and odd
  axes, magnitudes 1e-30..1e30, 0/1/all-valid masked sets, NaN and inf in masked-out positions."""
  assert len(FORWARD_CASES) >= 1000 and len(GRAD_CASES) >= 300, (len(FORWARD_CASES), len(GRAD_CASES))
  fwd = [p.values for p in FORWARD_CASES]
  assert {inp.kind for _, inp in fwd} == set(KINDS)
  assert {p.values[1].kind for p in GRAD_CASES} == set(GRAD_KINDS) | {"const_channel"}
  assert {cfg.dtype for cfg, _ in fwd} == set(DTYPES)
  assert {p.values[2] for p in GRAD_CASES} == {"float32", "float64"}
  dims = [d for cfg, _ in fwd for d in cfg.shape]
  assert 1 in dims and {3, 5, 7} <= set(dims)
  x64 = [np.abs(inp.x[np.isfinite(inp.x)]) for cfg, inp in fwd if cfg.dtype == "float64"]
  assert max(a.max() for a in x64 if a.size) >= 1e25
  assert min(a[a > 0].min() for a in x64 if (a > 0).any()) <= 1e-25
  poisoned = [inp.x for _, inp in fwd if inp.kind == "poisoned"]
  assert len(poisoned) >= 30
  assert any(np.isnan(x).any() for x in poisoned) and any(np.isinf(x).any() for x in poisoned)
  n_valid = {0: 0, 1: 0, "all": 0}
  for cfg, inp in fwd:
    if "mask" not in inp.arrays:
      continue
    vshape, axes = ref.set_view(cfg.fn, cfg.shape, **cfg.static)
    m = np.broadcast_to(inp.arrays["mask"], cfg.shape).reshape(vshape)
    counts = m.sum(axis=axes)
    full = int(np.prod([vshape[a] for a in axes]))
    n_valid[0] += int(np.any(counts == 0))
    n_valid[1] += int(np.any(counts == 1))
    n_valid["all"] += int(np.any(counts == full))
  assert min(n_valid.values()) >= 20, n_valid


def _grad_pair(x, g, **kw):
  """(normlab's dx, reference dx) for lp_batch_norm, both under jit (as in the fuzz cases)."""
  dx = jax.jit(jax.grad(lambda x: jnp.sum(normlab.lp_batch_norm(x, **kw) * g)))(x)
  ref_dx = jax.jit(jax.grad(lambda x: jnp.sum(ref.lp_batch_norm(x, **kw, xp=jnp).y * g)))(
      x.astype(jnp.float64))
  return np.asarray(dx), np.asarray(ref_dx)


def test_lp_batch_norm_p2_gradient_with_a_constant_channel_is_finite():
  """Minimal reproducer of the bug the gradient fuzz found: channel 0 is constant, so s = 0 there.
  The output is y = (x - mu) / (s + eps) with x - mu = 0, so dx = (g - mean(g)) / eps."""
  x = jnp.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]], jnp.float32)
  g = jnp.arange(6.0).reshape(3, 2)
  dx, ref_dx = _grad_pair(x, g, p=2)
  np.testing.assert_allclose(ref_dx[:, 0], [-2e5, 0.0, 2e5], rtol=1e-12, atol=1e-6)  # was NaN NaN NaN
  np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-6)


def test_lp_batch_norm_p2_gradient_with_one_valid_element_is_finite():
  """One valid element: mu = x[0], s = 0, y = (x - x[0]) / eps, so dx = (g - [sum(g), 0, 0]) / eps."""
  x = jnp.array([[1.0], [5.0], [7.0]], jnp.float32)
  mask = jnp.array([[True], [False], [False]])
  g = jnp.array([[1.0], [2.0], [3.0]])
  dx, ref_dx = _grad_pair(x, g, p=2, mask=mask)
  np.testing.assert_allclose(ref_dx[:, 0], [-5e5, 2e5, 3e5], rtol=1e-12)  # was NaN 2e5 3e5
  np.testing.assert_allclose(dx, ref_dx, rtol=1e-5)
