"""Runs sweep cells with the training loop; finished cells are skipped, interrupted ones resume.

Cells are claimed before they train: the claim is the cell's workdir lock (cells/<id>/lock.json,
normlab.train.lock: owner host, pid, heartbeat; stale after NORMLAB_LOCK_STALE_S, default 120 s), so any
number of processes (`--cell=K` array tasks, or whole-sweep workers) can run at once: a cell with a
live claim is skipped, a stale claim is taken over, and no cell trains in two processes at once.
Every claim that leads to training appends a line to cells/<id>/claims.jsonl (an audit trail).
In a multi-process (multi-host) cell, process 0 claims and writes cell.json, claims.jsonl and the
reports; the training loop writes checkpoints together and the summary from process 0.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time

import jax
import ml_collections as mlc

from normlab.sweep.grid import REPO_ROOT, Cell, SweepError, expand
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


SUBSET_LOSS_FILE = "subset_loss.jsonl"


def subset_loss_train_fn(examples: int):
  """train_and_evaluate with normlab.analysis.plateau.SubsetLoss(examples): the fixed-subset training loss at
  the end of every tenth, appended (process 0) to the cell's subset_loss.jsonl as it is measured. A resumed
  cell appends again from where it resumed; readers keep the last row of each step."""
  def train_fn(config, workdir):
    from normlab.analysis.plateau import SubsetLoss
    from normlab.train import train_and_evaluate
    path = os.path.join(workdir, SUBSET_LOSS_FILE)

    def append(row: dict) -> None:
      if _main():
        with open(path, "a") as f:
          f.write(json.dumps(row) + "\n")
    return train_and_evaluate(config, workdir, hooks=[SubsetLoss(examples, on_row=append)])
  return train_fn


def _main() -> bool:
  return jax.process_index() == 0


def _write_cell_json(cell: Cell, workdir: str) -> str:
  from normlab.train.metrics_io import write_json_atomic
  out = cell_dir(workdir, cell)
  os.makedirs(out, exist_ok=True)
  if _main():
    write_json_atomic(os.path.join(out, "cell.json"), {"id": cell.id, "params": cell.params})
  return out


def _diverged_summary(out: str, error) -> dict:
  """A cell whose loss went non-finite (nan_policy='stop') is finished: recorded, not retried."""
  from normlab.train.metrics_io import write_json_atomic
  summary = {"status": "diverged", "nonfinite_step": getattr(error, "step", None), "eval_accuracy": None,
             "message": str(error)}
  if _main():
    write_json_atomic(os.path.join(out, "summary.json"), summary)
  return summary


@contextlib.contextmanager
def claim(cell: Cell, workdir: str, index: int, log=print):
  """Yields True while this process (process 0 for all, in a multi-process cell) holds the cell's claim
  and the cell still needs training; False if it is finished or another live process trains it."""
  from normlab.train import lock as lock_lib
  from normlab.train import distributed, workdir as workdir_lib
  out = cell_dir(workdir, cell)
  if distributed.all_processes_agree(is_done(workdir, cell)):
    yield False
    return
  try:
    held = workdir_lib.locked(out, log=log, purpose=f"cell {index + 1} ({cell.id})")
    held.__enter__()
  except lock_lib.LockHeldError as e:
    log(f"sweep: skipping cell {index + 1}: {e}")
    yield False
    return
  try:
    if distributed.all_processes_agree(is_done(workdir, cell)):  # finished while we waited for the claim
      yield False
      return
    if _main():
      with open(os.path.join(out, "claims.jsonl"), "a") as f:
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
                            "processes": jax.process_count()}) + "\n")
    yield True
  finally:
    held.__exit__(None, None, None)


def run_cell(cell: Cell, workdir: str, train_fn=None) -> dict:
  """Trains one cell into workdir/cells/<id>/ (train_fn(config, dir) defaults to train_and_evaluate).

  A cell that diverges gets a summary.json with status 'diverged' (the sweep goes on)."""
  from normlab.train.errors import TrainingDivergedError
  out = _write_cell_json(cell, workdir)
  try:
    return (train_fn or _default_train_fn)(cell.config, out)
  except TrainingDivergedError as e:
    return _diverged_summary(out, e)


@contextlib.contextmanager
def _naming_cells(cells: list[Cell]):
  """A signal that stops training (normlab.train.interrupts) names the cells it stopped; their claims are
  released on the way out and a rerun of the same command resumes them."""
  from normlab.train import interrupts
  try:
    yield
  except interrupts.Interrupted as e:
    e.where = f" in cell{'s' if len(cells) > 1 else ''} {', '.join(c.id for c in cells)}"
    raise


def _stop_if_interrupted(cells: list[Cell]) -> None:
  """Between cells, a signal stops the sweep before the next one is claimed (single-process runs; a
  multi-process cell stops at the step its processes agree on instead)."""
  from normlab.train import interrupts
  if interrupts.pending():
    raise interrupts.Interrupted(None, interrupts.received(), f" before cell {cells[0].id}")


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
  subset_examples = int(sweep.get("subset_loss_examples", 0) or 0)
  if subset_examples and train_fn is None:
    train_fn = subset_loss_train_fn(subset_examples)
  vmap_seeds = bool(sweep.get("vmap_seeds", False)) and not subset_examples  # the hook measures one run
  groups = _seed_groups(todo) if vmap_seeds else [[c] for c in todo]
  max_batch = int(sweep.get("vmap_seeds_max_batch", 0) or 0)  # per device; 0 = no limit
  if max_batch:  # on CPU, vmapped convs (grouped) get slower than S separate runs at larger batches
    per_device = lambda c: c.config.batch_size // max(1, c.config.get("num_devices", 1) or 1)  # noqa: E731
    groups = [part for g in groups for part in ([g] if per_device(g[0]) <= max_batch else [[c] for c in g])]
  for group in groups:
    _stop_if_interrupted(group)
    with contextlib.ExitStack() as stack:
      group = [c for c in group if stack.enter_context(claim(c, workdir, cells.index(c), log))]
      if len(group) > 1 and train_fn is None:
        from normlab.train import train_and_evaluate_seeds
        log(f"sweep: cells {', '.join(str(cells.index(c) + 1) for c in group)}/{len(cells)}: {len(group)} seeds "
            f"vmapped together: {group[0].id} ...")
        with _naming_cells(group):
          train_and_evaluate_seeds([c.config for c in group], [_write_cell_json(c, workdir) for c in group],
                                   scan_steps=sweep.get("scan_steps", None))
        continue
      for c in group:
        log(f"sweep: cell {cells.index(c) + 1}/{len(cells)} (--cell={cells.index(c)}): {c.id}")
        with _naming_cells([c]):
          run_cell(c, workdir, train_fn)
  if _main():
    write_report(sweep, cells, workdir)
  return cells


FORMATS = ("shell", "slurm")


def cell_command(sweep_spec: str, workdir: str, cell: str, python: str = "python") -> str:
  return (f"{python} scripts/sweep.py --config={shlex.quote(sweep_spec)} --workdir={shlex.quote(workdir)} "
          f"--cell={cell}")


def slurm_script(sweep_spec: str, workdir: str, indices: list[int], sbatch_options: str = "") -> str:
  """An sbatch array script: one task per unfinished cell, each running `--cell=$SLURM_ARRAY_TASK_ID`."""
  lines = ["#!/bin/bash",
           f"# normlab sweep {sweep_spec} in {workdir}: {len(indices)} unfinished cells, one array task each.",
           "# Submit from the repository root: sbatch THIS_FILE. Requeued or duplicate tasks are safe: a cell",
           "# with a live claim is skipped, a stale one is taken over (see README, Sweeps on a cluster).",
           "#SBATCH --job-name=normlab-sweep",
           f"#SBATCH --array={','.join(map(str, indices))}",
           "#SBATCH --output=normlab-sweep-%A_%a.out"]
  lines += [f"#SBATCH {opt}" for opt in shlex.split(sbatch_options)]
  lines += ["set -euo pipefail",
            f"cd {shlex.quote(REPO_ROOT)}",
            "exec " + cell_command(sweep_spec, workdir, '"${SLURM_ARRAY_TASK_ID}"', '"${PYTHON:-python}"')]
  return "\n".join(lines) + "\n"


def print_commands(sweep_spec: str, sweep: mlc.ConfigDict, workdir: str, out=None, *, fmt: str = "shell",
                   sbatch_options: str = "") -> int:
  """The unfinished cells as shell commands (one per line) or as an sbatch array script; returns their count."""
  if fmt not in FORMATS:
    raise SweepError(f"--format={fmt!r} is not valid; valid choices: {', '.join(FORMATS)}")
  cells = expand(sweep)
  out = out or sys.stdout
  todo = [i for i, c in enumerate(cells) if not is_done(workdir, c)]
  if fmt == "slurm":
    if todo:
      print(slurm_script(sweep_spec, workdir, todo, sbatch_options), end="", file=out)
    return len(todo)
  for i in todo:
    print(cell_command(sweep_spec, workdir, str(i)), file=out)
  return len(todo)
