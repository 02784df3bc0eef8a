"""Per-seed claim statistics of the training studies (noisy_bn, lp_norms, landscape): cells and paired
differences as experiments/_sweep_study.Stat (mean ± s.e. over seeds, converged only if every run did),
their text, the combination of a row's parts, and mean ± s.e. curves for the plots.

A study's summary is {arm: [per-seed row dict with 'seed', 'converged', 'diverged_at' and numbers]}.
"""
from __future__ import annotations

import math

import numpy as np

from experiments import _sweep_study as rules
from experiments._report import fmt


def cell(summ, norm, key) -> rules.Stat | None:
  """Mean ± s.e. of `key` over the seeds of `norm`, converged only if every run converged."""
  if norm not in summ:
    return None
  rows = summ[norm]
  return rules.stat_of([r[key] for r in rows], all(r["converged"] for r in rows),
                       sum(r["diverged_at"] is not None for r in rows))


def paired(summ, a, b, key, fn=lambda x, y: x - y) -> rules.Stat | None:
  """Per-seed fn(a's value, b's value), mean ± s.e. over the seeds both have; converged as both cells."""
  if a not in summ or b not in summ:
    return None
  ra, rb = ({r["seed"]: r for r in summ[n]} for n in (a, b))
  seeds = sorted(set(ra) & set(rb))
  conv = all(ra[s]["converged"] and rb[s]["converged"] for s in seeds)
  return rules.stat_of([fn(ra[s][key], rb[s][key]) for s in seeds], conv)


def pm(stat: rules.Stat | None, unit: str = "") -> str:
  if stat is None:
    return "missing"
  txt = f"{fmt(stat.mean)} ± {fmt(stat.se)}{unit}" if stat.n > 1 else f"{fmt(stat.mean)}{unit}"
  return txt + ("" if stat.converged else " *")


def combine(*verdicts: str) -> str:
  """Both parts of a row: reproduced if all are, inconclusive if any is, partly if any part holds."""
  if all(v == "reproduced" for v in verdicts):
    return "reproduced"
  if any(v == "inconclusive" for v in verdicts):
    return "inconclusive"
  return "partly" if any(v in ("reproduced", "partly") for v in verdicts) else "not reproduced"


def curves(results, key, measured=False):
  """{norm: (steps, per-seed values (seeds, points))}."""
  out = {}
  for norm, by_seed in results.items():
    hs = list(by_seed.values())
    if measured:
      steps = [r["done"] for r in hs[0]["measured"]]
      vals = np.array([[r[key] for r in h["measured"]][: len(steps)] for h in hs])
    else:
      n = min(len(h["curve"]) for h in hs)
      w = max(1, n // 50)
      steps = np.arange(w, n + 1, w)
      vals = np.array([[np.mean([c[key] for c in h["curve"][s - w:s]]) for s in steps] for h in hs])
    out[norm] = (np.asarray(steps), vals)
  return out


def band(ax, steps, vals, color, label):
  m = vals.mean(0)
  se = vals.std(0, ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else np.zeros_like(m)
  ax.plot(steps, m, color=color, lw=1, label=label)
  ax.fill_between(steps, m - se, m + se, color=color, alpha=0.25)


