"""Sweep results: results.csv (one row per cell), report.md (mean ± std over seeds) and plots.

Batch units as in normlab.sweep.grid: `batch_size` per device, `global_batch` = num_devices x batch_size;
results.csv has both, and `devices`: the path the cell ran on ('real' devices or 'emulated' on one,
normlab.train.devices). A point with one run has no spread: report.md shows "n/a (1 seed)" there, under a
line saying that such (smoke) numbers are not findings.

Concurrent cells (a Slurm array) all rebuild the report when they finish: each file is written to a
temporary name and `os.replace`d (readers never see half a file), and collecting the summaries plus
writing happens under workdir/report.lock, so the last process to finish writes a report that
includes every cell finished before it.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections import defaultdict

from normlab.train import lock as lock_lib

import ml_collections as mlc

CELL_KEYS = ("batch_size", "global_batch", "num_devices")  # from the cell's train config
RESULT_KEYS = ("eval_accuracy", "eval_error", "final_train_loss", "steps", "wall_time_s")
AXIS_LABELS = {"batch_size": "batch size per device", "global_batch": "global batch"}
ONE_SEED = "n/a (1 seed)"
NOT_FINDINGS = ("Smoke numbers are not findings: a point with one run (n=1) has no spread (n/a (1 seed)); "
                "it shows that the sweep runs, not what it finds.")


def _config_value(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "get") or part not in node:
      return None
    node = node[part]
  return node


def _batch_columns(config) -> dict:
  """batch_size (per device), global_batch and num_devices of a cell's train config (per device: None
  when num_devices is 0, all devices)."""
  total, devices = _config_value(config, "batch_size"), _config_value(config, "num_devices")
  per_device = total // devices if isinstance(total, int) and isinstance(devices, int) and devices else None
  return {"batch_size": per_device, "global_batch": total, "num_devices": devices}


def collect_results(cells, workdir: str, extra_columns=()) -> list[dict]:
  """One row per cell: grid params, `extra_columns` (dotted keys of the cell's config, e.g. the norm a
  variant sets) and figures from its summary.json (status 'pending' if none)."""
  rows = []
  for c in cells:
    row = dict(c.params)
    row.update(_batch_columns(c.config), **{k: v for k, v in row.items() if k in CELL_KEYS})
    for key in extra_columns:
      row.setdefault(key, _config_value(c.config, key))
    path = os.path.join(workdir, "cells", c.id, "summary.json")
    if os.path.isfile(path):
      with open(path) as f:
        summary = json.load(f)
      acc = summary.get("eval_accuracy")
      row.update(eval_accuracy=acc, eval_error=None if acc is None else 1.0 - acc,
                 final_train_loss=summary.get("final_train_loss"), steps=summary.get("steps"),
                 wall_time_s=summary.get("wall_time_s"), status=summary.get("status", "done"),
                 devices=summary.get("devices"))
    else:
      row.update({k: None for k in RESULT_KEYS}, status="pending", devices=None)
    rows.append(row)
  return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
  m = sum(values) / len(values)
  s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
  return m, s


def aggregate(rows: list[dict], line_key: str, x_key: str, value: str = "eval_error"):
  """{line value: {x value: (mean, std, n)}} over the cells that finished (seeds and other keys pooled)."""
  acc = defaultdict(lambda: defaultdict(list))
  for r in rows:
    if r.get(value) is not None:
      acc[r.get(line_key)][r.get(x_key)].append(float(r[value]))
  return {line: {x: (*_mean_std(v), len(v)) for x, v in sorted(xs.items(), key=lambda t: str(t[0]) if
                                                                 not isinstance(t[0], (int, float)) else t[0])}
          for line, xs in acc.items()}


def _entry(point: tuple[float, float, int]) -> str:
  """report.md's entry for (mean, std, n) of the eval error: n/a for the std of a single run."""
  mean, std, n = point
  return f"{100 * mean:.2f} ± {100 * std:.2f} (n={n})" if n > 1 else f"{100 * mean:.2f} ± {ONE_SEED}"


def _plot(table, x_key: str, line_key: str, path: str, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for line, xs in table.items():
    x = [k for k in xs if isinstance(k, (int, float))]
    if not x:
      continue
    ax.errorbar(x, [100 * xs[k][0] for k in x], yerr=[100 * xs[k][1] for k in x], marker="o", capsize=3,
                label=f"{line_key}={line}")
  if all(isinstance(k, (int, float)) and k > 0 for xs in table.values() for k in xs):
    ax.set_xscale("log", base=2)
  ax.set_xlabel(AXIS_LABELS.get(x_key, x_key))
  ax.set_ylabel("eval error (%)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend()
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=120)
  with _atomic(path, "wb") as f:
    f.write(buffer.getvalue())
  plt.close(fig)


@contextlib.contextmanager
def _atomic(path: str, mode: str = "w"):
  """Open a temporary file next to `path`; on success it replaces `path` in one step."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, mode, **({"newline": ""} if "b" not in mode else {})) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


REPORT_LOCK_WAIT_S = 600.0


def write_report(sweep: mlc.ConfigDict, cells, workdir: str) -> dict:
  """Writes results.csv, report.md and error_vs_<x>.png (each atomically, under workdir/report.lock)."""
  with lock_lib.acquire(os.path.join(workdir, "report.lock"), purpose=f"the report of sweep {workdir}",
                        wait_s=REPORT_LOCK_WAIT_S, log=lambda _: None):
    return _write_report(sweep, cells, workdir)


def _write_report(sweep: mlc.ConfigDict, cells, workdir: str) -> dict:
  extra = [k for k in sweep.get("extra_columns", ()) if not cells or k not in cells[0].params]
  rows = collect_results(cells, workdir, extra)
  grid_keys = (list(cells[0].params) if cells else []) + extra
  csv_path = os.path.join(workdir, "results.csv")
  with _atomic(csv_path) as f:
    w = csv.DictWriter(f, fieldnames=grid_keys + [k for k in CELL_KEYS if k not in grid_keys] + list(RESULT_KEYS)
                       + ["status", "devices"])
    w.writeheader()
    w.writerows(rows)
  x_key = sweep.get("x_key", "batch_size")
  line_key = sweep.get("line_key", "norm")
  table = aggregate(rows, line_key, x_key)
  xs = sorted({x for t in table.values() for x in t}, key=lambda v: (not isinstance(v, (int, float)), v if
                                                                    isinstance(v, (int, float)) else str(v)))
  title = sweep.get("title", f"eval error vs {x_key}")
  single = any(n == 1 for t in table.values() for _, _, n in t.values())
  paths = sorted({r["devices"] for r in rows if r.get("devices")})
  lines = [f"# {title}", "", f"Base config: `{sweep.base}`; {len(cells)} cells, "
           f"{sum(r['status'] != 'pending' for r in rows)} finished"
           f"{' on ' + ' and '.join(paths) + ' devices' if paths else ''}. Entries: eval error (%) mean ± std "
           f"over the cells pooled at each point (n = number of runs). batch_size is per device; "
           f"global_batch = num_devices x batch_size (results.csv).", ""]
  lines += [NOT_FINDINGS, ""] if single else []
  lines += [f"| {line_key} | " + " | ".join(f"{x_key}={x}" for x in xs) + " |", "|---|" + "---|" * len(xs)]
  for line, t in table.items():
    lines.append(f"| {line} | " + " | ".join(_entry(t[x]) if x in t else "–" for x in xs) + " |")
  png = os.path.join(workdir, f"error_vs_{x_key.replace('.', '_')}.png")
  if table:
    _plot(table, x_key, line_key, png, title + (" (1 seed: smoke, not findings)" if single else ""))
    lines += ["", f"![error vs {x_key}]({os.path.basename(png)})"]
  report = os.path.join(workdir, "report.md")
  with _atomic(report) as f:
    f.write("\n".join(lines) + "\n")
  return {"csv": csv_path, "report": report, "plot": png if table else None}
