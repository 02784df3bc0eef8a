"""Exceptions of the training package.

`UserError` (normlab.errors, a ValueError) subclasses are mistakes the user can fix (a bad config, a
workdir that holds another run): `scripts/train.py` prints their one-line message as `error: ...` and
exits 2, without a traceback.
`TrainingDivergedError` is a run that went non-finite under nan_policy='stop' (exit 3).
"""
from __future__ import annotations

from normlab.errors import UserError


class ConfigError(UserError):
  """A config value is invalid; the message names the key, the bad value and the valid choices."""


class WorkdirError(UserError):
  """The workdir cannot be used: holds a different run, is not writable, or its disk is full."""


class TrainingDivergedError(RuntimeError):
  """The loss or a gradient became non-finite at `step` (1-based count of completed steps)."""

  def __init__(self, step: int, message: str):
    super().__init__(message)
    self.step = step


RESUME_SUSPECT_STEPS = 10  # a divergence this soon after a resume is blamed on the restored state first


def diverged_message(step: int, loss: float, resumed_from: int | None) -> str:
  """The one-line TrainingDivergedError message for a non-finite loss at `step` (nan_policy='stop')."""
  if resumed_from and 0 < step - resumed_from <= RESUME_SUSPECT_STEPS:
    return (f"non-finite loss or gradient at step {step} (train_loss={loss}), {step - resumed_from} step(s) "
            f"after this run resumed from the checkpoint at step {resumed_from}: the restored state may be bad "
            f"although it passed its digest check (e.g. saved by a different code version); move "
            f"checkpoints/{resumed_from} aside to resume from an older one, or rerun with --fresh")
  return (f"non-finite loss or gradient at step {step} (train_loss={loss}); stopped without checkpointing it "
          f"(nan_policy='stop'; lower learning_rate, clip gradients or set nan_policy='skip')")
