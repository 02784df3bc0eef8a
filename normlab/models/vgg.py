"""VGG as in Santurkar et al. (2018) on CIFAR-10: 3x3 convs with a norm after each, max-pools, one
Dense classifier; `width` scales the channels, and pooling stops once a spatial size reaches 1."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from normlab.models.common import check_placement, conv, dense, example_mask, linear_bias, norm_act
from normlab.registry import NormFactory

# Channel counts; "M" is a 2x2 max-pool.
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Module):
  """Convs `conv{i}` -> norm/act blocks `block{i}`, pools, global average pool, optional hidden
  Dense layers `head_widths` (each with norm/act, blocks `fc{i}`), then Dense(num_classes).

  1-D (N, L, C) and 2-D (N, H, W, C) inputs; a pool halves every spatial axis longer than 1 and is
  skipped once all are 1 (8x8 digits keep 3 pools). `mask` (N,) keeps padded examples out of BN.
  """
  num_classes: int
  norm: NormFactory
  placement: str = "before_activation"
  axis_name: Any = None
  config: Sequence[Any] = VGG_CONFIGS["vgg11"]
  width: float = 1.0
  head_widths: Sequence[int] = ()
  data_init: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    check_placement(self.placement, model="VGG")
    nd = x.ndim - 2
    if nd not in (1, 2):
      raise ValueError(f"VGG: expected an input (N, L, C) or (N, H, W, C), got shape {x.shape}")
    x = jnp.asarray(x, self.dtype)
    m = example_mask(mask, x.ndim)
    bias = linear_bias(self.norm, self.placement)
    i = 0
    for item in self.config:
      if item == "M":
        window = tuple(2 if s >= 2 else 1 for s in x.shape[1:-1])
        if any(w > 1 for w in window):
          x = nn.max_pool(x, window, strides=window, padding="VALID")
        continue
      feats = max(1, int(round(item * self.width)))
      x = conv(self.norm, feats, (3,) * nd, use_bias=bias, data_init=self.data_init,
               name=f"conv{i}")(x, train=train)
      x = norm_act(self, x, norm=self.norm, placement=self.placement, axis_name=self.axis_name,
                   name=f"block{i}", train=train, mask=m)
      i += 1
    x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    m2 = example_mask(mask, 2)
    for j, w in enumerate(self.head_widths):
      x = dense(self.norm, w, use_bias=bias, data_init=self.data_init, name=f"fc{j}_dense")(x, train=train)
      x = norm_act(self, x, norm=self.norm, placement=self.placement, axis_name=self.axis_name,
                   name=f"fc{j}", train=train, mask=m2)
    x = dense(self.norm, self.num_classes, name="head", data_init=self.data_init)(x, train=train)
    return x.astype(jnp.float32)
