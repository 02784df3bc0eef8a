"""BN against the plain net on the paper's DLN (normlab.analysis.paper_dln grids): summaries, the three
comparisons, and the claim rule, fixed before the results they judge.

Units. A grid holds, per net ('batch', 'none'), lr and data draw (seed), the per-layer ICS at the measured
steps. Layer 1 has no earlier layer (its ICS is exactly 0) and is left out of every mean. For a pair of runs
(BN, plain) of one seed, d = [mean over the chosen measured steps of the mean over layers 2..k of log X(BN)] -
[the same for plain], for X = ||G - G'|| ('l2') or ||G - G'|| / ||dW_(<i)|| ('normalized'); for cos(G, G')
('cos') the plain mean, not the log. A comparison is the mean of d over seeds (the independent units: the data
draws) ± its s.e. over seeds.

The three comparisons:
  * same lr (`compare_same_lr`): both nets at one lr, all measured steps (the paper's comparison);
  * own best lr (`compare_best_lr`): each net at its best lr (`best_lr`: the lowest mean over seeds of the log
    final loss, among the lrs where every seed's loss stayed finite), all measured steps;
  * matched training loss (`compare_matched_loss`): per seed, a loss level both nets pass, `level` = the
    geometric point a fraction q = 0.5 of the way (in log loss) from hi = the lower of the two initial losses
    to lo = the higher of the two lowest measured losses; each net's ICS is taken at its first measured step
    whose loss (before that step) is <= level. Default lrs: each net's best lr. A seed where lo >= hi (no
    level both pass) gives no d.

The rule (the same semantics as experiments/ics.py's claim (1), `not_lower_verdict` there): the claim "BN does
not reduce ICS" is reproduced when d = log(BN / plain) of ||G - G'|| is >= -2 s.e. (BN not significantly lower,
or higher), not reproduced when d < -2 s.e.; the normalised form takes the same rule as a second row, and cos
the mirrored one (not reproduced when BN's cos is higher by more than 2 s.e.). Inconclusive when a cell in
the comparison did not train (`trained`: every seed's loss finite and its final loss <= (1 - TRAINS_DROP) x its
initial loss, the criterion of experiments/ics.py), or when fewer than 2 seeds give a d (no s.e.; stricter
than experiments/ics.py, which reads a one-seed d as reproduced).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from normlab.errors import UserError

TINY = 1e-30
TRAINS_DROP = 0.25
PLOT_LAYERS = (9, 17)  # the layers the paper plots (forward order, 1-based)
FORMS = ("l2", "normalized", "cos")
PAPER = "Fig. 5: on the DLN, ICS with BN similar or larger than without (l2 larger, cos smaller)"
REGIMES = (
    {"name": "same lr 1e-6", "kind": "same_lr", "lr": 1e-6},
    {"name": "same lr 1e-7", "kind": "same_lr", "lr": 1e-7},
    {"name": "own best lr", "kind": "best_lr"},
    {"name": "matched training loss", "kind": "matched_loss"},
)


class Comparison(NamedTuple):
  mean: float
  se: float
  n: int
  lr_bn: float | None
  lr_plain: float | None


def mean_se(values) -> tuple[float, float, int]:
  """Mean, s.e. (ddof 1; nan for one value) and count of the finite values."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  if len(v) == 0:
    return float("nan"), float("nan"), 0
  return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")), len(v)


def lr_index(grid: dict, lr: float) -> int:
  for i, v in enumerate(grid["lrs"]):
    if math.isclose(v, lr, rel_tol=1e-9):
      return i
  raise UserError(f"paper_dln: lr {lr!r} is not in the grid; its lrs: {', '.join(map(str, grid['lrs']))}")


def _check_form(form: str) -> None:
  if form not in FORMS:
    raise UserError(f"paper_dln: form must be one of {', '.join(FORMS)}, got {form!r}")


def layer_mean(values, form: str):
  """(M, k) per measured step x layer -> (M,): mean over layers 2..k of log X (l2, normalized) or of X (cos)."""
  v = np.asarray(values, np.float64)[..., 1:]
  return np.mean(v, -1) if form == "cos" else np.mean(np.log(np.maximum(v, TINY)), -1)


def trained(grid: dict, net: str, lr: float) -> bool:
  """Every seed of `net` at `lr`: a finite loss throughout and final <= (1 - TRAINS_DROP) x initial."""
  d, i = grid["nets"][net], lr_index(grid, lr)
  return all(bool(np.all(np.isfinite(d["loss"][i, s])) and np.isfinite(d["final_loss"][i, s])
                  and d["final_loss"][i, s] <= (1 - TRAINS_DROP) * d["loss"][i, s, 0])
             for s in range(len(grid["seeds"])))


def best_lr(grid: dict, net: str) -> float | None:
  """The lr with the lowest mean over seeds of log final loss, among lrs where every seed stayed finite."""
  d = grid["nets"][net]
  best, best_v = None, math.inf
  for i, lr in enumerate(grid["lrs"]):
    fin = d["final_loss"][i]
    if np.all(np.isfinite(d["loss"][i])) and np.all(np.isfinite(fin)) and np.mean(np.log(fin)) < best_v:
      best, best_v = lr, float(np.mean(np.log(fin)))
  return best


def _paired(grid: dict, form: str, lr_bn: float, lr_plain: float) -> Comparison:
  _check_form(form)
  ib, ip = lr_index(grid, lr_bn), lr_index(grid, lr_plain)
  bn, plain = grid["nets"]["batch"][form], grid["nets"]["none"][form]
  d = [float(np.mean(layer_mean(bn[ib, s], form) - layer_mean(plain[ip, s], form))) for s in range(len(grid["seeds"]))]
  return Comparison(*mean_se(d), lr_bn, lr_plain)


def compare_same_lr(grid: dict, lr: float, form: str = "l2") -> Comparison:
  """BN vs plain at the same lr, all measured steps (module docstring)."""
  return _paired(grid, form, lr, lr)


def compare_best_lr(grid: dict, form: str = "l2") -> Comparison:
  """BN at its best lr vs plain at its best lr, all measured steps; nan if a net has no finite lr."""
  lb, lp = best_lr(grid, "batch"), best_lr(grid, "none")
  if lb is None or lp is None:
    return Comparison(float("nan"), float("nan"), 0, lb, lp)
  return _paired(grid, form, lb, lp)


def matched_steps(loss_bn, loss_plain, measured_steps, q: float = 0.5):
  """(index into measured steps for BN, for plain, level) at the loss level both pass, or None (docstring)."""
  lb = np.asarray(loss_bn, np.float64)[measured_steps]
  lp = np.asarray(loss_plain, np.float64)[measured_steps]
  if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(lp))):
    return None
  hi, lo = min(lb[0], lp[0]), max(lb.min(), lp.min())
  if not lo < hi:
    return None
  level = math.exp((1 - q) * math.log(hi) + q * math.log(lo))
  return int(np.argmax(lb <= level)), int(np.argmax(lp <= level)), level


def compare_matched_loss(grid: dict, form: str = "l2", lr_bn: float | None = None, lr_plain: float | None = None,
                         q: float = 0.5) -> Comparison:
  """BN vs plain at the first measured steps where each reaches a common training loss (module docstring)."""
  _check_form(form)
  if not 0 < q <= 1:
    raise UserError(f"paper_dln: q must be in (0, 1], got {q!r}")
  lr_bn = best_lr(grid, "batch") if lr_bn is None else lr_bn
  lr_plain = best_lr(grid, "none") if lr_plain is None else lr_plain
  if lr_bn is None or lr_plain is None:
    return Comparison(float("nan"), float("nan"), 0, lr_bn, lr_plain)
  ib, ip = lr_index(grid, lr_bn), lr_index(grid, lr_plain)
  b, p = grid["nets"]["batch"], grid["nets"]["none"]
  d = []
  for s in range(len(grid["seeds"])):
    m = matched_steps(b["loss"][ib, s], p["loss"][ip, s], grid["measured_steps"], q)
    if m is not None:
      d.append(float(layer_mean(b[form][ib, s, m[0]], form) - layer_mean(p[form][ip, s, m[1]], form)))
  return Comparison(*mean_se(d), lr_bn, lr_plain)


def summary(grid: dict, layers=PLOT_LAYERS) -> dict:
  """{net: [per lr {'lr', 'seeds': [per seed {'seed', 'initial_loss', 'final_loss', each form: mean over layers
  2..k and measured steps, 'layer<j>': {form: mean over measured steps} for j in `layers` (clipped to the
  depth)}]}]}."""
  depth = grid["depth"]
  layers = sorted({min(max(int(j), 1), depth) for j in layers})
  out = {}
  for net, d in grid["nets"].items():
    rows = []
    for i, lr in enumerate(grid["lrs"]):
      seeds = []
      for s, seed in enumerate(grid["seeds"]):
        r = {"seed": seed, "initial_loss": float(d["loss"][i, s, 0]), "final_loss": float(d["final_loss"][i, s])}
        r.update({f: float(np.mean(d[f][i, s, :, 1:])) for f in FORMS})
        r.update({f"layer{j}": {f: float(np.mean(d[f][i, s, :, j - 1])) for f in FORMS} for j in layers})
        seeds.append(r)
      rows.append({"lr": lr, "seeds": seeds})
    out[net] = rows
  return out


def layer_curves(grid: dict, net: str, lr: float, form: str = "l2", layers=PLOT_LAYERS) -> dict:
  """{layer j (1-based, clipped to the depth): (seeds, measured steps) array of `form`}: the paper's per-layer
  curves over training (x axis: grid['measured_steps'])."""
  _check_form(form)
  d, i = grid["nets"][net][form], lr_index(grid, lr)
  return {j: d[i, :, :, j - 1] for j in sorted({min(max(int(j), 1), grid["depth"]) for j in layers})}


def not_lower_verdict(c: Comparison, converged: bool) -> str:
  """"BN does not reduce ICS" (l2, normalized): reproduced unless d < -2 s.e. (module docstring)."""
  if not converged or c.n < 2 or not np.isfinite(c.mean) or not np.isfinite(c.se):
    return "inconclusive"
  return "not reproduced" if c.mean < -2 * c.se else "reproduced"


def not_higher_verdict(c: Comparison, converged: bool) -> str:
  """cos(G, G') with BN not higher: reproduced unless BN - plain > 2 s.e."""
  if not converged or c.n < 2 or not np.isfinite(c.mean) or not np.isfinite(c.se):
    return "inconclusive"
  return "not reproduced" if c.mean > 2 * c.se else "reproduced"


def regime_comparison(grid: dict, regime: dict, form: str) -> Comparison:
  kind = regime.get("kind")
  if kind == "same_lr":
    return compare_same_lr(grid, regime["lr"], form)
  if kind == "best_lr":
    return compare_best_lr(grid, form)
  if kind == "matched_loss":
    return compare_matched_loss(grid, form, regime.get("lr_bn"), regime.get("lr_plain"), regime.get("q", 0.5))
  raise UserError(f"paper_dln: regime kind must be one of same_lr, best_lr, matched_loss, got {kind!r}")


def regime_rows(grid: dict, regimes=REGIMES) -> list[dict]:
  """One row per regime and form: the comparison, whether both cells trained, and the verdict."""
  rows = []
  for regime in regimes:
    for form in FORMS:
      c = regime_comparison(grid, regime, form)
      conv = (c.lr_bn is not None and c.lr_plain is not None and trained(grid, "batch", c.lr_bn)
              and trained(grid, "none", c.lr_plain))
      verdict = not_higher_verdict(c, conv) if form == "cos" else not_lower_verdict(c, conv)
      rows.append({"regime": regime["name"], "form": form, "mean": c.mean, "se": c.se, "n": c.n,
                   "lr_bn": c.lr_bn, "lr_plain": c.lr_plain, "converged": conv, "verdict": verdict,
                   "difference": "cos(BN) - cos(plain)" if form == "cos" else f"log(BN/plain) of {form}"})
  return rows
