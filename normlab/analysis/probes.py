"""Probes of a trained or training run, for the studies in experiments/: test metrics in eval and train mode
(`Evaluator`), the norm layers' outputs (`norm_outputs`), running statistics recollected without noise
(`clean_batch_stats`), per-unit quantiles of the norm layers' outputs over training (`distribution_probe`, a
`normlab.analysis.training.train` measure) and their drift (`drift`).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # of each probed unit's values (distribution_probe)


def cfg_copy(cfg, **overrides):
  """An unlocked deep copy of a ConfigDict with `overrides` set."""
  c = cfg.copy_and_resolve_references()
  c.unlock()
  for k, v in overrides.items():
    c[k] = v
  return c


class Evaluator:
  """Accuracy / loss of a run's state on fixed inputs (default: the config's test split).

  `__call__`: eval mode (running statistics) through normlab.train's own eval step, padded batches.
  `both(state, batch_size, examples=n)`: train mode (each batch of `batch_size` normalized with its own
  batch statistics; running statistics untouched) and eval mode on exactly the same full batches (the
  first n examples; default: as many full batches as fit), plus max |logits_train - logits_eval|. `inputs` may be
  an array or a dict of arrays (leading axis N).
  """

  def __init__(self, run, split: str = "test", batch_size: int = 512, *, inputs=None,
               labels=None):
    from normlab.train.step import eval_step
    c = run.config
    if inputs is None:
      from normlab.data import load
      from normlab.data.batching import get_batch
      ds = load(c.dataset, split)
      b = get_batch(ds, np.arange(len(ds)), normalize_inputs=bool(c.normalize_inputs))
      inputs, labels = b["x"], b["y"]
    self.x, self.y = inputs, np.asarray(labels)
    self.batch_size = int(batch_size)
    apply = run.apply
    self._eval = jax.jit(lambda st, batch: eval_step(st, batch, apply_fn=apply, num_classes=run.num_classes,
                                                     axis_name=None))

    def logits_train(params, batch_stats, x, key):
      out, _ = apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                     rngs={"noise": key, "dropout": key}, mutable=["batch_stats"])
      return out

    def logits_eval(params, batch_stats, x):
      return apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    self._logits_train = jax.jit(logits_train)
    self._logits_eval = jax.jit(logits_eval)

  def _take(self, idx):
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[idx]), self.x)

  def __call__(self, state) -> dict[str, float]:
    n, bs = len(self.y), self.batch_size
    tot = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    for s in range(0, n, bs):
      k = min(n, s + bs) - s
      idx = np.zeros(bs, np.int64)
      idx[:k] = np.arange(s, s + k)
      mask = (np.arange(bs) < k).astype(np.float32)
      out = jax.device_get(self._eval(state, {"x": self._take(idx), "y": jnp.asarray(self.y[idx]),
                                              "mask": jnp.asarray(mask)}))
      for key in tot:
        tot[key] += float(out[key])
    return {"loss": tot["loss_sum"] / tot["count"], "accuracy": tot["correct"] / tot["count"]}

  def both(self, state, batch_size: int, seed: int = 0, examples: int | None = None) -> dict[str, Any]:
    n = (len(self.y) // batch_size) * batch_size if examples is None else int(examples)
    if n % batch_size or n > len(self.y):
      raise ValueError(f"examples={n} must be a multiple of batch_size={batch_size} and at most {len(self.y)}")
    out = {"train_mode": [], "eval_mode": []}
    max_diff = 0.0
    for i, s in enumerate(range(0, n, batch_size)):
      x = self._take(np.arange(s, s + batch_size))
      key = jax.random.fold_in(jax.random.key(seed), i)
      lt = np.asarray(self._logits_train(state.params, state.batch_stats, x, key), np.float64)
      le = np.asarray(self._logits_eval(state.params, state.batch_stats, x), np.float64)
      max_diff = max(max_diff, float(np.max(np.abs(lt - le))))
      out["train_mode"].append(lt)
      out["eval_mode"].append(le)
    y = self.y[:n]
    res = {"examples": n, "max_abs_logit_diff": max_diff}
    for mode, parts in out.items():
      logits = np.concatenate(parts)
      logp = logits - logits.max(1, keepdims=True)
      logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
      res[mode] = {"loss": float(-np.mean(logp[np.arange(n), y])),
                   "accuracy": float(np.mean(np.argmax(logits, 1) == y))}
    return res


PROBE_SITES = ("normed", "preact")  # a norm layer's output, or its input


def norm_outputs(model, site: str = "normed") -> Callable:
  """A jitted fn(variables, x, key) -> {norm layer: its output (site 'normed') or its input ('preact')},
  train mode (batch statistics, the 'noise' RNG = key), read from what the models sow (`<name>_normed`,
  `<name>_preact`, normlab.models.common.norm_act): a forward pass only. (normlab.analysis.capture gives
  the same values plus gradients, at the cost of a backward pass and a larger compile; these studies
  need only the values.)"""
  from normlab.errors import UserError
  from normlab.models.common import flatten_intermediates
  if site not in PROBE_SITES:
    raise UserError(f"probe site {site!r} is not one of {', '.join(PROBE_SITES)}")
  suffix = f"_{site}"

  def f(variables, x, key):
    _, state = model.apply(variables, x, train=True, rngs={"noise": key, "dropout": key},
                           mutable=["batch_stats", "intermediates"])
    flat = flatten_intermediates(state["intermediates"])
    return {k[: -len(suffix)]: v for k, v in flat.items() if k.endswith(suffix)}
  return jax.jit(f)


def clean_batch_stats(run, params, num_batches: int, clean_norm: str = "batch"):
  """Running statistics recollected without noise: the run's model rebuilt with `clean_norm` at
  momentum 0 (same parameter names; for noisy BN, BN itself), applied in train mode to the first
  `num_batches` training batches; each layer's batch mean and variance are averaged over the batches
  (equal weights, as "precise BN" does). Returns the run's own tree when it holds no statistics."""
  from normlab.train.build import build_model
  start = run.state.batch_stats
  if not jax.tree_util.tree_leaves(start):
    return start
  model = build_model(cfg_copy(run.config, norm=clean_norm, norm_options={"momentum": 0.0}), run.num_classes)

  @jax.jit
  def batch_moments(batch_stats, x):
    _, upd = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                         rngs={"noise": jax.random.key(0), "dropout": jax.random.key(0)}, mutable=["batch_stats"])
    return upd["batch_stats"]
  total = None
  for k in range(int(num_batches)):
    new = batch_moments(start, jax.tree.map(jnp.asarray, run.batch(k)["x"]))
    total = new if total is None else jax.tree.map(jnp.add, total, new)
  return jax.tree.map(lambda a: a / int(num_batches), total)


def distribution_probe(config) -> Callable:
  """extra(run, step, new_state) -> quantiles of the first `dist_units` units of every norm layer's
  output (or input, with config.probe_site = 'preact') on a fixed batch of training examples, train
  mode with the step's noise; means and stds of all units."""
  from normlab.data import load
  from normlab.data.batching import get_batch
  cache: dict[str, Any] = {}

  def extra(run, step, new_state):
    if "fn" not in cache:
      ds = load(run.config.dataset, "train")
      b = get_batch(ds, np.arange(min(len(ds), int(config.dist_batch))),
                    normalize_inputs=bool(run.config.normalize_inputs))
      cache["x"] = jnp.asarray(b["x"])
      cache["fn"] = norm_outputs(run.model, str(config.get("probe_site", "normed")))
    key = jax.random.fold_in(jax.random.key(int(run.config.seed) + 1000), step)
    outs = cache["fn"]({"params": new_state.params, "batch_stats": new_state.batch_stats}, cache["x"], key)
    out = {}
    for layer, act in jax.device_get(outs).items():
      a = np.asarray(act, np.float64)
      a = a.reshape(-1, a.shape[-1])
      units = range(min(int(config.dist_units), a.shape[-1]))
      out[layer] = {"q": [np.quantile(a[:, u], QUANTILES).tolist() for u in units],
                    "mean": a.mean(0).tolist(), "std": a.std(0).tolist()}
    return {"dist": out}
  return extra


def drift(measured: list[dict]) -> dict[str, float]:
  """Distributional instability per layer: over the measured steps, the std of each unit's mean divided
  by the unit's average std (how far the unit's location wanders, in units of its spread), plus the
  std of log(unit std); averaged over all units of the layer. Step 0's probe (after one step) included."""
  layers = list(measured[0]["dist"]) if measured else []
  out = {}
  for layer in layers:
    means = np.array([m["dist"][layer]["mean"] for m in measured])  # (checkpoints, C)
    stds = np.array([m["dist"][layer]["std"] for m in measured])
    loc = np.std(means, 0) / np.maximum(np.mean(stds, 0), 1e-12)
    scale = np.std(np.log(np.maximum(stds, 1e-12)), 0)
    out[layer] = {"location": float(np.mean(loc)), "log_scale": float(np.mean(scale))}
  return out
