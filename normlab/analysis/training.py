"""A small measured training loop for the analysis studies, built on normlab.train's pieces.

It trains with `normlab.train.step.train_step` (the project's own step: same loss, optimizer,
per-step RNGs, non-finite handling) on one device, and every `measure_every` steps calls

    measure(run, step, state, batch, new_state) -> dict of numbers

with the state before and after that very step (so ICS sees the real update). `batch_loss(run)` /
`loss_fn(run, state, batch)` give the training loss as a function of the params on a batch
(train-mode norms with the batch's statistics), which is what `ics` and `landscape` differentiate.

Config keys (an ml_collections ConfigDict or any attribute object): model, model_options, norm,
norm_options, norm_placement (default 'before_activation', as in normlab.train), dataset,
normalize_inputs, batch_size, optimizer, learning_rate, momentum, nesterov, adam_b1, adam_b2, schedule,
warmup_steps, weight_decay, grad_clip_norm, num_steps, seed.

Randomness follows normlab.train: init from `init_variables`' keys, and at step s the 'noise' and
'dropout' RNGs of `step_rngs(seed, s)` (what `train_step` folds in), so noisy BN and dropout models
run here exactly as under scripts/train.py.

Inputs may be arrays or {'x': (N, T, F), 'mask': (N, T)} (the RNNs' padding masks, passed to the
model as `model(x['x'], mask=x['mask'])`); `Run.apply` is the apply function for either kind.
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
  apply: Callable | None = None           # model.apply, or its dict-input wrapper (see the module docstring)
  batch_fn: Callable | None = None        # (run, step) -> {'x', 'y'}, replacing the default batches

  def batch(self, step: int) -> dict:
    if self.batch_fn is not None:
      return self.batch_fn(self, step)
    from normlab.data import train_batch
    c = self.config
    return train_batch(self.train_ds, int(c.batch_size), int(c.seed), step,
                       normalize_inputs=bool(c.normalize_inputs))


def _options(d) -> dict:
  return dict(d.to_dict() if hasattr(d, "to_dict") else (d or {}))


def step_rngs(seed: int, step) -> dict:
  """{'noise', 'dropout'} keys of step `step`: the ones `normlab.train.step.train_step` uses on one
  device (fold_in(key(seed), step), split in two)."""
  from normlab.train.state import make_key
  noise, dropout = jax.random.split(jax.random.fold_in(make_key(int(seed)), step))
  return {"noise": noise, "dropout": dropout}


def _apply_fn(model, x0) -> Callable:
  if not isinstance(x0, dict):
    return model.apply

  def apply(variables, inp, **kw):
    return model.apply(variables, inp["x"], mask=inp["mask"], **kw)
  return apply


def _init_variables(model, x0, seed: int) -> dict:
  """normlab.train.state.init_variables, also for dict inputs (the same keys: params, noise, dropout)."""
  from normlab.train.state import init_variables, make_key
  if not isinstance(x0, dict):
    return init_variables(model, x0, seed)
  keys = jax.random.split(jax.random.fold_in(make_key(seed), 2**31 - 1), 3)
  rngs = {"params": keys[0], "noise": keys[1], "dropout": keys[2]}
  return jax.jit(lambda r, inp: model.init(r, inp["x"], mask=inp["mask"], train=False))(
      rngs, jax.tree.map(jnp.asarray, x0))


def setup(config, *, batch_fn: Callable | None = None) -> Run:
  """Model, data, optimizer and initial state from `config` (see the module docstring).
  `batch_fn(run, step) -> {'x', 'y'}` replaces the default (seed, step) training batches."""
  from normlab.data import get_dataset_info, load
  from normlab.models import get_model
  from normlab.registry import make_norm
  from normlab.train.optim import make_optimizer, make_schedule
  from normlab.train.state import create_state
  from normlab.train.step import train_step

  seed = int(config.seed)
  info = get_dataset_info(config.dataset)
  model = get_model(config.model, num_classes=info.num_classes,
                    norm=make_norm(config.norm, **_options(config.get("norm_options"))),
                    placement=str(config.get("norm_placement", "before_activation")),
                    **_options(config.get("model_options")))
  train_ds = load(config.dataset, "train")
  tx, schedule = make_optimizer(config), make_schedule(config)
  run = Run(config, model, tx, schedule, None, train_ds, info.num_classes, (), None, batch_fn=batch_fn)
  x0 = run.batch(0)["x"]
  run.apply = _apply_fn(model, x0)
  variables = _init_variables(model, x0, seed)
  run.state = create_state(variables, tx)
  if isinstance(x0, dict):
    args, kwargs = (jnp.asarray(x0["x"]),), {"mask": jnp.asarray(x0["mask"])}
  else:
    args, kwargs = (jnp.asarray(x0),), {}
  run.order = module_call_order(model, variables, *args, train=True, rngs=step_rngs(seed, 0), **kwargs)
  run.step_fn = jax.jit(functools.partial(
      train_step, apply_fn=run.apply, tx=tx, schedule=schedule, num_classes=info.num_classes,
      seed=seed, nan_policy="stop", axis_name=None))
  return run


def batch_loss(run: Run, step: int = 0) -> Callable[..., jax.Array]:
  """(params, batch_stats, x, y) -> mean cross-entropy: train-mode norms (the batch's statistics,
  step `step`'s noise/dropout RNGs), the same loss normlab.train's step differentiates. Pure: jit it,
  or close over all but params."""
  from normlab.train.step import cross_entropy
  rngs = step_rngs(int(run.config.seed), step)
  apply = run.apply or run.model.apply

  def f(params, batch_stats, x, y):
    logits, _ = apply({"params": params, "batch_stats": batch_stats}, x, train=True, rngs=rngs,
                      mutable=["batch_stats"])
    return jnp.mean(cross_entropy(logits, y, run.num_classes))
  return f


def loss_fn(run: Run, state, batch) -> Callable[[Any], jax.Array]:
  """params -> the training loss on `batch` with `state`'s running statistics (see `batch_loss`)."""
  f = batch_loss(run)
  x, y = jax.tree.map(jnp.asarray, batch["x"]), jnp.asarray(batch["y"])
  return lambda params: f(params, state.batch_stats, x, y)


def train(config, measure: Callable | None = None, *, measure_every: int = 0, log: Callable = print,
          batch_fn: Callable | None = None):
  """Trains for config.num_steps; returns (history, run). history: 'measured', one dict per measured
  step (step, train_loss, train_accuracy + what `measure` returned; every `measure_every` steps and at
  the last); 'curve': per-step loss/accuracy; 'diverged_at': the first non-finite step (training stops
  there) or None. `batch_fn`: see `setup`."""
  run = setup(config, batch_fn=batch_fn)
  history, curve = [], []
  t0 = time.time()
  steps = int(config.num_steps)
  diverged = None
  for step in range(steps):
    batch = run.batch(step)
    new_state, metrics = run.step_fn(run.state, jax.tree.map(jnp.asarray, {"x": batch["x"], "y": batch["y"]}))
    if int(new_state.nonfinite_step) >= 0:
      log(f"  step {step}: non-finite loss/gradient, stopping")
      diverged = step
      break
    loss, acc = float(metrics["train_loss"]), float(metrics["train_accuracy"])
    curve.append({"step": step, "train_loss": loss, "train_accuracy": acc})
    if measure is not None and measure_every > 0 and (step % measure_every == 0 or step == steps - 1):
      rec = {"step": step, "train_loss": loss, "train_accuracy": acc}
      rec.update(measure(run, step, run.state, batch, new_state))
      history.append(rec)
      log(f"  step {step:5d} loss {loss:.4f} acc {acc:.3f} ({time.time() - t0:.0f} s)")
    run.state = new_state
  return {"measured": history, "curve": curve, "diverged_at": diverged}, run


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
