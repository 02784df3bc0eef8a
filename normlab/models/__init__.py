"""Flax models with the norm injected: `get_model(name, num_classes=..., norm=make_norm(...))`.

    from normlab.registry import make_norm
    from normlab.models import get_model, flatten_intermediates
    model = get_model("resnet1d", num_classes=10, norm=make_norm("batch"))
    variables = model.init(jax.random.key(0), x, train=False)
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"])
    acts = flatten_intermediates(updates)   # {'stem_preact': ..., 'stage1_block0/norm1_normed': ...}

Every model: fields num_classes, norm, placement ('before_activation' | 'after_activation'),
axis_name (SyncBN), dtype (compute dtype; params stay float32); `__call__(x, train=True, mask=None)`
-> float32 logits (N, num_classes). `mask` is (N,) per example ((N, T) per step for lstm/gru).
"""
from normlab.models.common import PLACEMENTS, flatten_intermediates, norm_layer
from normlab.models.dln import DLN
from normlab.models.mlp import MLP
from normlab.models.registry import MODEL_NAMES, get_model, model_options
from normlab.models.resnet import BasicBlock, Bottleneck, ResNet
from normlab.models.rnn import RNN
from normlab.models.seqnorm import RNN_NORMS, SequenceBatchNorm
from normlab.models.vgg import VGG, VGG_CONFIGS

__all__ = [
    "MODEL_NAMES", "PLACEMENTS", "RNN_NORMS", "VGG_CONFIGS", "BasicBlock", "Bottleneck", "DLN", "MLP",
    "RNN", "ResNet", "SequenceBatchNorm", "VGG", "flatten_intermediates", "get_model", "model_options",
    "norm_layer",
]
