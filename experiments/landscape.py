"""Loss landscape along the gradient with and without BN (Santurkar et al. 2018, section 3.1, Fig. 4).

    python -m experiments.landscape --preset=smoke|cpu|gpu --workdir=DIR

For every seed and norm ('batch', 'none'), `config.train` trains on normlab.train's one loop
(normlab.analysis.training). Every `measure_every` steps, on that step's batch (train-mode norms),
normlab.analysis.landscape moves along the normalized gradient by each distance d in `distances` (the
same distances, i.e. the same eta ||g||, for both networks) and records L(theta - d g/||g||) and
||grad L(theta - d g/||g||) - grad L(theta)||. Per measured step:
  loss variation   = max - min of the losses over the distances (0 included)
  grad variation   = max - min of the gradient changes ("gradient predictiveness", small = predictive)
  beta             = max over d > 0 of gradient change / d (effective beta-smoothness)
  rise distance    = the smallest d at which the loss exceeds L(theta) (the grid must reach it)
"Early" is the measured steps within the first `window` fraction of training, "late" those within the
last; each run's value in a window is the median over its measured steps there.

Verdict rules (fixed before the numbers; experiments/_sweep_study.py's rules on per-seed numbers):
  * "BN lowers <metric>" (early and late, each): per seed, r = ln(plain's value / BN's value);
    effect_verdict(mean r, s.e., floor ln(SMOOTHER)): reproduced if r > 2 s.e. and plain/BN >= SMOOTHER.
  * "the smoothing matters especially early in training" (seed 000): per seed, r_early - r_late;
    effect_verdict(mean, s.e., floor 0) per metric; the row combines the three metrics
    (experiments/_claims.combine). "...matters more at the end" (seed 002): the same with r_late - r_early.
  * The grid must reach the distances where the plain net's loss rises: if in either window fewer than
    RISE_FRACTION of the plain net's measured steps (over all seeds) see its loss exceed L(theta) within
    the grid, every verdict is inconclusive.
  * Every run must have converged (_sweep_study.curve_converged); otherwise the claims are inconclusive.
"""
from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _report, _training, main_for
from experiments import _sweep_study as rules
from experiments._claims import band, combine, pm
from experiments._report import fmt
from experiments._training import cfg_copy
from normlab.analysis import training
from normlab.analysis.landscape import along_gradient

TITLE = "Santurkar et al. 2018, section 3.1: the loss landscape along the gradient, with and without BN"
METRICS = (("loss_variation", "loss variation (range of L along the gradient)", "Fig. 4a"),
           ("grad_variation", "gradient change along the gradient (gradient predictiveness)", "Fig. 4b"),
           ("beta", "effective beta-smoothness (max gradient change per unit distance)", "Fig. 4c"))
SMOOTHER = 1.5       # "BN lowers it": plain / BN >= this (and ln ratio > 2 s.e.)
RISE_FRACTION = 0.8  # the grid reaches the plain net's loss rise at >= this fraction of its measured steps
WINDOWS = ("early", "late")
LABELS = {"batch": "BN", "none": "plain"}


def make_measure(config):
  dists = jnp.asarray(np.asarray(config.distances, np.float64), jnp.float32)

  def factory(run):
    loss = training.batch_loss(run)

    @jax.jit
    def landscape(params, batch_stats, x, y):
      r = along_gradient(lambda p: loss(p, batch_stats, x, y), params, dists, unit_direction=True)
      return r, r.loss_variation, r.grad_variation, r.beta

    def measure(run, step, state, batch, new_state):
      r, lv, gv, beta = jax.device_get(landscape(state.params, state.batch_stats, jnp.asarray(batch["x"]),
                                                 jnp.asarray(batch["y"])))
      losses = np.asarray(r.losses, np.float64)
      above = np.nonzero(losses > float(r.loss0))[0]
      return {"losses": losses.tolist(), "grad_diffs": np.asarray(r.grad_diffs).tolist(),
              "loss_variation": float(lv), "grad_variation": float(gv), "beta": float(beta),
              "grad_norm": float(r.grad_norm), "loss0": float(r.loss0),
              "rise_distance": float(np.asarray(dists)[above[0]]) if len(above) else float("inf")}
    return measure
  return factory


def train_all(config, log=print) -> dict:
  """{norm: {seed: history}}: every seed and norm of config.train, measured by make_measure."""
  out: dict = {}
  factory = make_measure(config)
  for seed in config.seeds:
    for norm in config.norms:
      c = cfg_copy(config.train, norm=norm, seed=int(seed))
      log(f"seed {seed} norm={norm}: {c.model} {c.model_options.to_dict()} on {c.dataset}, {c.optimizer} "
          f"lr={c.learning_rate}, batch {c.batch_size}, {c.num_steps} steps")
      hist, _ = training.train(c, training.lazy_measure(factory), measure_every=int(config.measure_every), log=log)
      out.setdefault(norm, {})[int(seed)] = hist
  return out


def in_window(rows: list[dict], which: str, total: int, frac: float) -> list[dict]:
  """The measured rows in the first (`early`) or last (`late`) `frac` of `total` steps (by steps done)."""
  if which == "early":
    return [r for r in rows if r["step"] + 1 <= frac * total]
  return [r for r in rows if r["step"] + 1 > (1 - frac) * total]


def summarize(config, results) -> dict:
  """{norm: [per-seed row]}: per window the median of each metric, the fraction of measured steps whose
  loss rose within the grid; convergence and final loss."""
  total, frac = int(config.train.num_steps), float(config.window)
  summ = {}
  for norm, by_seed in results.items():
    rows = []
    for seed, h in by_seed.items():
      converged, change = rules.curve_converged(h["curve"], h.get("diverged_at"))
      r = {"seed": int(seed), "converged": converged, "train_loss_change": change, "diverged_at": h.get("diverged_at"),
           "final_loss": float(np.mean([c["train_loss"] for c in h["curve"][-max(1, len(h["curve"]) // 10):]]))}
      for w in WINDOWS:
        m = in_window(h["measured"], w, total, frac)
        for key, _, _ in METRICS + (("grad_norm", "", ""),):
          r[f"{key}_{w}"] = float(np.median([x[key] for x in m])) if m else float("nan")
        r[f"rises_{w}"] = float(np.mean([np.isfinite(x["rise_distance"]) for x in m])) if m else float("nan")
        r[f"measured_{w}"] = len(m)
      rows.append(r)
    summ[norm] = rows
  return summ


def _log_ratios(summ, key) -> dict:
  """{seed: ln(plain / BN)} of `key`, and whether both runs of the seed converged."""
  b, p = ({r["seed"]: r for r in summ[n]} for n in ("batch", "none"))
  return {s: (math.log(max(p[s][key], 1e-30) / max(b[s][key], 1e-30)), p[s]["converged"] and b[s]["converged"])
          for s in sorted(set(b) & set(p))}


def claim_rows(config, summ) -> list[dict]:
  if not all(n in summ for n in ("batch", "none")):
    return []
  rises = {w: float(np.mean([r[f"rises_{w}"] for r in summ["none"]])) for w in WINDOWS}
  reached = all(v >= RISE_FRACTION for v in rises.values())
  reach_txt = (f"plain net's loss rose within the grid at {', '.join(f'{rises[w]:.0%} ({w})' for w in WINDOWS)} of "
               f"its measured steps [needs >= {RISE_FRACTION:.0%}]")
  rows, per_metric = [], {}
  for key, label, fig in METRICS:
    per_metric[key] = {}
    for w in WINDOWS:
      lr = _log_ratios(summ, f"{key}_{w}")
      st = rules.stat_of([v for v, _ in lr.values()], all(c for _, c in lr.values()))
      per_metric[key][w] = lr
      verdict = rules.effect_verdict(st.mean, st.se, math.log(SMOOTHER), st) if reached else "inconclusive"
      rows.append({
          "claim": f"BN lowers the {label}, {w} in training",
          "paper": f"lower with BN throughout training ({fig}, VGG on CIFAR-10)",
          "ours": f"median over the {w} window: BN {pm(rules.stat_of([r[f'{key}_{w}'] for r in summ['batch']]))}, plain "
                  f"{pm(rules.stat_of([r[f'{key}_{w}'] for r in summ['none']]))}; ln(plain/BN) {pm(st)} (x"
                  f"{fmt(math.exp(st.mean))}); {reach_txt} [rule: ln ratio > 2 s.e. and ratio >= {SMOOTHER}]",
          "verdict": verdict})
  for name, sign, paper in (("especially early in training", 1, "seed 000 (of the Lipschitz constant with and "
                                                                "without BN): 尤其是在训练的初期,这个差别更明显"),
                            ("more at the end of training", -1, "seed 002: BN在训练的后期的平滑作用更为明显")):
    parts, texts = [], []
    for key, _, _ in METRICS:
      e, la = per_metric[key]["early"], per_metric[key]["late"]
      seeds = sorted(set(e) & set(la))
      st = rules.stat_of([sign * (e[s][0] - la[s][0]) for s in seeds], all(e[s][1] and la[s][1] for s in seeds))
      parts.append(rules.effect_verdict(st.mean, st.se, 0.0, st) if reached else "inconclusive")
      texts.append(f"{key}: {pm(st)}")
    rows.append({
        "claim": f"BN's smoothing (plain/BN ratio) is larger {name}",
        "paper": paper,
        "ours": ("ln(plain/BN) early - late" if sign > 0 else "ln(plain/BN) late - early") + ", paired by seed: "
                + "; ".join(texts) + " [rule: > 2 s.e., all three metrics]",
        "verdict": combine(*parts)})
  return rows


def _plot(config, results, summ, workdir) -> str:
  """Top: the three metrics over training (mean ± s.e. over seeds). Bottom: loss and gradient change
  against distance, early and late (median over the window, mean ± s.e. over seeds)."""
  fig, axes = _report.new_figure(ncols=3, nrows=2, size=(4.4, 3.2))
  colors = {"batch": "C0", "none": "C3"}
  dists = np.asarray(config.distances, np.float64)
  total, frac = int(config.train.num_steps), float(config.window)
  for norm, by_seed in results.items():
    hs = list(by_seed.values())
    n = min(len(h["measured"]) for h in hs)
    steps = np.array([r["step"] + 1 for r in hs[0]["measured"][:n]])
    for j, (key, label, _) in enumerate(METRICS):
      vals = np.array([[r[key] for r in h["measured"][:n]] for h in hs])
      band(axes[0, j], steps, vals, colors[norm], LABELS[norm])
      axes[0, j].set_title(label, fontsize=8)
      axes[0, j].set_yscale("log")
      axes[0, j].set_xlabel("step")
    for w, ls in zip(WINDOWS, ("-", "--")):
      for j, key in enumerate(("losses", "grad_diffs")):
        per_seed = []
        for h in hs:
          m = in_window(h["measured"], w, total, frac)
          arr = np.array([r[key] for r in m])
          if key == "losses":
            arr = arr - np.array([r["loss0"] for r in m])[:, None]
          per_seed.append(np.median(arr, 0))
        v = np.array(per_seed)
        se = v.std(0, ddof=1) / math.sqrt(len(v)) if len(v) > 1 else np.zeros(v.shape[1])
        axes[1, j].errorbar(dists, v.mean(0), yerr=se, color=colors[norm], ls=ls, lw=1, capsize=2,
                            label=f"{LABELS[norm]}, {w}")
  axes[1, 0].set_title("L(theta - d g/|g|) - L(theta) vs distance d", fontsize=8)
  axes[1, 1].set_title("|grad(theta - d g/|g|) - grad(theta)| vs distance d", fontsize=8)
  for j in (0, 1):
    axes[1, j].set_xscale("symlog", linthresh=float(min(d for d in dists if d > 0)))
    axes[1, j].set_xlabel("distance d")
  axes[1, 0].set_yscale("symlog", linthresh=1e-2)
  axes[1, 1].set_yscale("log")
  norms = list(summ)
  for i, norm in enumerate(norms):
    for k, w in enumerate(WINDOWS):
      st = rules.stat_of([r[f"grad_norm_{w}"] for r in summ[norm]])
      axes[1, 2].bar(k + (i - 0.5) * 0.35, st.mean, 0.35, yerr=st.se, color=colors[norm], capsize=2,
                     label=LABELS[norm] if k == 0 else None)
  axes[1, 2].set_xticks(range(len(WINDOWS)), WINDOWS)
  axes[1, 2].set_title("median ||g|| (mean ± s.e. over seeds)", fontsize=8)
  for ax in axes.ravel():
    ax.legend(fontsize=6)
  return _report.save_figure(fig, workdir, "landscape.png")


def csv_rows(config, summ) -> list[dict]:
  c = config.train
  return [{"variant": norm, "batch_size": int(c.batch_size), "num_devices": 1, "seed": r["seed"],
           "final_train_loss": r["final_loss"], "converged": r["converged"], "train_loss_change": r["train_loss_change"],
           "steps": int(c.num_steps), "learning_rate": float(c.learning_rate),
           "status": "diverged" if r["diverged_at"] is not None else "done",
           **{k: v for k, v in r.items() if k.endswith(WINDOWS)}}
          for norm, rs in summ.items() for r in rs]


def run(config, workdir: str, log=print) -> str:
  os.makedirs(workdir, exist_ok=True)
  t0, trained_at = time.time(), rules.provenance()
  results = train_all(config, log=log)
  _training.keep_raw(results, workdir)
  return write(config, results, workdir, trained_at=trained_at, wall_s=time.time() - t0)


def write(config, results: dict, workdir: str, trained_at: str = "not recorded", wall_s: float = float("nan")) -> str:
  """The report from `results` ({norm: {seed: history}} of `train_all`)."""
  results = {n: {int(s): h for s, h in bs.items()} for n, bs in results.items()}
  summ = summarize(config, results)
  rows = claim_rows(config, summ)
  c = config.train
  cols = [f"{k}_{w}" for w in WINDOWS for k in ("loss_variation", "grad_variation", "beta", "grad_norm")]
  table = "\n".join(
      f"| {LABELS[n]} | {r['seed']} | {'yes' if r['converged'] else 'no'} ({fmt(r['train_loss_change'] or float('nan'))}) | "
      f"{fmt(r['final_loss'])} | " + " | ".join(fmt(r[k]) for k in cols) + f" | {r['rises_early']:.0%} / "
      f"{r['rises_late']:.0%} |" for n, rs in summ.items() for r in rs)
  notes = f"""Trained at: {trained_at}; wall time {wall_s:.0f} s. Report written at: {rules.provenance()}.

Preset `{config.preset}`: `{c.model}` {c.model_options.to_dict()} on `{c.dataset}`, {c.optimizer} lr {c.learning_rate}
({c.schedule}), batch {c.batch_size}, {c.num_steps} steps, seeds {tuple(config.seeds)}, norms BN and none (same init per
seed); measured every {config.measure_every} steps on that step's batch (train mode). Distances d (parameter-space
L2, the same for both networks, i.e. equal eta ||g||): {tuple(config.distances)}. Windows: early = first
{float(config.window):.0%} of the steps, late = last {float(config.window):.0%}. The paper (Fig. 4) moves by eta in a range of
learning rates (equal eta for both networks); equal eta lets a network with a larger ||g|| move farther, which is why
we compare at equal distance (the issue's correction). Paper: VGG on CIFAR-10 (the `gpu` preset). Convergence:
the {rules.CONVERGENCE_TOL:.0%} rule of experiments/_sweep_study.py on the per-step train loss; a claim that uses a run
that did not converge is inconclusive (marked *). Mean ± s.e. over seeds; ratios paired by seed.

| norm | seed | converged (loss change) | final loss | """ + " | ".join(cols) + """ | loss rose within grid (early / late) |
|---|---|---|---|""" + "---|" * len(cols) + f"""---|
{table}
"""
  figure = _plot(config, results, summ, workdir)
  rules.write_results_csv(csv_rows(config, summ), workdir)
  return _report.write_report(workdir, TITLE, rows, notes, [figure],
                              data={"summary": summ, "results": {n: {s: {"measured": h["measured"],
                                                                         "diverged_at": h.get("diverged_at")}
                                                                     for s, h in bs.items()}
                                                                 for n, bs in results.items()},
                                    "config": config.to_dict()})


if __name__ == "__main__":
  main_for("landscape", run)
