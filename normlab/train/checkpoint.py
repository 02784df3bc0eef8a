"""Orbax checkpoints of the TrainState in workdir/checkpoints/<step>, with fallback on a corrupt one.

Saves are synchronous and atomic (orbax writes a temporary directory and renames it), so a process
killed mid-save leaves the previous checkpoints intact. On restore the newest step is tried first; if
orbax cannot read it (truncated or missing files), it is moved aside to
workdir/checkpoints_corrupt/<step>-<time> (never deleted) and the next older one is tried.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import time
from typing import Any, Callable

import orbax.checkpoint as ocp

from normlab.train.errors import WorkdirError

log = logging.getLogger("normlab.train")


@contextlib.contextmanager
def _quiet():
  """Orbax logs every save/restore step at INFO through absl: raise that logger to WARNING meanwhile."""
  absl_logger = logging.getLogger("absl")
  old = absl_logger.level
  absl_logger.setLevel(max(old, logging.WARNING))
  try:
    yield
  finally:
    absl_logger.setLevel(old)


@contextlib.contextmanager
def _silenced(name: str):
  """No records at all from logger `name` meanwhile (the caller reports the failure itself)."""
  logger = logging.getLogger(name)
  old = logger.level
  logger.setLevel(logging.CRITICAL + 1)
  try:
    yield
  finally:
    logger.setLevel(old)


def _quietly(fn):
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    with _quiet():
      return fn(*args, **kwargs)
  return wrapper


class Checkpointer:
  def __init__(self, directory: str, keep: int, *, main: bool = True):
    self.directory = os.path.abspath(directory)
    self.keep = keep
    self.main = main  # the process that moves unreadable checkpoints aside
    self._manager = self._open()

  @_quietly
  def _open(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                           enable_async_checkpointing=False, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  @_quietly
  def save(self, step: int, state: Any) -> None:
    """Writes step `step`; a failed write (read-only or full directory) raises a one-line WorkdirError
    and leaves the previous checkpoints as they were (orbax only renames a complete temporary dir)."""
    if step in self._manager.all_steps():
      return
    try:
      with _silenced("absl"):  # orbax logs the failed write's traceback before raising it
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()
    except (OSError, ValueError) as e:  # tensorstore reports a failed file write as a ValueError
      reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
      raise WorkdirError(f"cannot write the checkpoint of step {step} to {self.directory} ({reason}); "
                         f"stopped with the previous checkpoints {self.all_steps()} intact: free disk space "
                         f"or make the directory writable, then rerun to resume") from None

  @_quietly
  def restore_latest(self, target: Any, on_fallback: Callable[[str], None] | None = None
                     ) -> tuple[Any, int | None]:
    """(state, step) from the newest readable checkpoint, or (target, None) when there is none."""
    bad = []
    restored, restored_step = target, None
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        restored_step = step
        break
      except Exception as e:  # noqa: BLE001 (orbax raises many types for unreadable data)
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        message = f"checkpoint at step {step} is unreadable ({reason}); trying an older one"
        log.warning(message)
        if on_fallback:
          on_fallback(message)
        bad.append(step)
    if bad:
      self._quarantine(bad)
    return restored, restored_step

  def _quarantine(self, steps: list[int]) -> None:
    """Move unreadable step dirs aside so new saves at those steps do not collide."""
    from normlab.train import distributed
    self._manager.close()
    if self.main:
      aside = os.path.join(os.path.dirname(self.directory), "checkpoints_corrupt")
      os.makedirs(aside, exist_ok=True)
      stamp = time.strftime("%Y%m%d-%H%M%S")
      for step in steps:
        src = os.path.join(self.directory, str(step))
        if os.path.exists(src):
          dst = os.path.join(aside, f"{step}-{stamp}")
          shutil.move(src, dst)
          log.warning("moved unreadable checkpoint %s to %s", src, dst)
    distributed.barrier("unreadable checkpoints moved")
    self._manager = self._open()

  @_quietly
  def close(self) -> None:
    self._manager.close()
