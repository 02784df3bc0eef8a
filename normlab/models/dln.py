"""Deep linear network: `depth` Dense layers, no nonlinearity, an optional norm between layers."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from normlab.models.common import check_placement, dense, example_mask, norm_act
from normlab.registry import NormFactory


class DLN(nn.Module):
  """x -> (Dense(width) -> norm) x (depth - 1) -> Dense(num_classes), on flattened inputs.

  There is no activation, so only 'before_activation' is accepted (the two placements coincide).
  Intermediates: `layer{i}_preact` / `layer{i}_normed`.
  """
  num_classes: int
  norm: NormFactory
  placement: str = "before_activation"
  axis_name: Any = None
  depth: int = 4
  width: int = 32
  use_bias: bool = False
  data_init: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    check_placement(self.placement, model="DLN", valid=("before_activation",))
    if self.depth < 1:
      raise ValueError(f"DLN: depth must be >= 1, got {self.depth!r}")
    x = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
    m = example_mask(mask, 2)
    for i in range(self.depth - 1):
      x = dense(self.norm, self.width, name=f"dense{i}", use_bias=self.use_bias,
                data_init=self.data_init)(x, train=train)
      x = norm_act(self, x, norm=self.norm, placement=self.placement, axis_name=self.axis_name,
                   name=f"layer{i}", train=train, mask=m, activation=False)
    x = dense(self.norm, self.num_classes, name="head", use_bias=self.use_bias,
              data_init=self.data_init)(x, train=train)
    return x.astype(jnp.float32)
