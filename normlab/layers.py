"""flax.linen drop-ins over normlab's functional norms: the same fields, defaults, call signatures,
parameter and `batch_stats` names and shapes as `flax.linen`'s BatchNorm, LayerNorm, RMSNorm, GroupNorm
and InstanceNorm, so a flax checkpoint loads into them and swapping the import is the whole change.

Norms with batch statistics take `use_running_average` in the constructor or the call (flax's
`merge_param`: exactly one must be set) and update `batch_stats` in training (writing an immutable
collection raises, as in flax); the others are called `module(x, *, mask=None)`. `mask` (boolean,
broadcastable to x) keeps positions out of every statistic. Differences from flax, on purpose:
statistics are always two-pass in >= float32 (`use_fast_variance` is accepted and irrelevant;
`force_float32_reductions=False` is refused); `axis_index_groups` is refused (lax.psum does not take
it under shard_map: make the groups a mesh axis); with a mask and `axis_name`, statistics are weighted
by each device's valid count (flax averages per-device means). normlab's extra norms (ghost BN, batch
renorm, l_p BN, noisy BN, FRN, EvoNorm, switchable, LRN) follow the same conventions.

The classes hold parameters and state only: each call runs the norm's function in `normlab.norms` /
`normlab.variants` (mapped from the fields by `normlab.kinds`). Their defaults are flax's; the table of
flax's and normlab's defaults is in `normlab.norms`.

`Dense`/`Conv` are flax's (every field) with a `reparam` option ('weight', 'weight_std', 'spectral') for
the kernel norms; with dtype=None they compute in the input's dtype.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes as flax_dtypes

from normlab import kinds, reparam as rp
from normlab.core import Moments
from normlab.norms import FLAX_BN_EPS, FLAX_EPS, FLAX_MOMENTUM, update_running_stats

Initializer = Callable[..., jax.Array]
Axes = int | Sequence[int]
_zeros, _ones = nn.initializers.zeros, nn.initializers.ones


class _Norm(nn.Module):
  """Shared body: parameters and running statistics as flax names them; the forward pass is the
  norm's function in `normlab.norms` / `normlab.variants`, called through `normlab.kinds`."""
  kind: ClassVar[str]
  replaces_activation: ClassVar[bool] = False  # FRN/EvoNorm include their nonlinearity

  def _run(self, x, train: bool, mask):
    k, name = kinds.KINDS[self.kind], type(self).__name__
    kinds.check_common(self, name)
    kinds.check_input(x, name)
    fshape = tuple(x.shape[a] for a in k.feature_axes(self, x.ndim))
    running = None
    if k.running:
      mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), fshape)
      var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), fshape)
      running = Moments(mean.value, var.value)
    params = {n: self.param(n, init, fshape if shape is None else shape, self.param_dtype)
              for n, (init, shape) in k.params(self).items()}
    initializing = self.is_initializing()
    # As flax's BatchNorm: init may run outside the mapped axes, so it reduces locally.
    axis_name = None if (k.running and initializing) else getattr(self, "axis_name", None)
    limits = None
    if getattr(self, "ramp_steps", 0) > 0:  # batch renorm's r_max/d_max ramp (Ioffe 2017)
      steps = self.variable("batch_stats", "renorm_steps", lambda: jnp.zeros((), jnp.float32))
      limits = kinds.renorm_limits(self, steps.value)
      if train and not initializing:
        steps.value = steps.value + 1
    rng = self.make_rng("noise") if (k.noise and train) else None
    y, batch = kinds.run(self, k, x, params, running, layer=name, train=train, mask=mask, rng=rng,
                         axis_name=axis_name, limits=limits)
    if batch is not None and k.updates and not initializing:
      new = update_running_stats(running, batch, self.momentum)
      mean.value, var.value = new.mean, new.var
    return y


class _RunningNorm(_Norm):
  """Norms with running statistics: `module(x, use_running_average=None, *, mask=None)`."""

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask: jax.Array | None = None):
    use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    return self._run(x, not use_ra, mask)


class _StatelessNorm(_Norm):
  """Batch-independent norms: `module(x, *, mask=None)`."""

  @nn.compact
  def __call__(self, x, *, mask: jax.Array | None = None):
    return self._run(x, True, mask)


class Identity(nn.Module):
  """The 'none' norm, for ablations."""

  @nn.compact
  def __call__(self, x, *, mask=None):
    del mask
    return x


# ----- flax.linen drop-ins: fields in flax's order, with flax's defaults -----

class BatchNorm(_RunningNorm):
  """flax.linen.BatchNorm; `axis_name` syncs statistics across devices (SyncBN)."""
  kind: ClassVar[str] = "batch"
  use_running_average: bool | None = None
  axis: int = -1
  momentum: float = FLAX_MOMENTUM
  epsilon: float = FLAX_BN_EPS
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = _zeros
  scale_init: Initializer = _ones
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True
  allow_single_value: bool = False  # normlab's: training on 1 value per channel raises unless True


class LayerNorm(_StatelessNorm):
  """flax.linen.LayerNorm: statistics over `reduction_axes`, scale/bias over `feature_axes`."""
  kind: ClassVar[str] = "layer"
  epsilon: float = FLAX_EPS
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = _zeros
  scale_init: Initializer = _ones
  reduction_axes: Axes = -1
  feature_axes: Axes = -1
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True


class RMSNorm(_StatelessNorm):
  """flax.linen.RMSNorm: x / sqrt(mean(x^2) + eps) over `reduction_axes`, no bias."""
  kind: ClassVar[str] = "rms"
  epsilon: float = FLAX_EPS
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_scale: bool = True
  scale_init: Initializer = _ones
  reduction_axes: Axes = -1
  feature_axes: Axes = -1
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True


class GroupNorm(_StatelessNorm):
  """flax.linen.GroupNorm: give num_groups, or group_size with num_groups=None (both set is an error)."""
  kind: ClassVar[str] = "group"
  num_groups: int | None = 32
  group_size: int | None = None
  epsilon: float = FLAX_EPS
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = _zeros
  scale_init: Initializer = _ones
  reduction_axes: Axes | None = None
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True


class InstanceNorm(_StatelessNorm):
  """flax.linen.InstanceNorm: statistics over every axis but the batch (0) and `feature_axes`."""
  kind: ClassVar[str] = "instance"
  epsilon: float = FLAX_EPS
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = _zeros
  scale_init: Initializer = _ones
  feature_axes: Axes = -1
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True


# ----- normlab's extra norms, same conventions (channels-last: features on the last axis) -----

class _ExtraRunning(_RunningNorm):
  use_running_average: bool | None = None
  momentum: float = FLAX_MOMENTUM
  epsilon: float = FLAX_BN_EPS
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = _zeros
  scale_init: Initializer = _ones
  allow_single_value: bool = False


class _ExtraStateless(_StatelessNorm):
  epsilon: float = FLAX_EPS
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = _zeros
  scale_init: Initializer = _ones


class GhostBatchNorm(_ExtraRunning):
  """Batch norm over virtual batches of `virtual_batch_size` examples (the batch, if smaller)."""
  kind: ClassVar[str] = "ghost_batch"
  virtual_batch_size: int = 16


class BatchRenorm(_ExtraRunning):
  """Batch renormalization. With `ramp_steps` > 0, r_max and d_max ramp linearly from 1 and 0 (plain BN) to
  their values over the first `ramp_steps` training calls, as Ioffe (2017) does; the count of training calls
  is kept in batch_stats['renorm_steps'] (float32). 0 uses r_max/d_max from the first step."""
  kind: ClassVar[str] = "batch_renorm"
  r_max: float = 3.0
  d_max: float = 5.0
  ramp_steps: int = 0
  axis_name: str | None = None


class FrozenBatchNorm(_ExtraStateless):
  """Batch norm that always uses the stored `batch_stats` (never updated)."""
  kind: ClassVar[str] = "frozen_batch"
  epsilon: float = FLAX_BN_EPS


class LpBatchNorm(_ExtraRunning):
  """l1 / l2 / l_inf batch norm (Santurkar et al. section 3.3); running `var` holds scale^2."""
  kind: ClassVar[str] = "lp_batch"
  p: Any = 1
  axis_name: str | None = None


class NoisyBatchNorm(_ExtraRunning):
  """Batch norm + noise whose mean/variance change every step (training draws the 'noise' RNG)."""
  kind: ClassVar[str] = "noisy_batch"
  mean_range: float = 1.0
  std_range: float = 2.0
  axis_name: str | None = None


class FilterResponseNorm(_ExtraStateless):
  """FRN + TLU: replaces norm *and* activation (models skip their ReLU after it)."""
  kind: ClassVar[str] = "frn"
  replaces_activation: ClassVar[bool] = True


class EvoNormB0(_ExtraRunning):
  """EvoNorm-B0: batch-dependent norm-activation (models skip their ReLU after it)."""
  kind: ClassVar[str] = "evonorm_b0"
  replaces_activation: ClassVar[bool] = True
  axis_name: str | None = None


class EvoNormS0(_ExtraStateless):
  """EvoNorm-S0: batch-independent norm-activation; groups as GroupNorm (num_groups or group_size)."""
  kind: ClassVar[str] = "evonorm_s0"
  replaces_activation: ClassVar[bool] = True
  epsilon: float = FLAX_BN_EPS
  num_groups: int | None = 32
  group_size: int | None = None


class SwitchableNorm(_ExtraRunning):
  """Switchable norm: learned softmax mix of instance, layer and batch statistics."""
  kind: ClassVar[str] = "switchable"
  axis_name: str | None = None


class LocalResponseNorm(_StatelessNorm):
  """Local response norm across channels (torch's convention); no parameters."""
  kind: ClassVar[str] = "local_response"
  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0
  dtype: Any = None
  param_dtype: Any = jnp.float32


# ----- kernel norms: flax's Dense / Conv with a reparameterized kernel -----
REPARAMS = (None, "weight", "weight_std", "spectral")


class _ReparamKernel:
  """Mixin for flax's `nn.Dense` / `nn.Conv`: the kernel they create is handed back reparameterized
  ('weight': w = g v/||v||, 'weight_std', 'spectral': w / sigma with `u` in `batch_stats`), so every
  field of flax's layer (dtype, param_dtype, padding, dilation, feature groups, ...) keeps working.
  Params: `kernel` (v), `bias`, and `g` for weight norm.

  With reparam='weight' and data_init=True, `model.init(rng, batch)` sets g and the bias from the init
  batch so that its pre-activations are standardized (Salimans & Kingma's data-dependent init). In
  training, spectral norm's power iteration updates `u` (writing an immutable `batch_stats` skips it).
  flax's own `nn.WeightNorm` / `nn.SpectralNorm` wrap any layer too, with their own variable layout.
  """

  def param(self, name, init_fn, *init_args, **init_kwargs):
    p = super().param(name, init_fn, *init_args, **init_kwargs)
    if name != "kernel" or self.reparam is None:
      return p
    if self.reparam == "weight":
      return rp.weight_norm(p, super().param("g", nn.initializers.ones, (self.features,), jnp.float32))
    if self.reparam == "weight_std":
      return rp.weight_standardize(p)
    if self.reparam == "spectral":
      u = self.variable("batch_stats", "u", lambda: jax.random.normal(
          self.make_rng("params"), (self.features,), jnp.float32))
      w, u_new, _ = rp.spectral_normalize(p, u.value, n_iters=self.n_power_iterations)
      if self._nl_train and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
        u.value = u_new
      return w
    raise ValueError(f"unknown reparam {self.reparam!r}; valid choices: {', '.join(map(str, REPARAMS))}")

  def _reparam_call(self, x, train: bool):
    object.__setattr__(self, "_nl_train", train)  # read by `param` during this call
    if not (self.reparam == "weight" and self.data_init and self.is_initializing()):
      return super().__call__(x)
    t = super().__call__(x)  # g = 1, bias = 0: the normalized kernel's pre-activations
    g0, b0 = rp.weight_norm_data_init(t)
    self.put_variable("params", "g", g0.astype(jnp.float32))
    if self.use_bias:
      self.put_variable("params", "bias", b0.astype(self.param_dtype))
      return (t * g0 + b0).astype(t.dtype)
    return (t * g0).astype(t.dtype)


def promote_to_input(*args, dtype=None, inexact=True):
  """flax's `promote_dtype`, except that dtype=None computes in the input's dtype (normlab's models run
  bfloat16 activations with float32 parameters); an explicit `dtype` behaves as in flax."""
  return flax_dtypes.promote_dtype(*args, dtype=jnp.result_type(args[0]) if dtype is None else dtype,
                                   inexact=inexact)


class Dense(_ReparamKernel, nn.Dense):
  """flax.linen.Dense (every field) + `reparam` / `data_init` / `n_power_iterations`; call (x, train=True)."""
  features: int = 1
  promote_dtype: Callable = promote_to_input
  reparam: str | None = None
  data_init: bool = False
  n_power_iterations: int = 1

  def __call__(self, x, train: bool = True):
    return self._reparam_call(x, train)


class Conv(_ReparamKernel, nn.Conv):
  """flax.linen.Conv (every field: strides, padding, kernel_dilation, feature_group_count, dtype, ...) +
  `reparam` / `data_init` / `n_power_iterations`; call (x, train=True). Channels-last, SAME padding."""
  features: int = 1
  kernel_size: int | Sequence[int] = (3, 3)
  promote_dtype: Callable = promote_to_input
  reparam: str | None = None
  data_init: bool = False
  n_power_iterations: int = 1

  def __call__(self, x, train: bool = True):
    return self._reparam_call(x, train)
