"""BN's problem 3 (seed 000): normalization in RNNs on variable-length sequences.

    python -m experiments.rnn_norms --preset=smoke|cpu|gpu --workdir=DIR

MNIST-1D read as a sequence (N, T, 1) (T = 40, or 40 x `factor` with every value repeated `factor`
times for the long setting). Every example is truncated to a random length L in [T/2, T] (drawn per
(seed, step) in training, fixed for the test set) and padded; the padding mask (N, T) goes to the
model, so padded steps carry the state unchanged and never enter batch statistics
(normlab.models.rnn). A GRU is trained with the recurrent norm ('rnn_norm') none, layer (per example
and step), batch (per-time-step statistics, Cooijmans et al.) and batch_shared (one set of statistics
for all steps), at a small and a large batch size, on normlab.train's step (the padding mask travels
inside x). Test accuracy is eval mode (running statistics). Verdict rules are fixed below.
"""
from __future__ import annotations

import os

import numpy as np

from experiments import _report, main_for
from experiments._training import Evaluator, cfg_copy, mean_std, tail_mean, train_with_eval

TITLE = "Normalization in RNNs with variable-length sequences: LN vs per-step BN vs shared BN (seed 000, problem 3)"
LN_WORKS = 0.05   # "LN works": LN's test accuracy >= no norm's - this, at every batch size and length
SUFFERS = 0.03    # "per-step BN suffers": its test accuracy <= LN's - this in the small-batch (or long) setting
LABELS = {"none": "none", "layer": "LN", "batch": "BN per step", "batch_shared": "BN shared"}


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


def _train_all(config, log) -> dict:
  out = {}
  for factor in config.factors:
    xs, ys = test_inputs(config.train.dataset, int(factor), bool(config.train.normalize_inputs))
    for bs in config.batch_sizes:
      for rnn_norm in config.rnn_norms:
        for seed in config.seeds:
          norm = {"none": "none", "layer": "layer", "batch": "batch", "batch_shared": "batch"}[rnn_norm]
          c = cfg_copy(config.train, norm=norm, batch_size=int(bs), seed=int(seed))
          c.model_options.rnn_norm = rnn_norm
          log(f"T={40 * int(factor)} batch={bs} rnn_norm={rnn_norm} seed={seed}: {c.model} "
              f"{c.model_options.to_dict()}, {c.optimizer} lr={c.learning_rate}, {c.num_steps} steps")
          hist, run = train_with_eval(
              c, measure_every=int(config.measure_every), log=log, batches=batch_fn(int(factor), c),
              evaluator=lambda run: Evaluator(run, inputs=xs, labels=ys, batch_size=500))
          m = hist["measured"]
          rec = {"final_train_acc": tail_mean(hist["curve"], "train_accuracy"),
                 "final_train_loss": tail_mean(hist["curve"], "train_loss"),
                 "final_test_acc": m[-1]["test_accuracy"] if m else float("nan"),
                 "final_test_loss": m[-1]["test_loss"] if m else float("nan"),
                 "best_test_acc": max((r["test_accuracy"] for r in m), default=float("nan")),
                 "diverged_at": hist["diverged_at"],
                 "curve": [c["train_loss"] for c in hist["curve"]][:: max(1, len(hist["curve"]) // 200)],
                 "test_curve": [(r["done"], r["test_accuracy"]) for r in m]}
          out.setdefault(str(factor), {}).setdefault(str(bs), {}).setdefault(rnn_norm, []).append(rec)
  return out


def _acc(recs) -> float:
  return float(np.mean([r["final_test_acc"] for r in recs]))


def _plot(config, results, workdir) -> str:
  settings = [(str(f), str(int(b))) for f in config.factors for b in config.batch_sizes
              if str(int(b)) in results.get(str(f), {})]  # config order (results.json sorts its keys)
  fig, axes = _report.new_figure(ncols=len(settings), size=(3.6, 3.2))
  axes = np.atleast_1d(axes)
  for ax, (f, b) in zip(axes, settings):
    for i, norm in enumerate(n for n in config.rnn_norms if n in results[f][b]):
      recs = results[f][b][norm]
      for j, r in enumerate(recs):
        d = np.array(r["test_curve"])
        if len(d):
          ax.plot(d[:, 0], d[:, 1], "o-", ms=2, lw=1, color=f"C{i}", label=LABELS.get(norm, norm) if j == 0 else None)
    ax.set_title(f"T={40 * int(f)}, batch {b}", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6)
  axes[0].set_ylabel("test accuracy (eval mode)")
  return _report.save_figure(fig, workdir, "rnn_norms.png")


def run(config, workdir: str, log=print) -> str:
  os.makedirs(workdir, exist_ok=True)
  return write(config, _train_all(config, log), workdir)


def write(config, results: dict, workdir: str, note: str = "") -> str:
  """The report of `results` (as `_train_all` returns them, or as results.json stores them, e.g. merged
  from runs of different seeds; `note` says how)."""
  os.makedirs(workdir, exist_ok=True)
  factors = [str(f) for f in config.factors]
  bss = [str(int(b)) for b in config.batch_sizes]
  small, large = bss[0], bss[-1]
  settings = [(f, b) for f in factors for b in bss]
  rows = []
  acc = {(f, b, n): _acc(results[f][b][n]) for f, b in settings for n in results[f][b]}
  desc = lambda f, b: f"T={40 * int(f)}, B={b}"  # noqa: E731
  if all(n in config.rnn_norms for n in ("none", "layer")):
    ok = [acc[(f, b, "layer")] >= acc[(f, b, "none")] - LN_WORKS for f, b in settings]
    rows.append({"claim": "Layer norm works in RNNs at any batch size",
                 "paper": "for RNNs only LN is relatively effective (seed 000)",
                 "ours": "; ".join(f"{desc(f, b)}: LN {acc[(f, b, 'layer')]:.3f} vs none {acc[(f, b, 'none')]:.3f}"
                                   for f, b in settings) + f" [rule: LN >= none - {LN_WORKS} everywhere]",
                 "verdict": _report.verdict_of(ok)})
  if all(n in config.rnn_norms for n in ("layer", "batch")):
    hurt_small = [acc[(f, small, "layer")] - acc[(f, small, "batch")] >= SUFFERS for f in factors]
    gap = {(f, b): acc[(f, b, "layer")] - acc[(f, b, "batch")] for f, b in settings}
    worse_small = [gap[(f, small)] > gap[(f, large)] for f in factors]
    ok = [a and w for a, w in zip(hurt_small, worse_small)]
    rows.append({"claim": "Per-time-step BN suffers at small batch sizes",
                 "paper": "per-step statistics from few (and, late in a sequence, fewer) examples are unreliable "
                          "(seed 000, problem 3)",
                 "ours": "; ".join(f"{desc(f, b)}: BN per step {acc[(f, b, 'batch')]:.3f} vs LN {acc[(f, b, 'layer')]:.3f}"
                                   for f, b in settings) +
                         f" [rule: at B={small} BN <= LN - {SUFFERS}, and the LN - BN gap larger than at B={large}]",
                 "verdict": _report.verdict_of(ok)})
    if len(factors) > 1:
      short, longest = factors[0], factors[-1]
      ok = [gap[(longest, b)] > gap[(short, b)] for b in bss]
      rows.append({"claim": "Per-time-step BN suffers more on long sequences",
                   "paper": "late steps see few examples; unseen lengths have no statistics (seed 000, problem 3)",
                   "ours": "; ".join(f"B={b}: LN - BN per step {gap[(short, b)]:+.3f} at T={40 * int(short)}, "
                                     f"{gap[(longest, b)]:+.3f} at T={40 * int(longest)}" for b in bss) +
                           " [rule: the gap is larger for the long sequences]",
                   "verdict": _report.verdict_of(ok)})
    else:
      rows.append({"claim": "Per-time-step BN suffers more on long sequences",
                   "paper": "late steps see few examples (seed 000, problem 3)",
                   "ours": f"not run at this preset (factors {tuple(config.factors)}: one length only)",
                   "verdict": "inconclusive"})
  if all(n in config.rnn_norms for n in ("batch", "batch_shared")):
    better = [acc[(f, b, "batch_shared")] >= acc[(f, b, "batch")] for f, b in settings]
    rows.append({"claim": "(context) shared-statistics BN vs per-step BN",
                 "paper": "the seed does not compare them; Cooijmans et al. keep per-step statistics",
                 "ours": "; ".join(f"{desc(f, b)}: shared {acc[(f, b, 'batch_shared')]:.3f} vs per step "
                                   f"{acc[(f, b, 'batch')]:.3f}" for f, b in settings),
                 "verdict": "inconclusive"})
  c = config.train
  lines = []
  for f, b in settings:
    for n in (n for n in config.rnn_norms if n in results[f][b]):
      recs = results[f][b][n]
      lines.append(f"| {40 * int(f)} | {b} | {LABELS.get(n, n)} | {mean_std(r['final_test_acc'] for r in recs)} | "
                   f"{mean_std(r['best_test_acc'] for r in recs)} | {mean_std(r['final_train_acc'] for r in recs)} | "
                   f"{mean_std(r['final_train_loss'] for r in recs)} | "
                   f"{', '.join(str(r['diverged_at']) for r in recs if r['diverged_at'] is not None) or '-'} |")
  notes = f"""Preset `{config.preset}`: `{c.model}` {c.model_options.to_dict()} (the recurrent norm on the gate
pre-activations, normlab.models.rnn) on `{c.dataset}` as a sequence, {c.optimizer} lr {c.learning_rate}, grad clip
{c.grad_clip_norm}, {c.num_steps} steps for every setting (small batches see fewer examples), seeds
{tuple(config.seeds)}. Lengths uniform in [T/2, T] (in units of the original 40 values); the test set's lengths are
fixed (seed 12345). Test accuracy is eval mode: per-step BN uses each step's running statistics (rows fixed at init:
T rows), shared BN one row for all steps. In training both BN modes normalize each step with that step's batch
statistics (the cell sees one step at a time, normlab.models.seqnorm): they differ only in the statistics used at
inference. The verdicts compare test accuracy after the last step{' of a single seed: differences of a few points are within seed-to-seed noise' if len(config.seeds) == 1 else ''}; runs
that are still improving at the end (see the plot) make them weaker still. Verdict rules are fixed in
`experiments/rnn_norms.py`. {note}

| T | B | norm | final test acc | best test acc | final train acc | final train loss | diverged at step |
|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}
"""
  figures = [_plot(config, results, workdir)]
  return _report.write_report(workdir, TITLE, rows, notes, figures, data={"results": results,
                                                                          "config": config.to_dict()})


if __name__ == "__main__":
  main_for("rnn_norms", run)
