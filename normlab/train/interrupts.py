"""SIGINT and SIGTERM during training: stop at a step every process agrees on, checkpoint it, exit 130 / 143.

    with interrupts.handled():          # scripts/train.py, scripts/sweep.py
      train_and_evaluate(config, workdir)

Inside `handled()` the first SIGINT (Ctrl-C) or SIGTERM (what Slurm and preemptible VMs send) lets the
step in flight finish; the loop then saves a checkpoint at the step count it reached and raises
`Interrupted`, which `handled()` turns into one line on stderr,

    interrupted at step N; checkpoint saved; rerun the same command to resume

and exit status 128 + the signal number (130 for SIGINT, 143 for SIGTERM). After the first signal both
revert to their default action, so a second one ends the process at once; the newest complete checkpoint
stays (orbax writes a checkpoint to a temporary directory and renames it when complete; the temporary
directories a killed save leaves are removed on the next start, normlab.train.checkpoint).

The loop asks `stop_requested(count, first)` before every call of the step (`count` completed steps;
`first` the count the run started or resumed at). In a single-process run that is the local flag. In a
multi-process run (jax.distributed.initialize started JAX's preemption sync manager) every process must
stop at the same step, so the answer is JAX's preemption sync point
(`jax.experimental.multihost_utils.reached_preemption_sync_point`): SIGTERM goes to JAX's own handler,
SIGINT is forwarded to it as a SIGTERM, and JAX agrees on the step (the fastest process's count + 1).
Without that manager a multi-process run keeps the default actions. Outside `handled()` nothing changes.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
  """Training stopped on a signal after `step` completed steps, with that step's checkpoint saved.

  A BaseException (like KeyboardInterrupt), so that `except Exception` in hooks and studies lets it pass."""

  def __init__(self, step: int, signum: int, where: str = ""):
    super().__init__(step, signum)
    self.step, self.signum, self.where = step, signum, where

  @property
  def exit_code(self) -> int:
    return 128 + int(self.signum)

  def line(self) -> str:
    if self.step == 0:
      return f"interrupted at step 0{self.where} (nothing trained yet); rerun the same command to start"
    return f"interrupted at step {self.step}{self.where}; checkpoint saved; rerun the same command to resume"


_received: int | None = None  # the first signal handled()'s handler got
_mode: str | None = None  # None (not inside handled()), "local" or "jax" (multi-process: JAX's sync point)


def _jax_preemption_sync() -> bool:
  """True when jax.distributed.initialize started JAX's preemption sync manager (multi-process runs)."""
  if "jax" not in sys.modules:
    return False
  from jax._src import distributed as jax_distributed
  return getattr(jax_distributed.global_state, "preemption_sync_manager", None) is not None


def _multi_process() -> bool:
  if "jax" not in sys.modules:
    return False
  from jax._src import distributed as jax_distributed
  return getattr(jax_distributed.global_state, "client", None) is not None


def _on_signal(signum, frame) -> None:
  global _received
  _received = signum
  for s in SIGNALS:
    if s != signal.SIGTERM or _mode == "local":  # JAX's handler keeps SIGTERM in "jax" mode
      signal.signal(s, signal.SIG_DFL)  # a second signal ends the process at once
  if _mode == "jax":
    os.kill(os.getpid(), signal.SIGTERM)  # JAX's preemption notifier takes it from here


def received() -> int:
  """The signal that stopped the run: the one `handled()` received, else SIGTERM (JAX's handler got it)."""
  return int(_received if _received is not None else signal.SIGTERM)


def stop_requested(count: int, first: int) -> bool:
  """Whether the loop must stop before training past `count` steps (called before every call of the step,
  with consecutive counts from `first` on, on every process)."""
  if _mode == "jax":
    from jax.experimental import multihost_utils
    return bool(multihost_utils.reached_preemption_sync_point(count - first + 1))
  return _mode == "local" and _received is not None


@contextlib.contextmanager
def handled() -> Iterator[None]:
  """Handle SIGINT/SIGTERM as above meanwhile; an `Interrupted` becomes its line and exit status."""
  global _mode, _received
  if threading.current_thread() is not threading.main_thread() or _mode is not None:
    yield
    return
  if _jax_preemption_sync():
    _mode, handled_signals = "jax", (signal.SIGINT,)
  elif _multi_process():  # processes cannot agree on a step: keep the default actions
    _mode, handled_signals = None, ()
  else:
    _mode, handled_signals = "local", SIGNALS
  old = {s: signal.signal(s, _on_signal) for s in handled_signals}
  try:
    yield
  except Interrupted as e:
    print(e.line(), file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)
    _mode, _received = None, None
