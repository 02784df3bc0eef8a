"""Orbax checkpoints of the TrainState in workdir/checkpoints/<step>, verified by digest on restore.

Every checkpoint holds two orbax items, committed together (orbax writes the step to a temporary
directory and renames it when both are finalized):

    <step>/default/   the TrainState (StandardSave)
    <step>/digest/    JSON: the step and, per leaf, sha256 over dtype, shape and the exact bytes saved

Saves are synchronous, so a process killed mid-save leaves the previous checkpoints intact; the
temporary directories it leaves (`<step>.orbax-checkpoint-tmp*`) are removed when the next run opens
the directory, so none of them blocks a resume or a later save of that step. On
restore the newest step is tried first. A checkpoint is damaged when orbax cannot read it, its digest
is missing, or a restored leaf's sha256 differs from the saved one (flipped bits that still decode).
A damaged checkpoint gets one warning line naming the step, the file and the reason, is moved to
checkpoints/corrupt-<step>/ (never deleted), and the next older one is tried; with none left the run
starts over. In a multi-process run each process verifies the state it restored (the state is
replicated: one full copy per process) and all processes agree on the verdict before going on, so
every process continues from the same step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import re
import shutil
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from normlab.train import distributed
from normlab.train.errors import WorkdirError

log = logging.getLogger("normlab.train")

STATE_ITEM, DIGEST_ITEM = "default", "digest"
CORRUPT_PREFIX = "corrupt-"
TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's suffix of a checkpoint being written (a timestamp may follow)


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


def _local_value(leaf) -> np.ndarray:
  """This process's full copy of a leaf (TrainState leaves are replicated on every device)."""
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    shard = leaf.addressable_shards[0]
    if shard.data.shape != leaf.shape:
      raise ValueError(f"checkpoint digests need replicated leaves; got a leaf of shape {leaf.shape} "
                       f"sharded as {shard.data.shape}")
    return np.asarray(shard.data)
  return np.asarray(leaf)


def leaf_sha256(value: np.ndarray) -> str:
  value = np.ascontiguousarray(value)
  h = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
  h.update(value.reshape(-1).view(np.uint8))
  return h.hexdigest()


def tree_digest(tree) -> dict[str, str]:
  """{leaf path: sha256 of its dtype, shape and bytes}."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): leaf_sha256(_local_value(leaf)) for path, leaf in leaves}


def digest_mismatch(saved: dict, restored_tree) -> str | None:
  """The first difference between a saved digest document and the restored tree, or None."""
  if not isinstance(saved, dict) or saved.get("algorithm") != "sha256" or not isinstance(saved.get("leaves"), dict):
    return "the digest is malformed"
  expected, actual = saved["leaves"], tree_digest(restored_tree)
  for key in sorted(set(expected) | set(actual)):
    if key not in expected or key not in actual:
      return f"leaf {key} is {'missing from the digest' if key not in expected else 'missing from the state'}"
    if expected[key] != actual[key]:
      return f"leaf {key} does not match its sha256 digest"
  return None


@dataclasses.dataclass
class Fallback:
  step: int     # the damaged checkpoint's step
  file: str     # the file (or item directory) at fault
  reason: str
  moved_to: str | None


class Checkpointer:
  def __init__(self, directory: str, keep: int, *, main: bool = True, digests: bool = True):
    self.directory = os.path.abspath(directory)
    self.keep = keep
    self.main = main  # the process that moves damaged checkpoints aside
    self.digests = digests  # False only to measure their cost (restore then skips verification)
    self.fallbacks: list[Fallback] = []
    self._remove_unfinished()
    self._manager = self._open()

  def _remove_unfinished(self) -> None:
    """Delete the temporary directories of saves that never finished (process 0; all processes wait)."""
    if self.main and os.path.isdir(self.directory):
      for name in os.listdir(self.directory):
        if TMP_MARK in name:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    distributed.barrier("unfinished checkpoints removed")

  @_quietly
  def _open(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                           enable_async_checkpointing=False, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(self.directory, item_names=(STATE_ITEM, DIGEST_ITEM), options=options)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  @_quietly
  def save(self, step: int, state: Any) -> None:
    """Writes step `step`; a failed write (read-only or full directory) raises a one-line WorkdirError
    and leaves the previous checkpoints as they were (orbax only renames a complete temporary dir)."""
    if step in self._manager.all_steps():
      return
    items = {STATE_ITEM: ocp.args.StandardSave(state)}
    if self.digests:
      items[DIGEST_ITEM] = ocp.args.JsonSave({"algorithm": "sha256", "step": int(step),
                                              "leaves": tree_digest(state)})
    try:
      with _silenced("absl"):  # orbax logs the failed write's traceback before raising it
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        self._manager.wait_until_finished()
    except (OSError, ValueError) as e:  # tensorstore reports a failed file write as a ValueError
      reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
      raise WorkdirError(f"cannot write the checkpoint of step {step} to {self.directory} ({reason}); "
                         f"stopped with the previous checkpoints {self.all_steps()} intact: free disk space "
                         f"or make the directory writable, then rerun to resume") from None

  def _file_in(self, error: Exception, step: int) -> str:
    """The path an orbax error names, if it names one under this step, else the step's directory."""
    step_dir = os.path.join(self.directory, str(step))
    match = re.search(re.escape(step_dir) + r"[^\s'\"\]\),]*", str(error))
    return match.group(0) if match else step_dir

  def _try(self, step: int, target: Any) -> tuple[Any, str | None, str | None]:
    """(state, None, None) if the checkpoint at `step` restores and verifies, else (None, file, reason)."""
    step_dir = os.path.join(self.directory, str(step))
    items = {STATE_ITEM: ocp.args.StandardRestore(target)}
    if self.digests:
      items[DIGEST_ITEM] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001 (orbax raises many types for unreadable data)
      if self.digests and not os.path.exists(os.path.join(step_dir, DIGEST_ITEM)):
        return None, os.path.join(step_dir, DIGEST_ITEM), "its digest is missing"
      text = str(e).splitlines()[0] if str(e) else ""
      return None, self._file_in(e, step), f"unreadable ({type(e).__name__}: {text[:200]})"
    state = restored[STATE_ITEM]
    if not self.digests:
      return state, None, None
    file = os.path.join(step_dir, STATE_ITEM)
    saved = restored[DIGEST_ITEM]
    if isinstance(saved, dict) and saved.get("step") != step:
      return None, os.path.join(step_dir, DIGEST_ITEM), f"its digest is for step {saved.get('step')}"
    problem = digest_mismatch(saved, state)
    if problem is None and hasattr(state, "step") and int(_local_value(state.step)) != step:
      problem = f"the restored state says step {int(_local_value(state.step))}"
    return (None, file, problem) if problem else (state, None, None)

  @_quietly
  def restore_latest(self, target: Any, on_fallback: Callable[[str], None] | None = None
                     ) -> tuple[Any, int | None]:
    """(state, step) from the newest intact checkpoint, or (target, None) when there is none.

    Damaged ones are moved aside and recorded in `self.fallbacks`."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      state, file, reason = self._try(step, target)
      if distributed.all_processes_agree(state is not None):
        return state, step
      if reason is None:  # intact here, damaged on another process
        file, reason = os.path.join(self.directory, str(step)), "it failed verification on another process"
      moved = self._quarantine(step)
      message = (f"checkpoint at step {step} is damaged: {reason} ({file}); "
                 f"{'moved to ' + moved if moved else 'left in place'}; trying an older one")
      if self.main:
        log.warning(message)
      if on_fallback:
        on_fallback(message)
      self.fallbacks.append(Fallback(step, file, reason, moved))
    return target, None

  def _quarantine(self, step: int) -> str | None:
    """Move a damaged step dir to checkpoints/corrupt-<step>[-k] (never deleted), so new saves at that
    step do not collide with it; returns where it went."""
    self._manager.close()
    src, dst = os.path.join(self.directory, str(step)), None
    if self.main and os.path.exists(src):
      dst = os.path.join(self.directory, f"{CORRUPT_PREFIX}{step}")
      k = 1
      while os.path.exists(dst):
        dst = os.path.join(self.directory, f"{CORRUPT_PREFIX}{step}-{k}")
        k += 1
      shutil.move(src, dst)
    distributed.barrier(f"damaged checkpoint {step} moved")
    self._manager = self._open()
    return dst if self.main else os.path.join(self.directory, f"{CORRUPT_PREFIX}{step}")

  @_quietly
  def close(self) -> None:
    self._manager.close()
