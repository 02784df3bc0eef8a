"""BN's problem 3 (seed 000): normalization in RNNs on variable-length sequences, and unseen lengths.

    python -m experiments.rnn_norms --preset=smoke|cpu|gpu --workdir=DIR

MNIST-1D read as a sequence (N, T, 1), T = 40. Every example is truncated to a random length L in [T/2, T] (drawn
per (seed, step) in training, fixed for the test set) and padded; the padding mask goes to the model, so padded steps
carry the state unchanged and never enter batch statistics (normlab.models.rnn). A GRU trains with the recurrent
norm ('rnn_norm') none, layer, batch (per-time-step statistics, Cooijmans et al.) or batch_shared (one set for all
steps), at a small and a large batch_size with the same number of epochs, a cosine schedule and a small
learning-rate grid per (norm, batch_size): the grid runs on the first seed, the rate with the lowest final train loss
is kept, and the other seeds train at it. Test accuracy is eval mode on the training range of lengths and on twice
the training length (every value repeated twice: lengths in [40, 80], never seen in training).
Claims and rules (experiments/_study.py; every claim is gated by convergence):
  * LN works at any batch size: at no B is LN's in-range test accuracy below no norm's by more than 2 s.e.
  * Per-step BN suffers at small batch: d = LN - BN per step; reproduced if d > 2 s.e. at the small B and
    d(small) - d(large) > 2 s.e. and >= SUFFERS_PTS; partly if only the first holds.
  * Per-step BN suffers on unseen long sequences: drop = in-range - long accuracy; effect(LONG_PTS) on drop(BN) -
    drop(LN) at each B: reproduced if both B reproduce, partly if one does (or both are partly).
"""
from __future__ import annotations

import numpy as np

from experiments import _study as S
from normlab.analysis.probes import Evaluator, cfg_copy

TITLE = "Normalization in RNNs with variable-length sequences, and unseen lengths (seed 000, problem 3)"
SUFFERS_PTS = 1.0  # per-step BN's small-batch deficit vs LN must exceed its large-batch deficit by >= this (pts)
LONG_PTS = 1.0     # per-step BN's extra accuracy drop on unseen lengths vs LN's: >= this (pts)
LABELS = {"none": "none", "layer": "LN", "batch": "BN per step", "batch_shared": "BN shared"}
OLD_RULE = "noise_aware"


def _lengths(rng, n, steps, factor):
  base = steps // factor
  return rng.integers(base // 2, base + 1, size=n) * factor


def make_inputs(x: np.ndarray, factor: int, rng) -> dict:
  """x (N, 40, 1) -> {'x': (N, 40 f, 1) with each value repeated f times, zero after the length,
  'mask': (N, 40 f) bool}; lengths uniform in [20, 40] x f."""
  x = np.repeat(np.asarray(x, np.float32), int(factor), axis=1)
  n, steps = x.shape[:2]
  lengths = _lengths(rng, n, steps, int(factor))
  mask = np.arange(steps)[None, :] < lengths[:, None]
  return {"x": (x * mask[..., None]).astype(np.float32), "mask": mask}


def batch_fn(factor: int, c):
  """step -> the training batch of config `c` at that step, as sequences of 40 x `factor` steps."""
  from normlab.data import load, train_batch
  train_ds = load(c.dataset, "train")

  def fn(step):
    b = train_batch(train_ds, int(c.batch_size), int(c.seed), step, normalize_inputs=bool(c.normalize_inputs))
    rng = np.random.default_rng([int(c.seed), int(step), 7])
    return {"x": make_inputs(b["x"], factor, rng), "y": b["y"]}
  return fn


def test_inputs(dataset: str, factor: int, normalize: bool):
  from normlab.data import load
  from normlab.data.batching import get_batch
  ds = load(dataset, "test")
  b = get_batch(ds, np.arange(len(ds)), normalize_inputs=normalize)
  return make_inputs(b["x"], factor, np.random.default_rng(12345)), b["y"]


def run(config, workdir, log=print) -> dict:
  """{B: {norm: {'lr_grid': {lr: record of the first seed}, 'lr': the kept lr, 'runs': [records]}}}."""
  xs, ys = test_inputs(config.train.dataset, 1, bool(config.train.normalize_inputs))
  xl, _ = test_inputs(config.train.dataset, int(config.long_factor), bool(config.train.normalize_inputs))
  prov, out = S.Provenance(), {}

  def one(rnn_norm, bs, seed, lr):
    norm = {"batch_shared": "batch"}.get(rnn_norm, rnn_norm)
    c = cfg_copy(config.train, norm=norm, batch_size=int(bs), seed=int(seed), learning_rate=float(lr),
                 num_steps=max(1, int(round(float(config.epochs) * int(config.train_examples) / int(bs)))))
    c.model_options.rnn_norm = rnn_norm
    log(f"batch_size={bs} rnn_norm={rnn_norm} lr={lr} seed={seed}: {c.num_steps} steps")
    rec, run_, _ = S.train_record(c, log, measure_every=max(1, c.num_steps // int(config.measures)),
                                  batches=batch_fn(1, c),
                                  evaluator=lambda r: Evaluator(r, inputs=xs, labels=ys, batch_size=500))
    rec["long_test_acc"] = Evaluator(run_, inputs=xl, labels=ys, batch_size=500)(run_.state)["accuracy"]
    return rec

  seeds = [int(s) for s in config.seeds]
  for bs in config.batch_sizes:
    for rnn_norm in config.rnn_norms:
      grid = {str(lr): one(rnn_norm, bs, seeds[0], lr) for lr in config.learning_rates}
      best = min(grid, key=lambda k: np.nan_to_num(grid[k]["final_train_loss"], nan=np.inf))
      runs = [grid[best]] + [one(rnn_norm, bs, s, float(best)) for s in seeds[1:]]
      out.setdefault(str(int(bs)), {})[rnn_norm] = {"lr_grid": grid, "lr": float(best), "runs": runs}
  return S.in_memory_data(config, out, prov)


def claims(data, key="converged") -> list[S.Claim]:
  res, norms = data["results"], data["config"]["rnn_norms"]
  bss = [str(int(b)) for b in data["config"]["batch_sizes"]]
  small, large = bss[0], bss[-1]
  acc = lambda b, n, k="test_acc": S.runs_stat(res[b][n]["runs"], lambda r: 100.0 * r[k], key)  # noqa: E731
  out = []
  if "none" in norms and "layer" in norms:
    d = {f"B={b} LN - none": S.diff(acc(b, "layer"), acc(b, "none")) for b in bss}
    bad = any(s.mean < -2 * s.se for s in d.values())
    out.append(S.Claim("Layer norm works in RNNs at any batch size", "for RNNs only LN is relatively effective "
                       "(seed 000)", d, "not reproduced" if bad else "reproduced", unit=" pts"))
  if "layer" in norms and "batch" in norms:
    gap = {b: S.diff(acc(b, "layer"), acc(b, "batch")) for b in bss}
    dd = S.diff(gap[small], gap[large])
    first = gap[small].mean > 2 * gap[small].se
    out.append(S.Claim("Per-time-step BN suffers at small batch sizes", "per-step statistics from few examples are "
                       "unreliable (seed 000, problem 3)",
                       {**{f"B={b} LN - BN": gap[b] for b in bss}, "small - large": dd},
                       ("reproduced" if dd.mean > 2 * dd.se and dd.mean >= SUFFERS_PTS else "partly") if first
                       else "not reproduced", unit=" pts"))
    drop = lambda b, n: S.runs_stat(res[b][n]["runs"], lambda r: 100.0 * (r["test_acc"] - r["long_test_acc"]),  # noqa: E731
                                    key)
    parts = {f"B={b} drop BN - LN": S.diff(drop(b, "batch"), drop(b, "layer")) for b in bss}
    per = [S.effect(LONG_PTS)(s) for s in parts.values()]
    out.append(S.Claim("Per-time-step BN suffers on sequences longer than any seen in training", "'at inference a "
                       "very long example may need statistics never collected in training' (seed 000, problem 3)",
                       parts, "reproduced" if all(v == "reproduced" for v in per) else "partly" if "reproduced" in per
                       or all(v == "partly" for v in per) else "not reproduced", unit=" pts"))
  if "batch" in norms and "batch_shared" in norms:
    out.append(S.Claim("(context) shared-statistics BN vs per-step BN, unseen lengths", "the seed does not compare "
                       "them", {f"B={b} {LABELS[n]}": acc(b, n, "long_test_acc") for b in bss
                                for n in ("batch", "batch_shared")}, "inconclusive", unit="%", gate=False))
  return out


def report(data, workdir) -> str:
  data.setdefault("old_rule", OLD_RULE)
  res, cfg = data["results"], data["config"]
  bss = [b for b in (str(int(b)) for b in cfg["batch_sizes"]) if b in res]
  norms = [n for n in cfg["rnn_norms"] if n in res[bss[0]]]
  acc = lambda b, n, k: S.runs_stat(res[b][n]["runs"], lambda r: 100.0 * r[k])  # noqa: E731
  png = S.errorbar_plot(workdir, "rnn_norms.png", [
      {"title": title, "xlabel": "batch_size", "ylabel": "test accuracy (%)", "logx": 2,
       "series": {LABELS[n]: ([int(b) for b in bss], [acc(b, n, k) for b in bss]) for n in norms}}
      for k, title in (("test_acc", "lengths 20-40 (trained)"), ("long_test_acc", "lengths 40-80 (unseen)"))])
  grid = lambda b, n: ", ".join(f"{lr}: {S.fmt(r['final_train_loss'])}" for lr, r in res[b][n]["lr_grid"].items())  # noqa: E731
  lines = [f"| {b} | {LABELS[n]} | {grid(b, n)} | {res[b][n]['lr']:g} | {acc(b, n, 'test_acc')} | "
           f"{acc(b, n, 'long_test_acc')} |" for b in bss for n in norms]
  S.write_csv(workdir, [{"batch_size": b, "norm": n, "learning_rate": cell["lr"], **r} for b, by in res.items()
                        for n, cell in by.items() for r in cell["runs"]])
  notes = f"""Preset `{cfg['preset']}`: `{cfg['train']['model']}` {cfg['train']['model_options']} on
`{cfg['train']['dataset']}` as a sequence, {cfg['train']['optimizer']}, cosine schedule, {cfg['epochs']} epochs at every
batch_size, learning-rate grid {cfg['learning_rates']} on seed {cfg['seeds'][0]}, seeds {cfg['seeds']} at the kept rate;
unseen lengths: every value repeated {cfg['long_factor']} times. Per-step BN uses each step's running statistics at
inference (steps beyond 40 reuse the last row); shared BN one row for all steps. Accuracies in %, mean ± s.e. over
seeds; * marks a cell whose runs did not all converge. {S.rule_note(data)}
{S.provenance_note(data)}

| B | norm | lr grid: final train loss | lr kept | test acc (lengths 20-40) | test acc (unseen 40-80) |
|---|---|---|---|---|---|
{chr(10).join(lines)}"""
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
