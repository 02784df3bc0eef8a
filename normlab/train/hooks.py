"""Hooks of `train_and_evaluate`, in the manner of CLU's periodic actions (flax's examples).

A hook is called after every training step it is due at with what that step saw:

    hook(step, before, batch, after, metrics)

`step` is the 0-based index of the step (the batch `batch_indices(seed, step)`), `before` / `after`
the TrainState before and after it (`after.step == step + 1`), `batch` the host batch, `metrics` the
step's device metrics. A hook may also define `due(step, num_steps) -> bool` (default: every step;
the loop blocks on the step only where some hook is due), `uses_before = False` (default True: the
loop then keeps `before` alive instead of donating it to the next step; a hook that declares False
gets None), `start(run)`
(once, after the model and the initial state exist; `run` is the `Run` below) and `end(run)` (once,
after the last step, with `run.state` the final state). A non-finite step under nan_policy='stop'
raises TrainingDivergedError before any hook sees it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass
class Run:
  """What the loop built for a run: the hooks' view of it."""
  config: Any
  model: Any
  apply: Callable                 # model.apply, or its dict-input wrapper (inputs {'x', 'mask'})
  tx: Any
  schedule: Callable
  num_classes: int
  train_ds: Any
  batch: Callable[[int], dict]    # step -> the host batch the loop trains on at that step
  state: Any = None               # the initial state; the final one once training ends
  init_state: Any = None          # the initial state
  num_devices: int = 1            # the devices one step spans (real or emulated): `batch` holds all of theirs


def is_due(hook, step: int, num_steps: int) -> bool:
  due = getattr(hook, "due", None)
  return True if due is None else bool(due(step, num_steps))


@dataclasses.dataclass
class Periodic:
  """`fn(run, step, before, batch, after, metrics)` at steps `step % every == 0` and at the last step
  (CLU's PeriodicAction with `every_steps`, counting from the first step). Collects what `fn`
  returns (dicts) in `rows`, each with 'step' added."""
  every: int
  fn: Callable[..., dict | None]
  at_last: bool = True

  def __post_init__(self):
    self.rows: list[dict] = []
    self.run: Run | None = None

  def start(self, run: Run) -> None:
    self.run = run

  def due(self, step: int, num_steps: int) -> bool:
    return step % self.every == 0 or (self.at_last and step == num_steps - 1)

  def __call__(self, step, before, batch, after, metrics) -> None:
    row = self.fn(self.run, step, before, batch, after, metrics)
    if row is not None:
      self.rows.append({"step": step, **row})
