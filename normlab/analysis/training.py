"""The studies' measured training: `normlab.train.train_and_evaluate` in memory, with hooks.

`train(config, measure, measure_every=N)` trains `config` (a full normlab.train config, e.g. from
configs/experiments/_common.py:train_defaults) on the one training loop and, every N steps and at the
last, calls

    measure(run, step, state, batch, new_state) -> dict of numbers

with the state before and after that very step (so ICS sees the real update); `run` is the loop's
`normlab.train.hooks.Run`; the fixed-subset loss of the convergence rule is measured by default
(normlab.analysis.plateau). `batch_loss(run)` / `loss_fn(run, state, batch)` give the training loss as
a function of the params on a batch (train-mode norms with the batch's statistics, the step's noise),
which is what `ics` and `landscape` differentiate; `call_order(run)` the model's layers in call order.

Inputs may be arrays or {'x': (N, T, F), 'mask': (N, T)} (the RNNs' padding masks); `run.apply` is
the apply function for either kind.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp


def step_rngs(seed: int, step) -> dict:
  """{'noise', 'dropout'} keys of step `step`: the ones `normlab.train.step.train_step` uses on one
  device (fold_in(key(seed), step), split in two)."""
  from normlab.train.state import make_key
  noise, dropout = jax.random.split(jax.random.fold_in(make_key(int(seed)), step))
  return {"noise": noise, "dropout": dropout}


def call_order(run) -> tuple:
  """The model's layers in forward call order (normlab.analysis.capture.module_call_order), train mode."""
  from normlab.analysis.capture import module_call_order
  x0 = run.batch(0)["x"]
  variables = {"params": run.init_state.params, "batch_stats": run.init_state.batch_stats}
  if isinstance(x0, dict):
    args, kwargs = (jnp.asarray(x0["x"]),), {"mask": jnp.asarray(x0["mask"])}
  else:
    args, kwargs = (jnp.asarray(x0),), {}
  return module_call_order(run.model, variables, *args, train=True, rngs=step_rngs(int(run.config.seed), 0),
                           **kwargs)


def batch_loss(run, step: int = 0) -> Callable[..., jax.Array]:
  """(params, batch_stats, x, y) -> mean cross-entropy: train-mode norms (the batch's statistics,
  step `step`'s noise/dropout RNGs), the same loss normlab.train's step differentiates. Pure: jit it,
  or close over all but params."""
  from normlab.train.step import cross_entropy
  rngs = step_rngs(int(run.config.seed), step)

  def f(params, batch_stats, x, y):
    logits, _ = run.apply({"params": params, "batch_stats": batch_stats}, x, train=True, rngs=rngs,
                          mutable=["batch_stats"])
    return jnp.mean(cross_entropy(logits, y, run.num_classes))
  return f


def loss_fn(run, state, batch) -> Callable[[Any], jax.Array]:
  """params -> the training loss on `batch` with `state`'s running statistics (see `batch_loss`)."""
  f = batch_loss(run)
  x, y = jax.tree.map(jnp.asarray, batch["x"]), jnp.asarray(batch["y"])
  return lambda params: f(params, state.batch_stats, x, y)


class _Curve:
  """Every step: its loss and accuracy; keeps the run and the latest state (the final one if training
  diverges)."""

  def __init__(self):
    self.rows: list[dict] = []
    self.run = None
    self.last = None

  def start(self, run) -> None:
    self.run = run

  def __call__(self, step, before, batch, after, metrics) -> None:
    m = jax.device_get({k: metrics[k] for k in ("train_loss", "train_accuracy")})
    self.rows.append({"step": step, "train_loss": float(m["train_loss"]),
                      "train_accuracy": float(m["train_accuracy"])})
    self.last = after


def train(config, measure: Callable | None = None, *, measure_every: int = 0, log: Callable = print,
          batches: Callable[[int], dict] | None = None, subset_examples: int = 5000):
  """Trains `config` on normlab.train's loop (in memory); returns (history, run). history:
  'measured', one dict per measured step (step, train_loss, train_accuracy + what `measure` returned;
  every `measure_every` steps and at the last); 'curve': per-step loss/accuracy; 'subset_loss': the
  fixed-subset training loss at the end of every tenth (normlab.analysis.plateau; none with
  subset_examples=0); 'diverged_at': the first non-finite step (0-based; training stops there) or None.
  `batches(step) -> {'x', 'y'}` replaces the config's training batches. `run.state` is the final state
  (the last finite one)."""
  from normlab.analysis.plateau import SubsetLoss
  from normlab.train.errors import TrainingDivergedError
  from normlab.train.hooks import Periodic
  from normlab.train.loop import train_and_evaluate

  curve = _Curve()
  subset = SubsetLoss(subset_examples) if subset_examples else None
  t0 = time.time()

  def record(run, step, before, batch, after, metrics):
    rec = dict(curve.rows[-1])
    rec.update(measure(run, step, before, batch, after))
    log(f"  step {step:5d} loss {rec['train_loss']:.4f} acc {rec['train_accuracy']:.3f} ({time.time() - t0:.0f} s)")
    return rec

  hooks = [curve] + ([subset] if subset is not None else [])
  measured = None
  if measure is not None and measure_every > 0:
    measured = Periodic(int(measure_every), record)
    hooks.append(measured)
  diverged = None
  try:
    train_and_evaluate(config, None, hooks=hooks, batches=batches, progress=False)
  except TrainingDivergedError as e:
    diverged = e.step - 1
    log(f"  step {diverged}: non-finite loss/gradient, stopping")
    curve.run.state = curve.last if curve.last is not None else curve.run.init_state
  rows = measured.rows if measured is not None else []
  return {"measured": rows, "curve": curve.rows, "subset_loss": subset.rows if subset is not None else [],
          "diverged_at": diverged}, curve.run


def lazy_measure(make_measure: Callable[[Any], Callable]) -> Callable:
  """A `measure` for `train` that calls `make_measure(run)` on its first call (once the run's model exists,
  so it can jit for that model) and reuses what it returned for the rest of the run."""
  built = []

  def measure(run, step, state, batch, new_state):
    if not built:
      built.append(make_measure(run))
    return built[0](run, step, state, batch, new_state)
  return measure


def train_with_eval(config, *, measure_every: int, extra: Callable | None = None, log: Callable = print,
                    evaluator: Callable | None = None, batches: Callable | None = None):
  """`train` with, every `measure_every` steps and at the last, the test metrics of the state after the step
  (eval mode; `evaluator(run)` -> a callable state -> {'loss', 'accuracy'}, default the test split's
  normlab.analysis.probes.Evaluator) and `extra(run, step, new_state)` merged in; rows get 'done' = the
  number of completed steps."""
  from normlab.analysis.probes import Evaluator
  built: list = []

  def measure(run, step, state, batch, new_state):
    if not built:
      built.append(evaluator(run) if evaluator is not None else Evaluator(run, "test"))
    m = built[0](new_state)
    rec = {"done": step + 1, "test_loss": m["loss"], "test_accuracy": m["accuracy"]}
    rec.update(extra(run, step, new_state) if extra is not None else {})
    return rec
  return train(config, measure, measure_every=measure_every, log=log, batches=batches)
