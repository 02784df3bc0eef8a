"""Optimizers and learning-rate schedules from config keys (optax).

    schedule = make_schedule(config)     # step -> learning rate
    tx = make_optimizer(config)          # optax.GradientTransformation

Weight decay is applied to kernels only (params with ndim > 1), never to norm scales/biases or
biases: `adamw` decouples it (AdamW), the others add `weight_decay * w` to the gradient (L2).
"""
from __future__ import annotations

import jax
import optax

from normlab.train.validate import OPTIMIZERS, SCHEDULES


def make_schedule(config) -> optax.Schedule:
  lr, steps = float(config.learning_rate), int(config.num_steps)
  if config.schedule == "constant":
    return optax.constant_schedule(lr)
  if config.schedule == "cosine":
    return optax.cosine_decay_schedule(lr, decay_steps=steps)
  if config.schedule == "warmup_cosine":
    warmup = int(config.warmup_steps)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=warmup, decay_steps=steps, end_value=0.0)
  raise ValueError(f"unknown schedule {config.schedule!r}; valid choices: {', '.join(SCHEDULES)}")


def decay_mask(params):
  """True for kernels (ndim > 1): the params weight decay applies to."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config) -> optax.GradientTransformation:
  schedule = make_schedule(config)
  wd = float(config.weight_decay)
  parts = []
  if config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
  if config.optimizer == "adamw":
    parts.append(optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2, weight_decay=wd, mask=decay_mask))
  else:
    if wd > 0:
      parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    if config.optimizer == "sgd":
      parts.append(optax.sgd(schedule))
    elif config.optimizer == "momentum":
      parts.append(optax.sgd(schedule, momentum=float(config.momentum), nesterov=bool(config.nesterov)))
    elif config.optimizer == "adam":
      parts.append(optax.adam(schedule, b1=config.adam_b1, b2=config.adam_b2))
    else:
      raise ValueError(f"unknown optimizer {config.optimizer!r}; valid choices: {', '.join(OPTIMIZERS)}")
  return optax.chain(*parts) if len(parts) > 1 else parts[0]
