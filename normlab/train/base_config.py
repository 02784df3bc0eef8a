"""normlab.train's config keys and their defaults: the one source of the schema.

`normlab.train.validate` checks a config against `get_base_config()`: the same keys, each value of
the type of its default (a ConfigDict default: a dict of options); names come from the registries.
configs/common.py (the experiment configs' presets) builds on it.
"""
from __future__ import annotations

import ml_collections as mlc


def get_base_config() -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  # Model: a name from normlab.models.MODEL_NAMES; options are its constructor fields.
  c.model = "mlp"
  c.model_options = mlc.ConfigDict()
  # Norm: a name from normlab.registry.NORM_NAMES; options are its layer fields (not axis_name: see bn_mode).
  c.norm = "batch"
  c.norm_options = mlc.ConfigDict()
  c.norm_placement = "before_activation"  # or "after_activation"
  c.bn_mode = "sync"  # "sync": batch statistics over the global batch; "local": over each device's shard
  # Data: a name from normlab.data.DATASET_NAMES.
  c.dataset = "mnist1d"
  c.data_dir = ""  # "" = $NORMLAB_DATA_DIR, else ~/.cache/normlab/tfds
  c.augment = False  # random crop (pad 4) + horizontal flip, for images
  c.normalize_inputs = False  # per-channel mean/std of the dataset
  c.batch_size = 128  # global: split over the devices (must divide evenly)
  c.eval_batch_size = 512  # global; the last eval batch is padded and masked
  # Optimization.
  c.optimizer = "momentum"  # sgd | momentum | adam | adamw
  c.learning_rate = 0.1  # peak learning rate
  c.momentum = 0.9  # for "momentum"
  c.nesterov = False
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.schedule = "cosine"  # constant | cosine (to 0 at num_steps) | warmup_cosine
  c.warmup_steps = 0  # for warmup_cosine (must be > 0 there)
  c.weight_decay = 0.0  # on kernels only; decoupled for adamw, L2 otherwise
  c.grad_clip_norm = 0.0  # 0 = no clipping
  c.label_smoothing = 0.0
  c.num_steps = 1000
  # Bookkeeping (in steps).
  c.eval_every = 500  # plus at the end
  c.log_every = 50
  c.checkpoint_every = 500  # plus at the end
  c.keep_checkpoints = 2
  c.seed = 0  # model init, data order (with the step) and noise/dropout (with the step)
  c.nan_policy = "stop"  # "stop": stop at the first non-finite loss/grad; "skip": skip that update
  c.num_devices = 0  # 0 = all of jax.devices(); else the first N
  # Where num_devices runs: "auto" (real if that many exist, else emulated), "real", or "emulated" (one
  # device runs the N devices' math: normlab.train.devices).
  c.devices = "auto"
  c.debug_nan_at_step = 0  # testing: >0 makes the loss NaN at that step (1-based)
  return c
