"""SyncBN vs local BN at small per-device batch_size, 8 devices: does synchronizing the statistics over the
global batch remove BN's small-batch degradation? (Wu & He 2018 train BN with local statistics, sec. 4.1, and name
synchronized BN as the alternative that costs communication, sec. 2.)

    python -m experiments.sync_bn --preset=smoke|cpu|gpu --workdir=DIR

Runs configs/sweeps/sync_bn.py on the batch-size study's protocol (8 devices, global_batch 8b for b in {2, 4, 8},
lr 0.1 x 8b/256, warmup, equal epochs, 3 seeds; BN sync and local, GN as reference).
Claims and rules (experiments/_study.py):
  (a) at b=2, SyncBN beats local BN: local - sync, effect, 1-pt floor.
  (b) local BN's error falls as b grows (2 -> 8): local(2) - local(8), effect, 1-pt floor.
  (c) GN at b=2 is comparable to SyncBN: |GN - sync| <= max(1 pt, 2 s.e.).
"""
from __future__ import annotations

from experiments import _study as S

TITLE = "SyncBN vs local BN at small per-device batch_size (8 devices)"
FLOOR = 1.0


def claims(data, key="converged") -> list[S.Claim]:
  t = S.cells(data["rows"], "variant", "batch_size", conv_key=key)
  per = sorted({r["batch_size"] for r in data["rows"]})
  b, get = per[0], lambda v, b: t.get((v, b), S.stat([]))
  s, loc, gn = get("BN sync", b), get("BN local", b), get("GN", b)
  lo, hi = get("BN local", per[0]), get("BN local", per[-1])
  return [S.Claim(f"SyncBN (statistics over 8 x {b}) beats local BN (over {b}) at per-device batch_size {b}",
                  "local BN degrades at small per-device batch (34.7% at 2 vs 23.6% at 32); sync BN is the costly "
                  "fix the GN paper names", S.diff(loc, s), S.effect(FLOOR), unit=" pts",
                  note=f"sync {s} vs local {loc}; error %"),
          S.Claim(f"local BN's error falls as the per-device batch_size grows ({per[0]} -> {per[-1]})",
                  "34.7% (2) -> 24.8% (8)", S.diff(lo, hi), S.effect(FLOOR), unit=" pts", note=f"{lo} -> {hi}"),
          S.Claim(f"GN at per-device batch_size {b} is comparable to SyncBN", "GN 24.1% at 2 (flat)", S.diff(gn, s),
                  S.within(FLOOR), unit=" pts", note=f"GN {gn} vs sync BN {s}")]


def run(config, workdir, log=print):
  return S.run_sweeps(config, workdir, log)


def report(data, workdir) -> str:
  t = S.cells(data["rows"], "variant", "batch_size")
  per = sorted({r["batch_size"] for r in data["rows"]})
  names = list(dict.fromkeys(r["variant"] for r in data["rows"]))
  png = S.errorbar_plot(workdir, "sync_vs_local.png", [
      {"title": "SyncBN vs local BN", "xlabel": "batch_size (per device; 8 devices)", "ylabel": "error (%)",
       "logx": 2, "series": {v: (per, [t.get((v, p)) for p in per]) for v in names}}], size=(5.5, 3.8))
  lines = ["| variant | " + " | ".join(f"b={p}" for p in per) + " |", "|---|" + "---|" * len(per)]
  lines += [f"| {v} | " + " | ".join(str(t.get((v, p), "-")) for p in per) + " |" for v in names]
  notes = f"""{S.sweep_note(data)}

Gradients are averaged over all 8 devices in both modes; only BN's batch statistics differ: over the global batch
(sync) or over each device's b examples (local). lr 0.1 x 8b/256, the batch-size study's protocol.

{chr(10).join(lines)}"""
  S.write_csv(workdir, data["rows"], S.SWEEP_COLUMNS)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
