"""The forward passes behind `normlab.layers` (flax.linen) and `normlab.nnx` (flax.nnx), flax-free.

Each norm is a `Kind`: the parameters it owns (name -> initializer field, shape), whether it keeps
running statistics, and `forward(cfg, x, params, running, train=..., mask=..., rng=..., axis_name=...)
-> (y, batch Moments | None)`. `cfg` is the module itself (a linen dataclass or an nnx object): it is
read for flax's fields (epsilon, dtype, use_scale, axis, ...). Both front ends create the parameters
and blend the running statistics (momentum * running + (1 - momentum) * batch); the math is here,
on `normlab.core` and `normlab.variants`.

Output dtype follows flax: `dtype` if given, else the promotion of the input and the parameters;
statistics are in at least float32 and always two-pass (flax's `use_fast_variance` is irrelevant).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp

from normlab import checks, variants
from normlab.core import Moments, affine, check_axis_name, normalize_with, standardize_affine
from normlab.norms import num_devices

GROUPED_SYNC_HINT = ("make the device groups a mesh axis instead: on a 2-D mesh ('group', 'batch') pass "
                     "axis_name='batch' and statistics are reduced within each group")


def check_common(cfg, name: str) -> None:
  """Flax fields normlab refuses rather than ignores (one-line errors)."""
  groups = getattr(cfg, "axis_index_groups", None)
  if groups is not None:
    raise ValueError(f"{name}: axis_index_groups={groups!r} is not supported (lax.psum rejects "
                     f"axis_index_groups under jax.shard_map); {GROUPED_SYNC_HINT}")
  if not getattr(cfg, "force_float32_reductions", True):
    raise ValueError(f"{name}: force_float32_reductions=False is not supported; normlab always "
                     "reduces in at least float32 (valid: True)")


def out_dtype(x, params: dict, dtype) -> Any:
  """flax's `canonicalize_dtype(x, *params, dtype=dtype)`."""
  if dtype is not None:
    return jnp.dtype(dtype)
  dt = jnp.result_type(x, *[p for p in params.values() if p is not None])
  return dt if jnp.issubdtype(dt, jnp.inexact) else jnp.promote_types(jnp.float32, dt)


def _axes(axes, ndim: int, *, fn: str, what: str) -> tuple[int, ...]:
  return checks.canonical_axes(axes, ndim, fn=fn, what=what)


def _bcast(p, feats: tuple[int, ...], x_shape) -> Any:
  """A feature-shaped parameter/statistic -> broadcastable to the input."""
  if p is None:
    return None
  return jnp.reshape(p, [x_shape[a] if a in feats else 1 for a in range(len(x_shape))])


def _allow_single(cfg) -> bool:
  return getattr(cfg, "allow_single_value", False)


def name_layer(e: checks.SingleValueError, layer: str) -> checks.SingleValueError:
  """The single-value error as the layer's: it names the layer and its `allow_single_value` field."""
  where = layer if e.where == layer else f"{layer} ({e.where})"
  return e.with_hint(f"set {layer}(allow_single_value=True)", where=where)


def renorm_limits(cfg, steps):
  """Batch renorm's (r_max, d_max) after `steps` training calls: linear from (1, 0) to the fields over
  `cfg.ramp_steps` calls (Ioffe 2017)."""
  frac = jnp.minimum(steps / cfg.ramp_steps, 1.0)
  return 1.0 + (cfg.r_max - 1.0) * frac, cfg.d_max * frac


def _check_mask(mask, x, fn):
  if mask is not None:
    checks.check_mask_array(mask, x.shape, fn=fn)
    return jnp.asarray(mask, bool)
  return None


def check_input(x, layer: str) -> None:
  """A layer's input: a real array. Floating dtypes compute as given; integer inputs are promoted to
  float32, as flax promotes them (one-line TypeError otherwise)."""
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    raise TypeError(f"{layer}: x must be an array (jax.Array or numpy.ndarray), got {type(x).__name__}")
  dt = jnp.dtype(x.dtype)
  if dt == jnp.bool_ or not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
    raise TypeError(f"{layer}: x has dtype {dt.name}; allowed: {', '.join(checks.FLOAT_DTYPES)} "
                    "(or an integer dtype, promoted to float32 as in flax)")


# ----------------------------------------------------------------------------- kinds

@dataclasses.dataclass(frozen=True)
class Kind:
  """One norm: `params(cfg)` -> {name: (initializer, fixed shape or None for the feature shape)}."""
  name: str
  forward: Callable
  feature_axes: Callable[[Any, int], tuple[int, ...]]
  params: Callable[[Any], dict] = lambda cfg: _affine_params(cfg)
  running: bool = False  # keeps batch_stats mean/var (feature-shaped)
  updates: bool = True  # False: the running statistics are read, never written (frozen BN)
  noise: bool = False  # draws from the 'noise' RNG stream in training


def _affine_params(cfg, bias: bool = True) -> dict:
  out = {}
  if cfg.use_scale:
    out["scale"] = (cfg.scale_init, None)
  if bias and cfg.use_bias:
    out["bias"] = (cfg.bias_init, None)
  return out


def _last(cfg, ndim):
  return (ndim - 1,)


def _bn_features(cfg, ndim):
  return _axes(getattr(cfg, "axis", -1), ndim, fn=type(cfg).__name__, what="axis")


def _ln_features(cfg, ndim):
  return _axes(cfg.feature_axes, ndim, fn=type(cfg).__name__, what="feature_axes")


def _in_features(cfg, ndim):
  feats = _axes(cfg.feature_axes, ndim, fn="InstanceNorm", what="feature_axes")
  if 0 in feats:
    raise ValueError(f"InstanceNorm: feature_axes {cfg.feature_axes!r} include the batch axis 0; "
                     f"valid feature axes: 1..{ndim - 1}")
  return feats


def _standardized(x, axes, p, feats, cfg, *, mask, axis_name, center=True):
  out = out_dtype(x, p, cfg.dtype)
  scale, bias = _bcast(p.get("scale"), feats, x.shape), _bcast(p.get("bias"), feats, x.shape)
  return standardize_affine(x, axes, scale, bias, eps=cfg.epsilon, axis_name=axis_name or None, mask=mask,
                            center=center, out_dtype=out)


def _batch_norm(cfg, x, p, running, *, train, mask, rng, axis_name):
  fn = type(cfg).__name__
  checks.check_eps(cfg.epsilon, fn=fn)
  feats = _bn_features(cfg, x.ndim)
  axes = tuple(a for a in range(x.ndim) if a not in feats)
  checks.check_nonempty(axes, fn=fn, why=f"axis {getattr(cfg, 'axis', -1)!r} covers every axis of a rank-{x.ndim} input")
  if not train:
    _check_mask(mask, x, fn)  # eval statistics are the running ones: the mask is validated, not used
    x_hat = normalize_with(x, Moments(*(_bcast(t, feats, x.shape) for t in running)), cfg.epsilon)
    return affine(x_hat, _bcast(p.get("scale"), feats, x.shape), _bcast(p.get("bias"), feats, x.shape),
                  out_dtype(x, p, cfg.dtype)), None
  check_axis_name(axis_name, fn=fn)
  checks.check_batch_values(x.shape, axes, num_devices(axis_name, fn=fn), fn=fn, allow=_allow_single(cfg))
  y, stats = _standardized(x, axes, p, feats, cfg, mask=_check_mask(mask, x, fn), axis_name=axis_name)
  return y, Moments(*(jnp.reshape(t, running.mean.shape) for t in stats))


def _layer_norm(cfg, x, p, running, *, train, mask, rng, axis_name, center=True):
  fn = type(cfg).__name__
  checks.check_eps(cfg.epsilon, fn=fn)
  axes = _axes(cfg.reduction_axes, x.ndim, fn=fn, what="reduction_axes")
  feats = _ln_features(cfg, x.ndim)
  check_axis_name(axis_name, fn=fn)
  y, _ = _standardized(x, axes, p, feats, cfg, mask=_check_mask(mask, x, fn), axis_name=axis_name,
                       center=center)
  return y, None


def _rms_norm(cfg, x, p, running, **kw):
  return _layer_norm(cfg, x, p, running, center=False, **kw)


def _instance_norm(cfg, x, p, running, *, train, mask, rng, axis_name):
  checks.check_eps(cfg.epsilon, fn="InstanceNorm")
  feats = _in_features(cfg, x.ndim)
  axes = tuple(a for a in range(1, x.ndim) if a not in feats)
  check_axis_name(axis_name, fn="InstanceNorm")
  y, _ = _standardized(x, axes, p, feats, cfg, mask=_check_mask(mask, x, "InstanceNorm"), axis_name=axis_name)
  return y, None


def group_count(cfg, channels: int, fn: str = "GroupNorm") -> int:
  """flax's rule: exactly one of num_groups / group_size (pass num_groups=None to use group_size)."""
  if cfg.num_groups is not None and cfg.group_size is not None:
    raise ValueError(f"{fn}: give exactly one of num_groups or group_size (got num_groups={cfg.num_groups!r}, "
                     f"group_size={cfg.group_size!r}); pass num_groups=None to use group_size, as in flax")
  return checks.check_groups(channels, cfg.num_groups, cfg.group_size, fn=fn)


def _group_norm(cfg, x, p, running, *, train, mask, rng, axis_name):
  fn = "GroupNorm"
  checks.check_eps(cfg.epsilon, fn=fn)
  checks.check_min_rank(x.ndim, 2, fn=fn, layout="(N, ..., C)")
  red = cfg.reduction_axes if cfg.reduction_axes is not None else tuple(range(1, x.ndim - 1)) + (x.ndim - 1,)
  red = _axes(red, x.ndim, fn=fn, what="reduction_axes")
  if red[-1] != x.ndim - 1:
    raise ValueError(f"{fn}: reduction_axes {cfg.reduction_axes!r} must include the last (feature) axis "
                     f"{x.ndim - 1}")
  c = x.shape[-1]
  groups = group_count(cfg, c, fn)
  split = lambda t: t.reshape(*t.shape[:-1], groups, c // groups)  # noqa: E731
  m = _check_mask(mask, x, fn)
  mg = None if m is None else split(jnp.broadcast_to(m, x.shape))
  check_axis_name(axis_name, fn=fn)
  xg = split(x)
  axes = red[:-1] + (x.ndim,)
  pg = {k: (None if v is None else jnp.reshape(v, (groups, c // groups))) for k, v in p.items()}
  out = out_dtype(x, p, cfg.dtype)
  y, _ = standardize_affine(xg, axes, pg.get("scale"), pg.get("bias"), eps=cfg.epsilon, axis_name=axis_name or None,
                            mask=mg, out_dtype=out)
  return y.reshape(x.shape), None


def _work(cfg, x, p):
  """Extras compute in the promoted dtype (flax's output dtype for dtype=None)."""
  out = out_dtype(x, p, cfg.dtype)
  return x.astype(jnp.promote_types(x.dtype, out)), out


def _ghost(cfg, x, p, running, *, train, mask, rng, axis_name):
  if not train:
    return _batch_norm(cfg, x, p, running, train=False, mask=mask, rng=rng, axis_name=None)
  xw, out = _work(cfg, x, p)
  v = min(cfg.virtual_batch_size, x.shape[0])
  y, stats = variants.ghost_batch_norm(xw, p.get("scale"), p.get("bias"), virtual_batch_size=v, eps=cfg.epsilon,
                                       mask=mask, return_stats=True, allow_single_value=_allow_single(cfg))
  return y.astype(out), stats


def _renorm(cfg, x, p, running, *, train, mask, rng, axis_name, limits=None):
  if not train:
    return _batch_norm(cfg, x, p, running, train=False, mask=mask, rng=rng, axis_name=None)
  xw, out = _work(cfg, x, p)
  r_max, d_max = (cfg.r_max, cfg.d_max) if limits is None else limits
  y, stats = variants.batch_renorm(xw, p.get("scale"), p.get("bias"), running=running, r_max=r_max,
                                   d_max=d_max, eps=cfg.epsilon, axis_name=axis_name, mask=mask,
                                   return_stats=True, allow_single_value=_allow_single(cfg))
  return y.astype(out), stats


def _frozen(cfg, x, p, running, *, train, mask, rng, axis_name):
  return _batch_norm(cfg, x, p, running, train=False, mask=mask, rng=rng, axis_name=None)


def _lp(cfg, x, p, running, *, train, mask, rng, axis_name):
  xw, out = _work(cfg, x, p)
  if not train:  # the running `var` holds scale^2 of the l_p scale
    y = variants.lp_batch_norm(xw, p.get("scale"), p.get("bias"), p=cfg.p, eps=cfg.epsilon, mask=mask,
                               running=running)
    return y.astype(out), None
  y, stats = variants.lp_batch_norm(xw, p.get("scale"), p.get("bias"), p=cfg.p, eps=cfg.epsilon,
                                    axis_name=axis_name, mask=mask, return_stats=True,
                                    allow_single_value=_allow_single(cfg))
  return y.astype(out), stats


def _noisy(cfg, x, p, running, *, train, mask, rng, axis_name):
  if not train:
    return _batch_norm(cfg, x, p, running, train=False, mask=mask, rng=rng, axis_name=None)
  xw, out = _work(cfg, x, p)
  y, stats = variants.noisy_batch_norm(xw, rng, p.get("scale"), p.get("bias"), mean_range=cfg.mean_range,
                                       std_range=cfg.std_range, eps=cfg.epsilon, axis_name=axis_name, mask=mask,
                                       return_stats=True, allow_single_value=_allow_single(cfg))
  return y.astype(out), stats


def _frn(cfg, x, p, running, *, train, mask, rng, axis_name):
  checks.check_mask_array(mask, x.shape, fn="FilterResponseNorm")  # validated; FRN's statistics ignore it
  xw, out = _work(cfg, x, p)
  return variants.filter_response_norm(xw, p.get("scale"), p.get("bias"), p["tau"], eps=cfg.epsilon).astype(out), None


def _evo_b0(cfg, x, p, running, *, train, mask, rng, axis_name):
  xw, out = _work(cfg, x, p)
  kw = dict(eps=cfg.epsilon, mask=mask)
  if not train:
    return variants.evonorm_b0(xw, p.get("scale"), p.get("bias"), p["v"], running=running, **kw).astype(out), None
  y, stats = variants.evonorm_b0(xw, p.get("scale"), p.get("bias"), p["v"], axis_name=axis_name, return_stats=True,
                                 allow_single_value=_allow_single(cfg), **kw)
  return y.astype(out), stats


def _evo_s0(cfg, x, p, running, *, train, mask, rng, axis_name):
  checks.check_mask_array(mask, x.shape, fn="EvoNormS0")  # validated; its statistics ignore it
  xw, out = _work(cfg, x, p)
  groups = group_count(cfg, x.shape[-1], "EvoNormS0")
  return variants.evonorm_s0(xw, p.get("scale"), p.get("bias"), p["v"], num_groups=groups,
                             eps=cfg.epsilon).astype(out), None


def _switchable(cfg, x, p, running, *, train, mask, rng, axis_name):
  xw, out = _work(cfg, x, p)
  args = (xw, p.get("scale"), p.get("bias"), p["mean_logits"], p["var_logits"])
  if not train:
    return variants.switchable_norm(*args, eps=cfg.epsilon, mask=mask, running=running).astype(out), None
  y, stats = variants.switchable_norm(*args, eps=cfg.epsilon, axis_name=axis_name, mask=mask, return_stats=True,
                                      allow_single_value=_allow_single(cfg))
  return y.astype(out), stats


def _lrn(cfg, x, p, running, *, train, mask, rng, axis_name):
  checks.check_mask_array(mask, x.shape, fn="LocalResponseNorm")  # validated; per-position statistics
  xw, out = _work(cfg, x, p)
  return variants.local_response_norm(xw, size=cfg.size, alpha=cfg.alpha, beta=cfg.beta, k=cfg.k).astype(out), None


def _identity(cfg, x, p, running, **kw):
  return x, None


def _zeros(key, shape, dtype=jnp.float32):
  return jnp.zeros(shape, dtype)


def _ones(key, shape, dtype=jnp.float32):
  return jnp.ones(shape, dtype)


_BN = dict(feature_axes=_bn_features, running=True)
_CH = dict(feature_axes=_last)
KINDS: dict[str, Kind] = {
    "identity": Kind("identity", _identity, _last, params=lambda cfg: {}),
    "batch": Kind("batch", _batch_norm, **_BN),
    "layer": Kind("layer", _layer_norm, _ln_features),
    "rms": Kind("rms", _rms_norm, _ln_features, params=lambda cfg: _affine_params(cfg, bias=False)),
    "instance": Kind("instance", _instance_norm, _in_features),
    "group": Kind("group", _group_norm, _last),
    "ghost_batch": Kind("ghost_batch", _ghost, _last, running=True),
    "batch_renorm": Kind("batch_renorm", _renorm, _last, running=True),
    "frozen_batch": Kind("frozen_batch", _frozen, _last, running=True, updates=False),
    "lp_batch": Kind("lp_batch", _lp, _last, running=True),
    "noisy_batch": Kind("noisy_batch", _noisy, _last, running=True, noise=True),
    "frn": Kind("frn", _frn, _last, params=lambda cfg: {**_affine_params(cfg), "tau": (_zeros, None)}),
    "evonorm_b0": Kind("evonorm_b0", _evo_b0, _last, running=True,
                       params=lambda cfg: {**_affine_params(cfg), "v": (_ones, None)}),
    "evonorm_s0": Kind("evonorm_s0", _evo_s0, _last, params=lambda cfg: {**_affine_params(cfg), "v": (_ones, None)}),
    "switchable": Kind("switchable", _switchable, _last, running=True,
                       params=lambda cfg: {"mean_logits": (_zeros, (3,)), "var_logits": (_zeros, (3,)),
                                           **_affine_params(cfg)}),
    "local_response": Kind("local_response", _lrn, _last, params=lambda cfg: {}),
}
