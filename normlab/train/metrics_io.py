"""Run outputs: metrics.jsonl (one object per logged step), TensorBoard events (workdir/tb), JSON files.

On resume from step k, `MetricsWriter(workdir, resume_step=k)` rewrites metrics.jsonl without the
lines of steps > k (and any torn last line of a killed run) before appending, and opens TensorBoard
with `purge_step=k + 1` so the events the killed run wrote past k are hidden.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any


def summary_writer_cls():
  """tensorboardX.SummaryWriter, imported without torch (it imports torch when installed: +2.5 s)."""
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # makes `import torch` fail fast inside tensorboardX
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


def write_json_atomic(path: str, obj: Any) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=_jsonable)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def _jsonable(value):
  if hasattr(value, "item"):
    return value.item()
  if isinstance(value, tuple):
    return list(value)
  return str(value)


def _clean(value):
  """JSON has no NaN/inf: write them as strings."""
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def read_metrics(path: str) -> list[dict]:
  """The parseable lines of a metrics.jsonl (a torn last line is skipped)."""
  rows = []
  if not os.path.exists(path):
    return rows
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows


class MetricsWriter:
  def __init__(self, workdir: str, *, resume_step: int | None, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    start = resume_step or 0
    kept = [r for r in read_metrics(self.path) if isinstance(r.get("step"), int) and r["step"] <= start]
    tmp = f"{self.path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
      for row in kept:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, self.path)
    self._file = open(self.path, "a")
    self._tb = None
    if tensorboard:
      self._tb = summary_writer_cls()(os.path.join(workdir, "tb"), purge_step=start + 1 if start else None)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    row = {"step": int(step), **{k: _clean(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(row, sort_keys=True) + "\n")
    self._file.flush()
    if self._tb is not None:
      for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
          self._tb.add_scalar(key, value, step)

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()
