"""The run directory: decides new / resume / already done, refuses another config's run, checks disk.

    workdir/config.json       the resolved config of the run it holds (written first)
    workdir/checkpoints/<k>   orbax checkpoints;  workdir/metrics.jsonl, workdir/tb/, workdir/summary.json
    workdir/lock.json         the live run's owner (normlab.train.lock): one writer per workdir

A workdir whose config.json differs from this run's (in any key but HARMLESS_KEYS) is refused unless
`fresh`, which moves the old run aside to `<workdir>.old-<timestamp>` (nothing is deleted; the lock
stays). `locked(workdir)` takes the lock before anything else touches the workdir; in a
multi-process run process 0 takes it and every process learns the outcome.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from typing import Any, Iterator

from normlab.train import lock as lock_lib
from normlab.train.errors import WorkdirError
from normlab.train.metrics_io import read_json, write_json_atomic
from normlab.train.validate import HARMLESS_KEYS

MIN_FREE_BYTES = 64 << 20

NEW, RESUME, DONE = "new", "resume", "done"
LOCK_NAME = "lock.json"


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def summary_path(workdir: str) -> str:
  return os.path.join(workdir, "summary.json")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def normalize(config_dict: dict) -> dict:
  """As it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(config_dict, sort_keys=True, default=str))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_differences(old: dict, new: dict) -> list[str]:
  """'key: old -> new' for every non-harmless key that differs."""
  a, b = _flatten(normalize(old)), _flatten(normalize(new))
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key in HARMLESS_KEYS:
      continue
    missing = "<unset>"
    if a.get(key, missing) != b.get(key, missing):
      diffs.append(f"{key}: {a.get(key, missing)!r} -> {b.get(key, missing)!r}")
  return diffs


def lock_path(workdir: str) -> str:
  return os.path.join(workdir, LOCK_NAME)


def _take_lock(workdir: str, purpose: str, log) -> lock_lib.Lock:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"workdir {workdir} exists and is not a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
  try:
    return lock_lib.acquire(lock_path(workdir), purpose=purpose, log=log)
  except PermissionError as e:
    raise WorkdirError(f"workdir {workdir} is not writable: {e.strerror or e}") from None


@contextlib.contextmanager
def locked(workdir: str, *, log=print, purpose: str | None = None) -> Iterator[None]:
  """Hold workdir/lock.json meanwhile (raises LockHeldError, exit 2, naming a live owner).

  Multi-process: process 0 takes the lock and all processes agree on the outcome."""
  from normlab.train import distributed
  purpose = purpose or f"workdir {workdir}"
  held, error = None, None
  if distributed.is_main_process():
    try:
      held = _take_lock(workdir, purpose, log)
    except (WorkdirError, lock_lib.LockHeldError) as e:
      error = e
  if not distributed.all_processes_agree(error is None):
    if error is not None:
      raise error
    owner = lock_lib.read(lock_path(workdir))
    raise lock_lib.LockHeldError(f"{purpose} is locked{' by ' + lock_lib.describe(owner) if owner else ''} "
                                 f"(process 0 could not take {lock_path(workdir)})", owner or {})
  try:
    yield
  finally:
    if held is not None:
      held.release()


def _has_run_files(workdir: str) -> bool:
  ckpt = checkpoint_dir(workdir)
  return (os.path.exists(os.path.join(workdir, "metrics.jsonl")) or os.path.exists(summary_path(workdir))
          or (os.path.isdir(ckpt) and bool(os.listdir(ckpt))))


def move_aside(workdir: str) -> str:
  """Move the workdir's contents (all but its lock) to a new `<workdir>.old-<timestamp>`."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  dst = f"{workdir}.old-{stamp}"
  i = 1
  while os.path.exists(dst):
    dst = f"{workdir}.old-{stamp}-{i}"
    i += 1
  os.makedirs(dst)
  for name in os.listdir(workdir):
    if name != LOCK_NAME:
      os.rename(os.path.join(workdir, name), os.path.join(dst, name))
  return dst


def check_disk(workdir: str, needed_bytes: int = MIN_FREE_BYTES) -> None:
  free = shutil.disk_usage(workdir).free
  if free < needed_bytes:
    raise WorkdirError(f"not enough disk space in {workdir}: {free / 2**20:.0f} MiB free, "
                       f"about {needed_bytes / 2**20:.0f} MiB needed for checkpoints and logs")


def prepare(workdir: str, config_dict: dict, *, fresh: bool = False, log=print, write: bool = True) -> str:
  """Create/check `workdir` for a run of `config_dict`; returns NEW, RESUME or DONE.

  `write=False` (processes other than 0) only checks.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"workdir {workdir} exists and is not a directory")
  if fresh and os.path.isdir(workdir) and set(os.listdir(workdir)) - {LOCK_NAME} and write:
    dst = move_aside(workdir)
    log(f"--fresh: moved the previous run in {workdir} to {dst}")
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write-test-{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
  check_disk(workdir)

  status = NEW
  if os.path.exists(config_path(workdir)):
    try:
      old = read_json(config_path(workdir))
    except (OSError, ValueError):
      raise WorkdirError(f"workdir {workdir} has an unreadable config.json; use --fresh to move the run "
                         f"aside or pick another --workdir") from None
    diffs = config_differences(old, config_dict)
    if diffs and not _has_run_files(workdir):  # that run never got to its first log line
      log(f"workdir {workdir} holds the config of a run that never started; replacing it")
      diffs = []
    if diffs:
      more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
      raise WorkdirError(f"workdir {workdir} holds a run with a different config ({'; '.join(diffs[:3])}{more}); "
                         f"use --fresh to move it aside or pick another --workdir")
    status = DONE if os.path.exists(summary_path(workdir)) else RESUME
  elif _has_run_files(workdir):
    raise WorkdirError(f"workdir {workdir} holds run files but no config.json; use --fresh to move them "
                       f"aside or pick another --workdir")
  if write and status != DONE:
    write_json_atomic(config_path(workdir), normalize(config_dict))
  return status
