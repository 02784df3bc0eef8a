"""Norm names -> Flax layer factories: the one place configs and models pick a norm from.

`make_norm(name, **options)` returns a `NormFactory`; `as_factory(norm)` also accepts any flax module
constructor (`nn.BatchNorm`, `partial(nn.GroupNorm, num_groups=8)`, normlab's layers). Models build
the module with `factory.build(train=..., axis_name=..., name=...)`, which binds
`use_running_average=not train` where the layer has that field, as flax's examples do. A factory's
`reparam` tells models how to build their Dense/Conv kernels ('weight', 'weight_std', 'spectral' or
None). The registry entry holds each norm's facts: whether its centering cancels a preceding bias,
whether it has cross-device statistics (`axis_name`), and its recurrent form (`rnn_norm`).

The registry's defaults are normlab's (`normlab.norms.MOMENTUM`, `normlab.norms.EPS`) over the layer
classes' flax defaults; the table of both, and why they differ, is in `normlab.norms`'s docstring.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn

from normlab import layers
from normlab.errors import unknown
from normlab.norms import EPS, MOMENTUM


@dataclasses.dataclass(frozen=True)
class NormEntry:
  layer: type[nn.Module]
  defaults: dict
  reparam: str | None = None
  doc: str = ""
  bias_cancelling: bool = False  # centering over each channel cancels a per-channel bias before it
  cross_device: bool = False  # statistics span the batch: data-parallel runs pass axis_name (SyncBN)
  rnn_norm: str | None = None  # its per-step form in normlab.models.seqnorm; None: not for RNNs


_M = {"momentum": MOMENTUM}
_E = {"epsilon": EPS}
_BN = {"bias_cancelling": True, "cross_device": True}
_ALL_NORMS: dict[str, NormEntry] = {
    "none": NormEntry(layers.Identity, {}, doc="no normalization", rnn_norm="none"),
    "batch": NormEntry(layers.BatchNorm, _M, doc="batch norm (SyncBN with axis_name)", rnn_norm="batch", **_BN),
    "layer": NormEntry(layers.LayerNorm, _E, doc="layer norm over features", rnn_norm="layer"),
    "instance": NormEntry(layers.InstanceNorm, _E, doc="instance norm over spatial axes", bias_cancelling=True),
    "group": NormEntry(layers.GroupNorm, _E, doc="group norm (num_groups, or group_size with num_groups=None)"),
    "rms": NormEntry(layers.RMSNorm, {}, doc="RMS norm over features"),
    "ghost_batch": NormEntry(layers.GhostBatchNorm, _M, doc="batch norm over virtual batches", bias_cancelling=True),
    "batch_renorm": NormEntry(layers.BatchRenorm, {}, doc="batch renormalization", **_BN),
    "frozen_batch": NormEntry(layers.FrozenBatchNorm, {}, doc="batch norm with fixed statistics"),
    "l1_batch": NormEntry(layers.LpBatchNorm, {"p": 1, **_M}, doc="l1 batch norm", **_BN),
    "l2_batch": NormEntry(layers.LpBatchNorm, {"p": 2, **_M}, doc="l2 batch norm (= batch norm, l_p code path)", **_BN),
    "linf_batch": NormEntry(layers.LpBatchNorm, {"p": "inf", **_M}, doc="l_inf batch norm", **_BN),
    "noisy_batch": NormEntry(layers.NoisyBatchNorm, _M, doc="batch norm + non-stationary noise", **_BN),
    "frn": NormEntry(layers.FilterResponseNorm, {}, doc="filter response norm + TLU"),
    "evonorm_b0": NormEntry(layers.EvoNormB0, _M, doc="EvoNorm-B0", cross_device=True),
    "evonorm_s0": NormEntry(layers.EvoNormS0, {"num_groups": 8}, doc="EvoNorm-S0"),
    "switchable": NormEntry(layers.SwitchableNorm, _M, doc="switchable norm (IN/LN/BN mix)", cross_device=True),
    "local_response": NormEntry(layers.LocalResponseNorm, {}, doc="local response norm"),
    "weight": NormEntry(layers.Identity, {}, reparam="weight", doc="weight normalization of kernels",
                        rnn_norm="none"),
    "weight_std": NormEntry(layers.Identity, {}, reparam="weight_std", doc="weight standardization",
                            rnn_norm="none"),
    "spectral": NormEntry(layers.Identity, {}, reparam="spectral", doc="spectral normalization", rnn_norm="none"),
}
NORM_NAMES = tuple(_ALL_NORMS)
# Options that only make sense for some norms: `axis_name` (the data-parallel mesh axis) is kept only
# where the norm's statistics span the batch (`cross_device`), and dropped elsewhere.
_SOFT_OPTIONS = ("axis_name",)
# flax's fields that the drop-ins keep for signature parity but accept only at flax's default (a one-line
# error otherwise): not listed among a norm's valid options.
_DEFAULT_ONLY = ("axis_index_groups", "force_float32_reductions")
# The usual abbreviations, for the "did you mean" of an unknown norm name.
NORM_ALIASES = {"bn": "batch", "ln": "layer", "in": "instance", "gn": "group", "rmsnorm": "rms",
                "ghost": "ghost_batch", "brn": "batch_renorm", "renorm": "batch_renorm", "wn": "weight",
                "ws": "weight_std", "sn": "spectral", "lrn": "local_response"}
# An option a config sets that unsets another field's default: the layers' num_groups=32 yields to a
# given group_size (the layers then apply the one group-count rule, `checks.check_groups`).
_DISPLACES = {"group_size": "num_groups"}
# flax's own norms: the registry name whose facts they share.
_FLAX_TWINS = {nn.BatchNorm: "batch", nn.LayerNorm: "layer", nn.GroupNorm: "group", nn.InstanceNorm: "instance",
               nn.RMSNorm: "rms"}


def _fields(layer) -> tuple[str, ...]:
  if not dataclasses.is_dataclass(layer):
    return ()
  return tuple(f.name for f in dataclasses.fields(layer) if f.name not in ("parent", "name"))


def _module_class(ctor) -> type | None:
  while isinstance(ctor, functools.partial):
    ctor = ctor.func
  return ctor if isinstance(ctor, type) else None


@dataclasses.dataclass(frozen=True)
class NormFactory:
  """A norm constructor plus its facts. `layer(**options, **kwargs)` builds the module."""
  name: str
  options: dict
  reparam: str | None
  layer: Callable[..., nn.Module] = layers.Identity
  bias_cancelling: bool = False
  cross_device: bool = False
  rnn_norm: str | None = None

  @property
  def fields(self) -> tuple[str, ...]:
    return _fields(_module_class(self.layer))

  @property
  def replaces_activation(self) -> bool:
    """FRN and EvoNorm include their own nonlinearity: models skip the ReLU after them."""
    return bool(getattr(_module_class(self.layer), "replaces_activation", False))

  @property
  def uses_batch_stats(self) -> bool:
    """Whether training updates the `batch_stats` collection."""
    return "use_running_average" in self.fields or self.reparam == "spectral"

  def __call__(self, **module_kwargs: Any) -> nn.Module:
    return self.layer(**self.options, **module_kwargs)

  def build(self, *, train: bool, axis_name: Any = None, name: str | None = None, dtype: Any = None) -> nn.Module:
    """The module for one call site: `use_running_average=not train`, `axis_name` (for norms whose
    statistics span the batch) and the model's compute `dtype`, where the layer has those fields and
    its options do not set them (flax's examples bind them the same way)."""
    kwargs: dict[str, Any] = {"name": name}
    fields = self.fields
    if "use_running_average" in fields:
      kwargs["use_running_average"] = not train
    if axis_name is not None and self.cross_device:
      kwargs["axis_name"] = axis_name
    if dtype is not None and "dtype" in fields and "dtype" not in self.options:
      kwargs["dtype"] = dtype
    return self(**kwargs)


def get_norm_entry(name: str) -> NormEntry:
  if name not in _ALL_NORMS:
    raise ValueError(unknown("norm", name, NORM_NAMES, aliases=NORM_ALIASES))
  return _ALL_NORMS[name]


def entries() -> dict[str, NormEntry]:
  """Every norm name -> its entry (a copy)."""
  return dict(_ALL_NORMS)


def rnn_capable_norms() -> tuple[str, ...]:
  """Norm names with a recurrent (per-step) form."""
  return tuple(n for n, e in _ALL_NORMS.items() if e.rnn_norm is not None)


def valid_options(name: str) -> tuple[str, ...]:
  """The options `make_norm(name, ...)` accepts with other than their default values."""
  return tuple(f for f in _fields(get_norm_entry(name).layer) if f not in _DEFAULT_ONLY)


def make_norm(name: str, **options: Any) -> NormFactory:
  """Factory for norm `name` with `options` (e.g. num_groups=8, momentum=0.9, virtual_batch_size=4)."""
  entry = get_norm_entry(name)
  fields = _fields(entry.layer)
  opts = dict(entry.defaults)
  for key, value in options.items():
    if key in fields and (key not in _SOFT_OPTIONS or entry.cross_device):
      opts[key] = value
    elif key not in _SOFT_OPTIONS:
      raise ValueError(unknown("option", key, valid_options(name), prefix=f"norm {name!r}"))
  for key, displaced in _DISPLACES.items():
    if key in options and displaced in fields and displaced not in options:
      opts[displaced] = None
  return NormFactory(name, opts, entry.reparam, entry.layer, entry.bias_cancelling, entry.cross_device,
                     entry.rnn_norm)


def as_factory(norm: Any) -> NormFactory:
  """A norm name, a `make_norm` factory, or any flax module constructor (a Module class, a
  `functools.partial` of one, or a callable returning a module) -> `NormFactory`."""
  if isinstance(norm, NormFactory):
    return norm
  if isinstance(norm, str):
    return make_norm(norm)
  cls = _module_class(norm)
  if not callable(norm) or (cls is not None and not issubclass(cls, nn.Module)):
    raise ValueError(f"norm must be a norm name ({', '.join(NORM_NAMES)}), a normlab.registry.make_norm "
                     f"factory or a flax module constructor, got {norm!r}")
  twin = next((n for n, e in _ALL_NORMS.items() if e.layer is cls and e.reparam is None), None)
  twin = twin or next((n for c, n in _FLAX_TWINS.items() if cls is not None and issubclass(cls, c)), None)
  entry = _ALL_NORMS.get(twin) if twin else None
  label = cls.__name__ if cls is not None else getattr(norm, "__name__", type(norm).__name__)
  facts = (entry.bias_cancelling, entry.cross_device, entry.rnn_norm) if entry else (False, False, None)
  return NormFactory(label, {}, None, norm, *facts)
