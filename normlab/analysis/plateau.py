"""The measurement behind the studies' convergence rule: the training loss over a fixed training subset,
with the parameters at the end of each tenth of training (a hook of normlab.train's loop).

    hook = SubsetLoss(examples=5000)
    train_and_evaluate(config, workdir, hooks=[hook])
    hook.rows   # [{'step': s, 'done': s + 1, 'subset_loss': L}, ...], one per tenth (10 rows)

The subset is the examples of the run's first ceil(n / B) training batches (`run.batch(0)`, ...; B the
config's batch size, n = min(examples, training-set size)): a fixed set of training examples, whatever
feeds the loop (a dataset, masked sequences, a synthetic stream). The loss is the training loss as the
step computes it (train mode: each batch of B normalized with its own statistics, split over the run's D
devices as the step splits it, so local BN normalizes each device's B/D rows and sync BN all B; the RNG keys
of step 0, without a per-device fold-in, so noise and dropout are fixed), averaged over those batches;
running statistics are not updated. Given
the parameters it is deterministic, so its change between tenths measures training, not minibatch noise.
`on_row(row)` is called with every row as it is measured (e.g. to append it to a file that survives a
restart). experiments/_study.py holds the rule that judges the rows.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

TENTHS = 10


def tenth_ends(num_steps: int) -> set[int]:
  """The 0-based steps after which a tenth of `num_steps` ends (fewer than 10 when num_steps < 10)."""
  return {max(0, round(k * num_steps / TENTHS) - 1) for k in range(1, TENTHS + 1)}


def _on_devices(loss: Callable, devices: int) -> Callable:
  """`loss(params, batch_stats, x, y)` over a batch split into `devices` equal shards, each under `jax.vmap`
  with the step's axis name (normlab.train.step.DATA_AXIS), as the emulated step runs it: the mean of the
  shards' losses. One device is one shard: the model's collectives still need the axis bound."""
  from normlab.train.step import DATA_AXIS, shard_devices

  def f(params, batch_stats, x, y):
    per_device = jax.vmap(lambda xs, ys: loss(params, batch_stats, xs, ys), axis_name=DATA_AXIS)
    return jnp.mean(per_device(*shard_devices((x, y), devices)))
  return f


class SubsetLoss:
  """A normlab.train hook: the fixed-subset training loss at the end of every tenth of training."""

  def __init__(self, examples: int = 5000, on_row: Callable[[dict], None] | None = None):
    if int(examples) < 1:
      raise ValueError(f"SubsetLoss: examples must be a positive count, got {examples!r}")
    self.examples = int(examples)
    self.on_row = on_row
    self.rows: list[dict] = []
    self._batches = None
    self._loss = None

  def start(self, run) -> None:
    from normlab.analysis.training import batch_loss
    size = int(run.config.batch_size)
    n = self.examples
    ds = getattr(run, "train_ds", None)
    if ds is not None and hasattr(ds, "__len__"):
      n = min(n, len(ds))
    self._batches = [jax.tree.map(jnp.asarray, run.batch(k)) for k in range(max(1, math.ceil(n / size)))]
    self._loss = jax.jit(_on_devices(batch_loss(run, step=0), int(getattr(run, "num_devices", 1) or 1)))

  def due(self, step: int, num_steps: int) -> bool:
    return step in tenth_ends(num_steps)

  def value(self, state) -> float:
    """The mean training loss over the subset's batches at `state`'s parameters."""
    losses = [self._loss(state.params, state.batch_stats, b["x"], b["y"]) for b in self._batches]
    return float(np.mean(jax.device_get(losses)))

  def __call__(self, step, before, batch, after, metrics) -> None:
    row = {"step": int(step), "done": int(step) + 1, "subset_loss": self.value(after)}
    self.rows.append(row)
    if self.on_row is not None:
      self.on_row(row)
