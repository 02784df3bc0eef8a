"""MLP on flattened inputs: Dense -> norm/act blocks, then a Dense classifier."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from normlab import layers
from normlab.models.common import check_placement, dense, example_mask, linear_bias, norm_act
from normlab.registry import NormFactory


class MLP(nn.Module):
  """Hidden layers `widths`, each `Dense -> norm -> ReLU` (or `Dense -> ReLU -> norm`).

  Intermediates: `block{i}_preact` / `block{i}_normed`. `mask` (N,) keeps padded examples out of
  batch statistics. `init_scale` multiplies every kernel's initial values (LeCun normal x init_scale:
  the init-scale sweeps of experiments/seed_claims.py).
  """
  num_classes: int
  norm: NormFactory
  placement: str = "before_activation"
  axis_name: Any = None
  widths: Sequence[int] = (256, 256)
  data_init: bool = False
  init_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    check_placement(self.placement, model="MLP")
    x = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
    m = example_mask(mask, 2)
    bias = linear_bias(self.norm, self.placement)
    for i, w in enumerate(self.widths):
      x = self._dense(w, f"dense{i}", bias)(x, train=train)
      x = norm_act(self, x, norm=self.norm, placement=self.placement, axis_name=self.axis_name,
                   name=f"block{i}", train=train, mask=m)
    x = self._dense(self.num_classes, "head", True)(x, train=train)
    return x.astype(jnp.float32)

  def _dense(self, features: int, name: str, use_bias: bool):
    if self.init_scale == 1.0:
      return dense(self.norm, features, name=name, use_bias=use_bias, data_init=self.data_init)
    if not self.init_scale > 0:
      raise ValueError(f"MLP: init_scale must be > 0, got {self.init_scale!r}")
    init = nn.initializers.variance_scaling(float(self.init_scale) ** 2, "fan_in", "truncated_normal")
    return layers.Dense(features=features, use_bias=use_bias, reparam=self.norm.reparam, data_init=self.data_init,
                        kernel_init=init, name=name)
