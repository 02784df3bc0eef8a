"""SIGINT and SIGTERM during training: stop at a step every process agrees on, checkpoint it, exit 130 / 143.

    with interrupts.handled():          # scripts/train.py, scripts/sweep.py, around everything they do
      train_and_evaluate(config, workdir)

Inside `handled()` the first SIGINT (Ctrl-C) or SIGTERM (what Slurm and preemptible VMs send) lets the
step in flight finish (and the evaluation or checkpoint write after it); the loop then saves a checkpoint
at the step count it reached and raises `Interrupted`, which `handled()` turns into one line on stderr,

    interrupted at step N; checkpoint saved; rerun the same command to resume

and exit status 128 + the signal number (130 for SIGINT, 143 for SIGTERM). After the first signal both
revert to their default action, so a second one ends the process at once; the newest complete checkpoint
stays (orbax writes a checkpoint to a temporary directory and renames it when complete, and the temporary
directories of killed saves are removed on the next start: normlab.train.checkpoint). A signal the process
was started ignoring (SIGINT in a background job of a shell script) stays ignored.

The loop asks `stop_requested()` before every call of the step. In a single-process run the answer is
whether a signal came. In a multi-process run every process must stop at the same step: where
jax.distributed.initialize started JAX's preemption sync manager, SIGTERM goes to JAX's own handler
(installed by that call), SIGINT is forwarded to it as a SIGTERM, and the answer is JAX's preemption sync
point (`jax.experimental.multihost_utils.reached_preemption_sync_point` over the count of these calls,
which every process makes alike: the fastest process's count + 1, agreed through the coordination
service). A multi-process run without that manager keeps the default actions. Outside `handled()`
nothing changes. Python runs the handler once the main thread runs Python code again (a compile in
progress finishes first); from then on a second signal ends the process at once.
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

  def __init__(self, step: int | None, signum: int, where: str = ""):
    super().__init__(step, signum)
    self.step, self.signum, self.where = step, signum, where  # step None: between runs (sweep cells)

  @property
  def exit_code(self) -> int:
    return 128 + int(self.signum)

  def line(self) -> str:
    if self.step is None:
      return f"interrupted{self.where}; rerun the same command to resume"
    if self.step == 0:
      return f"interrupted at step 0{self.where} (nothing trained yet); rerun the same command to start"
    return f"interrupted at step {self.step}{self.where}; checkpoint saved; rerun the same command to resume"


_active = False  # inside handled()
_received: int | None = None  # the first signal handled()'s handler got
_forwarded = False  # SIGTERM sent to JAX's preemption handler
_calls = 0  # calls of stop_requested() in a multi-process run: the counter JAX agrees on


def _jax_state():
  """jax.distributed's global state, where jax is loaded (None otherwise)."""
  if "jax" not in sys.modules:
    return None
  from jax._src import distributed as jax_distributed
  return jax_distributed.global_state


def _jax_preemption_sync() -> bool:
  """True when jax.distributed.initialize started JAX's preemption sync manager (multi-process runs)."""
  return getattr(_jax_state(), "preemption_sync_manager", None) is not None


def _multi_process() -> bool:
  return getattr(_jax_state(), "client", None) is not None


def _forward_to_jax() -> None:
  global _forwarded
  if not _forwarded:
    _forwarded = True
    os.kill(os.getpid(), signal.SIGTERM)  # JAX's preemption notifier holds SIGTERM: it takes it from here


def _on_signal(signum, frame) -> None:
  global _received
  if _jax_preemption_sync():  # SIGINT (SIGTERM is JAX's): forward it; a second Ctrl-C ends the process at once
    _received = signum
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _forward_to_jax()
    return
  if _multi_process():  # the processes cannot agree on a step: the default action
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return
  _received = signum
  for s in SIGNALS:
    if signal.getsignal(s) == _on_signal:
      signal.signal(s, signal.SIG_DFL)  # a second signal ends the process at once


def received() -> int:
  """The signal that stopped the run: the one `handled()` got, else SIGTERM (JAX's handler got it)."""
  return int(_received if _received is not None else signal.SIGTERM)


def pending() -> bool:
  """A signal came to this single-process run (between runs, e.g. sweep cells, nothing needs agreeing on)."""
  return _active and _received is not None and not _multi_process()


def stop_requested() -> bool:
  """Whether the loop must stop before its next call of the step. Called once before every call, on every
  process: in a multi-process run the calls are counted, and JAX stops every process at the same count."""
  global _calls
  if not _active:
    return False
  if _jax_preemption_sync():
    if _received is not None:  # came before jax.distributed started
      _forward_to_jax()
    from jax.experimental import multihost_utils
    _calls += 1
    return bool(multihost_utils.reached_preemption_sync_point(_calls))
  return _received is not None


@contextlib.contextmanager
def handled() -> Iterator[None]:
  """Handle SIGINT/SIGTERM as above meanwhile; an `Interrupted` becomes its line and exit status."""
  global _active, _received, _forwarded, _calls
  if threading.current_thread() is not threading.main_thread() or _active:
    yield
    return
  # JAX's handler keeps SIGTERM where it runs already; a signal the process ignores stays ignored.
  mine = [s for s in SIGNALS if signal.getsignal(s) != signal.SIG_IGN
          and not (s == signal.SIGTERM and _jax_preemption_sync())]
  old = {s: signal.signal(s, _on_signal) for s in mine}
  _active = True
  try:
    yield
  except Interrupted as e:
    print(e.line(), file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  finally:
    for s, handler in old.items():
      if not (s == signal.SIGTERM and _jax_preemption_sync()):  # JAX's handler stays where it took over
        signal.signal(s, handler)
    _active, _received, _forwarded, _calls = False, None, False, 0
