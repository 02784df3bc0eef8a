"""Faults at random points: failed checkpoint writes (fast, in-process) and SIGKILL of a training run and of
a sweep at random moments (slow, through the scripts).

A failed write (a read-only directory, or a full one simulated with RLIMIT_FSIZE so that orbax's file
writes fail part-way with EFBIG) stops the run with a one-line WorkdirError and leaves the previous
checkpoint readable; after the fault is gone the rerun resumes there and ends with the same figures.

The kill tests pick their moments with `random.Random(FAULT_SEED)` (printed on failure; set
NORMLAB_FAULT_SEED to vary it): inside a checkpoint write (files written, not yet renamed into place),
inside evaluation, at a random time during training, and during start-up (imports, compile, restore).
tests/fault_train.py holds the pause points.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from normlab.train import WorkdirError, train_and_evaluate  # noqa: E402
from normlab.train import checkpoint as checkpoint_lib  # noqa: E402
from normlab.train.metrics_io import read_metrics  # noqa: E402
from test_train import EXACT_KEYS, tiny  # noqa: E402

FAULT_SEED = int(os.environ.get("NORMLAB_FAULT_SEED", "18"))


# ----------------------------------------------------------------------------- failed checkpoint writes

@contextlib.contextmanager
def read_only(path: str):
  """A directory nobody can add to: chattr +i for root (who ignores permission bits), chmod 555 otherwise."""
  root = os.geteuid() == 0
  if root:
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", path]).returncode != 0:
      pytest.skip("running as root without chattr +i support: cannot make a directory read-only")
  else:
    os.chmod(path, 0o555)
  try:
    yield
  finally:
    if root:
      subprocess.run(["chattr", "-i", path], check=True)
    else:
      os.chmod(path, 0o755)


@contextlib.contextmanager
def full_disk(max_file_bytes: int = 64):
  """Every file write past `max_file_bytes` fails with EFBIG ("File too large"), as on a full disk."""
  old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
  old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel's SIGXFSZ kills us
  resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, old_limit[1]))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)


def test_failed_checkpoint_writes_stop_with_one_line_and_keep_the_previous(tmp_path, monkeypatch):
  """The step-16 write fails twice (read-only, then full); each run stops with one line and checkpoint 8
  stays the newest readable one; the third run resumes from it and finishes. (That a resumed run ends
  with the uninterrupted run's figures is tests/test_train.py's and the kill tests' business.)"""
  work = str(tmp_path / "w")
  ckpt_dir = os.path.join(work, "checkpoints")
  save = checkpoint_lib.Checkpointer.save
  for fault in ("read_only", "full_disk"):
    def failing_save(self, step, state, fault=fault):
      if step != 16:
        return save(self, step, state)
      with read_only(ckpt_dir) if fault == "read_only" else full_disk():
        return save(self, step, state)

    monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", failing_save)
    with pytest.raises(WorkdirError) as info:
      train_and_evaluate(tiny(), work)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("cannot write the checkpoint of step 16"), (fault, msg)
    assert "previous checkpoints [8] intact" in msg, (fault, msg)
    assert not os.path.exists(os.path.join(work, "summary.json"))
    assert [s for s in os.listdir(ckpt_dir) if s.isdigit()] == ["8"], (fault, os.listdir(ckpt_dir))

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", save)
  summary = train_and_evaluate(tiny(), work)
  assert summary["resumed_from_step"] == 8 and summary["steps"] == 24
  assert checkpoint_lib.Checkpointer(ckpt_dir, 2).all_steps() == [16, 24]
  assert [r["step"] for r in read_metrics(os.path.join(work, "metrics.jsonl"))] == [4, 8, 12, 16, 20, 24]


# ----------------------------------------------------------------------------- SIGKILL at random moments

TRAIN_ARGS = ["--config=configs/mlp.py:smoke", "--config.num_steps=800", "--config.checkpoint_every=20",
              "--config.eval_every=80", "--config.log_every=20"]


class _Proc:
  """A subprocess whose output lines (stdout and stderr) are collected by a thread, so that waiting on
  them never blocks."""

  def __init__(self, cmd, env=None):
    self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
    self.lines: list[str] = []
    self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                   daemon=True)
    self.reader.start()

  def wait_for(self, cond, timeout: float = 600.0) -> bool:
    """Polls `cond()` until true (True) or the process ends first (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      if cond():
        return True
      if self.proc.poll() is not None:
        return bool(cond())
      time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s; stderr tail: {self.lines[-5:]}")

  def kill(self) -> bool:
    """SIGKILL; True if the process was still running."""
    alive = self.proc.poll() is None
    if alive:
      os.kill(self.proc.pid, signal.SIGKILL)
    self.proc.wait()
    self.reader.join(10)
    return alive


def _script(name: str, workdir, *args):
  return [sys.executable, os.path.join(REPO_ROOT, *name.split("/")), f"--workdir={workdir}", *args]


def _checkpoints(workdir) -> list[str]:
  d = os.path.join(str(workdir), "checkpoints")
  return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _training_started(p: _Proc) -> bool:
  return any(re.search(r" step \d+/\d+: ", line) for line in p.lines)


@pytest.mark.slow
def test_training_survives_sigkill_at_random_moments(tmp_path):
  rng = random.Random(FAULT_SEED)
  ref = subprocess.run(_script("scripts/train.py", tmp_path / "ref", *TRAIN_ARGS), cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=900)
  assert ref.returncode == 0, ref.stderr[-2000:]
  work, marker = tmp_path / "killed", str(tmp_path / "paused")
  plan = ["ckpt"] * 4 + ["eval"] * 3 + ["train"] * 3 + ["startup"] * 2
  rng.shuffle(plan)
  survived = []
  for i, kind in enumerate(plan):
    env = dict(os.environ)
    detail = ""
    if kind in ("ckpt", "eval"):
      k = rng.randint(1, 2)  # the 1st or 2nd checkpoint write / evaluation batch of this process
      env.update(NORMLAB_PAUSE=f"{kind}:{k}", NORMLAB_PAUSE_MARKER=marker)
      detail = f"{kind}:{k}"
    if os.path.exists(marker):
      os.remove(marker)
    p = _Proc(_script("tests/fault_train.py", work, *TRAIN_ARGS), env=env)
    if kind in ("ckpt", "eval"):
      reached = p.wait_for(lambda: os.path.exists(marker))
      if kind == "ckpt" and reached:
        tmp = [c for c in _checkpoints(work) if "tmp" in c]
        assert tmp, f"kill {i}: paused in a checkpoint write but no temporary directory: {_checkpoints(work)}"
        detail += f" (writing {tmp[0]})"
    elif kind == "train":
      reached = p.wait_for(lambda: _training_started(p))
      delay = rng.uniform(0.0, 0.15)  # <= ~75 steps at 500 steps/s: the 12 kills cannot reach step 800
      time.sleep(delay)
      detail = f"{delay:.2f} s into training"
    else:
      delay = rng.uniform(0.3, 3.0)  # imports, data, restore, compile
      time.sleep(delay)
      reached = True
      detail = f"{delay:.2f} s after start"
    killed = p.kill()
    assert killed and reached, (f"kill {i} ({kind} {detail}) found the run finished: make it longer "
                                f"(NORMLAB_FAULT_SEED={FAULT_SEED})")
    assert not (work / "summary.json").exists()
    survived.append(f"{kind} {detail}; checkpoints then: {_checkpoints(work)}")
  final = subprocess.run(_script("scripts/train.py", work, *TRAIN_ARGS), cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=900)
  log = "\n".join(survived)
  assert final.returncode == 0, f"NORMLAB_FAULT_SEED={FAULT_SEED}\n{log}\n{final.stderr[-2000:]}"
  a = json.load(open(tmp_path / "ref" / "summary.json"))
  b = json.load(open(work / "summary.json"))
  same = {k: a[k] for k in EXACT_KEYS} == {k: b[k] for k in EXACT_KEYS}
  assert same, f"NORMLAB_FAULT_SEED={FAULT_SEED}\n{log}"
  steps = [r["step"] for r in read_metrics(str(work / "metrics.jsonl"))]
  assert steps == sorted(set(steps)) and steps[-1] == 800
  assert len(survived) >= 10
  print(f"survived {len(survived)} kills (NORMLAB_FAULT_SEED={FAULT_SEED}):\n{log}")


SWEEP = '''
import ml_collections as mlc


def get_config(arg=None):
  s = mlc.ConfigDict()
  s.base = "configs/mlp.py:smoke"
  s.title = "faults"
  s.x_key, s.line_key = "seed", "norm"
  s.grid = mlc.ConfigDict({"norm": ("batch", "layer"), "seed": (0, 1)})
  s.overrides = mlc.ConfigDict({"num_steps": 200, "checkpoint_every": 20, "eval_every": 100,
                                "log_every": 20})
  s.lr_scaling = "none"
  s.reference_batch_size = 64
  s.vmap_seeds = False
  return s
'''


def _results(workdir) -> list[dict]:
  with open(os.path.join(str(workdir), "results.csv")) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_survives_sigkill_at_random_moments(tmp_path):
  rng = random.Random(FAULT_SEED + 1)
  config = tmp_path / "faults_sweep.py"
  config.write_text(SWEEP)
  args = [f"--config={config}"]
  t0 = time.time()
  ref = subprocess.run(_script("scripts/sweep.py", tmp_path / "ref", *args), cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=1200)
  assert ref.returncode == 0, ref.stderr[-2000:]
  t_ref = time.time() - t0
  work = tmp_path / "killed"
  survived = []
  for i in range(5):
    p = _Proc(_script("scripts/sweep.py", work, *args))
    # a random moment after the sweep has started a cell, within a sixth of the uninterrupted time (so that
    # the 5 kills together cannot get through the whole sweep)
    started = p.wait_for(lambda: any("sweep: cell" in line for line in p.lines))
    assert started, f"kill {i}: the sweep ended before starting a cell: {p.lines[-5:]}"
    delay = rng.uniform(0.0, t_ref / 6)
    time.sleep(delay)
    cells = sorted(os.listdir(work / "cells")) if (work / "cells").is_dir() else []
    done = [c for c in cells if (work / "cells" / c / "summary.json").exists()]
    assert p.kill(), f"kill {i} found the sweep finished (NORMLAB_FAULT_SEED={FAULT_SEED})"
    survived.append(f"{delay:.2f} s after its first cell started; finished cells then: {len(done)}/4")
  final = subprocess.run(_script("scripts/sweep.py", work, *args), cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=1200)
  log = "\n".join(survived)
  assert final.returncode == 0, f"NORMLAB_FAULT_SEED={FAULT_SEED}\n{log}\n{final.stderr[-2000:]}"
  keys = ("norm", "seed", "eval_accuracy", "eval_loss", "final_train_loss")
  want = [{k: r[k] for k in keys if k in r} for r in _results(tmp_path / "ref")]
  got = [{k: r[k] for k in keys if k in r} for r in _results(work)]
  assert len(want) == 4 and got == want, f"NORMLAB_FAULT_SEED={FAULT_SEED}\n{log}"
  print(f"sweep survived {len(survived)} kills (NORMLAB_FAULT_SEED={FAULT_SEED}):\n{log}")
