"""l_p batch norm (Santurkar et al. 2018, section 3.3): l1, l2 and l_inf batch norm train as well as
(or better than) standard BN, with a larger distributional shift than unnormalized networks.

    python -m experiments.lp_norms --preset=smoke|cpu|gpu --workdir=DIR

Each seed trains the same network (same init) with norm 'none', 'batch' and the l_p variants
(normlab.variants.lp_batch_norm: divide x - mu_B by the batch's mean |x - mu|, root mean square, or
max |x - mu|) on normlab.train's one loop, on a task where the plain net lags BN. Every
`measure_every` steps, every norm layer's *input* (config.probe_site = 'preact': the distribution the
norm receives, which is where internal covariate shift lives; for the plain net, the same
pre-activations) is probed on a fixed batch of training examples, and its drift over training measured
(experiments/_training.drift). At the end: test accuracy (eval mode, the running statistics) and the
shape of every norm layer's output (excess kurtosis, skewness).

Verdict rules (fixed before the numbers; the rules themselves are experiments/_sweep_study.py's):
  * The premise, "the plain net lags BN": effect_verdict(BN - plain, floor PREMISE_FLOOR pts).
  * "l_p BN does as well as BN" (test and train accuracy, each variant): no_worse_verdict(BN - l_p,
    tol = half of BN's measured lead over plain; no lead: inconclusive); the row combines the variants
    (experiments/_claims.combine).
  * "l_p BN beats the plain net": effect_verdict(l_p - plain, floor PREMISE_FLOOR pts), per variant.
  * "larger distributional shift than the plain net" (before the norm, location drift): per seed,
    ln(drift(l_p) / drift(plain)); effect_verdict(mean, s.e., floor 0), per variant.
  * "non-Gaussian" (l1 and l_inf outputs): effect_verdict(mean |excess kurtosis|, s.e., floor NON_GAUSS).
  * "similar speed": mean train loss over the first half of training, no_worse_verdict(l_p - BN, tol =
    half of (plain - BN)) per variant.
  * Every cell must have converged (_sweep_study.curve_converged); a claim using one that did not is
    inconclusive.
"""
from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _report, _training, main_for
from experiments._report import fmt
from experiments import _sweep_study as rules
from experiments._claims import band, cell, combine, curves, paired, pm
from experiments._training import Evaluator, drift, norm_outputs, slim_results, tail_mean, train_each_norm

TITLE = "Santurkar et al. 2018, section 3.3: l1 / l2 / l_inf batch norm"
PREMISE_FLOOR = 1.0  # pts: "the plain net lags BN" needs BN - plain >= this (and > 2 s.e.)
NON_GAUSS = 1.0    # "non-Gaussian": mean |excess kurtosis| over channels >= this
LABELS = {"batch": "BN", "l1_batch": "l1 BN", "l2_batch": "l2 BN", "linf_batch": "l_inf BN", "none": "no norm"}


def shape_stats(act: np.ndarray) -> dict:
  """Per-channel (last axis) skewness and excess kurtosis of `act`, pooled over all other axes."""
  a = np.asarray(act, np.float64).reshape(-1, act.shape[-1])
  mu, sd = a.mean(0), a.std(0)
  ok = sd > 1e-8
  z = (a[:, ok] - mu[ok]) / sd[ok]
  skew = np.mean(z ** 3, 0)
  kurt = np.mean(z ** 4, 0) - 3.0
  return {"channels": int(ok.sum()), "dead": int((~ok).sum()), "mean_abs_excess_kurtosis": float(np.mean(np.abs(kurt))),
          "median_excess_kurtosis": float(np.median(kurt)), "mean_abs_skew": float(np.mean(np.abs(skew))),
          "frac_kurtosis_gt1": float(np.mean(np.abs(kurt) > 1.0)), "kurtosis": kurt.tolist()}


def end_probe(config, run, state) -> dict:
  """Shape statistics of every norm layer's output on the first `probe_batch` training examples."""
  from normlab.data import load
  from normlab.data.batching import get_batch
  ds = load(run.config.dataset, "train")
  b = get_batch(ds, np.arange(min(len(ds), int(config.probe_batch))), normalize_inputs=bool(run.config.normalize_inputs))
  fn = norm_outputs(run.model)
  post = jax.device_get(fn({"params": state.params, "batch_stats": state.batch_stats}, jnp.asarray(b["x"]),
                           jax.random.key(0)))
  out = {layer: shape_stats(a) for layer, a in post.items()}
  first = next(iter(post))
  sample = np.asarray(post[first], np.float64).reshape(-1, post[first].shape[-1])
  return {"layers": out, "hist_layer": first, "hist_values": sample[:, :4].T.tolist()}


def _train_all(config, log) -> dict:
  def finish(c, run, hist):
    return {"probe": end_probe(config, run, run.state), "test": Evaluator(run, "test")(run.state)}
  return train_each_norm(config, log=log, finish=finish)


def summarize(config, results) -> dict:
  """{norm: [per-seed row]}: final accuracies (pts), early loss, pre-norm drift, output shape, convergence."""
  summ = {}
  for norm, by_seed in results.items():
    rows = []
    for seed, h in by_seed.items():
      curve, layers = h["curve"], h["probe"]["layers"]
      converged, change = rules.curve_converged(curve, h.get("diverged_at"))
      d = drift(h["measured"]) if h["measured"] else {}
      rows.append({
          "seed": int(seed), "steps": len(curve), "diverged_at": h.get("diverged_at"),
          "converged": converged, "train_loss_change": change,
          "train_acc": 100 * tail_mean(curve, "train_accuracy"),
          "train_loss": tail_mean(curve, "train_loss"),
          "early_loss": float(np.mean([r["train_loss"] for r in curve[: max(1, len(curve) // 2)]])),
          "test_acc": 100 * h["test"]["accuracy"],
          "pre_drift_location": float(np.mean([v["location"] for v in d.values()])) if d else float("nan"),
          "pre_drift_log_scale": float(np.mean([v["log_scale"] for v in d.values()])) if d else float("nan"),
          "kurtosis": float(np.mean([v["mean_abs_excess_kurtosis"] for v in layers.values()])),
          "median_kurtosis": float(np.mean([v["median_excess_kurtosis"] for v in layers.values()])),
          "skew": float(np.mean([v["mean_abs_skew"] for v in layers.values()])),
          "frac_kurt_gt1": float(np.mean([v["frac_kurtosis_gt1"] for v in layers.values()])),
          "per_layer": {k: {kk: vv for kk, vv in v.items() if kk != "kurtosis"} for k, v in layers.items()},
      })
    summ[norm] = rows
  return summ


def _lead(summ, key):
  """(BN - plain paired Stat, premise verdict, tol = half the lead where the premise holds, else NaN)."""
  lead = paired(summ, "batch", "none", key)
  if lead is None:
    return None, "inconclusive", float("nan")
  v = rules.effect_verdict(lead.mean, lead.se, PREMISE_FLOOR, cell(summ, "batch", key), cell(summ, "none", key))
  return lead, v, lead.mean / 2 if v == "reproduced" else float("nan")


def claim_rows(summ) -> list[dict]:
  lp = [n for n in ("l1_batch", "l2_batch", "linf_batch") if n in summ]
  if "batch" not in summ or "none" not in summ or not lp:
    return []
  rows = []
  for key, what in (("test_acc", "test accuracy (eval mode, running statistics)"),
                    ("train_acc", "train accuracy (train mode, last 10% of steps)")):
    lead, premise, tol = _lead(summ, key)
    rows.append({
        "claim": f"The plain net lags BN here (the premise of the study): {what}",
        "paper": "standard VGG below BN on CIFAR-10 (Fig. 2; Sec. 3.3 compares the l_p variants with both)",
        "ours": f"BN {pm(cell(summ, 'batch', key), '%')}, plain {pm(cell(summ, 'none', key), '%')}; BN - plain "
                f"{pm(lead, ' pts')} (paired over seeds) [rule: > 2 s.e. and >= {PREMISE_FLOOR} pts]",
        "verdict": premise})
    parts, texts = [], []
    for n in lp:
      short = paired(summ, "batch", n, key)
      parts.append(rules.no_worse_verdict(short.mean, short.se, tol, cell(summ, "batch", key), cell(summ, n, key)))
      texts.append(f"{LABELS[n]} {pm(cell(summ, n, key), '%')} (BN - it {pm(short, ' pts')})")
    rows.append({
        "claim": f"l_p batch norm does as well as BN: {what}",
        "paper": "l_p variants match or beat BN (Sec. 3.3 and its appendix figure, VGG on CIFAR-10)",
        "ours": "; ".join(texts) + f" [rule: BN - l_p within tol = half of BN's lead ({fmt(tol)} pts) beyond 2 s.e., "
                                   f"each variant; no lead: inconclusive]",
        "verdict": combine(*parts)})
    parts, texts = [], []
    for n in lp:
      gain = paired(summ, n, "none", key)
      parts.append(rules.effect_verdict(gain.mean, gain.se, PREMISE_FLOOR, cell(summ, n, key), cell(summ, "none", key)))
      texts.append(f"{LABELS[n]} - plain {pm(gain, ' pts')}")
    rows.append({
        "claim": f"l_p batch norm beats the plain net: {what}",
        "paper": "l_p variants improve on the unnormalized network (Sec. 3.3)",
        "ours": "; ".join(texts) + f" [rule: > 2 s.e. and >= {PREMISE_FLOOR} pts, each variant]",
        "verdict": combine(*parts)})
  parts, texts = [], []
  for n in lp:
    r = paired(summ, n, "none", "pre_drift_location", lambda x, y: math.log(max(x, 1e-12) / max(y, 1e-12)))
    parts.append(rules.effect_verdict(r.mean, r.se, 0.0, cell(summ, n, "pre_drift_location"),
                                      cell(summ, "none", "pre_drift_location")))
    texts.append(f"{LABELS[n]} {pm(cell(summ, n, 'pre_drift_location'))} (ln ratio to plain {pm(r)})")
  rows.append({
      "claim": "l_p-normalized networks show a larger distributional shift than unnormalized ones (measured "
               "before the norm), yet train better",
      "paper": "qualitatively larger distributional shift than vanilla networks (Sec. 3.3)",
      "ours": f"location drift of the norm layers' inputs over training: plain {pm(cell(summ, 'none', 'pre_drift_location'))}, "
              f"BN {pm(cell(summ, 'batch', 'pre_drift_location'))}; " + "; ".join(texts)
              + " [rule: ln(l_p / plain) > 2 s.e., each variant]",
      "verdict": combine(*parts)})
  parts, texts = [], []
  for n in ("l1_batch", "linf_batch"):
    if n in summ:
      k = cell(summ, n, "kurtosis")
      parts.append(rules.effect_verdict(k.mean, k.se, NON_GAUSS, k))
      texts.append(f"{LABELS[n]} {pm(k)}")
  rows.append({
      "claim": "l_p-normalized activations are not Gaussian (so Gaussian-like, 'stable' distributions are not why "
               "normalization helps)",
      "paper": "the issue's reading of Sec. 3.3 (the paper itself states the larger distributional shift, above)",
      "ours": f"mean |excess kurtosis| of the norm layers' outputs after training: BN {pm(cell(summ, 'batch', 'kurtosis'))}; "
              + "; ".join(texts) + f" [rule: > 2 s.e. and >= {NON_GAUSS}, l1 and l_inf]",
      "verdict": combine(*parts) if parts else "inconclusive"})
  lag = paired(summ, "none", "batch", "early_loss")
  tol = lag.mean / 2 if lag is not None and lag.mean > 2 * lag.se else float("nan")
  parts, texts = [], []
  for n in lp:
    short = paired(summ, n, "batch", "early_loss")
    parts.append(rules.no_worse_verdict(short.mean, short.se, tol, cell(summ, n, "early_loss"),
                                        cell(summ, "batch", "early_loss")))
    texts.append(f"{LABELS[n]} - BN {pm(short)}")
  rows.append({
      "claim": "...with training speed similar to BN's",
      "paper": "l_p variants converge comparably to BN (Sec. 3.3)",
      "ours": "mean train loss over the first half of training: " + ", ".join(
          f"{LABELS[n]} {pm(cell(summ, n, 'early_loss'))}" for n in ["none", "batch"] + lp) + "; " + "; ".join(texts)
              + f" [rule: l_p - BN within tol = half of plain - BN ({fmt(tol)}) beyond 2 s.e., each variant]",
      "verdict": combine(*parts)})
  return rows


def _plot(results, summ, workdir) -> list[str]:
  fig, axes = _report.new_figure(ncols=3, size=(4.4, 3.4))
  for i, (norm, (steps, vals)) in enumerate(curves(results, "train_loss").items()):
    band(axes[0], steps, vals, f"C{i}", LABELS.get(norm, norm))
  axes[0].set_yscale("log")
  axes[0].set_title("train loss (mean ± s.e. over seeds)", fontsize=8)
  axes[0].set_xlabel("step")
  norms = list(summ)
  for i, key in enumerate(("test_acc", "train_acc")):
    st = [cell(summ, n, key) for n in norms]
    axes[1].bar(np.arange(len(norms)) + (i - 0.5) * 0.35, [s.mean for s in st], 0.35, yerr=[s.se for s in st],
                capsize=2, label=key.replace("_acc", ""), color=f"C{i}")
  axes[1].set_xticks(np.arange(len(norms)), [LABELS.get(n, n) for n in norms], fontsize=7)
  axes[1].set_ylim(min(c.mean for n in norms for c in [cell(summ, n, "test_acc")]) - 5, 100)
  axes[1].set_title("final accuracy % (mean ± s.e.)", fontsize=8)
  st = [cell(summ, n, "pre_drift_location") for n in norms]
  axes[2].bar(np.arange(len(norms)), [s.mean for s in st], 0.5, yerr=[s.se for s in st], capsize=2, color="C2")
  axes[2].set_xticks(np.arange(len(norms)), [LABELS.get(n, n) for n in norms], fontsize=7)
  axes[2].set_title("location drift before the norm (mean ± s.e.)", fontsize=8)
  for ax in axes[:2]:
    ax.legend(fontsize=7)
  paths = [_report.save_figure(fig, workdir, "training.png")]

  fig, axes = _report.new_figure(ncols=len(norms), size=(3.2, 2.8))
  axes = np.atleast_1d(axes)
  grid = np.linspace(-4, 4, 200)
  for ax, norm in zip(axes, norms):
    h = next(iter(results[norm].values()))
    vals = np.asarray(h["probe"]["hist_values"], np.float64)
    for u in range(min(2, len(vals))):
      v = vals[u]
      z = (v - v.mean()) / max(v.std(), 1e-12)
      ax.hist(z, bins=50, range=(-4, 4), density=True, alpha=0.5, color=f"C{u}", label=f"channel {u}")
    ax.plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), "k--", lw=1, label="N(0, 1)")
    ax.set_title(f"{LABELS.get(norm, norm)}: {h['probe']['hist_layer']} output (one seed, standardized)", fontsize=7)
    ax.legend(fontsize=6)
  paths.append(_report.save_figure(fig, workdir, "distributions.png"))
  return paths


# results.csv: the sweep studies' columns, then these per-run values.
CSV_KEYS = ("train_acc", "test_acc", "early_loss", "pre_drift_location", "pre_drift_log_scale", "kurtosis", "skew")


def run(config, workdir: str, log=print) -> str:
  os.makedirs(workdir, exist_ok=True)
  t0, trained_at = time.time(), rules.provenance()
  results = _train_all(config, log)
  _training.keep_raw(results, workdir)
  wall_s = time.time() - t0
  summ = summarize(config, results)
  rows = claim_rows(summ)
  c = config.train
  table = "\n".join(
      f"| {LABELS.get(norm, norm)} | {r['seed']} | {'yes' if r['converged'] else 'no'} "
      f"({fmt(r['train_loss_change'] if r['train_loss_change'] is not None else float('nan'))}) | {fmt(r['train_loss'])} | "
      f"{fmt(r['train_acc'])} | {fmt(r['test_acc'])} | {fmt(r['early_loss'])} | {fmt(r['pre_drift_location'])} | "
      f"{fmt(r['pre_drift_log_scale'])} | {fmt(r['kurtosis'])} | {fmt(r['skew'])} | {r['frac_kurt_gt1']:.0%} |"
      for norm, rs in summ.items() for r in rs)
  notes = f"""Trained at: {trained_at}; wall time {wall_s:.0f} s. Report written at: {rules.provenance()}.

Preset `{config.preset}`: `{c.model}` {c.model_options.to_dict()} on `{c.dataset}`, {c.optimizer} lr {c.learning_rate}
({c.schedule}), batch {c.batch_size}, {c.num_steps} steps, seeds {tuple(config.seeds)}, the same init per seed for every
norm. Paper: VGG on CIFAR-10 (the `gpu` preset); this preset is a small stand-in on a task where the plain net lags
BN (the premise rows). Test accuracy: eval mode (running statistics) after the last step; train accuracy: mean
train-mode batch accuracy over the last 10% of steps. Drift, measured *before* the norm: every {config.measure_every} steps,
every norm layer's input (the plain net: the same pre-activations) on the first {config.dist_batch} training
examples; location = std over checkpoints of a unit's mean over its average std, log-scale = std of log(unit std),
averaged over units and layers. Shape: every norm layer's output on the first {config.probe_batch} training examples after
training, per channel, averaged over channels and layers (excess kurtosis of a Gaussian: 0; BN's is the
reference). Convergence: the {rules.CONVERGENCE_TOL:.0%} rule of experiments/_sweep_study.py on the per-step train loss
(cells marked * did not all converge; claims using them are inconclusive). Mean ± s.e. over seeds; differences
paired by seed.

| norm | seed | converged (loss change) | final train loss | train acc % | test acc % | loss, first half | pre-norm location drift | pre-norm log-scale drift | mean abs excess kurtosis | mean abs skew | channels with abs kurtosis > 1 |
|---|---|---|---|---|---|---|---|---|---|---|---|
{{table}}
"""
  notes = notes.replace("{table}", table)
  figures = _plot(results, summ, workdir)
  rules.write_results_csv(_training.summary_csv_rows(config, summ, "test_acc", CSV_KEYS), workdir)
  return _report.write_report(workdir, TITLE, rows, notes, figures,
                              data={"summary": summ, "results": slim_results(results), "config": config.to_dict()})


if __name__ == "__main__":
  main_for("lp_norms", run)
