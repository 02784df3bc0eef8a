"""BN allows larger learning rates (Santurkar et al. 2018, Fig. 1; seed 000: "可以调大学习率").

    python -m experiments.lr_range --preset=smoke|cpu|gpu --workdir=DIR

Runs configs/sweeps/lr_range.py (BN, GN, LN, no norm x peak lr 0.01 .. 1 x 3 seeds; VGG, SGD momentum, cosine, no
warmup, equal epochs, one device).
Claims and rules:
  * A run is stable when it did not diverge and its final train loss is <= (1 - TRAINS_DROP) x ln(10) (it learned);
    a cell (norm, lr) when all its seeds are; a norm's largest stable lr is the largest lr of its stable cells.
  * (a) BN's largest stable lr > the plain net's: reproduced, else not reproduced (stability is the outcome here, so
    convergence does not gate it). The same for GN and LN (controls).
  * (b) BN's best error at lr >= LARGE_LR within 2 s.e. of its best at any lr (experiments/_study.at_most); not
    reproduced without a stable BN cell at lr >= LARGE_LR.
  * (c) the plain net's best error at lr >= LARGE_LR minus its best: effect, FLOOR; no stable plain cell at lr >=
    LARGE_LR counts as reproduced (it cannot train there).
"""
from __future__ import annotations

import math

from configs.sweeps import lr_range as sweep_config
from experiments import _study as S

TITLE = "Santurkar et al. 2018, Fig. 1: does BN allow larger learning rates?"
TRAINS_DROP = 0.25   # stable: final train loss <= (1 - TRAINS_DROP) x ln(10)
LARGE_LR = 0.3       # "large": the paper's 0.5 within our grid's resolution (0.3, 1)
FLOOR = 0.5          # pts of error
NORMS = ("BN", "GN", "LN", "none")


def run_stable(row: dict) -> bool:
  loss = row.get("final_train_loss")
  return (row.get("status") == "done" and loss is not None and math.isfinite(float(loss))
          and float(loss) <= (1 - TRAINS_DROP) * math.log(10))


def stability(rows) -> dict:
  """{(variant, lr): (stable runs, finished or diverged runs, diverged runs)}."""
  out: dict = {}
  for r in (r for r in rows if r.get("status") in ("done", "diverged")):
    k = (r["variant"], float(r["learning_rate"]))
    s, n, d = out.get(k, (0, 0, 0))
    out[k] = (s + run_stable(r), n + 1, d + (r.get("status") == "diverged"))
  return out


def largest_stable(stab, variant, lrs, seeds) -> float:
  return max([lr for lr in lrs if stab.get((variant, lr), (0, 0, 0))[:2] == (seeds, seeds)], default=0.0)


def best(table, stab, variant, lrs, seeds):
  """(lr, Stat) of the lowest mean error among the variant's stable cells at `lrs` (None if none)."""
  ok = [(lr, table[(variant, lr)]) for lr in lrs if stab.get((variant, lr), (0, 0, 0))[:2] == (seeds, seeds)]
  return min(ok, key=lambda t: t[1].mean) if ok else None


def _grid(data, key="converged"):
  rows = data["rows"]
  table = {(v, float(lr)): s for (v, lr), s in S.cells(rows, "variant", "learning_rate", conv_key=key).items()}
  lrs = sorted({float(r["learning_rate"]) for r in rows})
  return table, stability(rows), lrs, len({r["seed"] for r in rows})


def claims(data, key="converged") -> list[S.Claim]:
  table, stab, lrs, seeds = _grid(data, key)
  variants = set(r["variant"] for r in data["rows"])
  large = [lr for lr in lrs if lr >= LARGE_LR]
  out = []
  for v in (v for v in NORMS if v != "none" and v in variants):
    a, p = largest_stable(stab, v, lrs, seeds), largest_stable(stab, "none", lrs, seeds)
    out.append(S.Claim(f"{v} allows a larger learning rate than no norm (largest stable lr)",
                       "Fig. 1: VGG with BN trains at lr 0.5, without BN it trains worse" if v == "BN" else
                       "(control: not claimed by the paper)", f"largest stable lr: {v} {a:g} vs none {p:g} (stable: "
                       f"all {seeds} seeds finite, final train loss <= {1 - TRAINS_DROP:.2f} ln 10)",
                       "reproduced" if a > p else "not reproduced"))
  for v, claim, paper, rule in (
      ("BN", f"BN still trains well at a large lr (best error at lr >= {LARGE_LR:g} within 2 s.e. of its best)",
       "Fig. 1: BN at lr 0.5 about as good as at 0.1", S.at_most()),
      ("none", f"without BN a large lr hurts (best error at lr >= {LARGE_LR:g} worse than the plain net's best)",
       "Fig. 1: without BN, lr 0.5 trains worse than 0.1", S.effect(FLOOR))):
    b_all, b_large = best(table, stab, v, lrs, seeds), best(table, stab, v, large, seeds)
    if b_all is None:
      out.append(S.Claim(claim, paper, f"{v} has no stable cell", "not reproduced" if v == "BN" else "inconclusive"))
    elif b_large is None:
      out.append(S.Claim(claim, paper, f"no stable {v} cell at lr >= {LARGE_LR:g} (best {b_all[1]} at lr "
                         f"{b_all[0]:g})", "not reproduced" if v == "BN" else "reproduced"))
    else:
      out.append(S.Claim(claim, paper, S.diff(b_large[1], b_all[1]), rule, unit=" pts error",
                         note=f"best at lr >= {LARGE_LR:g}: {b_large[1]} (lr {b_large[0]:g}) vs best {b_all[1]} "
                              f"(lr {b_all[0]:g})"))
  return out


def run(config, workdir, log=print):
  return S.run_sweeps(config, workdir, log)


def report(data, workdir) -> str:
  table, stab, lrs, seeds = _grid(data)
  variants = list(dict.fromkeys(r["variant"] for r in data["rows"]))
  png = S.errorbar_plot(workdir, "error_vs_lr.png", [
      {"title": "error vs peak lr (hollow: not converged)", "xlabel": "peak learning rate", "logx": 10,
       "ylabel": "test error (%), finite runs", "series": {v: (lrs, [table.get((v, lr)) for lr in lrs])
                                                          for v in variants}},
      {"title": "stable runs vs lr", "xlabel": "peak learning rate", "ylabel": f"stable runs (of {seeds})",
       "logx": 10, "series": {v: (lrs, [S.stat([stab.get((v, lr), (0, 0, 0))[0]]) for lr in lrs]) for v in variants}}],
      size=(5.2, 3.8))
  lines = ["| norm | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
  for v in variants:
    cells = [f"{table.get((v, lr), '-')} [{stab.get((v, lr), (0, 0, 0))[0]}/{stab.get((v, lr), (0, 0, 0))[1]} "
             f"stable]" for lr in lrs]
    lines.append(f"| {v} | " + " | ".join(cells) + " |")
  notes = f"""{S.sweep_note(data)}

Test error (%) per cell, mean ± s.e. over the finite runs, and [stable runs / runs]:

{chr(10).join(lines)}

Santurkar et al. train VGG on CIFAR-10 at lr 0.1 and 0.5 (the `gpu` preset runs the full grid there); the `cpu` preset
is a 1/8-width VGG-11 with 1-D convs on {sweep_config.DATASETS['cpu']} ({sweep_config.TRAIN_EXAMPLES['cpu']:,} training examples) for
{sweep_config.EPOCHS['cpu']:g} epoch(s), with a cosine schedule and no warmup."""
  S.write_csv(workdir, data["rows"], S.SWEEP_COLUMNS)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
