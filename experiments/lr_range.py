"""BN allows larger learning rates (Santurkar et al. 2018, Fig. 1; seed 000: "可以调大学习率").

    python -m experiments.lr_range --preset=smoke|cpu|gpu --workdir=DIR

Runs configs/sweeps/lr_range.py:PRESET (BN, GN, LN, no norm x peak lr 0.01 .. 1 x 3 seeds; VGG, SGD momentum,
cosine, no warmup, equal epochs), then writes DIR/report.md, error_vs_lr.png, results.csv/json.

Rules, fixed before the cpu run (experiments/_sweep_study.py: convergence, s.e., effect_verdict):
  * A run is *stable* when it did not diverge (a non-finite loss stops it; such runs are counted, never dropped)
    and its final train loss is <= (1 - TRAINS_DROP) x ln(10), i.e. it learned. A cell (norm, lr) is stable
    when all its seeds are. A norm's largest stable lr is the largest lr of its stable cells (none: 0).
  * (a) "BN allows larger learning rates": BN's largest stable lr > the plain net's: reproduced; otherwise not
    reproduced. Stability is the outcome here (finite and learned by the end of the full schedule), so the
    plateau rule does not gate (a); it gates the accuracy comparisons (b) and (c). The same rule for GN and LN
    against the plain net (controls, not the paper's claim).
  * (b) "BN still trains well at a large lr" (Fig. 1, lr 0.5): BN's best error at lr >= LARGE_LR is within
    2 s.e. of its best error at any lr: reproduced; not reproduced if it is worse by more than 2 s.e. or BN has
    no stable cell at lr >= LARGE_LR; inconclusive if a cell it compares did not converge.
  * (c) "without BN, a large lr hurts": the plain net's best error at lr >= LARGE_LR minus its best error at any
    lr, effect_verdict with a FLOOR-pt floor; no stable plain cell at lr >= LARGE_LR counts as reproduced (it
    cannot train there at all).
"""
from __future__ import annotations

import math

from experiments import _report
from experiments import _sweep_study as study

TITLE = "Santurkar et al. 2018, Fig. 1: does BN allow larger learning rates?"
TRAINS_DROP = 0.25   # stable: final train loss <= (1 - TRAINS_DROP) x ln(num_classes)
NUM_CLASSES = 10
LARGE_LR = 0.3       # "large": at least the paper's 0.5 within our grid's resolution (0.3, 1)
FLOOR = 0.5          # pts of error, as in the other sweep studies
NORMS = ("BN", "GN", "LN", "none")


def run_stable(row: dict) -> bool:
  loss = row.get("final_train_loss")
  return (row.get("status") == "done" and loss is not None and math.isfinite(float(loss))
          and float(loss) <= (1 - TRAINS_DROP) * math.log(NUM_CLASSES))


def stability(rows) -> dict:
  """{(variant, lr): (stable seeds, finished or diverged seeds, diverged seeds)}."""
  out: dict = {}
  for r in rows:
    if r.get("status") not in ("done", "diverged"):
      continue
    k = (r["variant"], float(r["learning_rate"]))
    s, n, d = out.get(k, (0, 0, 0))
    out[k] = (s + run_stable(r), n + 1, d + (r.get("status") == "diverged"))
  return out


def cell_stable(stab: dict, variant: str, lr: float, seeds: int) -> bool:
  s, n, _ = stab.get((variant, lr), (0, 0, 0))
  return n == seeds and s == seeds


def largest_stable(stab: dict, variant: str, lrs, seeds: int) -> float:
  ok = [lr for lr in lrs if cell_stable(stab, variant, lr, seeds)]
  return max(ok) if ok else 0.0


def best(table: dict, variant: str, lrs, stab: dict, seeds: int):
  """(lr, Stat) of the lowest mean error among the variant's stable cells at `lrs` (None if none)."""
  cells = [(lr, table[(variant, lr)]) for lr in lrs
           if (variant, lr) in table and cell_stable(stab, variant, lr, seeds) and table[(variant, lr)].n]
  return min(cells, key=lambda t: t[1].mean) if cells else None


def larger_lr_claim(variant: str, table, stab, lrs, seeds) -> dict:
  a, p = largest_stable(stab, variant, lrs, seeds), largest_stable(stab, "none", lrs, seeds)
  verdict = "reproduced" if a > p else "not reproduced"
  paper = ("Fig. 1: VGG with BN trains at lr 0.5, without BN it trains worse" if variant == "BN" else
           "(control: not claimed by the paper)")
  return {"claim": f"{variant} allows a larger learning rate than no norm (largest stable lr)", "paper": paper,
          "ours": f"largest stable lr: {variant} {a:g} vs none {p:g} (stable: all {seeds} seeds finite and final "
                  f"train loss <= {1 - TRAINS_DROP:.2f} ln 10)", "verdict": verdict}


def claims(table: dict, stab: dict, lrs, seeds: int, variants=NORMS) -> list[dict]:
  """The claim rows of rules (a)-(c) for the norms in `variants` (those the sweep ran)."""
  large = [lr for lr in lrs if lr >= LARGE_LR]
  out = [larger_lr_claim(v, table, stab, lrs, seeds) for v in NORMS if v != "none" and v in variants]
  b_all, b_large = best(table, "BN", lrs, stab, seeds), best(table, "BN", large, stab, seeds)
  if b_all is None:
    verdict, ours = "not reproduced", "BN has no stable cell"
  elif b_large is None:
    verdict, ours = "not reproduced", f"BN best {b_all[1]} at lr {b_all[0]:g}; no stable BN cell at lr >= {LARGE_LR:g}"
  else:
    d, se = b_large[1].mean - b_all[1].mean, study.diff_se(b_large[1], b_all[1])
    verdict = ("inconclusive" if not (b_large[1].converged and b_all[1].converged) else
               "reproduced" if d <= 2 * se else "not reproduced")
    ours = (f"BN best at lr >= {LARGE_LR:g}: {b_large[1]} (lr {b_large[0]:g}) vs best {b_all[1]} (lr {b_all[0]:g}): "
            f"{d:+.1f} ± {se:.1f} pts error")
  out.append({"claim": f"BN still trains well at a large lr (best error at lr >= {LARGE_LR:g} within 2 s.e. of its "
                       "best)",
              "paper": "Fig. 1: BN at lr 0.5 about as good as at 0.1", "ours": ours, "verdict": verdict})
  p_all, p_large = best(table, "none", lrs, stab, seeds), best(table, "none", large, stab, seeds)
  if p_all is None:
    verdict, ours = "inconclusive", "the plain net has no stable cell: nothing to compare"
  elif p_large is None:
    verdict, ours = "reproduced", f"no stable plain cell at lr >= {LARGE_LR:g} (best {p_all[1]} at lr {p_all[0]:g})"
  else:
    d, se = p_large[1].mean - p_all[1].mean, study.diff_se(p_large[1], p_all[1])
    verdict = study.effect_verdict(d, se, FLOOR, p_large[1], p_all[1])
    ours = (f"plain best at lr >= {LARGE_LR:g}: {p_large[1]} (lr {p_large[0]:g}) vs best {p_all[1]} (lr "
            f"{p_all[0]:g}): {d:+.1f} ± {se:.1f} pts error")
  out.append({"claim": "without BN a large lr hurts (best error at lr >= 0.3 worse than the plain net's best)",
              "paper": "Fig. 1: without BN, lr 0.5 trains worse than 0.1", "ours": ours, "verdict": verdict})
  return out


def _plot(table, stab, lrs, seeds, workdir, variants=NORMS) -> str:
  fig, axes = _report.new_figure(ncols=2, size=(5.2, 3.8))
  for i, v in enumerate(variants):
    xs = [lr for lr in lrs if (v, lr) in table and table[(v, lr)].n]
    axes[0].errorbar(xs, [table[(v, lr)].mean for lr in xs], yerr=[table[(v, lr)].se if table[(v, lr)].n > 1 else 0
                                                                   for lr in xs], marker="o", capsize=3,
                     color=f"C{i}", label=v)
    bad = [lr for lr in xs if not cell_stable(stab, v, lr, seeds)]
    axes[0].scatter(bad, [table[(v, lr)].mean for lr in bad], marker="x", s=80, color=f"C{i}")
    axes[1].plot(lrs, [stab.get((v, lr), (0, 0, 0))[0] for lr in lrs], marker="o", color=f"C{i}", label=v)
  for ax, ylabel, title in ((axes[0], "test error (%), mean ± s.e. of finite runs", "error vs lr (x: cell not stable)"),
                            (axes[1], f"stable runs (of {seeds})", "stability vs lr")):
    ax.set_xscale("log")
    _report.label_axes(ax, "peak learning rate", ylabel, title)
  return _report.save_figure(fig, workdir, "error_vs_lr.png")


def run(preset: str, workdir: str, log=print) -> str:
  sweep, rows = study.run_study_sweep("lr_range", preset, workdir, log)
  table = study.stats(rows, "variant", "learning_rate")
  table = {(v, float(lr)): s for (v, lr), s in table.items()}
  stab = stability(rows)
  lrs = sorted(float(x) for x in sweep.grid.learning_rate)
  seeds = len(tuple(sweep.grid.seed))
  out = claims(table, stab, lrs, seeds, tuple(sweep.grid.variant))
  png = _plot(table, stab, lrs, seeds, workdir, tuple(sweep.grid.variant))
  study.write_results_csv(rows, workdir)
  head = "| norm | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |"
  lines = [head, "|---|" + "---|" * len(lrs)]
  for v in sweep.grid.variant:
    cells = []
    for lr in lrs:
      s, n, d = stab.get((v, lr), (0, 0, 0))
      cells.append(f"{study.show(table.get((v, lr)))} [{s}/{n} stable" + (f", {d} diverged]" if d else "]"))
    lines.append(f"| {v} | " + " | ".join(cells) + " |")
  wall = sum(float(r.get("wall_time_s") or 0) for r in rows)
  notes = f"""Provenance: report written at {study.provenance()}; cells trained at
{study.trained_at(workdir, "sweep")}; summed training wall time of the cells {wall / 60:.1f} min.

Preset `{preset}`: base `{sweep.base}` with {dict(sweep.overrides)}; {sweep.budget_examples} training examples per
cell (equal epochs), one device; {study.seeds_note(rows)}. GN: {sweep.variants.GN.norm_options.num_groups} groups;
LN: GN with one group (all channels and positions). {study.convergence_note(rows)}.

Test error (%) per cell, mean ± s.e. over the finite runs, and [stable runs / runs, diverged]:

{chr(10).join(lines)}

Differences from the paper: Santurkar et al. train VGG on CIFAR-10 at lr 0.1 and 0.5 (the `gpu` preset runs the
full grid there); the `cpu` preset is a 1/8-width VGG-11 with 1-D convs on mnist1d_noisy for a few epochs, with
a cosine schedule (so that the plateau rule can judge convergence) and no warmup."""
  return _report.write_report(workdir, TITLE, out, notes, [png],
                              data={"preset": preset, "table": {f"{k[0]}@{k[1]:g}": vars(v) for k, v in table.items()},
                                    "stability": {f"{k[0]}@{k[1]:g}": v for k, v in stab.items()}, "rows": rows})


if __name__ == "__main__":
  study.study_main("lr_range", run, num_devices=1)
