"""A small measured training loop for the analysis studies, built on normlab.train's pieces.

It trains with `normlab.train.step.train_step` (the project's own step: same loss, optimizer,
non-finite handling) on one device, and every `measure_every` steps calls

    measure(run, step, state, batch, new_state) -> dict of numbers

with the state before and after that very step (so ICS sees the real update). `batch_loss(run)` /
`loss_fn(run, state, batch)` give the training loss as a function of the params on a batch
(train-mode norms with the batch's statistics), which is what `ics` and `landscape` differentiate.

Config keys (an ml_collections ConfigDict or any attribute object): model, model_options, norm,
norm_options, dataset, normalize_inputs, batch_size, optimizer, learning_rate, momentum, nesterov,
adam_b1, adam_b2, schedule, warmup_steps, weight_decay, grad_clip_norm, num_steps, seed.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from normlab.analysis.capture import module_call_order


@dataclasses.dataclass
class Run:
  config: Any
  model: Any
  tx: Any
  schedule: Callable
  state: Any
  train_ds: Any
  num_classes: int
  order: tuple
  step_fn: Callable

  def batch(self, step: int) -> dict:
    from normlab.data import train_batch
    c = self.config
    return train_batch(self.train_ds, int(c.batch_size), int(c.seed), step,
                       normalize_inputs=bool(c.normalize_inputs))


def _options(d) -> dict:
  return dict(d.to_dict() if hasattr(d, "to_dict") else (d or {}))


def setup(config) -> Run:
  """Model, data, optimizer and initial state from `config` (see the module docstring)."""
  from normlab.data import get_dataset_info, load
  from normlab.models import get_model
  from normlab.registry import make_norm
  from normlab.train.optim import make_optimizer, make_schedule
  from normlab.train.state import create_state, init_variables
  from normlab.train.step import train_step

  info = get_dataset_info(config.dataset)
  model = get_model(config.model, num_classes=info.num_classes,
                    norm=make_norm(config.norm, **_options(config.get("norm_options"))),
                    **_options(config.get("model_options")))
  train_ds = load(config.dataset, "train")
  tx, schedule = make_optimizer(config), make_schedule(config)
  run = Run(config, model, tx, schedule, None, train_ds, info.num_classes, (), None)
  x0 = run.batch(0)["x"]
  variables = init_variables(model, x0, int(config.seed))
  run.state = create_state(variables, tx)
  run.order = module_call_order(model, variables, jnp.asarray(x0), train=True)
  run.step_fn = jax.jit(functools.partial(
      train_step, apply_fn=model.apply, tx=tx, schedule=schedule, num_classes=info.num_classes,
      seed=int(config.seed), nan_policy="stop", axis_name=None))
  return run


def batch_loss(run: Run) -> Callable[..., jax.Array]:
  """(params, batch_stats, x, y) -> mean cross-entropy: train-mode norms (the batch's statistics),
  the same loss normlab.train's step differentiates. Pure: jit it, or close over all but params."""
  from normlab.train.step import cross_entropy
  rngs = {"noise": jax.random.key(0), "dropout": jax.random.key(1)}

  def f(params, batch_stats, x, y):
    logits, _ = run.model.apply({"params": params, "batch_stats": batch_stats}, x, train=True, rngs=rngs,
                                mutable=["batch_stats"])
    return jnp.mean(cross_entropy(logits, y, run.num_classes))
  return f


def loss_fn(run: Run, state, batch) -> Callable[[Any], jax.Array]:
  """params -> the training loss on `batch` with `state`'s running statistics (see `batch_loss`)."""
  f = batch_loss(run)
  x, y = jnp.asarray(batch["x"]), jnp.asarray(batch["y"])
  return lambda params: f(params, state.batch_stats, x, y)


def train(config, measure: Callable | None = None, *, measure_every: int = 0, log: Callable = print):
  """Trains for config.num_steps; returns (history, run). history: one dict per measured step
  (step, train_loss, train_accuracy + what `measure` returned) and 'curve': per-step loss/accuracy."""
  run = setup(config)
  history, curve = [], []
  t0 = time.time()
  steps = int(config.num_steps)
  for step in range(steps):
    batch = run.batch(step)
    new_state, metrics = run.step_fn(run.state, {"x": jnp.asarray(batch["x"]), "y": jnp.asarray(batch["y"])})
    if int(new_state.nonfinite_step) >= 0:
      log(f"  step {step}: non-finite loss/gradient, stopping")
      break
    loss, acc = float(metrics["train_loss"]), float(metrics["train_accuracy"])
    curve.append({"step": step, "train_loss": loss, "train_accuracy": acc})
    if measure is not None and measure_every > 0 and (step % measure_every == 0 or step == steps - 1):
      rec = {"step": step, "train_loss": loss, "train_accuracy": acc}
      rec.update(measure(run, step, run.state, batch, new_state))
      history.append(rec)
      log(f"  step {step:5d} loss {loss:.4f} acc {acc:.3f} ({time.time() - t0:.0f} s)")
    run.state = new_state
  return {"measured": history, "curve": curve}, run


def to_numpy(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), jax.device_get(tree))


def train_grid(config, make_measure: Callable[[Run], Callable], *, log: Callable = print) -> dict:
  """Every run in `config.runs` (name -> training keys) with every norm in `config.norms`, measured
  every `config.measure_every` steps by `make_measure(run)` (called once per training run, so it can
  jit for that model). Returns {name: {norm: history}} (see `train`)."""
  out = {}
  for name, run_cfg in config.runs.items():
    out[name] = {}
    for norm in config.norms:
      c = run_cfg.copy_and_resolve_references()
      c.unlock()
      c.norm = norm
      log(f"{name} norm={norm}: {c.model} {dict(_options(c.get('model_options')))} on {c.dataset}, "
          f"{c.optimizer} lr={c.learning_rate}, {c.num_steps} steps")
      cache = {}

      def measure(run, step, state, batch, new_state, cache=cache):
        if "fn" not in cache:
          cache["fn"] = make_measure(run)
        return cache["fn"](run, step, state, batch, new_state)
      hist, _ = train(c, measure, measure_every=int(config.measure_every), log=log)
      out[name][norm] = hist
  return out
