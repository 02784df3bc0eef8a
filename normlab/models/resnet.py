"""ResNets for 1-D signals (N, L, C) and 2-D images (N, H, W, C), with the norm injected.

One generic `ResNet` (stage sizes, block, stem, widths); the named CIFAR / ImageNet / mnist1d
variants are presets in `normlab.models.registry`. Shortcuts are identity, or a 1x1 conv + norm
when the shape changes. In 'after_activation' the norm before a residual add has no activation in
front of it and stays where it is; the ReLU after the add is kept for every norm.
Intermediates per block: `norm{j}_preact` / `norm{j}_normed` (and `proj_*` for the projection).
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from normlab.models.common import check_placement, conv, dense, example_mask, linear_bias, norm_act
from normlab.registry import NormFactory

STEMS = ("cifar", "imagenet")


class _Block(nn.Module):
  filters: int
  norm: NormFactory
  placement: str = "before_activation"
  axis_name: Any = None
  strides: int = 1
  kernel_size: int = 3
  data_init: bool = False
  expansion: ClassVar[int] = 1

  def _conv(self, x, features, k, name, strides=1, before_add=False):
    nd = x.ndim - 2
    bias = linear_bias(self.norm, "before_activation" if before_add else self.placement)
    return conv(self.norm, features, (k,) * nd, strides=strides, use_bias=bias, data_init=self.data_init,
                name=name)

  def _norm(self, x, name, train, mask, activation=True):
    return norm_act(self, x, norm=self.norm, placement=self.placement, axis_name=self.axis_name, name=name,
                    train=train, mask=mask, activation=activation)

  def _shortcut(self, x, out_features, train, mask):
    if x.shape[-1] == out_features and self.strides == 1:
      return x
    s = self._conv(x, out_features, 1, "proj_conv", self.strides, before_add=True)(x, train=train)
    return self._norm(s, "proj", train, mask, activation=False)


class BasicBlock(_Block):
  """conv k -> norm/act -> conv k -> norm, + shortcut, ReLU."""

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    y = self._conv(x, self.filters, self.kernel_size, "conv1", self.strides)(x, train=train)
    y = self._norm(y, "norm1", train, mask)
    y = self._conv(y, self.filters, self.kernel_size, "conv2", before_add=True)(y, train=train)
    y = self._norm(y, "norm2", train, mask, activation=False)
    return nn.relu(y + self._shortcut(x, self.filters, train, mask))


class Bottleneck(_Block):
  """conv 1 -> norm/act -> conv k (strided) -> norm/act -> conv 1 (4x) -> norm, + shortcut, ReLU."""
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    out = self.filters * self.expansion
    y = self._conv(x, self.filters, 1, "conv1")(x, train=train)
    y = self._norm(y, "norm1", train, mask)
    y = self._conv(y, self.filters, self.kernel_size, "conv2", self.strides)(y, train=train)
    y = self._norm(y, "norm2", train, mask)
    y = self._conv(y, out, 1, "conv3", before_add=True)(y, train=train)
    y = self._norm(y, "norm3", train, mask, activation=False)
    return nn.relu(y + self._shortcut(x, out, train, mask))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _scaled(w: int, width: float) -> int:
  return max(1, int(round(w * width)))


class ResNet(nn.Module):
  """Stem -> stages (`stage_sizes[i]` blocks of `widths[i] * width` filters, stride 2 after the
  first stage) -> global average pool -> Dense.

  stem 'cifar': conv `stem_kernel` (default 3), stride 1. stem 'imagenet': conv `stem_kernel`
  (default 7) stride 2 + max-pool 3 stride 2. `conv_dims` (1 or 2) is inferred from the input
  rank when None. `mask` (N,) keeps padded examples out of batch statistics.
  """
  num_classes: int
  norm: NormFactory
  placement: str = "before_activation"
  axis_name: Any = None
  stage_sizes: Sequence[int] = (3, 3, 3)
  block: str = "basic"
  stem: str = "cifar"
  widths: Sequence[int] = (16, 32, 64)
  width: float = 1.0
  kernel_size: int = 3
  stem_kernel: int | None = None
  conv_dims: int | None = None
  data_init: bool = False
  dtype: Any = jnp.float32

  def _check(self, x):
    check_placement(self.placement, model="ResNet")
    if self.block not in BLOCKS:
      raise ValueError(f"ResNet: unknown block {self.block!r}; valid blocks: {', '.join(BLOCKS)}")
    if self.stem not in STEMS:
      raise ValueError(f"ResNet: unknown stem {self.stem!r}; valid stems: {', '.join(STEMS)}")
    if len(self.widths) != len(self.stage_sizes):
      raise ValueError(f"ResNet: widths {tuple(self.widths)} and stage_sizes {tuple(self.stage_sizes)} "
                       "must have the same length")
    nd = x.ndim - 2
    if nd not in (1, 2) or (self.conv_dims is not None and self.conv_dims != nd):
      raise ValueError(f"ResNet: input of shape {x.shape} does not fit conv_dims={self.conv_dims!r}; "
                       "valid inputs: (N, L, C) for 1-D, (N, H, W, C) for 2-D")
    return nd

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    nd = self._check(x)
    x = jnp.asarray(x, self.dtype)
    m = example_mask(mask, x.ndim)
    imagenet = self.stem == "imagenet"
    k = self.stem_kernel or (7 if imagenet else 3)
    stem_w = _scaled(self.widths[0], self.width)
    x = conv(self.norm, stem_w, (k,) * nd, strides=2 if imagenet else 1, name="stem_conv",
             use_bias=linear_bias(self.norm, self.placement), data_init=self.data_init)(x, train=train)
    x = norm_act(self, x, norm=self.norm, placement=self.placement, axis_name=self.axis_name,
                 name="stem", train=train, mask=m)
    if imagenet:
      x = nn.max_pool(x, (3,) * nd, strides=(2,) * nd, padding="SAME")
    block_cls = BLOCKS[self.block]
    for i, (n_blocks, w) in enumerate(zip(self.stage_sizes, self.widths)):
      for j in range(n_blocks):
        x = block_cls(_scaled(w, self.width), self.norm, self.placement, self.axis_name,
                      strides=2 if (i > 0 and j == 0) else 1, kernel_size=self.kernel_size,
                      data_init=self.data_init, name=f"stage{i + 1}_block{j}")(x, train=train, mask=m)
    x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    x = dense(self.norm, self.num_classes, name="head", data_init=self.data_init)(x, train=train)
    return x.astype(jnp.float32)
