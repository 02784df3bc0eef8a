"""BN's problem 4 (seed 000): batch statistics in training vs running statistics at inference.

    python -m experiments.train_eval_gap --preset=smoke|cpu|gpu --workdir=DIR

For every training batch size B and norm ('batch', 'group'), the same network is trained on
normlab.train's step; then the test set is evaluated twice on exactly the same examples: train mode
(each test batch of B examples normalized with its own batch statistics, as in training) and eval
mode (BN's running statistics). The gap = train-mode minus eval-mode accuracy (and loss), plus the
largest |logit difference|. Group norm has no batch statistics, so its gap must be exactly 0 (same
computation in both modes). For the BN model trained at `probe_batch_size`, the train-mode test
accuracy is also measured at other test batch sizes. Verdict rules are fixed below.
"""
from __future__ import annotations

import os

import numpy as np

from experiments import _report, main_for
from experiments._report import fmt
from experiments._training import Evaluator, cfg_copy, tail_mean
from normlab.analysis import training

TITLE = "BN's train / inference statistics gap vs batch size, BN vs GN (seed 000, problem 4)"
GROWS = 2.0        # the gap "grows as the batch shrinks": |loss gap| at the smallest B >= this x at the largest B
MISMATCH = 1e-3    # "train and eval mode differ": max |logit diff| above this at every B
DROP = 0.05        # problem 1: BN's eval accuracy drop (largest -> smallest B) is >= this while GN's is < this
# (revised after the first cpu run: the earlier rule "BN's drop >= GN's + DROP" passed on GN *improving* at
# small batch while BN lost 1.4 points; the claim is that BN degrades, so BN's own drop must be material.)


def _train_all(config, log) -> dict:
  out: dict[str, dict] = {}
  for norm in config.norms:
    for bs in config.batch_sizes:
      for seed in config.seeds:
        c = cfg_copy(config.train, norm=norm, batch_size=int(bs), seed=int(seed))
        if int(config.examples_per_run) > 0:  # the same number of examples at every batch size
          c.num_steps = max(1, int(config.examples_per_run) // int(bs))
        if config.linear_lr:  # learning rate proportional to the batch size (Goyal et al.; the GN paper)
          c.learning_rate = float(config.train.learning_rate) * int(bs) / int(config.base_batch_size)
        if norm in config.norm_options:
          c.norm_options = config.norm_options[norm].copy_and_resolve_references()
        log(f"norm={norm} batch={bs} seed={seed}: {c.model} {c.model_options.to_dict()} on {c.dataset}, "
            f"{c.optimizer} lr={c.learning_rate}, {c.num_steps} steps")
        hist, run = training.train(c, log=log)
        ev = Evaluator(run, "test")
        both = ev.both(run.state, int(bs), seed=int(seed))
        rec = {"final_train_acc": tail_mean(hist["curve"], "train_accuracy"),
               "final_train_loss": tail_mean(hist["curve"], "train_loss"), "diverged_at": hist["diverged_at"],
               **both}
        rec["acc_gap"] = both["train_mode"]["accuracy"] - both["eval_mode"]["accuracy"]
        rec["loss_gap"] = both["train_mode"]["loss"] - both["eval_mode"]["loss"]
        if norm == "batch" and int(bs) == int(config.probe_batch_size) and seed == config.seeds[0]:
          rec["test_batch_sweep"] = {str(tb): ev.both(run.state, int(tb), seed=int(seed))
                                     for tb in config.test_batch_sizes}
        log(f"  train-mode acc {both['train_mode']['accuracy']:.4f} eval-mode acc {both['eval_mode']['accuracy']:.4f}"
            f" max |dlogit| {both['max_abs_logit_diff']:.3g}")
        out.setdefault(norm, {}).setdefault(str(bs), []).append(rec)
  return out


def _mean(recs, f):
  return float(np.mean([f(r) for r in recs]))


def _plot(config, results, workdir) -> list[str]:
  fig, axes = _report.new_figure(ncols=3, size=(4.2, 3.4))
  bss = [int(b) for b in config.batch_sizes]
  for i, norm in enumerate(results):
    col = f"C{i}"
    recs = [results[norm][str(b)] for b in bss]
    axes[0].plot(bss, [_mean(r, lambda x: x["eval_mode"]["accuracy"]) for r in recs], "o-", color=col,
                 label=f"{norm}: eval mode")
    axes[0].plot(bss, [_mean(r, lambda x: x["train_mode"]["accuracy"]) for r in recs], "s--", color=col,
                 label=f"{norm}: train mode")
    axes[1].plot(bss, [_mean(r, lambda x: abs(x["loss_gap"])) + 1e-12 for r in recs], "o-", color=col, label=norm)
    axes[2].plot(bss, [_mean(r, lambda x: x["max_abs_logit_diff"]) + 1e-12 for r in recs], "o-", color=col,
                 label=norm)
  axes[0].set_title("test accuracy")
  axes[1].set_title("|test loss: train mode - eval mode|")
  axes[2].set_title("max |logit train mode - eval mode|")
  for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training (= test) batch size")
    ax.legend(fontsize=6)
  axes[1].set_yscale("log")
  axes[2].set_yscale("log")
  paths = [_report.save_figure(fig, workdir, "gap_vs_batch.png")]
  sweep = None
  for r in results.get("batch", {}).get(str(config.probe_batch_size), []):
    sweep = r.get("test_batch_sweep") or sweep
  if sweep:
    fig, ax = _report.new_figure()
    tbs = [int(t) for t in sweep]
    ax.plot(tbs, [sweep[str(t)]["train_mode"]["accuracy"] for t in tbs], "s--", label="train mode (test-batch stats)")
    ax.plot(tbs, [sweep[str(t)]["eval_mode"]["accuracy"] for t in tbs], "o-", label="eval mode (running stats)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test batch size")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"BN trained at batch {config.probe_batch_size}")
    ax.legend(fontsize=7)
    paths.append(_report.save_figure(fig, workdir, "test_batch_sweep.png"))
  return paths


def run(config, workdir: str, log=print) -> str:
  os.makedirs(workdir, exist_ok=True)
  return write(config, _train_all(config, log), workdir)


def write(config, results: dict, workdir: str, note: str = "") -> str:
  """The report of `results` (as `_train_all` returns them, or as results.json stores them, e.g. merged
  from runs of different seeds; `note` says how)."""
  bss = [str(int(b)) for b in config.batch_sizes]
  small, large = bss[0], bss[-1]
  rows = []
  if "batch" in results:
    bn = results["batch"]
    diffs = {b: _mean(bn[b], lambda r: r["max_abs_logit_diff"]) for b in bss}
    gaps = {b: _mean(bn[b], lambda r: r["acc_gap"]) for b in bss}
    lgaps = {b: _mean(bn[b], lambda r: r["loss_gap"]) for b in bss}
    rows.append({"claim": "BN computes different functions in training (batch statistics) and inference (running "
                          "statistics)",
                 "paper": "train / inference statistics are inconsistent (seed 000, problem 4)",
                 "ours": "BN test accuracy gap train - eval mode per batch size: " +
                         ", ".join(f"B={b}: {gaps[b]:+.3f} (loss {lgaps[b]:+.3f}, max |dlogit| {fmt(diffs[b])})"
                                   for b in bss) + f" [rule: max |dlogit| > {MISMATCH:g} at every B]",
                 "verdict": "reproduced" if all(d > MISMATCH for d in diffs.values()) else "not reproduced"})
    ratio = abs(lgaps[small]) / max(abs(lgaps[large]), 1e-12)
    rows.append({"claim": "...and the mismatch is worst at small batch sizes",
                 "paper": "small batches give noisy batch statistics (problems 1 and 4)",
                 "ours": f"|loss gap| B={small}: {fmt(abs(lgaps[small]))} vs B={large}: {fmt(abs(lgaps[large]))} "
                         f"(x{fmt(ratio)}); |acc gap| {fmt(abs(gaps[small]))} vs {fmt(abs(gaps[large]))} "
                         f"[rule: ratio >= {GROWS:g}]",
                 "verdict": "reproduced" if ratio >= GROWS else "not reproduced"})
  if "group" in results:
    gn = results["group"]
    exact = all(r["max_abs_logit_diff"] == 0.0 and r["acc_gap"] == 0.0 and r["loss_gap"] == 0.0
                for b in bss for r in gn[b])
    worst = max(r["max_abs_logit_diff"] for b in bss for r in gn[b])
    rows.append({"claim": "GN has no train / inference gap (no batch statistics)",
                 "paper": "GN computes per-example statistics: same function in both modes",
                 "ours": f"max |logit train - eval mode| over all batch sizes and seeds: {worst!r}; accuracy and loss "
                         f"gaps exactly 0: {exact}",
                 "verdict": "reproduced" if exact else "not reproduced"})
  if "batch" in results and "group" in results:
    acc = {n: {b: _mean(results[n][b], lambda r: r["eval_mode"]["accuracy"]) for b in bss} for n in ("batch", "group")}
    drop = {n: acc[n][large] - acc[n][small] for n in acc}
    rows.append({"claim": "At small batch sizes BN degrades, GN does not (problem 1)",
                 "paper": "BN's error rises sharply below batch ~8 (ImageNet ResNet-50, the GN paper's Fig. 1)",
                 "ours": f"eval-mode test accuracy B={large} -> B={small}: BN {acc['batch'][large]:.3f} -> "
                         f"{acc['batch'][small]:.3f}, GN {acc['group'][large]:.3f} -> {acc['group'][small]:.3f} "
                         f"[rule: BN's drop >= {DROP} and GN's < {DROP}; revised after the first cpu run, see notes]",
                 "verdict": "reproduced" if drop["batch"] >= DROP and drop["group"] < DROP else
                            ("partly" if drop["batch"] >= DROP else "not reproduced")})
  c = config.train
  lines = []
  for norm, by in results.items():
    for b in bss:
      for r in by[b]:
        lines.append(f"| {norm} | {b} | {fmt(r['final_train_acc'])} | {r['train_mode']['accuracy']:.4f} | "
                     f"{r['eval_mode']['accuracy']:.4f} | {r['acc_gap']:+.4f} | {r['train_mode']['loss']:.4f} | "
                     f"{r['eval_mode']['loss']:.4f} | {r['max_abs_logit_diff']:.3g} | {r['examples']} |")
  sweep_lines = ""
  for r in results.get("batch", {}).get(str(config.probe_batch_size), []):
    if r.get("test_batch_sweep"):
      sweep_lines = "\n".join(f"| {t} | {v['train_mode']['accuracy']:.4f} | {v['eval_mode']['accuracy']:.4f} | "
                              f"{v['max_abs_logit_diff']:.3g} |" for t, v in r["test_batch_sweep"].items())
  if int(config.examples_per_run) > 0:
    budget = (f"{config.examples_per_run} training examples at every batch size (steps = examples / B)")
  else:
    budget = f"{c.num_steps} steps at every batch size (so small batches see fewer examples)"
  lr = (f"lr {c.learning_rate} x B / {config.base_batch_size} (linear scaling, as in the GN paper)" if config.linear_lr
        else f"lr {c.learning_rate}")
  notes = f"""Preset `{config.preset}`: `{c.model}` {c.model_options.to_dict()} on `{c.dataset}`, {c.optimizer} {lr},
{budget}, seeds
{tuple(config.seeds)}, norm options {config.norm_options.to_dict()}. Train mode on the test set: the test examples in
consecutive batches of the training batch size B (the remainder dropped; the same examples in eval mode), each
normalized with its own statistics; running statistics untouched. GN's exact zero is a bitwise comparison of the
logits of the two modes. Verdict rules are fixed in `experiments/train_eval_gap.py`; the problem-1 rule was revised
once, after the first cpu run (the earlier rule, BN's drop >= GN's + {DROP}, passed because GN *improved* at small
batch while BN lost only ~1 point). An earlier protocol (a fixed 300 steps and one lr 0.02 at every batch size) left
GN untrained at B = 2 (test accuracy 0.10, BN 0.76): at small batch the budget and learning rate, not only the
statistics, decide such comparisons. {note}

| norm | B | final train acc | test acc, train mode | test acc, eval mode | gap | test loss, train mode | test loss, eval mode | max abs logit diff | examples |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

BN trained at batch {config.probe_batch_size}, train-mode test accuracy at other test batch sizes:

| test batch | train mode | eval mode | max abs logit diff |
|---|---|---|---|
{sweep_lines}
"""
  figures = _plot(config, results, workdir)
  return _report.write_report(workdir, TITLE, rows, notes, figures, data={"results": results,
                                                                          "config": config.to_dict()})


if __name__ == "__main__":
  main_for("train_eval_gap", run)
