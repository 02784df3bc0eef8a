"""What the sweep studies (batch_size, group_count, remedies, sync_bn) share: running a sweep into a study
workdir, the convergence rule, per-cell statistics with standard errors, the verdict rule, the report's
provenance and the entry point. No study imports another; each imports this module.

Rules, fixed before the results they judge (git history shows the order):
  * Convergence: a run has converged when its mean train loss over the last 10% of its steps differs from
    the mean over the 10% before by less than CONVERGENCE_TOL (relative), and it did not diverge. A cell
    (one setting, all its seeds) has converged when all its runs have. With the cosine schedule the last
    20% of training runs at <= 10% of the peak lr, so this asks for a plateau at the end of the schedule.
  * Standard error of a cell: std over seeds / sqrt(seeds); of a difference of two cells: the root sum of
    squares. A difference is a finding only when it exceeds 2 s.e.
  * `effect_verdict(d, se, floor)`: a claimed positive effect d is "reproduced" if d > 2 s.e. and d >=
    floor, "partly" if d > 2 s.e. but below the floor, "not reproduced" otherwise; "inconclusive" if any
    cell it uses did not converge (a cell that did not converge cannot refute a claim).
  * `no_worse_verdict(shortfall, se, tol)`: a claim "X does as well as Y" with shortfall = Y - X (pts) is
    "reproduced" if shortfall + 2 s.e. <= tol (X is within tol of Y, or better, beyond the noise), "not
    reproduced" if shortfall - 2 s.e. > tol (X is worse by more than tol, beyond the noise), otherwise
    "inconclusive" (the seeds cannot tell); "inconclusive" too if a cell did not converge or tol is not
    positive.
  * The same convergence rule on an in-memory per-step curve: `curve_converged(curve, diverged_at)`.
  * Correction (after the cpu results): a value in metrics.jsonl is the mean train loss over the steps since the
    previous logged step, so the rule's "mean over steps" weights each value by those steps. The code first
    weighted every logged value alike, and a final value over the last 7-15 steps of a run counted as much as
    one over 468 steps: its noise alone failed or passed runs. Per-step curves (one value a step) are
    unchanged. The rule itself is unchanged; each report keeps the verdict under the first computation
    beside any verdict the correction changes (`both_computations`), and results.csv keeps both columns
    (`converged`, `converged_unweighted`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import defaultdict
from typing import Callable

from experiments import REPO_ROOT
from normlab import provenance as provenance_lib

PRESETS = ("smoke", "cpu", "gpu")
REPORT_ONLY = False  # set by the entry point's --report_only: build the report from the cells there are
CONVERGENCE_TOL = 0.02  # relative change of the train loss between the last two tenths of training
RESULT_COLUMNS = ("variant", "batch_size", "num_devices", "seed", "eval_error", "final_train_loss",
                  "converged", "train_loss_change", "steps", "learning_rate", "status")


@dataclasses.dataclass(frozen=True)
class Stat:
  """Eval error (%) of one cell over its seeds."""
  mean: float
  se: float
  n: int            # finished runs
  diverged: int
  converged: bool   # every run finished, none diverged, each passed the convergence rule

  def __str__(self) -> str:
    if self.n == 0:
      return "diverged" if self.diverged else "missing"
    txt = f"{self.mean:.1f} ± {self.se:.1f}" if self.n > 1 else f"{self.mean:.1f}"
    return txt + (f" ({self.diverged} diverged)" if self.diverged else "") + ("" if self.converged else " *")


def show(stat: Stat | None) -> str:
  return "missing" if stat is None else str(stat)


def diff_se(a: Stat, b: Stat) -> float:
  return math.sqrt(a.se ** 2 + b.se ** 2)


def effect_verdict(d: float, se: float, floor: float, *cells: Stat | None) -> str:
  """The verdict rule of the module docstring for a claimed positive effect `d` (pts)."""
  if any(c is None or not c.converged for c in cells) or d != d:
    return "inconclusive"
  if d > 2 * se:
    return "reproduced" if d >= floor else "partly"
  return "not reproduced"


def no_worse_verdict(shortfall: float, se: float, tol: float, *cells: Stat | None) -> str:
  """The verdict rule of the module docstring for "X does as well as Y", shortfall = Y - X (pts)."""
  if any(c is None or not c.converged for c in cells) or shortfall != shortfall or not tol > 0:
    return "inconclusive"
  if shortfall + 2 * se <= tol:
    return "reproduced"
  return "not reproduced" if shortfall - 2 * se > tol else "inconclusive"


def stat_of(values, converged: bool = True, diverged: int = 0) -> Stat:
  """A Stat (mean, s.e. = sample std / sqrt(n)) of any per-seed numbers; NaN/None count as missing."""
  v = [float(x) for x in values if x is not None and x == x]
  m = sum(v) / len(v) if v else float("nan")
  sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
  return Stat(m, sd / math.sqrt(len(v)) if v else float("nan"), len(v), diverged, converged and bool(v))


def curve_converged(curve, diverged_at=None) -> tuple[bool, float | None]:
  """(converged, loss change) of an in-memory per-step curve ([{'step', 'train_loss'}, ...]), by the
  convergence rule of the module docstring (steps 1-based as in metrics.jsonl)."""
  change = loss_change({int(r["step"]) + 1: float(r["train_loss"]) for r in curve})
  return is_converged(change, "diverged" if diverged_at is not None else "done"), change


def loss_change(rows: dict, weighted: bool = True) -> float | None:
  """(mean train loss over steps (0.8T, 0.9T]) / (mean over (0.9T, T]) - 1 of {step: train loss}, where the
  value at step s is the mean over the steps since the previous logged step, so it weighs that many steps
  (`weighted`; one step for per-step curves). weighted=False: every value weighs the same (the first
  computation, see the module docstring)."""
  if not rows:
    return None
  total, weight, prev = max(rows), {}, 0
  for s in sorted(rows):
    weight[s], prev = (max(s - prev, 1) if weighted else 1), s

  def mean(steps):
    return sum(rows[s] * weight[s] for s in steps) / sum(weight[s] for s in steps)
  late = [s for s in rows if s > 0.9 * total]
  before = [s for s in rows if 0.8 * total < s <= 0.9 * total]
  if not late or not before:
    return None
  lb = mean(late)
  return mean(before) / lb - 1.0 if lb > 0 else None


def train_loss_change(cell_dir: str, weighted: bool = True) -> float | None:
  """`loss_change` of the train losses in the cell's metrics.jsonl (None if there are none)."""
  path = os.path.join(cell_dir, "metrics.jsonl")
  if not os.path.isfile(path):
    return None
  rows = {}
  with open(path) as f:
    for line in f:
      r = json.loads(line)
      if "train_loss" in r and "step" in r:
        rows[int(r["step"])] = float(r["train_loss"])
  return loss_change(rows, weighted)


def is_converged(change: float | None, status: str | None) -> bool:
  return status == "done" and change is not None and abs(change) < CONVERGENCE_TOL


def stats(rows, *keys, converged_key: str = "converged") -> dict:
  """{key values (a tuple, or the value for one key): Stat} of eval_error (%) over the seeds; a cell has
  converged when every run's `converged_key` is true."""
  errs, div, conv, runs = defaultdict(list), defaultdict(int), defaultdict(lambda: True), defaultdict(int)
  for r in rows:
    k = tuple(r.get(key) for key in keys)
    k = k if len(keys) > 1 else k[0]
    runs[k] += 1
    conv[k] = conv[k] and bool(r.get(converged_key))
    if r.get("eval_error") is not None:
      errs[k].append(100.0 * float(r["eval_error"]))
    elif r.get("status") == "diverged":
      div[k] += 1
  out = {}
  for k in runs:
    v = errs.get(k, [])
    m = sum(v) / len(v) if v else float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    out[k] = Stat(m, sd / math.sqrt(len(v)) if v else float("nan"), len(v), div.get(k, 0), conv[k])
  return out


def load_sweep(name: str, preset: str):
  from normlab.errors import UserError
  from normlab.sweep import load_config_file
  if preset not in PRESETS:
    raise UserError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
  return load_config_file(os.path.join(REPO_ROOT, "configs", "sweeps", f"{name}.py:{preset}"))


def run_study_sweep(name: str, preset: str, workdir: str, log=print, subdir: str = "sweep"):
  """Runs configs/sweeps/<name>.py:<preset> into workdir/<subdir> (resumable); returns (sweep config, rows):
  one row per run with RESULT_COLUMNS (batch_size per device) plus the sweep's extra columns.
  With REPORT_ONLY set (the entry point's --report_only), trains nothing: unfinished cells are 'pending'.
  The commit that trains a sweep's cells is recorded in workdir/<subdir>/trained_at.txt."""
  from normlab.sweep import run_sweep
  from normlab.sweep.report import collect_results
  quiet_logs()
  os.makedirs(workdir, exist_ok=True)
  sweep = load_sweep(name, preset)
  sweep_dir = os.path.join(workdir, subdir)
  t0 = time.time()
  if not REPORT_ONLY:
    os.makedirs(sweep_dir, exist_ok=True)
    with open(os.path.join(sweep_dir, "trained_at.txt"), "a") as f:
      f.write(provenance("started") + "\n")
  cells = run_sweep(sweep, sweep_dir, log=log, report_only=REPORT_ONLY)
  log(f"{name}: sweep done in {time.time() - t0:.0f} s")
  extra = [k for k in sweep.get("extra_columns", ()) if k not in cells[0].params]
  rows = collect_results(cells, sweep_dir, extra)
  for r, c in zip(rows, cells):
    devices = int(c.config.num_devices) or 1
    r["num_devices"] = devices
    r["batch_size"] = int(c.config.batch_size) // devices
    r["learning_rate"] = float(c.config.learning_rate)
    cell_dir = os.path.join(sweep_dir, "cells", c.id)
    r["train_loss_change"] = train_loss_change(cell_dir)
    r["converged"] = is_converged(r["train_loss_change"], r.get("status"))
    r["train_loss_change_unweighted"] = train_loss_change(cell_dir, weighted=False)
    r["converged_unweighted"] = is_converged(r["train_loss_change_unweighted"], r.get("status"))
  return sweep, rows


def both_computations(build: Callable[[str], list]) -> list:
  """The claim rows `build(converged_key)` makes with the step-weighted windows ('converged'); where the first,
  unweighted computation ('converged_unweighted') gives another verdict, it is kept in the row's 'ours'."""
  rows = build("converged")
  old = {r["claim"]: r["verdict"] for r in build("converged_unweighted")}
  for row in rows:
    if old.get(row["claim"], row["verdict"]) != row["verdict"]:
      row["ours"] += (f" [verdict with the unweighted convergence windows the results were first judged by: "
                      f"{old[row['claim']]}]")
  return rows


def write_results_csv(rows, workdir: str, name: str = "results.csv") -> str:
  """results.csv: RESULT_COLUMNS first, then any other keys, one row per run."""
  import csv
  keys = list(RESULT_COLUMNS) + sorted({k for r in rows for k in r} - set(RESULT_COLUMNS))
  path = os.path.join(workdir, name)
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
      w.writerow({k: r.get(k) for k in keys})
  os.replace(tmp, path)
  return path


def trained_at(workdir: str, *subdirs: str) -> str:
  """The commits that trained the cells (workdir/<subdir>/trained_at.txt), for the report."""
  lines = []
  for sub in subdirs:
    path = os.path.join(workdir, sub, "trained_at.txt")
    if os.path.isfile(path):
      lines += [f"{sub}: {line.strip()}" for line in open(path) if line.strip()]
  return "; ".join(lines) or "not recorded"


def provenance(event: str = "finished") -> str:
  """'commit abc1234 (clean tree), finished 2026-12-01 10:00 UTC' (now): the report's provenance line;
  event='started' for the line a sweep records when it starts training."""
  sha, dirty = provenance_lib.git_commit(REPO_ROOT) or ("unknown", "")
  when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  return f"commit {sha} ({'uncommitted changes: ' + dirty if dirty else 'clean tree'}), {event} {when}"


def provenance_lines(workdir: str, *subdirs: str) -> str:
  """The report's opening: the commit that wrote it and the commits that trained its cells."""
  return (f"Provenance: report written at {provenance()}; cells trained at\n"
          f"{trained_at(workdir, *(subdirs or ('sweep',)))}.")


def variant_lines(table: dict, names) -> list[str]:
  """A markdown table (as lines): one row per variant name, its error cell from `table[name]`."""
  return ["| variant | error (%) |", "|---|---|"] + [f"| {n} | {show(table.get(n))} |" for n in names]


def convergence_note(rows) -> str:
  runs = [r for r in rows if r.get("status") in ("done", "diverged")]
  ok = sum(bool(r.get("converged")) for r in runs)
  old = sum(bool(r.get("converged_unweighted")) for r in runs)
  pending = sum(r.get("status") == "pending" for r in rows)
  return ((f"{pending} of {len(rows)} runs had not finished when this report was written (missing below); " if pending
           else "") + f"{ok}/{len(runs)} finished runs converged (train loss over the last tenth of training within "
          f"{100 * CONVERGENCE_TOL:.0f}% of the tenth before, each logged value weighted by the steps it averages; "
          f"{old}/{len(runs)} with every logged value weighted alike, as first computed); cells marked * did not "
          f"all converge, and a claim that uses one is inconclusive")


def seeds_note(rows) -> str:
  seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
  return f"{len(seeds)} seed(s) per cell" + (" (mean ± s.e. over seeds)" if len(seeds) > 1 else "")


def error_lines(table: dict, names, xs, label: str = "norm") -> list[str]:
  """A markdown table (as lines): one row per name, one column per x, cells from `table[(name, x)]`."""
  lines = [f"| {label} | " + " | ".join(f"b={x}" for x in xs) + " |", "|---|" + "---|" * len(xs)]
  return lines + [f"| {n} | " + " | ".join(show(table.get((n, x))) for x in xs) + " |" for n in names]


def study_main(study: str, run: Callable, num_devices: int = 8) -> None:
  """Entry point: --preset=smoke|cpu|gpu --workdir=DIR; calls run(preset, workdir) -> report path.

  Sets XLA_FLAGS for `num_devices` host devices before jax is imported (CPU: fake devices)."""
  flag = f"--xla_force_host_platform_device_count={num_devices}"
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
  from absl import flags

  from normlab import cli
  from normlab.errors import UserError
  flags.DEFINE_enum("preset", None, PRESETS, "configs/sweeps/<study>.py preset")
  flags.DEFINE_string("workdir", None, "output directory (report.md, plots, results.csv/json; cells in sweep/)")
  flags.DEFINE_bool("report_only", False, "train nothing: write the report from the cells that finished (the "
                    "others count as missing, so the claims that need them are inconclusive)")
  FLAGS = flags.FLAGS

  def main(argv):
    if len(argv) > 1:
      raise UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir or not FLAGS.preset:
      raise UserError(f"give --preset={{{','.join(PRESETS)}}} and --workdir=DIR")
    import jax
    if jax.device_count() < num_devices:
      raise UserError(f"{study} needs {num_devices} devices, found {jax.device_count()}: set XLA_FLAGS="
                      f"--xla_force_host_platform_device_count={num_devices} before jax is imported")
    global REPORT_ONLY
    REPORT_ONLY = FLAGS.report_only
    t0 = time.time()
    path = run(FLAGS.preset, FLAGS.workdir)
    print(f"{study}: report in {path} ({time.time() - t0:.0f} s)")

  cli.run(main)


def quiet_logs() -> None:
  """Orbax logs every checkpoint step at INFO: keep the study's own lines readable."""
  import logging
  logging.getLogger("absl").setLevel(logging.WARNING)
  logging.getLogger("orbax").setLevel(logging.WARNING)
