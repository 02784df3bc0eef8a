"""MLP on flattened inputs: Dense -> norm/act blocks, then a Dense classifier."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from normlab.models.common import check_placement, dense, example_mask, linear_bias, norm_act
from normlab.registry import NormFactory


class MLP(nn.Module):
  """Hidden layers `widths`, each `Dense -> norm -> ReLU` (or `Dense -> ReLU -> norm`).

  Intermediates: `block{i}_preact` / `block{i}_normed`. `mask` (N,) keeps padded examples out of
  batch statistics.
  """
  num_classes: int
  norm: NormFactory
  placement: str = "before_activation"
  axis_name: Any = None
  widths: Sequence[int] = (256, 256)
  data_init: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    check_placement(self.placement, model="MLP")
    x = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
    m = example_mask(mask, 2)
    bias = linear_bias(self.norm, self.placement)
    for i, w in enumerate(self.widths):
      x = dense(self.norm, w, name=f"dense{i}", use_bias=bias, data_init=self.data_init)(x, train=train)
      x = norm_act(self, x, norm=self.norm, placement=self.placement, axis_name=self.axis_name,
                   name=f"block{i}", train=train, mask=m)
    x = dense(self.norm, self.num_classes, name="head", data_init=self.data_init)(x, train=train)
    return x.astype(jnp.float32)
