"""The run directory: decides new / resume / already done, refuses another config's run, checks disk.

    workdir/config.json       the resolved config of the run it holds (written first)
    workdir/checkpoints/<k>   orbax checkpoints;  workdir/metrics.jsonl, workdir/tb/, workdir/summary.json

A workdir whose config.json differs from this run's (in any key but HARMLESS_KEYS) is refused unless
`fresh`, which moves the old run aside to `<workdir>.old-<timestamp>` (nothing is deleted).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from normlab.train.errors import WorkdirError
from normlab.train.metrics_io import read_json, write_json_atomic
from normlab.train.validate import HARMLESS_KEYS

MIN_FREE_BYTES = 64 << 20

NEW, RESUME, DONE = "new", "resume", "done"


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


def _has_run_files(workdir: str) -> bool:
  ckpt = checkpoint_dir(workdir)
  return (os.path.exists(os.path.join(workdir, "metrics.jsonl")) or os.path.exists(summary_path(workdir))
          or (os.path.isdir(ckpt) and bool(os.listdir(ckpt))))


def move_aside(workdir: str) -> str:
  stamp = time.strftime("%Y%m%d-%H%M%S")
  dst = f"{workdir}.old-{stamp}"
  i = 1
  while os.path.exists(dst):
    dst = f"{workdir}.old-{stamp}-{i}"
    i += 1
  os.rename(workdir, dst)
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
  if fresh and os.path.isdir(workdir) and os.listdir(workdir) and write:
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
