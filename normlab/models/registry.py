"""Model names -> (class, preset fields): `get_model`, `model_options`, `MODEL_NAMES`."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from normlab.errors import unknown
from normlab.models.common import PLACEMENTS, as_norm, check_placement
from normlab.models.dln import DLN
from normlab.models.mlp import MLP
from normlab.models.resnet import ResNet
from normlab.models.rnn import RNN
from normlab.models.vgg import VGG, VGG_CONFIGS
from normlab.registry import NormFactory  # noqa: F401 (re-exported type)

COMMON_FIELDS = ("num_classes", "norm", "placement", "axis_name")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  cls: type[nn.Module]
  preset: dict  # fields that define this named model: fixed, not options
  doc: str = ""
  defaults: dict = dataclasses.field(default_factory=dict)  # overridable option defaults
  placements: tuple[str, ...] = PLACEMENTS  # models without an activation to place around: one


def _cifar(depth: int) -> dict:
  return {"stage_sizes": ((depth - 2) // 6,) * 3, "block": "basic", "stem": "cifar", "widths": (16, 32, 64)}


def _imagenet(stage_sizes, block: str) -> dict:
  return {"stage_sizes": stage_sizes, "block": block, "stem": "imagenet", "widths": (64, 128, 256, 512)}


_ALL_MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(MLP, {}, "MLP on flattened inputs"),
    "dln": ModelEntry(DLN, {}, "deep linear network", placements=PLACEMENTS[:1]),
    "resnet": ModelEntry(ResNet, {}, "generic ResNet (give stage_sizes, block, stem, widths)"),
    # mnist1d (N, 40, 1): 3 stages of 2 basic blocks, widths 32/64/128, kernel 5.
    "resnet1d": ModelEntry(ResNet, {"stage_sizes": (2, 2, 2), "block": "basic", "stem": "cifar",
                                    "widths": (32, 64, 128)}, "small 1-D ResNet for mnist1d",
                           defaults={"kernel_size": 5, "stem_kernel": 5}),
    "resnet20": ModelEntry(ResNet, _cifar(20), "CIFAR ResNet-20"),
    "resnet32": ModelEntry(ResNet, _cifar(32), "CIFAR ResNet-32"),
    "resnet56": ModelEntry(ResNet, _cifar(56), "CIFAR ResNet-56"),
    "resnet18": ModelEntry(ResNet, _imagenet((2, 2, 2, 2), "basic"), "ImageNet ResNet-18"),
    "resnet34": ModelEntry(ResNet, _imagenet((3, 4, 6, 3), "basic"), "ImageNet ResNet-34"),
    "resnet50": ModelEntry(ResNet, _imagenet((3, 4, 6, 3), "bottleneck"), "ImageNet ResNet-50"),
    "vgg": ModelEntry(VGG, {}, "generic VGG (give config)"),
    "vgg11": ModelEntry(VGG, {"config": VGG_CONFIGS["vgg11"]}, "VGG-11 (Santurkar et al.)"),
    "vgg16": ModelEntry(VGG, {"config": VGG_CONFIGS["vgg16"]}, "VGG-16"),
    "lstm": ModelEntry(RNN, {"cell": "lstm"}, "LSTM classifier", placements=PLACEMENTS[:1]),
    "gru": ModelEntry(RNN, {"cell": "gru"}, "GRU classifier", placements=PLACEMENTS[:1]),
}
MODEL_NAMES = tuple(_ALL_MODELS)


def get_model_entry(name: str) -> ModelEntry:
  if name not in _ALL_MODELS:
    raise ValueError(unknown("model", name, MODEL_NAMES))
  return _ALL_MODELS[name]


def model_options(name: str) -> tuple[str, ...]:
  """The options `get_model(name, ...)` accepts beyond num_classes/norm/placement/axis_name."""
  entry = get_model_entry(name)
  skip = set(COMMON_FIELDS) | set(entry.preset) | {"parent", "name"}
  return tuple(f.name for f in dataclasses.fields(entry.cls) if f.name not in skip)


def get_model(name: str, *, num_classes: int, norm: Any,
              placement: str = "before_activation", axis_name: Any = None, **options: Any) -> nn.Module:
  """Builds model `name` with the injected norm: a norm name, a `make_norm(...)` factory, or any flax
  module constructor (e.g. `flax.linen.BatchNorm` or `functools.partial(nn.GroupNorm, num_groups=8)`)."""
  entry = get_model_entry(name)
  valid = model_options(name)
  for key in options:
    if key not in valid:
      raise ValueError(unknown("option", key, valid, prefix=f"model {name!r}"))
  check_placement(placement, model=name, valid=entry.placements)
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"model {name!r}: num_classes must be a positive int, got {num_classes!r}")
  return entry.cls(num_classes=num_classes, norm=as_norm(norm), placement=placement, axis_name=axis_name,
                   **entry.preset, **{**entry.defaults, **options})
