"""Thin `flax.linen` modules over the functional norms: they own params and running statistics only.

Every activation-norm module is called as `module(x, train=..., mask=None)`; running statistics live
in the `batch_stats` collection (updated when `train=True` and the collection is mutable), noise for
`NoisyBatchNorm` comes from the `noise` RNG stream. `Dense`/`Conv` take a `reparam` option
('weight', 'weight_std', 'spectral') for the kernel norms.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from normlab import checks, norms, reparam as rp, variants
from normlab.core import AxisName, Moments

Initializer = Callable[..., jax.Array]


class _ChannelAffine(nn.Module):
  """Shared parameter creation: per-channel float32 parameters (scale: ones, bias: zeros, ...) and the
  running statistics of the batch-statistics norms."""

  def channel_param(self, name: str, init: Initializer, x) -> jax.Array:
    return self.param(name, init, (x.shape[-1],), jnp.float32)

  def affine_params(self, x, use_scale=True, use_bias=True):
    scale = self.channel_param("scale", nn.initializers.ones, x) if use_scale else None
    bias = self.channel_param("bias", nn.initializers.zeros, x) if use_bias else None
    return scale, bias

  def running_stats(self, c: int):
    mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    return mean, var

  def maybe_update(self, mean, var, batch: Moments, momentum: float, train: bool):
    if train and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
      new = norms.update_running_stats(Moments(mean.value, var.value), batch, momentum)
      mean.value, var.value = new.mean, new.var

  def batch_statistics_norm(self, x, train: bool, batch_fn, eval_fn=None, use_scale=True, use_bias=True,
                            mask=None):
    """The shared shape of the batch-statistics norms: eval mode normalizes with the running moments
    (`eval_fn(scale, bias, running)`, default plain BN); train mode calls
    `batch_fn(scale, bias, running) -> (y, batch moments)` and updates the running moments. The norms'
    single-value error names the layer and its `allow_single_value` field."""
    scale, bias = self.affine_params(x, use_scale, use_bias)
    mean, var = self.running_stats(x.shape[-1])
    running = Moments(mean.value, var.value)
    if not train:
      if eval_fn is not None:
        return eval_fn(scale, bias, running)
      return norms.batch_norm(x, scale, bias, eps=self.epsilon, running=running, mask=mask)
    try:
      y, batch = batch_fn(scale, bias, running)
    except checks.SingleValueError as e:
      layer = type(self).__name__
      raise e.with_hint(f"set {layer}(allow_single_value=True)", where=f"{layer} ({e.where})") from None
    self.maybe_update(mean, var, batch, self.momentum, train)
    return y


class Identity(nn.Module):
  """The 'none' norm, for ablations."""

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    del train, mask
    return x


class BatchNorm(_ChannelAffine):
  """Batch norm; `axis_name` syncs statistics across devices (SyncBN), None keeps them local."""
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: AxisName = None
  use_scale: bool = True
  use_bias: bool = True
  allow_single_value: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    return self.batch_statistics_norm(
        x, train, lambda s, b, _: norms.batch_norm(x, s, b, eps=self.epsilon, axis_name=self.axis_name,
                                                   mask=mask, return_stats=True,
                                                   allow_single_value=self.allow_single_value),
        use_scale=self.use_scale, use_bias=self.use_bias, mask=mask)


class GhostBatchNorm(_ChannelAffine):
  """Batch norm over virtual batches of `virtual_batch_size` examples (falls back to the batch if larger)."""
  virtual_batch_size: int = 16
  momentum: float = 0.9
  epsilon: float = 1e-5
  allow_single_value: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    v = min(self.virtual_batch_size, x.shape[0])
    return self.batch_statistics_norm(x, train, lambda s, b, _: variants.ghost_batch_norm(
        x, s, b, virtual_batch_size=v, eps=self.epsilon, mask=mask, return_stats=True,
        allow_single_value=self.allow_single_value), mask=mask)


class BatchRenorm(_ChannelAffine):
  """Batch renormalization. With `ramp_steps` > 0, r_max and d_max ramp linearly from 1 and 0 (plain BN) to
  their values over the first `ramp_steps` training calls, as Ioffe (2017) does; the count of training calls
  is kept in batch_stats['renorm_steps'] (float32). 0 uses r_max/d_max from the first step."""
  r_max: float = 3.0
  d_max: float = 5.0
  ramp_steps: int = 0
  momentum: float = 0.99
  epsilon: float = 1e-5
  axis_name: AxisName = None
  allow_single_value: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    r_max, d_max = self.r_max, self.d_max
    if self.ramp_steps > 0:
      # float32 (exact below 2**24 steps): batch_stats are pmean'd over devices, which makes ints floats.
      steps = self.variable("batch_stats", "renorm_steps", lambda: jnp.zeros((), jnp.float32))
      frac = jnp.minimum(steps.value / self.ramp_steps, 1.0)
      r_max, d_max = 1.0 + (self.r_max - 1.0) * frac, self.d_max * frac
      if train and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
        steps.value = steps.value + 1
    return self.batch_statistics_norm(x, train, lambda s, b, running: variants.batch_renorm(
        x, s, b, running=running, r_max=r_max, d_max=d_max, eps=self.epsilon,
        axis_name=self.axis_name, mask=mask, return_stats=True, allow_single_value=self.allow_single_value),
        mask=mask)


class FrozenBatchNorm(_ChannelAffine):
  """Batch norm that always uses the stored statistics (never updated by training)."""
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    checks.check_mask_array(mask, x.shape, fn="frozen_batch_norm")  # unused, checked like the others
    scale, bias = self.affine_params(x)
    mean, var = self.running_stats(x.shape[-1])
    return variants.frozen_batch_norm(x, mean.value, var.value, scale, bias, eps=self.epsilon)


class LpBatchNorm(_ChannelAffine):
  """l1 / l2 / l_inf batch norm (Santurkar et al. section 3.3)."""
  p: Any = 1
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: AxisName = None
  allow_single_value: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    def eval_fn(s, b, running):  # the running `var` holds scale^2 of the l_p scale
      return variants.lp_batch_norm(x, s, b, p=self.p, eps=self.epsilon, mask=mask, running=running)

    return self.batch_statistics_norm(x, train, lambda s, b, _: variants.lp_batch_norm(
        x, s, b, p=self.p, eps=self.epsilon, axis_name=self.axis_name, mask=mask, return_stats=True,
        allow_single_value=self.allow_single_value), eval_fn)


class NoisyBatchNorm(_ChannelAffine):
  """Batch norm followed by noise whose mean/variance change every step (needs the 'noise' RNG)."""
  mean_range: float = 1.0
  std_range: float = 2.0
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: AxisName = None
  allow_single_value: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    return self.batch_statistics_norm(x, train, lambda s, b, _: variants.noisy_batch_norm(
        x, self.make_rng("noise"), s, b, mean_range=self.mean_range, std_range=self.std_range,
        eps=self.epsilon, axis_name=self.axis_name, mask=mask, return_stats=True,
        allow_single_value=self.allow_single_value), mask=mask)


class LayerNorm(_ChannelAffine):
  """Layer norm over the last axis (per-feature scale and bias)."""
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    scale, bias = self.affine_params(x, self.use_scale, self.use_bias)
    # `mask` (padding of examples/time steps) is accepted for a uniform interface and unused: the
    # statistics are per position, so padded positions never enter a valid position's statistics.
    checks.check_mask_array(mask, x.shape, fn="layer_norm")
    return norms.layer_norm(x, scale, bias, eps=self.epsilon)


class RMSNorm(_ChannelAffine):
  """RMS norm over the last axis."""
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    checks.check_mask_array(mask, x.shape, fn="rms_norm")  # unused: per-position statistics
    scale, _ = self.affine_params(x, use_bias=False)
    return norms.rms_norm(x, scale, eps=self.epsilon)


class InstanceNorm(_ChannelAffine):
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    scale, bias = self.affine_params(x)
    return norms.instance_norm(x, scale, bias, eps=self.epsilon, mask=mask)


class GroupNorm(_ChannelAffine):
  """Group norm; give num_groups or group_size. A set group_size wins over num_groups (whose default
  32 is always set), as in `variants.evonorm_s0`: GroupNorm(group_size=4) means groups of 4 channels."""
  num_groups: int | None = 32
  group_size: int | None = None
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    scale, bias = self.affine_params(x)
    gsize = self.group_size
    groups = None if gsize is not None else self.num_groups
    return norms.group_norm(x, scale, bias, num_groups=groups, group_size=gsize, eps=self.epsilon, mask=mask)


class FilterResponseNorm(_ChannelAffine):
  """FRN + TLU: replaces norm *and* activation (models skip their ReLU after it)."""
  epsilon: float = 1e-6
  replaces_activation: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    scale, bias = self.affine_params(x)
    tau = self.channel_param("tau", nn.initializers.zeros, x)
    checks.check_mask_array(mask, x.shape, fn="filter_response_norm")  # unused
    return variants.filter_response_norm(x, scale, bias, tau, eps=self.epsilon)


class EvoNormB0(_ChannelAffine):
  """EvoNorm-B0: batch-dependent norm-activation (models skip their ReLU after it)."""
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: AxisName = None
  replaces_activation: bool = True
  allow_single_value: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    v = self.channel_param("v", nn.initializers.ones, x)
    return self.batch_statistics_norm(
        x, train,
        lambda s, b, _: variants.evonorm_b0(x, s, b, v, eps=self.epsilon, axis_name=self.axis_name, mask=mask,
                                            return_stats=True, allow_single_value=self.allow_single_value),
        lambda s, b, running: variants.evonorm_b0(x, s, b, v, eps=self.epsilon, mask=mask, running=running))


class EvoNormS0(_ChannelAffine):
  """EvoNorm-S0: batch-independent norm-activation (models skip their ReLU after it)."""
  num_groups: int = 8
  epsilon: float = 1e-5
  replaces_activation: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    scale, bias = self.affine_params(x)
    v = self.channel_param("v", nn.initializers.ones, x)
    c = x.shape[-1]  # the largest group count <= num_groups that divides the channels
    groups = max(g for g in range(1, min(self.num_groups, c) + 1) if c % g == 0)
    checks.check_mask_array(mask, x.shape, fn="evonorm_s0")  # unused
    return variants.evonorm_s0(x, scale, bias, v, num_groups=groups, eps=self.epsilon)


class SwitchableNorm(_ChannelAffine):
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: AxisName = None
  allow_single_value: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    wm = self.param("mean_logits", nn.initializers.zeros, (3,), jnp.float32)
    wv = self.param("var_logits", nn.initializers.zeros, (3,), jnp.float32)
    return self.batch_statistics_norm(
        x, train,
        lambda s, b, _: variants.switchable_norm(x, s, b, wm, wv, eps=self.epsilon, axis_name=self.axis_name,
                                                 mask=mask, return_stats=True,
                                                 allow_single_value=self.allow_single_value),
        lambda s, b, running: variants.switchable_norm(x, s, b, wm, wv, eps=self.epsilon, running=running))


class LocalResponseNorm(nn.Module):
  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    checks.check_mask_array(mask, x.shape, fn="local_response_norm")  # unused: per-position statistics
    return variants.local_response_norm(x, size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)


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
