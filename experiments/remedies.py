"""Small-batch remedies for BN: do batch renormalization (Ioffe 2017, with its r_max/d_max ramp) or SyncBN close
the gap to GN and to large-batch BN? (Context of Wu & He 2018, sec. 2: BRN "alleviates but does not solve" the
small-batch problem.) Ghost BN against BN at the matched global batch is the batch-size study's controlled arm.

    python -m experiments.remedies --preset=smoke|cpu|gpu --workdir=DIR

Runs configs/sweeps/remedies.py (the batch-size study's protocol: 8 devices, local BN, lr 0.1 x 8b/256, 3 seeds;
BN, BRN, SyncBN, GN at per-device batch_size b in {2, 4}; BN at b=32).
Claims and rules (experiments/_study.py), at each small b:
  (a) BRN helps: BN(b) - BRN(b), effect, 1-pt floor.   (b) SyncBN helps: BN(b) - SyncBN(b), the same.
  (c) a remedy closes the gap: remedy(b) - BN(32) within max(1 pt, 2 s.e.); judged only when BN(b) - BN(32) is itself
      reproduced by effect(1 pt) (otherwise there is no gap to close: inconclusive).
"""
from __future__ import annotations

from experiments import _study as S

TITLE = "Small-batch remedies for BN: batch renorm (ramped) and SyncBN vs GN and large-batch BN (8 devices)"
FLOOR = 1.0


def claims(data, key="converged") -> list[S.Claim]:
  t = S.cells(data["rows"], "variant", conv_key=key)
  ref = t.get("BN/b=32")
  smalls = sorted({int(n.split("=")[1]) for n in t if not n.endswith("=32")})
  out = []
  for b in smalls:
    bn = t.get(f"BN/b={b}")
    for remedy in ("BRN", "SyncBN"):
      r = t.get(f"{remedy}/b={b}")
      if not (bn and r):
        continue
      out.append(S.Claim(f"{remedy} beats BN at per-device batch_size {b}", "BRN alleviates the small-batch loss "
                         "(Ioffe 2017); SyncBN removes it at a communication cost (Wu & He 2018, sec. 2)",
                         S.diff(bn, r), S.effect(FLOOR), unit=" pts", note=f"{remedy} {r} vs BN {bn}; error %"))
      if ref:
        gap = S.diff(bn, ref)
        gap_v = S.verdict(S.Claim("", "", gap, S.effect(FLOOR)))
        left = S.diff(r, ref)
        out.append(S.Claim(f"{remedy} at b={b} closes the gap to BN at b=32", "BRN: not fully (GN paper)", left,
                           S.at_most(FLOOR) if gap_v == "reproduced" else "inconclusive", unit=" pts",
                           note=f"left; BN b={b} {bn}, BN b=32 {ref}; the gap to close: {gap_v}"))
  return out or [S.Claim("remedies", "-", "too few cells finished", "inconclusive")]


def run(config, workdir, log=print):
  return S.run_sweeps(config, workdir, log)


def report(data, workdir) -> str:
  t = S.cells(data["rows"], "variant")
  names = list(dict.fromkeys(r["variant"] for r in data["rows"]))
  png = S.errorbar_plot(workdir, "remedies.png", [
      {"title": "small-batch remedies (8 devices)", "ylabel": "error (%)",
       "series": {"error": (names, [t[n] for n in names])}}], size=(6.5, 3.8))
  lines = ["| variant | error (%) |", "|---|---|"] + [f"| {n} | {t[n]} |" for n in names]
  notes = f"""{S.sweep_note(data)}

The batch-size study's protocol (configs/sweeps/_common.py: 8 devices, local BN, lr 0.1 x 8b/256, warmup, equal
epochs); BRN ramps r_max 1 -> 3 and d_max 0 -> 5 over the first quarter of its steps (momentum 0.99); SyncBN =
bn_mode sync.

{chr(10).join(lines)}"""
  S.write_csv(workdir, data["rows"], S.SWEEP_COLUMNS)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
