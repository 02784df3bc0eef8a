"""Noisy batch norm (Santurkar et al. 2018, section 2.1, Figure 2): BN with injected "internal covariate
shift" trains about as well as BN, although its activation distributions are far less stable.

    python -m experiments.noisy_bn --preset=smoke|cpu|gpu --workdir=DIR

Each seed trains the same network (same init) with norm 'none', 'batch' and 'noisy_batch' (BN, then
i.i.d. noise on every activation of every sample whose per-channel mean and variance are redrawn
every step: normlab.variants.noisy_batch_norm). Training is normlab.train's one loop
(normlab.analysis.training); every `measure_every` steps, the per-layer activations that the next
layer receives (the norm's output, train mode, that step's noise) are read on a fixed batch of
training examples. At the end, the test set is evaluated two ways the paper would accept:
  * clean: eval mode with running statistics recollected after training without noise (noisy BN's
    model rebuilt as BN with the same parameters; every norm is recollected the same way);
  * train mode: test batches of the training batch size, each normalized with its own statistics and
    (noisy BN) with fresh noise: the function that was trained.
The running statistics collected during training (noise on) are reported beside them, unjudged.

Verdict rules (fixed before the numbers; the rules themselves are experiments/_sweep_study.py's):
  * The premise, "the plain net lags BN": effect_verdict(BN - plain, floor PREMISE_FLOOR pts).
  * "noisy BN does as well as BN": no_worse_verdict(BN - noisy, tol), tol = half of BN's measured lead
    over the plain net (noisy BN keeps at least half of what BN gains); where the premise is not
    reproduced there is nothing to keep and the verdict is inconclusive.
  * "noisy BN beats the plain net": effect_verdict(noisy - plain, floor PREMISE_FLOOR pts).
  * "far less stable distributions": per seed, noisy BN's drift / BN's drift of the norm layers'
    outputs (location and log-scale); effect_verdict(ratio - 1, floor UNSTABLE_FACTOR - 1) for each;
    reproduced if both are, partly if one is or both are 'partly', inconclusive if either is.
  * "BN and noisy BN train faster": mean train loss over the first half of training, effect_verdict(
    plain - X, floor 0) for X = BN and noisy BN; the row's verdict combines the two as above.
  * Every cell (a norm over its seeds) must have converged (_sweep_study.curve_converged); a claim
    using one that did not is inconclusive.
"""
from __future__ import annotations

import os
import time

import numpy as np

from experiments import _report, _training, main_for
from experiments import _sweep_study as rules
from experiments._report import fmt
from experiments._claims import band, cell, combine, curves, paired, pm
from experiments._training import Evaluator, clean_batch_stats, drift, slim_results, tail_mean, train_each_norm

TITLE = "Santurkar et al. 2018, section 2.1: noisy batch norm (BN + injected covariate shift)"
PREMISE_FLOOR = 1.0    # pts: "the plain net lags BN" needs BN - plain >= this (and > 2 s.e.)
UNSTABLE_FACTOR = 5.0  # "far more distributional instability": drift(noisy) >= this x drift(BN)
LABELS = {"none": "no BN", "batch": "BN", "noisy_batch": "noisy BN"}


def _finish(config):
  def finish(c, run, hist):
    ev = Evaluator(run, "test")
    clean = clean_batch_stats(run, run.state.params, int(config.recollect_batches))
    return {"test_clean": ev(run.state.replace(batch_stats=clean)),
            "test_noisy_running": ev(run.state),
            "test_train_mode": ev.both(run.state, int(c.batch_size), seed=int(c.seed))["train_mode"]}
  return finish


def summarize(config, results) -> dict:
  """{norm: [per-seed row]}: final accuracies (pts), early loss, drift, convergence."""
  summ = {}
  for norm, by_seed in results.items():
    rows = []
    for seed, h in by_seed.items():
      curve = h["curve"]
      converged, change = rules.curve_converged(curve, h.get("diverged_at"))
      d = drift(h["measured"]) if h["measured"] else {}
      half = curve[: max(1, len(curve) // 2)]
      rows.append({
          "seed": int(seed), "steps": len(curve), "diverged_at": h.get("diverged_at"),
          "converged": converged, "train_loss_change": change,
          "train_acc": 100 * tail_mean(curve, "train_accuracy"),
          "train_loss": tail_mean(curve, "train_loss"),
          "early_loss": float(np.mean([r["train_loss"] for r in half])),
          "test_clean": 100 * h["test_clean"]["accuracy"],
          "test_train_mode": 100 * h["test_train_mode"]["accuracy"],
          "test_noisy_running": 100 * h["test_noisy_running"]["accuracy"],
          "drift_location": float(np.mean([v["location"] for v in d.values()])) if d else float("nan"),
          "drift_log_scale": float(np.mean([v["log_scale"] for v in d.values()])) if d else float("nan"),
          "drift_per_layer": d,
      })
    summ[norm] = rows
  return summ


def claim_rows(summ) -> list[dict]:
  rows = []
  for key, what in (("test_clean", "test accuracy, clean recollected statistics (eval mode)"),
                    ("test_train_mode", "test accuracy, train mode (batch statistics, noise on)"),
                    ("train_acc", "train accuracy (train mode, last 10% of steps)")):
    lead = paired(summ, "batch", "none", key)
    premise = rules.effect_verdict(lead.mean, lead.se, PREMISE_FLOOR, cell(summ, "batch", key), cell(summ, "none", key)) \
        if lead else "inconclusive"
    short = paired(summ, "batch", "noisy_batch", key)
    tol = lead.mean / 2 if premise == "reproduced" else float("nan")
    rows.append({
        "claim": f"The plain net lags BN here (the premise of the study): {what}",
        "paper": "standard VGG below BN on CIFAR-10 (Fig. 2)",
        "ours": f"BN {pm(cell(summ, 'batch', key), '%')}, plain {pm(cell(summ, 'none', key), '%')}; BN - plain "
                f"{pm(lead, ' pts')} (paired over seeds) [rule: > 2 s.e. and >= {PREMISE_FLOOR} pts]",
        "verdict": premise})
    rows.append({
        "claim": f"Noisy BN does as well as BN: {what}",
        "paper": "BN and noisy BN reach similar accuracy (Fig. 2)",
        "ours": f"noisy BN {pm(cell(summ, 'noisy_batch', key), '%')}; BN - noisy {pm(short, ' pts')} [rule: "
                f"within tol = half of BN's lead over plain ({fmt(tol)} pts) beyond 2 s.e.; inconclusive without a "
                f"lead]",
        "verdict": rules.no_worse_verdict(short.mean, short.se, tol, cell(summ, "batch", key),
                                          cell(summ, "noisy_batch", key)) if short else "inconclusive"})
    gain = paired(summ, "noisy_batch", "none", key)
    rows.append({
        "claim": f"Noisy BN beats the plain net: {what}",
        "paper": "noisy BN above standard (Fig. 2)",
        "ours": f"noisy - plain {pm(gain, ' pts')} [rule: > 2 s.e. and >= {PREMISE_FLOOR} pts]",
        "verdict": rules.effect_verdict(gain.mean, gain.se, PREMISE_FLOOR, cell(summ, "noisy_batch", key),
                                        cell(summ, "none", key)) if gain else "inconclusive"})
  parts, texts = [], []
  for key in ("drift_location", "drift_log_scale"):
    ratio = paired(summ, "noisy_batch", "batch", key, lambda x, y: x / max(y, 1e-12))
    if ratio is None:
      parts.append("inconclusive")
      continue
    parts.append(rules.effect_verdict(ratio.mean - 1, ratio.se, UNSTABLE_FACTOR - 1, cell(summ, "noisy_batch", key),
                                      cell(summ, "batch", key)))
    texts.append(f"{key.replace('drift_', '')}: BN {pm(cell(summ, 'batch', key))}, noisy "
                 f"{pm(cell(summ, 'noisy_batch', key))}, ratio x{pm(ratio)}")
  rows.append({
      "claim": "Noisy BN's activations are far less stable over training than BN's",
      "paper": "noisy BN's layer outputs move and spread over training far more than BN's (Fig. 2, right)",
      "ours": "; ".join(texts) + f" [rule: ratio - 1 > 2 s.e. and ratio >= {UNSTABLE_FACTOR}, both measures]",
      "verdict": combine(*parts)})
  parts, texts = [], []
  for norm in ("batch", "noisy_batch"):
    d = paired(summ, "none", norm, "early_loss")
    parts.append(rules.effect_verdict(d.mean, d.se, 0.0, cell(summ, "none", "early_loss"),
                                      cell(summ, norm, "early_loss")) if d else "inconclusive")
    texts.append(f"plain - {LABELS[norm]} {pm(d)}")
  rows.append({
      "claim": "BN and noisy BN train faster than the plain net",
      "paper": "standard VGG converges more slowly than BN and noisy BN (Fig. 2)",
      "ours": "mean train loss over the first half of training: " + ", ".join(
          f"{LABELS[n]} {pm(cell(summ, n, 'early_loss'))}" for n in ("none", "batch", "noisy_batch") if n in summ)
              + "; " + "; ".join(texts) + " [rule: plain - X > 2 s.e., both]",
      "verdict": combine(*parts)})
  return rows


def _plot_training(results, summ, workdir) -> str:
  fig, axes = _report.new_figure(ncols=3, size=(4.4, 3.4))
  colors = {"none": "C3", "batch": "C0", "noisy_batch": "C2"}
  for norm, (steps, vals) in curves(results, "train_loss").items():
    band(axes[0], steps, vals, colors.get(norm), LABELS.get(norm, norm))
  for norm, (steps, vals) in curves(results, "train_accuracy").items():
    band(axes[1], steps, 100 * vals, colors.get(norm), LABELS.get(norm, norm))
  axes[0].set_title("train loss (train mode; mean ± s.e. over seeds)", fontsize=8)
  axes[1].set_title("train accuracy % (train mode; mean ± s.e.)", fontsize=8)
  keys = ("test_clean", "test_train_mode", "test_noisy_running")
  names = ("clean recollected stats", "train mode", "running stats (noise on)")
  norms = list(summ)
  for i, norm in enumerate(norms):
    st = [cell(summ, norm, k) for k in keys]
    x = np.arange(len(keys)) + (i - 1) * 0.25
    axes[2].bar(x, [s.mean for s in st], 0.25, yerr=[s.se for s in st], color=colors.get(norm), capsize=2,
                label=LABELS.get(norm, norm))
  axes[2].set_xticks(np.arange(len(keys)), names, fontsize=7)
  axes[2].set_title("final test accuracy % (mean ± s.e.)", fontsize=8)
  for ax in axes:
    ax.legend(fontsize=7)
  axes[0].set_xlabel("step")
  axes[1].set_xlabel("step")
  return _report.save_figure(fig, workdir, "training.png")


def _plot_distributions(config, results, workdir) -> str:
  """Quantiles of two units of the first and last norm layer's output, seed 0 (an illustration; the
  drift numbers over all seeds are in the table)."""
  norms = list(results)
  seed = next(iter(results[norms[0]]))
  m0 = results[norms[0]][seed]["measured"]
  layers = list(m0[0]["dist"]) if m0 else []
  show = [layers[0], layers[-1]] if len(layers) > 1 else layers
  fig, axes = _report.new_figure(ncols=max(1, len(show)), nrows=len(norms), size=(4.2, 2.6))
  axes = np.asarray(axes, dtype=object).reshape(len(norms), max(1, len(show)))
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
      ax.set_title(f"{LABELS.get(norm, norm)}: {layer} output (seed {seed})", fontsize=8)
      ax.set_xlabel("step")
      if j == 0:
        ax.set_ylabel("5/25/50/75/95% quantiles")
      ax.legend(fontsize=6)
  return _report.save_figure(fig, workdir, "distributions.png")


# results.csv: the sweep studies' columns, then these per-run values.
CSV_KEYS = ("train_acc", "test_clean", "test_train_mode", "test_noisy_running", "early_loss", "drift_location",
            "drift_log_scale")


def run(config, workdir: str, log=print) -> str:
  os.makedirs(workdir, exist_ok=True)
  t0, trained_at = time.time(), rules.provenance()
  results = train_each_norm(config, log=log, finish=_finish(config))
  _training.keep_raw(results, workdir)
  return write(config, results, workdir, trained_at=trained_at, wall_s=time.time() - t0)


def write(config, results, workdir: str, trained_at: str = "not recorded", wall_s: float = float("nan")) -> str:
  summ = summarize(config, results)
  rows = claim_rows(summ)
  c = config.train
  noise = {k: v.to_dict() for k, v in config.norm_options.items()} or "(defaults)"
  table = "\n".join(
      f"| {LABELS.get(norm, norm)} | {r['seed']} | {r['steps']} | {'yes' if r['converged'] else 'no'} "
      f"({fmt(r['train_loss_change'] if r['train_loss_change'] is not None else float('nan'))}) | "
      f"{fmt(r['train_loss'])} | {fmt(r['train_acc'])} | {fmt(r['test_clean'])} | {fmt(r['test_train_mode'])} | "
      f"{fmt(r['test_noisy_running'])} | {fmt(r['early_loss'])} | {fmt(r['drift_location'])} | "
      f"{fmt(r['drift_log_scale'])} |" for norm, rs in summ.items() for r in rs)
  notes = f"""Trained at: {trained_at}; wall time {wall_s:.0f} s. Report written at: {rules.provenance()}.

Preset `{config.preset}`: `{c.model}` {c.model_options.to_dict()} on `{c.dataset}`, {c.optimizer} lr
{c.learning_rate} ({c.schedule} schedule), batch {c.batch_size}, {c.num_steps} steps, seeds {tuple(config.seeds)}; the same
init per seed for the three norms. Noise options {noise}: per step and channel, noise mean ~ U(-mean_range,
mean_range) and std ~ U(1, std_range); one draw per activation and sample (normlab.variants.noisy_batch_norm).
The paper names only "i.i.d. noise of non-zero mean and non-unit variance, redrawn every step": the distributions
are ours. Paper: VGG on CIFAR-10 (the `gpu` preset); this preset is a small stand-in on a task where the plain
net lags BN (the premise rows).

Test accuracy three ways. *clean* = eval mode with running statistics recollected after training with the noise off,
averaged over {config.recollect_batches} training batches (every norm the same way; for BN this differs from its own running
statistics only by their averaging); *train mode* = test batches
of {c.batch_size}, each with its own statistics and, for noisy BN, fresh noise; *running (noise on)* = the
statistics collected during training, whose noisy-BN accuracy an earlier version of this study reported (8% on
digits). The last is shown, not judged. Train accuracy/loss: mean over the last 10% of steps of each step's batch
(train mode). Convergence ({rules.CONVERGENCE_TOL:.0%} rule of experiments/_sweep_study.py on the per-step train loss): a
claim that uses a cell marked * is inconclusive. Drift: every {config.measure_every} steps, each norm layer's output
on the first {config.dist_batch} training examples (train mode, that step's noise); the std over checkpoints of a
unit's mean over its average std (location), and the std of log(unit std) (log-scale), averaged over units and
layers. Mean ± s.e. over {len(config.seeds)} seeds; differences are paired by seed.

| norm | seed | steps | converged (loss change) | final train loss | train acc % | test acc % clean | test acc % train mode | test acc % running (noise on) | loss, first half | location drift | log-scale drift |
|---|---|---|---|---|---|---|---|---|---|---|---|
{table}
"""
  figures = [_plot_training(results, summ, workdir), _plot_distributions(config, results, workdir)]
  rules.write_results_csv(_training.summary_csv_rows(config, summ, "test_clean", CSV_KEYS), workdir)
  return _report.write_report(workdir, TITLE, rows, notes, figures,
                              data={"summary": summ, "results": slim_results(results),
                                    "finals": {n: {s: {k: h[k] for k in ("test_clean", "test_train_mode",
                                                                        "test_noisy_running")}
                                                   for s, h in bs.items()} for n, bs in results.items()},
                                    "config": config.to_dict()})


if __name__ == "__main__":
  main_for("noisy_bn", run)
