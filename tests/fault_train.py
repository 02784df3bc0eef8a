"""scripts/train.py with one pause point, so that tests/test_faults.py can SIGKILL a run at a chosen moment.

NORMLAB_PAUSE=ckpt:K   pauses inside the K-th checkpoint write of this process: its files are written
                       to orbax's temporary directory, which is not yet renamed into place;
NORMLAB_PAUSE=eval:K   pauses before the K-th evaluation batch of this process.
At the pause it creates the file named by NORMLAB_PAUSE_MARKER and sleeps until it is killed, or for
NORMLAB_PAUSE_S seconds where that is set (a slow write or evaluation, for signals that arrive meanwhile).
Without NORMLAB_PAUSE it is exactly scripts/train.py. Test-only: nothing in normlab knows about it.
"""
import os
import runpy
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _counter(k: int):
  seen = [0]

  def hit():
    seen[0] += 1
    if seen[0] == k:
      with open(os.environ["NORMLAB_PAUSE_MARKER"], "w") as f:
        f.write(os.environ["NORMLAB_PAUSE"])
      end = time.time() + float(os.environ.get("NORMLAB_PAUSE_S", 3600))
      while time.time() < end:  # a signal handler may run meanwhile; the pause still lasts until `end`
        time.sleep(min(0.05, max(0.0, end - time.time())))
  return hit


class _Pausing:
  """A jitted step whose compiled callable calls `hit()` before every call (lower -> compile -> call)."""

  def __init__(self, fn, hit):
    self.fn, self.hit = fn, hit

  def lower(self, *args):
    return _Pausing(self.fn.lower(*args), self.hit)

  def compile(self):
    compiled = self.fn.compile()

    def call(*args):
      self.hit()
      return compiled(*args)
    return call


def install(spec: str) -> None:
  kind, k = spec.split(":")
  hit = _counter(int(k))
  if kind == "ckpt":
    from orbax.checkpoint._src.path import atomicity
    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def paused_finalize(self, *args, **kwargs):
      hit()
      return await finalize(self, *args, **kwargs)
    atomicity.AtomicRenameTemporaryPath.finalize = paused_finalize
  elif kind == "eval":
    from normlab.train import step as step_lib
    build_steps = step_lib.build_steps

    def paused_build_steps(*args, **kwargs):
      train_fn, eval_fn = build_steps(*args, **kwargs)
      return train_fn, _Pausing(eval_fn, hit)
    step_lib.build_steps = paused_build_steps
  else:
    raise ValueError(f"NORMLAB_PAUSE={spec!r}: expected ckpt:K or eval:K")


if __name__ == "__main__":
  if os.environ.get("NORMLAB_PAUSE"):
    install(os.environ["NORMLAB_PAUSE"])
  sys.argv[0] = os.path.join(REPO_ROOT, "scripts", "train.py")
  runpy.run_path(sys.argv[0], run_name="__main__")
