"""What the training studies share (noisy_bn, lp_norms, placement, rnn_norms, train_eval_gap).

Training with test evaluation on normlab.analysis.training (`train_with_eval`, `Evaluator`,
`cfg_copy`; `train_each_norm`: the seeds x norms grid of noisy_bn and lp_norms), statistics of the
per-step curves (`tail_mean`, `moving_average`, `steps_to`, `mean_std`), probes of the norm
layers' outputs over training (`norm_outputs`, `make_distribution_probe`, `drift`, `slim_results`), and
the sweep studies' rules for in-memory runs (`curve_converged`, `stat`, `Provenance`: the convergence
rule, mean ± s.e. and the commit/wall-time line of experiments/_sweep_study.py).
"""
from __future__ import annotations

from typing import Any, Callable

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _sweep_study as study
from experiments._report import fmt
from normlab.analysis import training

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # of each probed unit's values (make_distribution_probe)


# ----------------------------------------------------------------------------- training with test evaluation

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
  first n examples; default: as many full batches as fit), plus max |logits_train - logits_eval|. `inputs` may be an array or a dict of arrays (leading axis N).
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


def train_with_eval(config, *, measure_every: int, extra: Callable | None = None, log: Callable = print,
                    eval_batch_size: int = 512, evaluator: Callable | None = None,
                    batches: Callable | None = None) -> tuple[dict, Any]:
  """`normlab.analysis.training.train` with, every `measure_every` steps (and at the end), the test metrics of the state
  *after* the step (eval mode) and `extra(run, step, new_state)` merged in. Rows get 'done' = the
  number of completed steps. `evaluator(run) -> Evaluator` overrides the default test-split one."""
  cache: dict[str, Any] = {}

  def measure(run, step, state, batch, new_state):
    if "ev" not in cache:
      cache["ev"] = evaluator(run) if evaluator is not None else Evaluator(run, "test", eval_batch_size)
    m = cache["ev"](new_state)
    rec = {"done": step + 1, "test_loss": m["loss"], "test_accuracy": m["accuracy"]}
    if extra is not None:
      rec.update(extra(run, step, new_state))
    return rec
  return training.train(config, measure, measure_every=measure_every, log=log, batches=batches)


def train_each_norm(config, *, log: Callable = print, finish: Callable | None = None) -> dict:
  """For every seed in `config.seeds` and norm in `config.norms`: `config.train` with that norm (and
  `config.norm_options[norm]` where given) and seed, trained by `train_with_eval` with the test set
  and `make_distribution_probe(config)` every `config.measure_every` steps. `finish(c, run, history)
  -> dict` adds to each history. Returns {norm: {seed: history}}."""
  results: dict[str, dict] = {}
  options = config.get("norm_options") or {}
  for seed in config.seeds:
    for norm in config.norms:
      c = cfg_copy(config.train, norm=norm, seed=int(seed))
      if norm in options:
        c.norm_options = options[norm].copy_and_resolve_references()
      log(f"seed {seed} norm={norm}: {c.model} {c.model_options.to_dict()} on {c.dataset}, {c.optimizer} "
          f"lr={c.learning_rate}, batch {c.batch_size}, {c.num_steps} steps")
      hist, run = train_with_eval(c, measure_every=int(config.measure_every), extra=make_distribution_probe(config),
                                  log=log)
      if finish is not None:
        hist.update(finish(c, run, hist))
      results.setdefault(norm, {})[int(seed)] = hist
  return results


# ----------------------------------------------------------------------------- curve statistics

def tail_mean(curve: list[dict], key: str, frac: float = 0.1) -> float:
  """Mean of `key` over the last `frac` of the per-step curve (at least one step)."""
  if not curve:
    return float("nan")
  k = max(1, int(round(len(curve) * frac)))
  return float(np.mean([c[key] for c in curve[-k:]]))


def moving_average(values, window: int) -> np.ndarray:
  v = np.asarray(values, np.float64)
  if len(v) == 0:
    return v
  w = max(1, min(int(window), len(v)))
  c = np.cumsum(np.insert(v, 0, 0.0))
  out = np.empty_like(v)
  out[w - 1:] = (c[w:] - c[:-w]) / w
  out[: w - 1] = c[1:w] / np.arange(1, w)
  return out


def steps_to(curve: list[dict], key: str, threshold: float, window: int = 20) -> int | None:
  """First step count at which the `window`-step moving average of `key` reaches `threshold`."""
  ma = moving_average([c[key] for c in curve], window)
  hits = np.nonzero(ma >= threshold)[0]
  return int(hits[0]) + 1 if len(hits) else None


def mean_std(values) -> str:
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  if len(v) == 0:
    return "n/a"
  if len(v) == 1:
    return fmt(v[0])
  return f"{fmt(v.mean())} ± {fmt(v.std(ddof=1))}"


# ----------------------------------------------------------------------------- activation probes

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
  from normlab.train.loop import build_model
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


def make_distribution_probe(config) -> Callable:
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


def slim_measured(measured: list[dict]) -> list[dict]:
  """The measured rows without the per-unit means/stds of every channel (kept: the quantiles of the
  probed units), so results.json stays small."""
  out = []
  for r in measured:
    r = dict(r)
    if "dist" in r:
      r["dist"] = {layer: {"q": d["q"]} for layer, d in r["dist"].items()}
    out.append(r)
  return out


def slim_results(results: dict) -> dict:
  """{norm: {seed: history}} of `train_each_norm` for results.json: each per-step curve thinned to
  every max(1, n // 200)-th step, the measured rows through `slim_measured`."""
  def slim(h):
    return {"curve": h["curve"][:: max(1, len(h["curve"]) // 200)], "measured": slim_measured(h["measured"])}
  return {norm: {seed: slim(h) for seed, h in by_seed.items()} for norm, by_seed in results.items()}


def keep_raw(results, workdir: str) -> str:
  """Pickles the in-memory training results to workdir/raw_results.pkl (not committed) before the report
  is written, so a failure while writing it does not lose the training."""
  import os
  import pickle
  path = os.path.join(workdir, "raw_results.pkl")
  with open(path, "wb") as f:
    pickle.dump(jax.device_get(results), f)
  return path


# ----------------------------------------------------------------------------- the sweep studies' rules, in memory

def curve_change(curve: list[dict]) -> float | None:
  """The convergence rule's relative loss change (experiments/_sweep_study.py) of a per-step curve."""
  return study.loss_change({int(r["step"]): float(r["train_loss"]) for r in curve})


def curve_converged(history: dict, strict: bool = False) -> bool:
  """A run of `training.train` has converged: it did not diverge, and
  strict (the sweep studies' rule, committed first): the mean train loss over the last tenth is within
    CONVERGENCE_TOL of the mean over the tenth before;
  noise-aware (added after the first cpu runs, see NOISE_AWARE_RULE): that, or the two tenths' means differ
    by at most 2 standard errors of their difference (no detectable change: per-step losses of small
    batches near zero loss vary by far more than 2% between windows while lr is near 0)."""
  if history.get("diverged_at") is not None:
    return False
  rows = {int(r["step"]): float(r["train_loss"]) for r in history["curve"]}
  change = study.loss_change(rows)
  if study.is_converged(change, "done") or strict:
    return study.is_converged(change, "done")
  if not rows:
    return False
  total = max(rows)
  late = np.asarray([v for k, v in rows.items() if k > 0.9 * total])
  before = np.asarray([v for k, v in rows.items() if 0.8 * total < k <= 0.9 * total])
  if len(late) < 2 or len(before) < 2:
    return False
  se = float(np.sqrt(late.var(ddof=1) / len(late) + before.var(ddof=1) / len(before)))
  return bool(abs(before.mean() - late.mean()) <= 2.0 * se)


NOISE_AWARE_RULE = ("convergence: the noise-aware rule (the last two tenths' mean train losses within 2% or within 2 "
                    "s.e. of each other); the strict 2% rule, committed first, is shown beside any verdict it changes "
                    "(per-step losses of small batches near zero loss fail it by noise alone)")
_RULE = {"key": "converged"}


def converged(rec: dict) -> bool:
  """Whether a run record passed the convergence rule in force ('converged': noise-aware; inside
  `strict_rule()`: 'converged_strict')."""
  return bool(rec.get(_RULE["key"]))


def record_convergence(history: dict) -> dict:
  """{'loss_change', 'converged' (noise-aware), 'converged_strict'} of a run, for its record."""
  return {"loss_change": curve_change(history["curve"]), "converged": curve_converged(history),
          "converged_strict": curve_converged(history, strict=True)}


def both_rules(build: Callable[[], list]) -> list:
  """The claim rows `build()` makes under the noise-aware convergence rule; where the strict rule (committed
  first) gives another verdict, it is kept beside the new one in the row's 'ours'."""
  rows = build()
  _RULE["key"] = "converged_strict"
  try:
    old = build()
  finally:
    _RULE["key"] = "converged"
  for row, o in zip(rows, old):
    if o["verdict"] != row["verdict"]:
      row["ours"] += f" [verdict under the strict 2% convergence rule, committed first: {o['verdict']}]"
  return rows


def loss_changes(runs) -> str:
  """The runs' 'loss_change' values (the convergence rule's measure) for a report table cell."""
  return ", ".join("-" if r.get("loss_change") is None else f"{r['loss_change']:+.3f}" for r in runs)


def se_str(values, digits: int = 3) -> str:
  """'mean ± s.e.' of the finite `values` with `digits` decimals (losses; accuracies use `stat`)."""
  s = stat(values)
  return "n/a" if s.n == 0 else f"{s.mean:.{digits}f} ± {s.se:.{digits}f}"


def stat(values, converged: bool = True, diverged: int = 0) -> study.Stat:
  """Mean ± s.e. (std over runs / sqrt(runs)) of the finite `values`, as the sweep studies' Stat."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan") if len(v) == 0 else 0.0
  return study.Stat(float(v.mean()) if len(v) else float("nan"), se, int(len(v)), int(diverged), bool(converged))


def flat_record(keys: dict, rec: dict) -> dict:
  """One results.csv row: `keys` (the run's setting) then the record's numbers, dicts one level deep
  ('train_mode' -> 'train_mode_accuracy', ...); lists (curves) are left to results.json."""
  row = dict(keys)
  for k, v in rec.items():
    if isinstance(v, dict):
      row.update({f"{k}_{kk}": vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
    elif not isinstance(v, list):
      row[k] = v
  return row


def summary_csv_rows(config, summ: dict, acc_key: str, extra_keys: tuple[str, ...]) -> list[dict]:
  """results.csv rows, one per run, from a study's summary {norm: [per-seed record]}: the sweep studies'
  columns (eval_error from `acc_key`, in %), then `extra_keys` copied from each record."""
  c = config.train
  return [{"variant": norm, "batch_size": int(c.batch_size), "num_devices": 1, "seed": r["seed"],
           "eval_error": 1 - r[acc_key] / 100, "final_train_loss": r["train_loss"], "converged": r["converged"],
           "train_loss_change": r["train_loss_change"], "steps": r["steps"], "learning_rate": float(c.learning_rate),
           "status": "diverged" if r["diverged_at"] is not None else "done", **{k: r[k] for k in extra_keys}}
          for norm, rs in summ.items() for r in rs]


def write_runs_csv(workdir: str, rows: list[dict]) -> str:
  """workdir/results.csv, one row per run (`flat_record`s), the columns in first-seen order."""
  import csv
  cols = list(dict.fromkeys(k for r in rows for k in r))
  path = os.path.join(workdir, "results.csv")
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
  return path


class Provenance:
  """The commit a study trains at (read when it starts: later commits in the checkout do not change it)
  and its wall time; `finish()` -> {'trained_at', 'wall_s'} for results.json, `note(p)` for the report."""

  def __init__(self):
    self.t0 = time.time()
    self.trained_at = study.provenance("started")

  def finish(self) -> dict:
    return {"trained_at": self.trained_at, "wall_s": round(time.time() - self.t0, 1)}

  @staticmethod
  def note(prov: dict | None) -> str:
    if not prov:
      return "Provenance: not recorded (results from before provenance was kept)."
    return f"Trained at {prov['trained_at']}; wall time {prov['wall_s']:.0f} s."


def train_then_write(train_all: Callable, write: Callable, config, workdir: str, log: Callable = print) -> str:
  """A study's run(): `train_all(config, log)`, then `write(config, results, workdir, provenance=...)` with
  the commit it trained at and its wall time."""
  os.makedirs(workdir, exist_ok=True)
  prov = Provenance()
  results = train_all(config, log)
  return write(config, results, workdir, provenance=prov.finish())
