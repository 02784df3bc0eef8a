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
