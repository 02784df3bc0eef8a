"""What the flax front ends (`normlab.layers`, `normlab.nnx`) know about each norm: the parameters and
running statistics it owns, and how flax's fields map onto the call of its function in `normlab.norms`
or `normlab.variants`. There is no math here: every forward pass is one of those functions.

A `Kind` reads the module itself (`cfg`: a linen dataclass or an nnx object) for flax's fields (epsilon,
axis, feature_axes, num_groups, ...). `run` gives the output flax's dtype: `dtype` if set, else the
promotion of the input and the parameters; the function computes in that dtype or the input's, whichever
is wider (integer inputs compute in float32, as flax promotes them).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp

from normlab import checks, norms, variants
from normlab.core import Moments

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


def check_input(x, layer: str) -> None:
  """A layer's input: a real array. Floating dtypes compute as given; integer inputs are promoted to
  float32, as flax promotes them (one-line TypeError otherwise)."""
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    raise TypeError(f"{layer}: x must be an array (jax.Array or numpy.ndarray), got {type(x).__name__}")
  dt = jnp.dtype(x.dtype)
  if dt == jnp.bool_ or not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
    raise TypeError(f"{layer}: x has dtype {dt.name}; allowed: {', '.join(checks.FLOAT_DTYPES)} "
                    "(or an integer dtype, promoted to float32 as in flax)")


def out_dtype(x, params: dict, dtype) -> Any:
  """flax's `canonicalize_dtype(x, *params, dtype=dtype)`."""
  if dtype is not None:
    return jnp.dtype(dtype)
  dt = jnp.result_type(x, *[p for p in params.values() if p is not None])
  return dt if jnp.issubdtype(dt, jnp.inexact) else jnp.promote_types(jnp.float32, dt)


def renorm_limits(cfg, steps):
  """Batch renorm's (r_max, d_max) after `steps` training calls: linear from (1, 0) to the fields over
  `cfg.ramp_steps` calls (Ioffe 2017)."""
  frac = jnp.minimum(steps / cfg.ramp_steps, 1.0)
  return 1.0 + (cfg.r_max - 1.0) * frac, cfg.d_max * frac


@dataclasses.dataclass(frozen=True)
class Kind:
  """One norm. `call(cfg, x, params, running, *, train, mask, rng, axis_name, limits) -> (y, batch
  Moments or None)`; `params(cfg)` -> {name: (initializer, fixed shape or None for the feature shape)}."""
  call: Callable
  feature_axes: Callable[[Any, int], tuple[int, ...]] = lambda cfg, ndim: (ndim - 1,)
  params: Callable[[Any], dict] = lambda cfg: affine_params(cfg)
  running: bool = False  # keeps batch_stats mean/var (feature-shaped)
  updates: bool = True  # False: the running statistics are read, never written (frozen BN)
  noise: bool = False  # draws from the 'noise' RNG stream in training


def affine_params(cfg, bias: bool = True) -> dict:
  out = {}
  if cfg.use_scale:
    out["scale"] = (cfg.scale_init, None)
  if bias and cfg.use_bias:
    out["bias"] = (cfg.bias_init, None)
  return out


def _bcast(p, feats: tuple[int, ...], x_shape) -> Any:
  """A feature-shaped parameter -> broadcastable to the input."""
  return jnp.reshape(p, [x_shape[a] if a in feats else 1 for a in range(len(x_shape))])


def run(cfg, kind: Kind, x, params: dict, running: Moments | None, *, layer: str, **call):
  """`kind.call` on x in the compute dtype, its output in flax's dtype; single-value errors name `layer`."""
  out = out_dtype(x, params, cfg.dtype)
  floating = jnp.issubdtype(x.dtype, jnp.floating)
  xw = x.astype(jnp.promote_types(x.dtype if floating else jnp.float32, out))
  feats = kind.feature_axes(cfg, x.ndim)
  fixed = {name for name, (_, shape) in kind.params(cfg).items() if shape is not None}
  p = {k: v if k in fixed else _bcast(v, feats, x.shape) for k, v in params.items()}
  try:
    y, batch = kind.call(cfg, xw, p, running, **call)
  except checks.SingleValueError as e:
    where = layer if e.where == layer else f"{layer} ({e.where})"
    raise e.with_hint(f"set {layer}(allow_single_value=True)", where=where) from None
  return y.astype(out), batch


# ----------------------------------------------------------------------------- the calls

def _axes(field: str) -> Callable[[Any, int], tuple[int, ...]]:
  """The feature axes are the module's field `field` (linen's `axis` / `feature_axes`)."""
  return lambda cfg, ndim: checks.canonical_axes(getattr(cfg, field), ndim, fn=type(cfg).__name__, what=field)


def _sb(p):
  return p.get("scale"), p.get("bias")


def _train_kw(cfg, axis_name, mask) -> dict:
  return dict(eps=cfg.epsilon, axis_name=axis_name, mask=mask, return_stats=True,
              allow_single_value=getattr(cfg, "allow_single_value", False))


def _bn_eval(cfg, x, p, running, mask=None):
  return norms.batch_norm(x, *_sb(p), eps=cfg.epsilon, feature_axes=getattr(cfg, "axis", -1), mask=mask,
                          running=running), None


def _batch(cfg, x, p, running, *, train, mask, axis_name, **_):
  if not train:  # eval statistics are the running ones: the mask is validated, not used
    return _bn_eval(cfg, x, p, running, mask)
  return norms.batch_norm(x, *_sb(p), feature_axes=cfg.axis, **_train_kw(cfg, axis_name, mask))


def _layer(cfg, x, p, running, *, mask, axis_name, **_):
  return norms.layer_norm(x, *_sb(p), eps=cfg.epsilon, reduction_axes=cfg.reduction_axes,
                          feature_axes=cfg.feature_axes, axis_name=axis_name, mask=mask), None


def _rms(cfg, x, p, running, *, mask, axis_name, **_):
  return norms.rms_norm(x, p.get("scale"), eps=cfg.epsilon, reduction_axes=cfg.reduction_axes,
                        feature_axes=cfg.feature_axes, axis_name=axis_name, mask=mask), None


def _instance(cfg, x, p, running, *, mask, axis_name, **_):
  return norms.instance_norm(x, *_sb(p), eps=cfg.epsilon, feature_axes=cfg.feature_axes, axis_name=axis_name,
                             mask=mask), None


def _group(cfg, x, p, running, *, mask, axis_name, **_):
  return norms.group_norm(x, *_sb(p), num_groups=cfg.num_groups, group_size=cfg.group_size, eps=cfg.epsilon,
                          reduction_axes=cfg.reduction_axes, axis_name=axis_name, mask=mask), None


def _ghost(cfg, x, p, running, *, train, mask, axis_name, **_):
  if not train:
    return _bn_eval(cfg, x, p, running, mask)
  return variants.ghost_batch_norm(x, *_sb(p), virtual_batch_size=min(cfg.virtual_batch_size, x.shape[0]),
                                   eps=cfg.epsilon, mask=mask, return_stats=True,
                                   allow_single_value=cfg.allow_single_value)


def _renorm(cfg, x, p, running, *, train, mask, axis_name, limits=None, **_):
  if not train:
    return _bn_eval(cfg, x, p, running, mask)
  r_max, d_max = (cfg.r_max, cfg.d_max) if limits is None else limits
  return variants.batch_renorm(x, *_sb(p), running=running, r_max=r_max, d_max=d_max,
                               **_train_kw(cfg, axis_name, mask))


def _frozen(cfg, x, p, running, *, mask, **_):
  checks.check_mask_array(mask, x.shape, fn=type(cfg).__name__)  # validated; the statistics are fixed
  return variants.frozen_batch_norm(x, running.mean, running.var, *_sb(p), eps=cfg.epsilon), None


def _lp(cfg, x, p, running, *, train, mask, axis_name, **_):
  if not train:  # the running `var` holds scale^2 of the l_p scale
    return variants.lp_batch_norm(x, *_sb(p), p=cfg.p, eps=cfg.epsilon, mask=mask, running=running), None
  return variants.lp_batch_norm(x, *_sb(p), p=cfg.p, **_train_kw(cfg, axis_name, mask))


def _noisy(cfg, x, p, running, *, train, mask, rng, axis_name, **_):
  if not train:
    return _bn_eval(cfg, x, p, running, mask)
  return variants.noisy_batch_norm(x, rng, *_sb(p), mean_range=cfg.mean_range, std_range=cfg.std_range,
                                   **_train_kw(cfg, axis_name, mask))


def _frn(cfg, x, p, running, *, mask, **_):
  checks.check_mask_array(mask, x.shape, fn=type(cfg).__name__)  # validated; FRN's statistics ignore it
  return variants.filter_response_norm(x, *_sb(p), p["tau"], eps=cfg.epsilon), None


def _evo_b0(cfg, x, p, running, *, train, mask, axis_name, **_):
  if not train:
    return variants.evonorm_b0(x, *_sb(p), p["v"], eps=cfg.epsilon, mask=mask, running=running), None
  return variants.evonorm_b0(x, *_sb(p), p["v"], **_train_kw(cfg, axis_name, mask))


def _evo_s0(cfg, x, p, running, *, mask, **_):
  checks.check_mask_array(mask, x.shape, fn=type(cfg).__name__)  # validated; its statistics ignore it
  return variants.evonorm_s0(x, *_sb(p), p["v"], num_groups=cfg.num_groups, group_size=cfg.group_size,
                             eps=cfg.epsilon), None


def _switchable(cfg, x, p, running, *, train, mask, axis_name, **_):
  args = (x, *_sb(p), p["mean_logits"], p["var_logits"])
  if not train:
    return variants.switchable_norm(*args, eps=cfg.epsilon, mask=mask, running=running), None
  return variants.switchable_norm(*args, **_train_kw(cfg, axis_name, mask))


def _lrn(cfg, x, p, running, *, mask, **_):
  checks.check_mask_array(mask, x.shape, fn=type(cfg).__name__)  # validated; per-position statistics
  return variants.local_response_norm(x, size=cfg.size, alpha=cfg.alpha, beta=cfg.beta, k=cfg.k), None


def _zeros(key, shape, dtype=jnp.float32):
  return jnp.zeros(shape, dtype)


def _ones(key, shape, dtype=jnp.float32):
  return jnp.ones(shape, dtype)


def _with(**extra) -> Callable[[Any], dict]:
  """The affine parameters plus fixed extras: name -> (initializer, shape or None)."""
  return lambda cfg: {**affine_params(cfg), **extra}


KINDS: dict[str, Kind] = {
    "batch": Kind(_batch, _axes("axis"), running=True),
    "layer": Kind(_layer, _axes("feature_axes")),
    "rms": Kind(_rms, _axes("feature_axes"), params=lambda cfg: affine_params(cfg, bias=False)),
    "instance": Kind(_instance, _axes("feature_axes")),
    "group": Kind(_group),
    "ghost_batch": Kind(_ghost, running=True),
    "batch_renorm": Kind(_renorm, running=True),
    "frozen_batch": Kind(_frozen, running=True, updates=False),
    "lp_batch": Kind(_lp, running=True),
    "noisy_batch": Kind(_noisy, running=True, noise=True),
    "frn": Kind(_frn, params=_with(tau=(_zeros, None))),
    "evonorm_b0": Kind(_evo_b0, running=True, params=_with(v=(_ones, None))),
    "evonorm_s0": Kind(_evo_s0, params=_with(v=(_ones, None))),
    "switchable": Kind(_switchable, running=True,
                       params=lambda cfg: {"mean_logits": (_zeros, (3,)), "var_logits": (_zeros, (3,)),
                                           **affine_params(cfg)}),
    "local_response": Kind(_lrn, params=lambda cfg: {}),
}
