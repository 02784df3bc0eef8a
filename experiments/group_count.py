"""Wu & He (2018), Table 3: GN's error vs the number of groups G, at per-device batch_size 32.

    python -m experiments.group_count --preset=smoke|cpu|gpu --workdir=DIR

Runs configs/sweeps/group_count.py (the batch-size study's protocol: 8 devices x 32, lr 0.1, warmup, equal epochs,
3 seeds; GN with G from 1 (= LN over all channels and positions) to one channel per group (= IN), BN as reference).
Claims and rules (experiments/_study.py):
  (a) the best intermediate G beats both LN and IN: effect on the smaller of LN - best and IN - best, 0.5-pt floor
      (picking the best of several G favours it slightly; the 2 s.e. margin is kept as stated).
  (b) LN beats IN: IN - LN, effect, 0.5-pt floor.
  (c) at batch 32 BN is at least as good as the best GN: BN - best GN <= 2 s.e.
"""
from __future__ import annotations

from experiments import _study as S

TITLE = "Wu & He 2018 (Group Norm), Table 3: error vs number of groups at batch_size 32 per device"
FLOOR = 0.5


def claims(data, key="converged") -> list[S.Claim]:
  t = S.cells(data["rows"], "variant", conv_key=key)
  names = list(dict.fromkeys(r["variant"] for r in data["rows"]))
  groups = [n for n in names if n.startswith("G=") and n != "G=1" and t[n].n]
  ln, inn, bn = t.get("G=1"), t.get("IN"), t.get("BN")
  if not (groups and ln and inn):
    return [S.Claim("intermediate group counts beat both extremes", "G=32 24.1% vs 25.3% / 28.4%", "too few cells",
                    "inconclusive")]
  best = min(groups, key=lambda n: t[n].mean)
  margin = min(S.diff(ln, t[best]), S.diff(inn, t[best]), key=lambda d: d.mean)
  out = [S.Claim("intermediate group counts beat both extremes (G=1 = LN, one channel per group = IN)",
                 "G=32 24.1% vs LN (G=1) 25.3% and IN 28.4% (ResNet-50, ImageNet, batch 32)",
                 S.combine_cells(margin.mean, margin.se, margin.n, t[best], ln, inn), S.effect(FLOOR), unit=" pts",
                 note=f"smaller margin; best intermediate {best} {t[best]} vs LN {ln} and IN {inn}, error %"),
         S.Claim("LN (G=1) is better than IN", "25.3% vs 28.4%", S.diff(inn, ln), S.effect(FLOOR), unit=" pts",
                 note=f"LN {ln} vs IN {inn}")]
  if bn:
    out.append(S.Claim("at batch 32 BN is at least as good as the best GN", "BN 23.6% vs GN 24.1%",
                       S.diff(bn, t[best]), S.at_most(), unit=" pts", note=f"BN {bn} vs {best} {t[best]}"))
  return out


def run(config, workdir, log=print):
  return S.run_sweeps(config, workdir, log)


def report(data, workdir) -> str:
  t = S.cells(data["rows"], "variant")
  names = list(dict.fromkeys(r["variant"] for r in data["rows"]))
  gn = [n for n in names if n != "BN"]
  png = S.errorbar_plot(workdir, "error_vs_groups.png", [
      {"title": "GN groups at 8 devices x 32", "xlabel": "groups (G=1: LN; IN: one channel per group)",
       "ylabel": "error (%)", "series": {"GN": (gn, [t[n] for n in gn])}, "band": ("BN (± s.e.)", t.get("BN"))}],
      size=(6.0, 3.8))
  lines = ["| variant | error (%) |", "|---|---|"] + [f"| {n} | {t[n]} |" for n in names]
  notes = f"""{S.sweep_note(data)}

8 devices x batch_size 32 (bn_mode=local), lr 0.1, the batch-size study's protocol (configs/sweeps/_common.py).
G=k: k groups in every norm layer; IN = one channel per group everywhere.

{chr(10).join(lines)}"""
  S.write_csv(workdir, data["rows"], S.SWEEP_COLUMNS)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
