"""Wu & He (2018), Group Normalization, Fig. 1: BN's error grows as the per-device batch shrinks, GN's stays flat.

    python -m experiments.batch_size --preset=smoke|cpu|gpu --workdir=DIR

The paper's protocol scaled down (configs/sweeps/_common.py): 8 devices, local BN over each device's
`batch_size` b examples, global batch 8b, lr 0.1 x 8b/256, the same warmup and epochs for every cell, 3 seeds.
Two sweeps (configs/experiments/batch_size.py), resumable:
  sweep   configs/sweeps/batch_size.py: BN, GN x b in {2, 4, 8, 16, 32}
  fixed   configs/sweeps/fixed_batch.py: global batch 8 x 32 with the steps and lr of the b = 32 cells, ghost BN
          with statistics over v in {2, 4, 8, 16} examples (the controlled arm; v = 32 is the b = 32 BN cell), and
          LN, IN, no norm at b = 32.
Claims and rules (experiments/_study.py: effect(floor) and the convergence gate):
  (a) BN error at b=2 minus at b=32: effect, 1-pt floor.
  (b) GN flat: largest minus smallest cell mean over b; reproduced if GN's is within max(2 s.e., 1 pt) while BN's
      exceeds that; partly if GN's is under half of BN's; not reproduced otherwise.
  (c) at b=32, BN <= GN < LN < IN: reproduced if BN is not worse than GN beyond 2 s.e. and GN < LN, LN < IN each
      beyond 2 s.e.; partly if at least two of the three relations hold in the means.
  (d) at b=2 GN beats BN: BN - GN, effect, 1-pt floor.
  (e) BN's excess over GN grows as the batch shrinks: (BN - GN at 2) - (BN - GN at 32), 1-pt floor.
  (f) controlled arm: at a fixed global batch, steps and lr, BN with statistics over 2 examples minus over 32:
      effect, 1-pt floor.
"""
from __future__ import annotations

import math

from experiments import _study as S

TITLE = "Wu & He 2018 (Group Norm): error vs per-device batch size, BN vs GN/LN/IN (8 devices, local BN)"
PAPER_BN = {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7}  # ResNet-50, ImageNet top-1 val error (%)
PAPER_GN = {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}
PAPER_B32 = {"BN": 23.6, "GN": 24.1, "LN": 25.3, "IN": 28.4}
FLOOR = 1.0  # pts: the smallest effect that counts as the paper's (its effects are 10+ pts)


def tables(rows, key="converged"):
  """({(variant, b): Stat} of the main cells, {v: Stat} of the controlled arm (v = 32: BN at b = 32))."""
  ghost = [r for r in rows if r["variant"].startswith("ghostBN")]
  t = S.cells([r for r in rows if r not in ghost], "variant", "batch_size", conv_key=key)
  g = {int(k.split("=")[1]): s for k, s in S.cells(ghost, "variant", conv_key=key).items()}
  batches = sorted({b for n, b in t if n == "BN"})
  if ("BN", batches[-1]) in t:
    g[batches[-1]] = t[("BN", batches[-1])]
  return t, g, batches


def _spread(t, norm, batches):
  cs = [t.get((norm, b)) for b in batches]
  if not all(c and c.n for c in cs):
    return None
  hi, lo = max(cs, key=lambda c: c.mean), min(cs, key=lambda c: c.mean)
  return S.combine_cells(hi.mean - lo.mean, math.hypot(hi.se, lo.se), min(c.n for c in cs), *cs)


def _flat(gn, bn):
  if gn is None or bn is None:
    return "inconclusive"
  flat = lambda s: s.mean <= max(2 * s.se, FLOOR)  # noqa: E731
  return "reproduced" if flat(gn) and not flat(bn) else "partly" if gn.mean < bn.mean / 2 else "not reproduced"


def _order(bn, gn, ln, in_):
  holds = [bn.mean - gn.mean <= 2 * math.hypot(bn.se, gn.se), gn.mean < ln.mean, ln.mean < in_.mean]
  strong = [S.diff(ln, gn).mean > 2 * S.diff(ln, gn).se, S.diff(in_, ln).mean > 2 * S.diff(in_, ln).se]
  return "reproduced" if all(holds) and all(strong) else "partly" if sum(holds) >= 2 else "not reproduced"


def claims(data, key="converged") -> list[S.Claim]:
  t, g, batches = tables(data["rows"], key)
  small, ref = batches[0], batches[-1]
  get = lambda n, b: t.get((n, b), S.stat([]))  # noqa: E731
  bn_s, bn_r, gn_s, gn_r = get("BN", small), get("BN", ref), get("GN", small), get("GN", ref)
  gn, bn = _spread(t, "GN", batches), _spread(t, "BN", batches)
  order = {n: get(n, ref) for n in ("BN", "GN", "LN", "IN")}
  gap = S.diff(S.diff(bn_s, gn_s), S.diff(bn_r, gn_r))
  out = [
      S.Claim(f"(a) BN's error rises as the per-device batch shrinks (b={small} minus b={ref})",
              f"+{PAPER_BN[2] - PAPER_BN[32]:.1f} pts (23.6% at 32 -> 34.7% at 2)", S.diff(bn_s, bn_r),
              S.effect(FLOOR), unit=" pts", note=f"b={small} {bn_s}, b={ref} {bn_r}; error %"),
      S.Claim("(b) GN's error is flat in the batch size (largest - smallest cell over b)",
              f"GN {max(PAPER_GN.values()) - min(PAPER_GN.values()):.1f} pts vs BN "
              f"{max(PAPER_BN.values()) - min(PAPER_BN.values()):.1f} pts", {"GN": gn, "BN": bn}, _flat(gn, bn),
              unit=" pts"),
      S.Claim(f"(c) at b={ref}: BN <= GN < LN < IN (error)", " / ".join(f"{n} {v}" for n, v in PAPER_B32.items()),
              order, _order(*order.values()) if all(s.n for s in order.values()) else "inconclusive", unit="%"),
      S.Claim(f"(d) at b={small} GN beats BN (BN minus GN)", f"by {PAPER_BN[2] - PAPER_GN[2]:.1f} pts at 2",
              S.diff(bn_s, gn_s), S.effect(FLOOR), unit=" pts", note=f"BN {bn_s} vs GN {gn_s}"),
      S.Claim(f"(e) BN's excess error over GN grows as the batch shrinks (gap at b={small} minus at b={ref})",
              "+11.1 pts (gap +10.6 at 2, -0.5 at 32)", gap, S.effect(FLOOR), unit=" pts")]
  if len(g) > 1:
    v = min(g)
    out.append(S.Claim(f"(f) controlled: at a fixed global batch ({8 * ref}), steps and lr, BN with statistics over "
                       f"{v} examples is worse than over {ref}", "not run in the paper (its b changes the SGD batch "
                       "too: 8b)", S.diff(g[v], g[ref]), S.effect(FLOOR), unit=" pts", note=f"v={v} {g[v]} vs v={ref} "
                       f"{g[ref]}"))
  return out


def run(config, workdir, log=print):
  return S.run_sweeps(config, workdir, log)


def report(data, workdir) -> str:
  t, g, batches = tables(data["rows"])
  norms = [n for n in ("BN", "GN", "LN", "IN", "none") if any(k[0] == n for k in t)]
  main = {n: (batches, [t.get((n, b)) for b in batches]) for n in norms}
  vs = sorted(g)
  fig = S.errorbar_plot(workdir, "error_vs_batch.png", [
      {"title": "paper: ResNet-50, ImageNet", "xlabel": "batch_size (per device)", "ylabel": "error (%)", "logx": 2,
       "series": {n: (sorted(p), [S.stat([p[b]]) for b in sorted(p)]) for n, p in (("BN", PAPER_BN),
                                                                                ("GN", PAPER_GN))}},
      {"title": "ours: global_batch = 8 x batch_size", "xlabel": "batch_size (per device)", "ylabel": "error (%)",
       "logx": 2, "series": main},
      {"title": f"ours: global_batch 8 x {batches[-1]} fixed", "xlabel": "examples in BN's statistics (v)",
       "ylabel": "error (%)", "logx": 2, "series": {"BN": (vs, [g[v] for v in vs])},
       "band": ("GN (± s.e.)", t.get(("GN", batches[-1])))}])
  cols = " | ".join(f"b={b}" for b in batches)
  lines = [f"| norm | {cols} |", "|---|" + "---|" * len(batches)]
  lines += [f"| {n} | " + " | ".join(str(t.get((n, b), "-")) for b in batches) + " |" for n in norms]
  notes = f"""{S.sweep_note(data)}

Eval error (%, mean ± s.e.) per norm and per-device batch_size b (global_batch 8b; LN, IN, none at b={batches[-1]}):

{chr(10).join(lines)}

Controlled arm (global_batch 8 x {batches[-1]}, the steps and lr of the b={batches[-1]} cells; ghost BN with statistics
over v examples): {' | '.join(f'v={v}: {g[v]}' for v in vs)}.

The protocol (8 devices, local statistics, linear lr scaling, equal epochs) is the paper's; the task (a 1-D ResNet on
MNIST-1D signals) and the budget are a small stand-in for ResNet-50 on ImageNet, so effects are smaller. Differences under
2 s.e. are not findings."""
  S.write_csv(workdir, data["rows"], S.SWEEP_COLUMNS)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [fig], data)


if __name__ == "__main__":
  S.main(__spec__.name)
