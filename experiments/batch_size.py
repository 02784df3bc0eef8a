"""Wu & He (2018), Group Normalization: BN's error grows as the per-device batch shrinks, GN's stays flat.

    python -m experiments.batch_size --preset=smoke|cpu|gpu --workdir=DIR

The paper's protocol scaled down (configs/sweeps/_common.py): 8 devices, local BN over each device's b
examples, global batch 8b, lr 0.1 x 8b/256, the same warmup and epochs for every cell, 3 seeds.
Two sweeps, resumable (a rerun skips finished cells):
  main        configs/sweeps/batch_size.py: BN, GN x b in {2, 4, 8, 16, 32}                       (DIR/sweep)
  fixed       configs/sweeps/fixed_batch.py: SGD batch 8 x 32, steps and lr of the b = 32 cells: the
              controlled arm, ghost BN with statistics over v in {2, 4, 8, 16} examples (v = 32 and GN: the
              main sweep's b = 32 cells), and LN, IN, no norm at b = 32                        (DIR/fixed)
Writes DIR/report.md (claim | paper | ours ± s.e. | verdict), error_vs_batch.png, results.csv (one row per
run) and results.json.

Verdict rules, fixed before any cpu run (experiments/_sweep_study.py: convergence, s.e., effect_verdict;
every claim that uses a cell that did not converge is inconclusive):
  (a) BN error at b=2 minus at b=32: effect_verdict with a 1-pt floor.
  (b) GN flat: GN's largest minus smallest cell mean over b; reproduced if it is within 2 s.e. of that
      difference or under 1 pt, while BN's (same statistic) exceeds both; partly if GN's is under half of
      BN's; not reproduced otherwise.
  (c) at b=32, BN <= GN < LN < IN: each relation holds if the next norm's mean error is higher (for BN <= GN:
      if BN is not worse by more than 2 s.e.); reproduced if all three hold and GN < LN and LN < IN are each
      beyond 2 s.e.; partly if at least two hold in the means; not reproduced otherwise.
  (d) at b=2 GN beats BN: BN - GN, effect_verdict with a 1-pt floor.
  (e) BN's excess over GN grows as the batch shrinks: (BN - GN at 2) - (BN - GN at 32), 1-pt floor.
  (f) controlled arm: at a fixed SGD batch, steps and lr, BN with statistics over 2 examples minus over 32:
      effect_verdict with a 1-pt floor; GN's cell is the same cell at every v (the control).
"""
from __future__ import annotations

import math

from experiments import _report
from experiments import _sweep_study as study

TITLE = "Wu & He 2018 (Group Norm): error vs per-device batch size, BN vs GN/LN/IN (8 devices, local BN)"

# ResNet-50 on ImageNet, top-1 val error (%), as quoted in seed 000 / GN paper Fig. 1, Tables 1-2.
PAPER_BATCHES = (32, 16, 8, 4, 2)
PAPER_BN = {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7}
PAPER_GN = {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}
PAPER_B32 = {"BN": 23.6, "GN": 24.1, "LN": 25.3, "IN": 28.4}
FLOOR = 1.0  # pts: the smallest effect that counts as the paper's (its effects are 10+ pts)


def _flat_claim(t, batches):
  def spread(norm):
    cells = [t[(norm, b)] for b in batches if (norm, b) in t and t[(norm, b)].n]
    if len(cells) < len(batches):
      return None
    hi, lo = max(cells, key=lambda c: c.mean), min(cells, key=lambda c: c.mean)
    return hi.mean - lo.mean, study.diff_se(hi, lo), cells
  gn, bn = spread("GN"), spread("BN")
  if gn is None or bn is None or not all(c.converged for c in gn[2] + bn[2]):
    verdict = "inconclusive"
  else:
    gn_flat = gn[0] <= max(2 * gn[1], FLOOR)
    bn_flat = bn[0] <= max(2 * bn[1], FLOOR)
    verdict = ("reproduced" if gn_flat and not bn_flat else "partly" if gn[0] < bn[0] / 2 else "not reproduced")
  fmt = lambda s: "missing" if s is None else f"{s[0]:.1f} pts (2 s.e. = {2 * s[1]:.1f})"  # noqa: E731
  return {"claim": "(b) GN's error is flat in the batch size (largest - smallest cell over b)",
          "paper": f"GN {max(PAPER_GN.values()) - min(PAPER_GN.values()):.1f} pts vs BN "
                   f"{max(PAPER_BN.values()) - min(PAPER_BN.values()):.1f} pts",
          "ours": f"GN {fmt(gn)} vs BN {fmt(bn)}", "verdict": verdict}


def _order_claim(t, ref):
  names = ("BN", "GN", "LN", "IN")
  cells = {n: t.get((n, ref)) for n in names}
  if not all(c and c.n for c in cells.values()):
    return {"claim": f"(c) at b={ref}: BN <= GN < LN < IN", "paper": "23.6 / 24.1 / 25.3 / 28.4 (%)",
            "ours": "not all of BN/GN/LN/IN were run", "verdict": "inconclusive"}
  bn, gn, ln, in_ = (cells[n] for n in names)
  holds = [bn.mean - gn.mean <= 2 * study.diff_se(bn, gn), gn.mean < ln.mean, ln.mean < in_.mean]
  strong = [ln.mean - gn.mean > 2 * study.diff_se(ln, gn), in_.mean - ln.mean > 2 * study.diff_se(in_, ln)]
  if not all(c.converged for c in cells.values()):
    verdict = "inconclusive"
  else:
    verdict = "reproduced" if all(holds) and all(strong) else "partly" if sum(holds) >= 2 else "not reproduced"
  return {"claim": f"(c) at b={ref}: BN <= GN < LN < IN (error)",
          "paper": " / ".join(f"{n} {v}" for n, v in PAPER_B32.items()) + " (%)",
          "ours": " / ".join(f"{n} {cells[n]}" for n in names) + " (%); holds: "
                  + ", ".join(f"{p}: {'yes' if h else 'no'}" for p, h in zip(("BN<=GN", "GN<LN", "LN<IN"), holds)),
          "verdict": verdict}


def claims(t, g, batches) -> list[dict]:
  """The verdict rows from the main sweep's stats `t` {(variant, b): Stat} and the controlled arm's `g`
  {v: Stat} (v = 32: BN at b=32)."""
  small, ref = min(batches), max(batches)
  get = lambda n, b: t.get((n, b))  # noqa: E731
  out = []
  bn_s, bn_r, gn_s, gn_r = get("BN", small), get("BN", ref), get("GN", small), get("GN", ref)

  def effect(claim, paper, a, b, label_a, label_b):
    if not (a and b and a.n and b.n):
      return {"claim": claim, "paper": paper, "ours": f"{label_a}: {study.show(a)}, {label_b}: {study.show(b)}",
              "verdict": "inconclusive"}
    d, se = a.mean - b.mean, study.diff_se(a, b)
    return {"claim": claim, "paper": paper,
            "ours": f"{d:+.1f} ± {se:.1f} pts ({label_a} {a} vs {label_b} {b}; error %)",
            "verdict": study.effect_verdict(d, se, FLOOR, a, b)}

  out.append(effect(f"(a) BN's error rises as the per-device batch shrinks (b={small} minus b={ref})",
                    f"+{PAPER_BN[2] - PAPER_BN[32]:.1f} pts (23.6% at 32 -> 34.7% at 2)",
                    bn_s, bn_r, f"b={small}", f"b={ref}"))
  out.append(_flat_claim(t, batches))
  out.append(_order_claim(t, ref))
  out.append(effect(f"(d) at b={small} GN beats BN (BN minus GN)",
                    f"by {PAPER_BN[2] - PAPER_GN[2]:.1f} pts at 2 (24.1% vs 34.7%)", bn_s, gn_s, "BN", "GN"))
  cells = (bn_s, bn_r, gn_s, gn_r)
  if all(c and c.n for c in cells):
    gap = (bn_s.mean - gn_s.mean) - (bn_r.mean - gn_r.mean)
    se = math.sqrt(sum(c.se ** 2 for c in cells))
    out.append({"claim": f"(e) BN's excess error over GN grows as the batch shrinks (gap at b={small} minus at "
                         f"b={ref})",
                "paper": "+11.1 pts (gap +10.6 at 2, -0.5 at 32)",
                "ours": f"{gap:+.1f} ± {se:.1f} pts (gap {bn_s.mean - gn_s.mean:+.1f} at {small}, "
                        f"{bn_r.mean - gn_r.mean:+.1f} at {ref})",
                "verdict": study.effect_verdict(gap, se, FLOOR, *cells)})
  if g:
    v_small = min(g)
    out.append(effect(f"(f) controlled: at a fixed SGD batch ({8 * ref}), steps and lr, BN with statistics over "
                      f"{v_small} examples is worse than over {ref}",
                      "not run in the paper (its b changes the SGD batch too: 8b)", g[v_small], g.get(ref),
                      f"v={v_small}", f"v={ref}"))
  return out


def _plot(t, g, norms, batches, workdir) -> str:
  fig, (ax0, ax1, ax2) = _report.new_figure(ncols=3, size=(4.4, 3.6))
  ax0.plot(PAPER_BATCHES, [PAPER_BN[b] for b in PAPER_BATCHES], "o-", label="BN")
  ax0.plot(PAPER_BATCHES, [PAPER_GN[b] for b in PAPER_BATCHES], "s-", label="GN")
  ax0.set_title("paper: ResNet-50, ImageNet")
  for norm in norms:
    xs = [b for b in batches if t.get((norm, b)) and t[(norm, b)].n]
    if xs:
      ax1.errorbar(xs, [t[(norm, b)].mean for b in xs], yerr=[t[(norm, b)].se for b in xs], marker="o",
                   capsize=3, label=norm)
  ax1.set_title("ours: SGD batch 8b (main)")
  vs = sorted(v for v in g if g[v].n)
  if vs:
    ax2.errorbar(vs, [g[v].mean for v in vs], yerr=[g[v].se for v in vs], marker="o", capsize=3, label="BN")
    gn = t.get(("GN", max(batches)))
    if gn and gn.n:
      ax2.axhspan(gn.mean - gn.se, gn.mean + gn.se, color="tab:orange", alpha=0.3, label="GN (± s.e.)")
  ax2.set_title(f"ours: SGD batch 8x{max(batches)} fixed")
  for ax, xlabel in ((ax0, "examples per device"), (ax1, "examples per device (b)"),
                     (ax2, "examples in BN's statistics (v)")):
    ax.set_xscale("log", base=2)
    _report.label_axes(ax, xlabel, "error (%)", legend=7)
  return _report.save_figure(fig, workdir, "error_vs_batch.png")


def run(preset: str, workdir: str, log=print) -> str:
  sweep, rows = study.run_study_sweep("batch_size", preset, workdir, log)
  _, fixed_rows = study.run_study_sweep("fixed_batch", preset, workdir, log, subdir="fixed")
  batches = sorted({r["batch_size"] for r in rows})
  ref = max(batches)
  ghost_rows = [r for r in fixed_rows if r["variant"].startswith("ghostBN")]

  def tables(key: str = "converged"):
    t = study.stats(rows + [r for r in fixed_rows if r not in ghost_rows], "variant", "batch_size", converged_key=key)
    g = {int(k.split("=")[1]): s for k, s in study.stats(ghost_rows, "variant", converged_key=key).items()}
    if t.get(("BN", ref)):
      g[ref] = t[("BN", ref)]
    return t, g
  t, g = tables()
  norms = [n for n in ("BN", "GN", "LN", "IN", "none") if any(k[0] == n for k in t)]
  out = study.both_computations(lambda key: claims(*tables(key), batches))
  fig = _plot(t, g, norms, batches, workdir)
  all_rows = rows + fixed_rows
  study.write_results_csv(all_rows, workdir)
  steps = {r["batch_size"]: r.get("steps") for r in rows}
  model = dict(sweep.overrides.get("model_options", {}) or {})
  ghost_line = " | ".join(f"v={v}: {g[v]}" for v in sorted(g))
  notes = f"""{study.provenance_lines(workdir, "sweep", "fixed")}

Preset `{preset}`: model `{sweep.overrides.model}` {model} on `{sweep.overrides.dataset}`, {sweep.num_devices}
devices with bn_mode=local (BN statistics over each device's b examples, gradients over 8b), SGD momentum 0.9,
weight decay 1e-4, lr 0.1 x 8b/256, linear warmup over the first {100 * sweep.warmup_fraction:.0f}% of the steps
then cosine to 0, {sweep.budget_examples} training examples per cell (the same epochs for every b; steps per b:
{', '.join(f'{b}: {s}' for b, s in sorted(steps.items()))}); {study.seeds_note(rows)}. GN uses
{sweep.variants.GN.norm_options.num_groups} groups (narrowest width / 2, fixed before running); LN and IN are the GN
paper's definitions: LN = GN with one group (all channels and positions), IN = per channel over positions.
Error = 1 - test accuracy after the last step (BN: running statistics), on the whole test split.
{study.convergence_note(all_rows)}.

Eval error (%, mean ± s.e.) per norm and per-device batch b (SGD batch 8b; LN, IN, none at b=32 only):

{chr(10).join(study.error_lines(t, norms, batches))}

Controlled arm (SGD batch 8 x {ref}, same steps and lr as the b={ref} cells; ghost BN with statistics over v
examples; v={ref} is the main sweep's BN cell): {ghost_line}.

What differs from the paper: a 1-D signal task (mnist1d's generator with more noise and examples) and a small
ResNet-1D instead of ImageNet and ResNet-50, and far fewer epochs; the protocol (8 devices, local statistics,
linear lr scaling, equal epochs) is the paper's. Differences under 2 s.e. are not findings.
Cells: DIR/sweep/cells/<id>/ and DIR/fixed/cells/<id>/ (config.json, metrics.jsonl, summary.json)."""
  data = {"preset": preset, "main": {f"{k[0]}@{k[1]}": vars(v) for k, v in t.items()},
          "controlled": {str(k): vars(v) for k, v in g.items()}, "rows": all_rows,
          "paper": {"BN": PAPER_BN, "GN": PAPER_GN, "batch32": PAPER_B32}}
  return _report.write_report(workdir, TITLE, out, notes, [fig], data=data)


if __name__ == "__main__":
  study.study_main("batch_size", run)
