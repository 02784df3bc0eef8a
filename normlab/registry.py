"""Norm names -> Flax layer factories: the one place configs and models pick a norm from.

`make_norm(name, **options)` returns a `NormFactory`; calling it builds the activation-norm module
(`Identity` for 'none' and for the kernel norms), and its `reparam` tells models how to build their
Dense/Conv kernels ('weight', 'weight_std', 'spectral' or None).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from normlab import layers


@dataclasses.dataclass(frozen=True)
class NormEntry:
  layer: type[nn.Module]
  defaults: dict
  reparam: str | None = None
  doc: str = ""


_ALL_NORMS: dict[str, NormEntry] = {
    "none": NormEntry(layers.Identity, {}, doc="no normalization"),
    "batch": NormEntry(layers.BatchNorm, {}, doc="batch norm (SyncBN with axis_name)"),
    "layer": NormEntry(layers.LayerNorm, {}, doc="layer norm over features"),
    "instance": NormEntry(layers.InstanceNorm, {}, doc="instance norm over spatial axes"),
    "group": NormEntry(layers.GroupNorm, {}, doc="group norm (num_groups or group_size)"),
    "rms": NormEntry(layers.RMSNorm, {}, doc="RMS norm over features"),
    "ghost_batch": NormEntry(layers.GhostBatchNorm, {}, doc="batch norm over virtual batches"),
    "batch_renorm": NormEntry(layers.BatchRenorm, {}, doc="batch renormalization"),
    "frozen_batch": NormEntry(layers.FrozenBatchNorm, {}, doc="batch norm with fixed statistics"),
    "l1_batch": NormEntry(layers.LpBatchNorm, {"p": 1}, doc="l1 batch norm"),
    "l2_batch": NormEntry(layers.LpBatchNorm, {"p": 2}, doc="l2 batch norm (= batch norm, l_p code path)"),
    "linf_batch": NormEntry(layers.LpBatchNorm, {"p": "inf"}, doc="l_inf batch norm"),
    "noisy_batch": NormEntry(layers.NoisyBatchNorm, {}, doc="batch norm + non-stationary noise"),
    "frn": NormEntry(layers.FilterResponseNorm, {}, doc="filter response norm + TLU"),
    "evonorm_b0": NormEntry(layers.EvoNormB0, {}, doc="EvoNorm-B0"),
    "evonorm_s0": NormEntry(layers.EvoNormS0, {}, doc="EvoNorm-S0"),
    "switchable": NormEntry(layers.SwitchableNorm, {}, doc="switchable norm (IN/LN/BN mix)"),
    "local_response": NormEntry(layers.LocalResponseNorm, {}, doc="local response norm"),
    "weight": NormEntry(layers.Identity, {}, reparam="weight", doc="weight normalization of kernels"),
    "weight_std": NormEntry(layers.Identity, {}, reparam="weight_std", doc="weight standardization"),
    "spectral": NormEntry(layers.Identity, {}, reparam="spectral", doc="spectral normalization"),
}
NORM_NAMES = tuple(_ALL_NORMS)
# Options that only make sense for some norms; models may pass `axis_name` to any norm and it is
# dropped where the norm has no cross-device statistics.
_SOFT_OPTIONS = ("axis_name",)


def _fields(layer: type[nn.Module]) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(layer) if f.name not in ("parent", "name"))


@dataclasses.dataclass(frozen=True)
class NormFactory:
  name: str
  options: dict
  reparam: str | None

  @property
  def layer(self) -> type[nn.Module]:
    return _ALL_NORMS[self.name].layer

  @property
  def replaces_activation(self) -> bool:
    """FRN and EvoNorm include their own nonlinearity: models skip the ReLU after them."""
    return bool(getattr(self.layer, "replaces_activation", False))

  @property
  def uses_batch_stats(self) -> bool:
    return "momentum" in _fields(self.layer) or self.reparam == "spectral"

  def __call__(self, **module_kwargs: Any) -> nn.Module:
    return self.layer(**self.options, **module_kwargs)


def get_norm_entry(name: str) -> NormEntry:
  if name not in _ALL_NORMS:
    raise ValueError(f"unknown norm {name!r}; valid norms: {', '.join(NORM_NAMES)}")
  return _ALL_NORMS[name]


def valid_options(name: str) -> tuple[str, ...]:
  return _fields(get_norm_entry(name).layer)


def make_norm(name: str, **options: Any) -> NormFactory:
  """Factory for norm `name` with `options` (e.g. num_groups=8, momentum=0.9, virtual_batch_size=4)."""
  entry = get_norm_entry(name)
  fields = _fields(entry.layer)
  opts = dict(entry.defaults)
  for key, value in options.items():
    if key in fields:
      opts[key] = value
    elif key not in _SOFT_OPTIONS:
      raise ValueError(f"norm {name!r} has no option {key!r}; valid options: {', '.join(fields) or '(none)'}")
  return NormFactory(name, opts, entry.reparam)
