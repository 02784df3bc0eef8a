"""Runs sweep cells with the training loop; finished cells are skipped, interrupted ones resume."""
from __future__ import annotations

import json
import os
import shlex
import sys

import jax
import ml_collections as mlc

from normlab.sweep.grid import Cell, SweepError, expand
from normlab.sweep.report import write_report


def cell_dir(workdir: str, cell: Cell) -> str:
  return os.path.join(workdir, "cells", cell.id)


def is_done(workdir: str, cell: Cell) -> bool:
  return os.path.isfile(os.path.join(cell_dir(workdir, cell), "summary.json"))


def enable_compilation_cache(workdir: str) -> None:
  """Persistent XLA cache shared by the cells of a sweep (same shapes compile once)."""
  jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, ".jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _default_train_fn(config, workdir):
  from normlab.train import train_and_evaluate  # heavy import, only when training
  return train_and_evaluate(config, workdir)


def _write_cell_json(cell: Cell, workdir: str) -> str:
  out = cell_dir(workdir, cell)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "cell.json"), "w") as f:
    json.dump({"id": cell.id, "params": cell.params}, f, indent=1, default=str)
  return out


def _diverged_summary(out: str, error) -> dict:
  """A cell whose loss went non-finite (nan_policy='stop') is finished: recorded, not retried."""
  summary = {"status": "diverged", "nonfinite_step": getattr(error, "step", None), "eval_accuracy": None,
             "message": str(error)}
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def run_cell(cell: Cell, workdir: str, train_fn=None) -> dict:
  """Trains one cell into workdir/cells/<id>/ (train_fn(config, dir) defaults to train_and_evaluate).

  A cell that diverges gets a summary.json with status 'diverged' (the sweep goes on)."""
  from normlab.train.errors import TrainingDivergedError
  out = _write_cell_json(cell, workdir)
  try:
    return (train_fn or _default_train_fn)(cell.config, out)
  except TrainingDivergedError as e:
    return _diverged_summary(out, e)


def _seed_groups(cells: list[Cell]) -> list[list[Cell]]:
  """Cells that differ only in `seed`, in grid order."""
  groups: dict[str, list[Cell]] = {}
  for c in cells:
    key = json.dumps({k: v for k, v in c.params.items() if k != "seed"}, sort_keys=True, default=str)
    groups.setdefault(key, []).append(c)
  return list(groups.values())


def run_sweep(sweep: mlc.ConfigDict, workdir: str, *, cell_index: int | None = None,
              report_only: bool = False, log=print, train_fn=None) -> list[Cell]:
  cells = expand(sweep)
  os.makedirs(workdir, exist_ok=True)
  if cell_index is not None and not 0 <= cell_index < len(cells):
    raise SweepError(f"--cell={cell_index} is out of range; valid cells: 0..{len(cells) - 1}")
  todo = [] if report_only else (
      [cells[cell_index]] if cell_index is not None else [c for c in cells if not is_done(workdir, c)])
  if todo:
    enable_compilation_cache(workdir)
  skipped = len(cells) - len(todo) if not report_only and cell_index is None else 0
  if skipped:
    log(f"sweep: {skipped}/{len(cells)} cells already finished, skipping them")
  vmap_seeds = bool(sweep.get("vmap_seeds", False))
  groups = _seed_groups(todo) if vmap_seeds else [[c] for c in todo]
  max_batch = int(sweep.get("vmap_seeds_max_batch", 0) or 0)  # per device; 0 = no limit
  if max_batch:  # on CPU, vmapped convs (grouped) get slower than S separate runs at larger batches
    per_device = lambda c: c.config.batch_size // max(1, c.config.get("num_devices", 1) or 1)  # noqa: E731
    groups = [part for g in groups for part in ([g] if per_device(g[0]) <= max_batch else [[c] for c in g])]
  for group in groups:
    if len(group) > 1 and train_fn is None:
      from normlab.train import train_and_evaluate_seeds
      log(f"sweep: cells {', '.join(str(cells.index(c)) for c in group)}/{len(cells)}: {len(group)} seeds "
          f"vmapped together: {group[0].id} ...")
      train_and_evaluate_seeds([c.config for c in group], [_write_cell_json(c, workdir) for c in group],
                               scan_steps=sweep.get("scan_steps", None))
      continue
    for c in group:
      log(f"sweep: cell {cells.index(c)}/{len(cells)}: {c.id}")
      run_cell(c, workdir, train_fn)
  write_report(sweep, cells, workdir)
  return cells


def print_commands(sweep_spec: str, sweep: mlc.ConfigDict, workdir: str, out=None) -> int:
  """One shell command per unfinished cell, for a cluster scheduler (Slurm array, k8s jobs)."""
  cells = expand(sweep)
  out = out or sys.stdout
  n = 0
  for i, c in enumerate(cells):
    if not is_done(workdir, c):
      print(f"python scripts/sweep.py --config={shlex.quote(sweep_spec)} --workdir={shlex.quote(workdir)} "
            f"--cell={i}", file=out)
      n += 1
  return n
