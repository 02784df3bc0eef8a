"""flax.nnx drop-ins: normlab's norms with `flax.nnx`'s signatures and state.

    BatchNorm(num_features, *, use_running_average=False, axis=-1, momentum=0.99, epsilon=1e-5,
              dtype=None, param_dtype=float32, use_bias=True, use_scale=True, bias_init=zeros,
              scale_init=ones, axis_name=None, axis_index_groups=None, use_fast_variance=True,
              promote_dtype=flax's, rngs, bias_metadata={}, scale_metadata={})

State is flax's: `scale`, `bias` (nnx.Param) and `mean`, `var` (nnx.BatchStat), so `nnx.state` of a
flax model loads into a normlab one with `nnx.update` and back. The keyword fields and their defaults
are those of the matching `normlab.layers` (linen) class, except `use_running_average=False` (as in
flax.nnx); the forward pass is the same function of `normlab.norms` / `normlab.variants`, called
through `normlab.kinds`. Norms with running statistics are called `module(x, use_running_average=None,
*, mask=None)` (the call argument wins, as in flax.nnx) and follow `nnx.view(model,
use_running_average=...)`; the others `module(x, *, mask=None)`. `NoisyBatchNorm` draws its noise
from `rngs.noise()` (or the default stream).

`promote_dtype` has flax.nnx's meaning: before the norm runs, it is called as
`promote_dtype((x, mean, var, scale, bias), dtype=dtype)` for norms with running statistics and
`promote_dtype((x, *params), dtype=dtype)` for the others (params in the order of the module's
parameters, None where absent), and the norm runs on what it returns; the running statistics are
updated from their stored values. flax's tests pass `lambda x, **kw: x` to get linen's behaviour.
"""
from __future__ import annotations

import dataclasses
import inspect
from types import MappingProxyType

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes

from normlab import kinds, layers
from normlab.core import Moments
from normlab.norms import update_running_stats

_METADATA = {"bias_metadata": MappingProxyType({}), "scale_metadata": MappingProxyType({})}
_LINEN_ONLY = ("force_float32_reductions",)


class _Norm(nnx.Module):
  """Shared body; subclasses are made by `_nnx_class` from the linen class's fields."""
  kind: str = ""
  linen: type = layers.Identity
  positional: tuple[str, ...] = ()

  def __init__(self, *args, rngs: nnx.Rngs | None = None, **kwargs):
    k = kinds.KINDS[self.kind]
    bound = self.__signature__.bind(*args, rngs=rngs, **kwargs)
    bound.apply_defaults()
    opts = dict(bound.arguments)
    rngs = opts.pop("rngs")
    num_features = opts.pop("num_features", None)
    if not callable(opts["promote_dtype"]):
      raise TypeError(f"{type(self).__name__}: promote_dtype must be a callable (args_tuple, *, dtype) -> "
                      f"tuple, as flax.nnx's, got {opts['promote_dtype']!r}")
    for name, value in opts.items():
      setattr(self, name, value)
    self.num_features = num_features
    kinds.check_common(self, type(self).__name__)
    if k.running:
      self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
      self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
    specs = k.params(self)
    for name in ("scale", "bias"):
      if name not in specs:
        setattr(self, name, nnx.data(None))
    for name, (init, shape) in specs.items():
      meta = getattr(self, f"{name}_metadata", {})
      key = rngs.params() if rngs is not None else jax.random.key(0)
      setattr(self, name, nnx.Param(init(key, (num_features,) if shape is None else shape, self.param_dtype), **meta))
    self.rngs = rngs if k.noise else nnx.data(None)
    if getattr(self, "ramp_steps", 0) > 0:
      self.renorm_steps = nnx.BatchStat(jnp.zeros((), jnp.float32))

  def _run(self, x, train: bool, mask):
    k, name = kinds.KINDS[self.kind], type(self).__name__
    kinds.check_input(x, name)
    # flax's tuple: (x, mean, var, scale, bias) or (x, scale, bias), (x, scale) for RMSNorm; then other params
    affine = tuple(n for n in ("scale", "bias") if hasattr(self, f"use_{n}"))
    names = affine + tuple(n for n in k.params(self) if n not in affine)
    stored = Moments(self.mean[...], self.var[...]) if k.running else None
    values = tuple(None if getattr(self, n) is None else getattr(self, n)[...] for n in names)
    x, *rest = self.promote_dtype((x, *(stored or ()), *values), dtype=self.dtype)
    running = Moments(*rest[:2]) if k.running else None
    params = {n: v for n, v in zip(names, rest[2:] if k.running else rest) if v is not None}
    rng = self.rngs.noise() if (k.noise and train) else None
    limits = None
    if getattr(self, "ramp_steps", 0) > 0:  # batch renorm's r_max/d_max ramp
      limits = kinds.renorm_limits(self, self.renorm_steps[...])
      if train:
        self.renorm_steps[...] = self.renorm_steps[...] + 1
    y, batch = kinds.run(self, k, x, params, running, layer=name, train=train, mask=mask, rng=rng,
                         axis_name=getattr(self, "axis_name", None), limits=limits)
    if batch is not None and k.updates:
      new = update_running_stats(stored, batch, self.momentum)
      self.mean[...], self.var[...] = jax.lax.stop_gradient(new.mean), jax.lax.stop_gradient(new.var)
    return y


class _RunningNorm(_Norm):
  def __call__(self, x, use_running_average: bool | None = None, *, mask: jax.Array | None = None):
    use_ra = use_running_average if use_running_average is not None else self.use_running_average
    if use_ra is None:
      raise ValueError(f"{type(self).__name__}: no use_running_average given; pass it to the constructor or "
                       "the call, or use nnx.view(model, use_running_average=True/False)")
    return self._run(x, not use_ra, mask)

  def set_view(self, use_running_average: bool | None = None):
    """For `nnx.view(model, use_running_average=...)`."""
    if use_running_average is not None:
      self.use_running_average = use_running_average


class _StatelessNorm(_Norm):
  def __call__(self, x, *, mask: jax.Array | None = None):
    return self._run(x, True, mask)


def _nnx_class(linen_cls: type, positional: tuple[str, ...] = ()) -> type:
  """The nnx twin of a `normlab.layers` class: keyword fields and defaults from the linen dataclass."""
  k = kinds.KINDS[linen_cls.kind]
  fields = [f for f in dataclasses.fields(linen_cls) if f.name not in ("parent", "name", *_LINEN_ONLY)]
  P = inspect.Parameter
  params = []
  has_state = bool(k.params(_Defaults(linen_cls))) or k.running
  if has_state:
    params.append(P("num_features", P.POSITIONAL_OR_KEYWORD))
  for f in fields:
    kind = P.POSITIONAL_OR_KEYWORD if f.name in positional else P.KEYWORD_ONLY
    default = False if f.name == "use_running_average" else f.default
    params.append(P(f.name, kind, default=default))
  params.sort(key=lambda p: p.kind)  # positional ones first, in their order
  params.append(P("promote_dtype", P.KEYWORD_ONLY, default=dtypes.promote_dtype))
  params.append(P("rngs", P.KEYWORD_ONLY) if has_state else P("rngs", P.KEYWORD_ONLY, default=None))
  names = {f.name for f in fields}
  params += [P(n, P.KEYWORD_ONLY, default=d) for n, d in _METADATA.items() if f"{n.split('_')[0]}_init" in names]
  base = _RunningNorm if "use_running_average" in {f.name for f in fields} else _StatelessNorm
  ns = {"kind": linen_cls.kind, "linen": linen_cls, "positional": positional, "__doc__": linen_cls.__doc__,
        "__module__": __name__, "replaces_activation": linen_cls.replaces_activation}
  cls = type(linen_cls.__name__, (base,), ns)
  cls.__signature__ = inspect.Signature(params)
  return cls


class _Defaults:
  """A linen class's field defaults as attributes (to ask a Kind which parameters it has)."""

  def __init__(self, linen_cls):
    for f in dataclasses.fields(linen_cls):
      setattr(self, f.name, f.default)


BatchNorm = _nnx_class(layers.BatchNorm)
LayerNorm = _nnx_class(layers.LayerNorm)
RMSNorm = _nnx_class(layers.RMSNorm)
GroupNorm = _nnx_class(layers.GroupNorm, positional=("num_groups", "group_size"))
InstanceNorm = _nnx_class(layers.InstanceNorm)
GhostBatchNorm = _nnx_class(layers.GhostBatchNorm)
BatchRenorm = _nnx_class(layers.BatchRenorm)
FrozenBatchNorm = _nnx_class(layers.FrozenBatchNorm)
LpBatchNorm = _nnx_class(layers.LpBatchNorm)
NoisyBatchNorm = _nnx_class(layers.NoisyBatchNorm)
FilterResponseNorm = _nnx_class(layers.FilterResponseNorm)
EvoNormB0 = _nnx_class(layers.EvoNormB0)
EvoNormS0 = _nnx_class(layers.EvoNormS0)
SwitchableNorm = _nnx_class(layers.SwitchableNorm)
LocalResponseNorm = _nnx_class(layers.LocalResponseNorm)

__all__ = ["BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "GhostBatchNorm", "BatchRenorm",
           "FrozenBatchNorm", "LpBatchNorm", "NoisyBatchNorm", "FilterResponseNorm", "EvoNormB0", "EvoNormS0",
           "SwitchableNorm", "LocalResponseNorm"]
