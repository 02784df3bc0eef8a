"""`scripts/sweep.py --status`: what every cell of a sweep is doing, read-only (nothing is written).

A cell is finished (summary.json), running (a live claim: owner, age, heartbeat), stale (a claim whose
owner is dead or silent past the lock timeout: the next worker takes it over) or pending. The estimate
of what remains is the mean wall time of the finished cells times the cells left (a running cell
counts its mean minus its age), and that divided by the number of cells running now.
"""
from __future__ import annotations

import json
import os
import time

from normlab.train import lock as lock_lib
from normlab.sweep.grid import Cell

FINISHED, RUNNING, STALE, PENDING = "finished", "running", "stale", "pending"


def cell_states(cells: list[Cell], workdir: str, now: float | None = None) -> list[dict]:
  now = time.time() if now is None else now
  rows = []
  for i, c in enumerate(cells):
    d = os.path.join(workdir, "cells", c.id)
    row = {"index": i, "id": c.id, "state": PENDING}
    summary_path = os.path.join(d, "summary.json")
    owner = lock_lib.read(os.path.join(d, "lock.json"))
    if os.path.isfile(summary_path):
      try:
        with open(summary_path) as f:
          summary = json.load(f)
      except (OSError, ValueError):
        summary = {}
      row.update(state=FINISHED, wall_time_s=summary.get("wall_time_s"), status=summary.get("status", "done"))
    elif owner is not None:
      reason = lock_lib.stale_reason(owner, now=now)
      row.update(state=STALE if reason else RUNNING, owner=lock_lib.describe(owner, now), reason=reason,
                 age_s=now - float(owner.get("start_time", now)))
    rows.append(row)
  return rows


def _fmt_s(seconds: float) -> str:
  return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def format_status(rows: list[dict], workdir: str) -> str:
  counts = {s: sum(r["state"] == s for r in rows) for s in (FINISHED, RUNNING, STALE, PENDING)}
  lines = [f"sweep {workdir}: {len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
  for r in rows:
    if r["state"] == RUNNING:
      lines.append(f"  running  cell {r['index']} {r['id']}: {r['owner']}")
    elif r["state"] == STALE:
      lines.append(f"  stale    cell {r['index']} {r['id']}: {r['owner']}: {r['reason']}")
  pending = [str(r["index"]) for r in rows if r["state"] == PENDING]
  if pending:
    lines.append(f"  pending  cells {','.join(pending)}")
  walls = [float(r["wall_time_s"]) for r in rows if r["state"] == FINISHED and r.get("wall_time_s") is not None]
  if walls:
    mean = sum(walls) / len(walls)
    lines.append(f"wall time of the finished cells: total {_fmt_s(sum(walls))}, mean {_fmt_s(mean)} "
                 f"(min {_fmt_s(min(walls))}, max {_fmt_s(max(walls))})")
    left = (counts[PENDING] + counts[STALE]) * mean + sum(max(0.0, mean - r["age_s"]) for r in rows
                                                          if r["state"] == RUNNING)
    at_once = max(1, counts[RUNNING])
    lines.append(f"remaining: {counts[PENDING] + counts[STALE] + counts[RUNNING]} cells, about {_fmt_s(left)} of "
                 f"cell time; about {_fmt_s(left / at_once)} with {at_once} cell(s) at once")
  elif counts[FINISHED] < len(rows):
    lines.append("remaining: no finished cell yet to estimate from")
  return "\n".join(lines)
