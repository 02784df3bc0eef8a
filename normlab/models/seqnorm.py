"""Norms for recurrent nets, applied to (N, T, C) sequences with a padding mask (N, T).

'layer' is layer norm per example and step (Ba et al. 2016). 'batch' is recurrent batch norm with
statistics per time step (Cooijmans et al. 2017): running statistics are a (max_steps, C) table
whose size is fixed by the init batch's length; in eval, steps beyond it reuse the last row, and in
training they use batch statistics but update no row. 'batch_shared' keeps one set of statistics for
all steps: in training they are pooled over the batch and the valid steps of the input given.
Padded (masked) steps never enter statistics, and a step with no valid example leaves the running
statistics alone. Scale and bias are shared across steps.
In the RNN cells the recurrence gives these norms one step at a time ((N, 1, C) at time t0), so
training normalizes each step with that step's batch statistics in both batch modes; they differ in
the running statistics used in eval (one row per step vs one row for all). The shared row is then
updated once per step with momentum 1 - (1 - momentum) / K, K = `updates_per_call` = the number of
steps with a valid example, so one call moves it about as far as a single update would, spread
almost evenly over those steps.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from normlab import layers, norms, registry
from normlab.core import Moments, psum

# The per-step forms: those the registry's norms map to (`NormEntry.rnn_norm`), plus shared-statistics BN.
RNN_NORMS = tuple(dict.fromkeys(e.rnn_norm for e in registry.entries().values() if e.rnn_norm)) + ("batch_shared",)


class SequenceBatchNorm(nn.Module):
  """Masked batch norm of x (N, T, C) whose first step is time `t0` (per-step or shared stats)."""
  per_step: bool = True
  max_steps: int = 1
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: Any = None
  use_bias: bool = True

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None, t0=0, updates_per_call=1):
    c, steps = x.shape[-1], x.shape[1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32) if self.use_bias else None
    rows = self.max_steps if self.per_step else 1
    mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((rows, c), jnp.float32))
    var = self.variable("batch_stats", "var", lambda: jnp.ones((rows, c), jnp.float32))
    rows = mean.value.shape[0]
    idx = t0 + jnp.arange(steps) if self.per_step else jnp.zeros((1,), jnp.int32)
    read = jnp.minimum(idx, rows - 1)
    feature_axes = (1, 2) if self.per_step else -1
    if not train:
      running = Moments(mean.value[read], var.value[read])
      if not self.per_step:
        running = Moments(running.mean[0], running.var[0])
      return norms.batch_norm(x, scale, bias, eps=self.epsilon, feature_axes=feature_axes, running=running)
    m = None if mask is None else jnp.asarray(mask)[..., None]
    y, batch = norms.batch_norm(x, scale, bias, eps=self.epsilon, feature_axes=feature_axes,
                                axis_name=self.axis_name, mask=m, return_stats=True)
    if self.is_initializing() or not self.is_mutable_collection("batch_stats"):
      return y
    if m is None:
      valid = jnp.ones(idx.shape, bool)
    else:
      counts = jnp.sum(m[..., 0].astype(jnp.float32), axis=0 if self.per_step else (0, 1))
      valid = psum(counts, self.axis_name).reshape(idx.shape) > 0
    batch = Moments(*(b.reshape(idx.shape + (c,)) for b in batch))
    old = Moments(mean.value[read], var.value[read])
    w = (1.0 - self.momentum) / updates_per_call  # may be traced: update_running_stats wants a float
    new = Moments(*(o + w * (bt.astype(o.dtype) - o) for o, bt in zip(old, batch)))
    new = Moments(*(jnp.where(valid[:, None], n, o) for n, o in zip(new, old)))
    mean.value = mean.value.at[idx].set(new.mean, mode="drop")
    var.value = var.value.at[idx].set(new.var, mode="drop")
    return y


def seq_norm(kind: str, *, name: str, max_steps: int, axis_name: Any = None, use_bias: bool = True,
             options: dict | None = None, updates_per_call=1) -> Callable:
  """Returns f(x (N, T, C), train, mask (N, T), t0) -> normalized x, for `kind` in RNN_NORMS.

  `options` (momentum, epsilon) come from the model's norm factory when its kind matches;
  `updates_per_call` is how often a shared ('batch_shared') norm is updated per model call.
  """
  opts = dict(options or {})
  if kind == "none":
    return lambda x, train, mask, t0: x
  if kind == "layer":
    ln = layers.LayerNorm(epsilon=opts.get("epsilon", 1e-5), use_bias=use_bias, name=name)
    return lambda x, train, mask, t0: ln(x)
  if kind in ("batch", "batch_shared"):
    per_step = kind == "batch"
    bn = SequenceBatchNorm(per_step=per_step, max_steps=max_steps, momentum=opts.get("momentum", 0.9),
                           epsilon=opts.get("epsilon", 1e-5), axis_name=axis_name, use_bias=use_bias, name=name)
    k = 1 if per_step else updates_per_call
    return lambda x, train, mask, t0: bn(x, train=train, mask=mask, t0=t0, updates_per_call=k)
  raise ValueError(f"unknown rnn_norm {kind!r}; valid choices: {', '.join(RNN_NORMS)}")
