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
`Dense`/`Conv` take a `reparam` option ('weight', 'weight_std', 'spectral') for the kernel norms.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from normlab import layer_math as lm, reparam as rp
from normlab.core import Moments
from normlab.norms import update_running_stats

Initializer = Callable[..., jax.Array]
Axes = int | Sequence[int]
_zeros, _ones = nn.initializers.zeros, nn.initializers.ones


class _Norm(nn.Module):
  """Shared body: parameters and running statistics as flax names them, math from `layer_math`."""
  kind: ClassVar[str]
  replaces_activation: ClassVar[bool] = False  # FRN/EvoNorm include their nonlinearity

  def _run(self, x, train: bool, mask):
    k = lm.KINDS[self.kind]
    lm.check_common(self, type(self).__name__)
    fshape = tuple(x.shape[a] for a in k.feature_axes(self, x.ndim))
    running = None
    if k.running:
      mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), fshape)
      var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), fshape)
      running = Moments(mean.value, var.value)
    params = {name: self.param(name, init, fshape if shape is None else shape, self.param_dtype)
              for name, (init, shape) in k.params(self).items()}
    initializing = self.is_initializing()
    # As flax's BatchNorm: init may run outside the mapped axes, so it reduces locally.
    axis_name = None if (k.running and initializing) else getattr(self, "axis_name", None)
    rng = self.make_rng("noise") if (k.noise and train) else None
    y, batch = k.forward(self, x, params, running, train=train, mask=mask, rng=rng, axis_name=axis_name)
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
  momentum: float = 0.99
  epsilon: float = 1e-5
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


class LayerNorm(_StatelessNorm):
  """flax.linen.LayerNorm: statistics over `reduction_axes`, scale/bias over `feature_axes`."""
  kind: ClassVar[str] = "layer"
  epsilon: float = 1e-6
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
  epsilon: float = 1e-6
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
  epsilon: float = 1e-6
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
  epsilon: float = 1e-6
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
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = _zeros
  scale_init: Initializer = _ones


class _ExtraStateless(_StatelessNorm):
  epsilon: float = 1e-6
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
  """Batch renormalization with fixed r_max/d_max."""
  kind: ClassVar[str] = "batch_renorm"
  r_max: float = 3.0
  d_max: float = 5.0
  axis_name: str | None = None


class FrozenBatchNorm(_ExtraStateless):
  """Batch norm that always uses the stored `batch_stats` (never updated)."""
  kind: ClassVar[str] = "frozen_batch"
  epsilon: float = 1e-5


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
  epsilon: float = 1e-5
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


# ----- kernel norms: Dense / Conv with a reparameterized kernel -----
REPARAMS = (None, "weight", "weight_std", "spectral")


class _ReparamKernel(nn.Module):
  """Dense/Conv base: builds the kernel `v`, reparameterizes it and adds the bias.

  With reparam='weight' and data_init=True, `model.init(rng, batch)` sets g and the bias from the init
  batch so that its pre-activations are standardized (Salimans & Kingma's data-dependent init).
  """
  features: int = 1
  use_bias: bool = True
  reparam: str | None = None
  data_init: bool = False
  n_power_iterations: int = 1
  kernel_init: Initializer = nn.initializers.lecun_normal()

  def _apply(self, x, kernel_shape, op, train: bool):
    v = self.param("kernel", self.kernel_init, kernel_shape, jnp.float32)
    bias_init = nn.initializers.zeros
    if self.reparam is None:
      w = v
    elif self.reparam == "weight":
      g_init = nn.initializers.ones
      if self.data_init and self.is_initializing():
        g0, b0 = rp.weight_norm_data_init(op(x, rp.weight_norm(v).astype(x.dtype)))
        g_init, bias_init = (lambda *_: g0), (lambda *_: b0)
      w = rp.weight_norm(v, self.param("g", g_init, (self.features,), jnp.float32))
    elif self.reparam == "weight_std":
      w = rp.weight_standardize(v)
    elif self.reparam == "spectral":
      u = self.variable("batch_stats", "u", lambda: jax.random.normal(
          self.make_rng("params"), (self.features,), jnp.float32))
      w, u_new, _ = rp.spectral_normalize(v, u.value, n_iters=self.n_power_iterations)
      if train and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
        u.value = u_new
    else:
      raise ValueError(f"unknown reparam {self.reparam!r}; valid choices: {', '.join(map(str, REPARAMS))}")
    y = op(x, w.astype(x.dtype))
    if self.use_bias:
      y = y + self.param("bias", bias_init, (self.features,), jnp.float32).astype(x.dtype)
    return y


class Dense(_ReparamKernel):
  @nn.compact
  def __call__(self, x, train: bool = True):
    return self._apply(x, (x.shape[-1], self.features), lambda a, w: a @ w, train)


class Conv(_ReparamKernel):
  """N-D convolution, channels-last, SAME padding by default."""
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] | int = 1
  padding: str | Sequence = "SAME"

  @nn.compact
  def __call__(self, x, train: bool = True):
    ks = tuple(self.kernel_size)
    nd = len(ks)
    strides = (self.strides,) * nd if isinstance(self.strides, int) else tuple(self.strides)
    spatial = "DHW"[-nd:]

    def conv(a, w):
      dn = jax.lax.conv_dimension_numbers(a.shape, w.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
      return jax.lax.conv_general_dilated(a, w, strides, self.padding, dimension_numbers=dn)

    return self._apply(x, ks + (x.shape[-1], self.features), conv, train)
