"""Noisy batch norm (Santurkar et al. 2018, section 2.1, Figure 2): BN with injected "internal covariate
shift" trains about as well as BN, although its activation distributions are far less stable.

    python -m experiments.noisy_bn --preset=smoke|cpu|gpu --workdir=DIR

Each seed trains the same network three times: norm 'none', 'batch' and 'noisy_batch' (BN followed by
noise whose per-channel mean and scale are redrawn every step: normlab.variants.noisy_batch_norm).
Training is normlab.train's own step (normlab.analysis.training); every `measure_every` steps the
test set is evaluated (eval mode: running statistics, no noise) and, on a fixed batch of training
examples, the per-layer activations that the next layer receives (the norm's output; train mode,
i.e. with that step's noise) are read from what the models sow. The verdict rules are
fixed below, before any numbers.
"""
from __future__ import annotations

import os

import numpy as np

from experiments import _report, main_for
from experiments._report import fmt
from experiments._training import (Evaluator, drift, mean_std, moving_average, slim_results, steps_to, tail_mean,
                                   train_each_norm)

TITLE = "Santurkar et al. 2018, section 2.1: noisy batch norm (BN + injected covariate shift)"
# Verdict rules (fixed before the numbers).
CLOSE_ACC = 0.05      # noisy BN "trains about as well": |final acc(noisy) - acc(BN)| <= this (train and test)
PARTLY_ACC = 0.15     # ... "partly" within this
UNSTABLE_FACTOR = 5.0  # "far more distributional instability": drift(noisy) >= this x drift(BN)


def _train_all(config, log) -> dict:
  def finish(c, run, hist):
    # The trained function itself on the test set: train mode (batch statistics of test batches of the
    # training batch size, and noisy BN's noise), next to the eval-mode (inference) numbers.
    return {"test_train_mode": Evaluator(run, "test").both(run.state, int(c.batch_size), seed=int(c.seed))}
  return train_each_norm(config, log=log, finish=finish)


def summarize(config, results) -> dict:
  summ = {}
  for norm, by_seed in results.items():
    rows = []
    for seed, h in by_seed.items():
      m = h["measured"]
      d = drift(m)
      rows.append({
          "seed": seed, "steps": len(h["curve"]),
          "final_train_acc": tail_mean(h["curve"], "train_accuracy"),
          "final_train_loss": tail_mean(h["curve"], "train_loss"),
          "final_test_acc": m[-1]["test_accuracy"] if m else float("nan"),
          "final_test_acc_train_mode": h["test_train_mode"]["train_mode"]["accuracy"],
          "best_test_acc": max((r["test_accuracy"] for r in m), default=float("nan")),
          "steps_to_threshold": steps_to(h["curve"], "train_accuracy", float(config.threshold)),
          "drift_location": float(np.mean([v["location"] for v in d.values()])) if d else float("nan"),
          "drift_log_scale": float(np.mean([v["log_scale"] for v in d.values()])) if d else float("nan"),
          "drift_per_layer": d,
      })
    summ[norm] = rows
  return summ


def _avg(rows, key):
  v = [r[key] for r in rows if r[key] is not None]
  return float(np.mean(v)) if v else float("nan")


def _plot_curves(config, results, workdir) -> str:
  fig, axes = _report.new_figure(ncols=2, size=(5.0, 3.6))
  colors = {"none": "C3", "batch": "C0", "noisy_batch": "C2"}
  labels = {"none": "no BN", "batch": "BN", "noisy_batch": "noisy BN"}
  for norm, by_seed in results.items():
    for i, (seed, h) in enumerate(by_seed.items()):
      lab = labels.get(norm, norm) if i == 0 else None
      steps = np.arange(1, len(h["curve"]) + 1)
      axes[0].plot(steps, moving_average([c["train_accuracy"] for c in h["curve"]], 20), color=colors.get(norm),
                   label=lab, lw=1)
      m = h["measured"]
      axes[1].plot([r["done"] for r in m], [r["test_accuracy"] for r in m], color=colors.get(norm), marker="o",
                   ms=2, label=lab, lw=1)
  axes[0].set_title("train accuracy (train mode, 20-step average)")
  axes[1].set_title("test accuracy (eval mode)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax.set_ylim(0, 1.02)
  return _report.save_figure(fig, workdir, "accuracy.png")


def _plot_distributions(config, results, workdir) -> str:
  norms = list(results)
  seed = next(iter(results[norms[0]]))
  m0 = results[norms[0]][seed]["measured"]
  layers = list(m0[0]["dist"]) if m0 else []
  show = [layers[0], layers[-1]] if len(layers) > 1 else layers
  fig, axes = _report.new_figure(ncols=max(1, len(show)), nrows=len(norms), size=(4.2, 2.6))
  axes = np.atleast_2d(np.asarray(axes, dtype=object).reshape(len(norms), max(1, len(show))))
  for i, norm in enumerate(norms):
    m = results[norm][seed]["measured"]
    steps = [r["done"] for r in m]
    for j, layer in enumerate(show):
      ax = axes[i, j]
      for u in range(min(2, int(config.dist_units))):
        q = np.array([r["dist"][layer]["q"][u] for r in m])  # (checkpoints, 5)
        ax.fill_between(steps, q[:, 0], q[:, 4], color=f"C{u}", alpha=0.15)
        ax.fill_between(steps, q[:, 1], q[:, 3], color=f"C{u}", alpha=0.3)
        ax.plot(steps, q[:, 2], color=f"C{u}", lw=1, label=f"unit {u}")
      ax.set_title(f"{norm}: {layer} output", fontsize=8)
      ax.set_xlabel("step")
      if j == 0:
        ax.set_ylabel("5/25/50/75/95% quantiles")
      ax.legend(fontsize=6)
  return _report.save_figure(fig, workdir, "distributions.png")


def _verdict_close(diff: float) -> str:
  if not np.isfinite(diff):
    return "inconclusive"
  return "reproduced" if diff <= CLOSE_ACC else ("partly" if diff <= PARTLY_ACC else "not reproduced")


def run(config, workdir: str, log=print) -> str:
  os.makedirs(workdir, exist_ok=True)
  results = _train_all(config, log)
  summ = summarize(config, results)
  a = lambda norm, key: _avg(summ[norm], key)  # noqa: E731
  rows = []
  have = all(n in summ for n in ("batch", "noisy_batch"))
  if have:
    ms = lambda norm, key: mean_std(r[key] for r in summ[norm])  # noqa: E731
    rule = f" [rule: |noisy - BN| <= {CLOSE_ACC} reproduced, <= {PARTLY_ACC} partly]"
    d = abs(a("noisy_batch", "final_train_acc") - a("batch", "final_train_acc"))
    rows.append({
        "claim": "Noisy BN trains about as well as BN: training accuracy",
        "paper": "VGG on CIFAR-10: BN and noisy BN reach similar accuracy, above standard (Fig. 2)",
        "ours": f"final train acc (train mode) BN {ms('batch', 'final_train_acc')}, noisy "
                f"{ms('noisy_batch', 'final_train_acc')}, no BN {ms('none', 'final_train_acc') if 'none' in summ else 'n/a'}"
                + rule,
        "verdict": _verdict_close(d)})
    d = abs(a("noisy_batch", "final_test_acc") - a("batch", "final_test_acc"))
    rows.append({
        "claim": "...and test accuracy at inference (eval mode: running statistics, no noise)",
        "paper": "similar test accuracy (Fig. 2; which mode the paper tests noisy BN in is not stated there that "
                 "we could find)",
        "ours": f"final test acc BN {ms('batch', 'final_test_acc')}, noisy {ms('noisy_batch', 'final_test_acc')}, "
                f"no BN {ms('none', 'final_test_acc') if 'none' in summ else 'n/a'}" + rule,
        "verdict": _verdict_close(d)})
    d = abs(a("noisy_batch", "final_test_acc_train_mode") - a("batch", "final_test_acc_train_mode"))
    rows.append({
        "claim": "...and test accuracy of the trained function (train mode: test-batch statistics, noise on)",
        "paper": "(as above)",
        "ours": f"final test acc in train mode BN {ms('batch', 'final_test_acc_train_mode')}, noisy "
                f"{ms('noisy_batch', 'final_test_acc_train_mode')} (row added after the eval-mode row's result; "
                f"same rule)" + rule,
        "verdict": _verdict_close(d)})
    ratio_loc = a("noisy_batch", "drift_location") / max(a("batch", "drift_location"), 1e-12)
    ratio_scale = a("noisy_batch", "drift_log_scale") / max(a("batch", "drift_log_scale"), 1e-12)
    rows.append({
        "claim": "...despite far more distributional instability of the activations (noisy BN)",
        "paper": "noisy BN's activations move and spread over training far more than BN's (Fig. 2, right)",
        "ours": f"location drift (std over checkpoints of a unit's mean / its spread): BN "
                f"{fmt(a('batch', 'drift_location'))}, noisy {fmt(a('noisy_batch', 'drift_location'))} "
                f"(x{fmt(ratio_loc)}); std of log(unit std): BN {fmt(a('batch', 'drift_log_scale'))}, noisy "
                f"{fmt(a('noisy_batch', 'drift_log_scale'))} (x{fmt(ratio_scale)}) [rule: both >= x{UNSTABLE_FACTOR}]",
        "verdict": "reproduced" if ratio_loc >= UNSTABLE_FACTOR and ratio_scale >= UNSTABLE_FACTOR else
                   ("partly" if max(ratio_loc, ratio_scale) >= UNSTABLE_FACTOR else "not reproduced")})
  if "none" in summ and have:
    thr = float(config.threshold)

    def first(norm):
      v = [r["steps_to_threshold"] for r in summ[norm]]
      return [x if x is not None else np.inf for x in v]
    s_none, s_bn, s_noisy = (float(np.mean(first(n))) for n in ("none", "batch", "noisy_batch"))
    faster = [s_bn < s_none, s_noisy < s_none]
    show = lambda s: "never" if not np.isfinite(s) else f"{s:.0f}"  # noqa: E731
    rows.append({
        "claim": "Both BN and noisy BN train faster than no BN",
        "paper": "standard VGG converges more slowly than BN and noisy BN (Fig. 2)",
        "ours": f"steps to a {thr:.0%} train accuracy (20-step average, mean over seeds): no BN {show(s_none)}, "
                f"BN {show(s_bn)}, noisy BN {show(s_noisy)}; final train loss no BN "
                f"{fmt(a('none', 'final_train_loss'))}, BN {fmt(a('batch', 'final_train_loss'))}, noisy "
                f"{fmt(a('noisy_batch', 'final_train_loss'))}",
        "verdict": _report.verdict_of(faster)})
  c = config.train
  table = "\n".join(
      f"| {norm} | {r['seed']} | {r['steps']} | {fmt(r['final_train_acc'])} | {fmt(r['final_train_loss'])} | "
      f"{fmt(r['final_test_acc'])} | {fmt(r['final_test_acc_train_mode'])} | {fmt(r['best_test_acc'])} | {r['steps_to_threshold']} | "
      f"{fmt(r['drift_location'])} | {fmt(r['drift_log_scale'])} |" for norm, rs in summ.items() for r in rs)
  noise = {k: v.to_dict() for k, v in config.norm_options.items()}
  noise = noise or ("(defaults: shift U(-1, 1), gain U(1, 2) per channel and step, plus N(0, 1) per "
                    "activation)")
  notes = f"""Preset `{config.preset}`: `{c.model}` {c.model_options.to_dict()} on `{c.dataset}`, {c.optimizer}
lr {c.learning_rate}, batch {c.batch_size}, {c.num_steps} steps, seeds {tuple(config.seeds)}; the same init per seed
for the three norms. Noise options {noise}. "Test acc" is eval mode (standard inference: running statistics, no noise): noisy BN's
later layers were trained on noisy inputs, so its eval-mode network is not the function that was trained. "Test acc,
train mode" evaluates that function: test batches of the training batch size, each with its own batch statistics and
(noisy BN) fresh noise. Train accuracy is the train-mode accuracy of each step's batch. Activation probes: every {config.measure_every} steps, the output of
every norm layer on the first {config.dist_batch} training examples (train mode, with that step's noise; the values the models sow); drift
is averaged over all units of all norm layers. Not the paper's CIFAR-10 VGG (CPU preset). Verdict rules are fixed
in `experiments/noisy_bn.py`.

| norm | seed | steps | final train acc | final train loss | final test acc | final test acc, train mode | best test acc (eval mode) | steps to {float(config.threshold):.0%} | location drift | log-scale drift |
|---|---|---|---|---|---|---|---|---|---|---|
{table}
"""
  figures = [_plot_curves(config, results, workdir), _plot_distributions(config, results, workdir)]
  return _report.write_report(workdir, TITLE, rows, notes, figures,
                              data={"summary": summ, "results": slim_results(results), "config": config.to_dict()})


if __name__ == "__main__":
  main_for("noisy_bn", run)
