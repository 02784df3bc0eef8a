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

Claims and rules (experiments/_study.py; per-seed numbers):
  * "BN lowers <metric>" (early and late, each): per seed, r = ln(plain's value / BN's value);
    effect(ln(SMOOTHER)): reproduced if r > 2 s.e. and plain/BN >= SMOOTHER.
  * "the smoothing matters especially early in training" (seed 000): per seed, r_early - r_late;
    effect(0) per metric; the row combines the three metrics. "...matters more at the end" (seed 002): the same
    with r_late - r_early.
  * The grid must reach the distances where the plain net's loss rises: if in either window fewer than
    RISE_FRACTION of the plain net's measured steps (over all seeds) see its loss exceed L(theta) within
    the grid, every verdict is inconclusive.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _study as S
from normlab.analysis import training
from normlab.analysis.landscape import along_gradient
from normlab.analysis.probes import cfg_copy

TITLE = "Santurkar et al. 2018, section 3.1: the loss landscape along the gradient, with and without BN"
METRICS = (("loss_variation", "loss variation (range of L along the gradient)", "Fig. 4a"),
           ("grad_variation", "gradient change along the gradient (gradient predictiveness)", "Fig. 4b"),
           ("beta", "effective beta-smoothness (max gradient change per unit distance)", "Fig. 4c"))
SMOOTHER = 1.5       # "BN lowers it": plain / BN >= this (and ln ratio > 2 s.e.)
RISE_FRACTION = 0.8  # the grid reaches the plain net's loss rise at >= this fraction of its measured steps
WINDOWS = ("early", "late")
LABELS = {"batch": "BN", "none": "plain"}
OLD_RULE = "strict"


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


def in_window(rows: list[dict], which: str, total: int, frac: float) -> list[dict]:
  """The measured rows in the first (`early`) or last (`late`) `frac` of `total` steps (by steps done)."""
  if which == "early":
    return [r for r in rows if r["step"] + 1 <= frac * total]
  return [r for r in rows if r["step"] + 1 > (1 - frac) * total]


def summary_row(config, rec, hist) -> dict:
  """Per window the median of each metric over the measured steps, and the fraction whose loss rose in the grid."""
  total, frac = int(config.train.num_steps), float(config.window)
  for w in WINDOWS:
    m = in_window(hist["measured"], w, total, frac)
    for key in [k for k, _, _ in METRICS] + ["grad_norm"]:
      rec[f"{key}_{w}"] = float(np.median([x[key] for x in m])) if m else float("nan")
    rec[f"rises_{w}"] = float(np.mean([np.isfinite(x["rise_distance"]) for x in m])) if m else float("nan")
  rec["final_loss"] = rec["final_train_loss"]
  return rec


def run(config, workdir, log=print) -> dict:
  prov, summ, factory = S.Provenance(), {}, make_measure(config)
  for seed in config.seeds:
    for norm in config.norms:
      c = cfg_copy(config.train, norm=norm, seed=int(seed))
      log(f"seed {seed} norm={norm}: {c.model} on {c.dataset}, lr={c.learning_rate}, {c.num_steps} steps")
      rec, _, hist = S.train_record(c, log, measure=training.lazy_measure(factory),
                                    measure_every=int(config.measure_every))
      summ.setdefault(norm, []).append(summary_row(config, rec, hist))
  return S.in_memory_data(config, None, prov, summary=summ)


def claims(data, key="converged") -> list[S.Claim]:
  summ = data["summary"]
  if not all(n in summ for n in ("batch", "none")):
    return []
  reached = all(np.mean([r[f"rises_{w}"] for r in summ["none"]]) >= RISE_FRACTION for w in WINDOWS)
  ratios = {(k, w): _log_ratios(summ, f"{k}_{w}", key) for k, _, _ in METRICS for w in WINDOWS}
  logs = {kw: S.over_seeds(d, 2) for kw, d in ratios.items()}
  gate = None if reached else "inconclusive"
  out = [S.Claim(f"BN lowers the {label}, {w} in training", f"lower with BN throughout training ({fig}, VGG on "
                 "CIFAR-10)", logs[(k, w)], gate or S.effect(math.log(SMOOTHER)), note=f"ln(plain/BN) of the {w} "
                 f"window's median [rule: ratio >= {SMOOTHER}; the grid must reach the plain net's loss rise]")
         for k, label, fig in METRICS for w in WINDOWS]
  for name, sign, paper in (("especially early in training", 1, "seed 000: 尤其是在训练的初期,这个差别更明显"),
                            ("more at the end of training", -1, "seed 002: BN在训练的后期的平滑作用更为明显")):
    parts = {k: S.paired(ratios[(k, "early")], ratios[(k, "late")], lambda e, la: sign * (e - la))
             for k, _, _ in METRICS}
    out.append(S.Claim(f"BN's smoothing (plain/BN ratio) is larger {name}", paper, parts, gate or S.effect(0.0),
                       note="ln(plain/BN) " + ("early - late" if sign > 0 else "late - early") + ", paired by seed"))
  return out


def _log_ratios(summ, k, key) -> dict:
  """{seed: (ln(plain / BN) of `k`, both runs converged)}."""
  p, b = S.seeds_of(summ, "none", k, key), S.seeds_of(summ, "batch", k, key)
  return {s: (math.log(max(p[s][0], 1e-30) / max(b[s][0], 1e-30)), p[s][1] and b[s][1])
          for s in sorted(set(p) & set(b))}


def report(data, workdir) -> str:
  data.setdefault("old_rule", OLD_RULE)
  summ, cfg = data["summary"], data["config"]
  panels = [{"title": f"{label} (median per window)", "logy": True,
             "series": {LABELS[n]: (list(WINDOWS), [S.runs_stat(rs, lambda r, k=f"{key}_{w}": r[k]) for w in WINDOWS])
                        for n, rs in summ.items()}} for key, label, _ in METRICS]
  png = S.errorbar_plot(workdir, "landscape.png", panels)
  cols = [f"{k}_{w}" for w in WINDOWS for k in ("loss_variation", "grad_variation", "beta", "grad_norm", "rises")]
  lines = [f"| {LABELS[n]} | " + " | ".join(str(S.runs_stat(rs, lambda r, k=k: r[k])) for k in cols) + " |"
           for n, rs in summ.items()]
  S.write_csv(workdir, [{"norm": n, **r} for n, rs in summ.items() for r in rs])
  t = cfg["train"]
  notes = S.per_norm_notes(data, f"""Preset `{cfg['preset']}`: `{t['model']}` {t['model_options']} on `{t['dataset']}`, {t['optimizer']} lr
{t['learning_rate']} ({t['schedule']}), batch_size {t['batch_size']}, {t['num_steps']} steps, seeds {cfg['seeds']}, BN
and none (same init per seed); measured every {cfg['measure_every']} steps on that step's batch (train mode).
Distances d (parameter-space L2, the same for both networks): {cfg['distances']}. Windows: the first and the last
{float(cfg['window']):.0%} of the steps. The paper (Fig. 4) moves by eta along the gradient; equal eta lets a
network with a larger ||g|| move farther, so we compare at equal distance. Paper: VGG on CIFAR-10 (the `gpu`
preset).""", cols, lines)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
