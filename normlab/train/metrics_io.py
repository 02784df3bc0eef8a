"""Run outputs: metrics.jsonl (one object per logged step), TensorBoard events (workdir/tb), JSON files.

metrics.jsonl is only ever appended to, one flushed line per write, so a crash loses at most the last
line. On resume from step k, `MetricsWriter(workdir, resume_step=k)` truncates the file in place at
its first line past step k (or its first torn line) and appends from there; it opens TensorBoard with
`purge_step=k + 1` so the events the killed run wrote past k are hidden. Lines with an "event" key
(e.g. "checkpoint_fallback") record what happened to the run at that step.
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


def _keep_upto(path: str, start: int) -> int:
  """Byte offset just past the last line to keep: the lines before the first torn line or step > start."""
  offset = 0
  with open(path, "rb") as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        break
      if (not line.endswith(b"\n") or not isinstance(row, dict) or not isinstance(row.get("step"), int)
          or row["step"] > start):
        break
      offset += len(line)
  return offset


def count_events(path: str, event: str) -> int:
  return sum(r.get("event") == event for r in read_metrics(path))


class MetricsWriter:
  def __init__(self, workdir: str, *, resume_step: int | None, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    start = resume_step or 0
    if os.path.exists(self.path):
      with open(self.path, "r+b") as f:
        f.truncate(_keep_upto(self.path, start))
    self._file = open(self.path, "a")
    self._tb = None
    if tensorboard:
      self._tb = summary_writer_cls()(os.path.join(workdir, "tb"), purge_step=start + 1 if start else None)

  def event(self, step: int, event: str, **fields) -> None:
    """A line recording something that happened to the run (not a metric), e.g. a checkpoint fallback."""
    self._file.write(json.dumps({"step": int(step), "event": event, **fields}, sort_keys=True, default=str) + "\n")
    self._file.flush()

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
