"""SIGINT and SIGTERM at random points of a training run (scripts/train.py, scripts/sweep.py): the run stops
with exit status 130 / 143 and one line, with a checkpoint at the step it reached (no earlier than its last
logged step) and no temporary directory left; the rerun resumes there and ends with the uninterrupted run's
figures and its exact final state (the sha256 digests of every leaf of the final checkpoint).

The moments are drawn with `random.Random(FAULT_SEED)` (printed on failure; set NORMLAB_FAULT_SEED to vary
them). The slow tests add signals during start-up, during an evaluation and inside a checkpoint write, a
second Ctrl-C inside a checkpoint write (the process ends at once; the previous checkpoint stays and the
write's temporary directory does not block the resume), a signal to a sweep, and a signal to one of two
processes (jax.distributed, gloo): both stop at the same step (JAX's preemption sync point).
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import time

import pytest

from normlab.train import interrupts, train_and_evaluate
from test_faults import REPO_ROOT, _checkpoints, _Proc, _script, _training_started
from test_train import EXACT_KEYS, load_config

FAULT_SEED = int(os.environ.get("NORMLAB_FAULT_SEED", "29"))
FAST = {"num_steps": 1000, "log_every": 50, "checkpoint_every": 250, "eval_every": 500}  # >= 0.6 s of training
SLOW = {"num_steps": 3000, "log_every": 50, "checkpoint_every": 250, "eval_every": 500}
LINE = re.compile(r"interrupted at step (\d+); checkpoint saved; rerun the same command to resume$")


def _args(overrides: dict) -> list[str]:
  return ["--config=configs/mlp.py:smoke", *(f"--config.{k}={v}" for k, v in overrides.items())]


def _config(overrides: dict):
  """The scripts' config, for runs in this process."""
  config = load_config("mlp")
  for key, value in overrides.items():
    config[key] = value
  return config


def _read_json(*parts) -> dict:
  with open(os.path.join(*map(str, parts))) as f:
    return json.load(f)


def _digest(workdir, step: int) -> dict:
  return _read_json(workdir, "checkpoints", step, "digest", "metadata")


def _logged(lines) -> list[int]:
  return [int(m.group(1)) for line in lines if (m := re.search(r" step (\d+)/\d+: ", line))]


def _signal_run(workdir, overrides: dict, signals, ready=None, env=None) -> tuple[int, list[str]]:
  """scripts/train.py (tests/fault_train.py with `env`), sent each (signal, delay) of `signals` `delay` s
  after `ready(proc)` (default: its first log line) or the previous signal; returns (status, output lines)."""
  p = _Proc(_script("tests/fault_train.py" if env else "scripts/train.py", workdir, *_args(overrides)), env=env)
  reached = p.wait_for(lambda: (ready or _training_started)(p))
  for signum, delay in signals:
    time.sleep(delay)
    assert reached and p.proc.poll() is None, f"the run ended before the signal: {p.lines[-3:]}"
    os.kill(p.proc.pid, signum)
  rc = p.proc.wait(120)
  p.reader.join(10)
  return rc, p.lines


def _check_stopped(workdir, rc: int, signum: int, lines, resumed_from: int, where: str) -> int:
  """The checks every stop by one signal passes; returns the step it stopped at."""
  assert rc == 128 + signum, f"{where}: exit status {rc}; output tail: {lines[-5:]}"
  assert not any("Traceback" in line for line in lines), f"{where}: {lines}"
  stops = [int(m.group(1)) for line in lines if (m := LINE.match(line.strip()))]
  if resumed_from == 0 and not stops:  # stopped before its first step
    assert lines[-1].strip() == interrupts.Interrupted(0, signum).line(), f"{where}: {lines[-5:]}"
    return 0
  assert len(stops) == 1 and LINE.match(lines[-1].strip()), f"{where}: {lines[-5:]}"
  step = stops[0]
  assert resumed_from <= step and max(_logged(lines), default=0) <= step, (where, step, _logged(lines))
  assert str(step) in _checkpoints(workdir), (where, step, _checkpoints(workdir))
  assert not [c for c in _checkpoints(workdir) if "tmp" in c], (where, _checkpoints(workdir))
  if resumed_from:
    assert any(f"resumed from the checkpoint at step {resumed_from} of" in line for line in lines), where
  return step


def _finish_and_compare(tmp_path, workdir, overrides: dict, resumed_from: int, log: list[str]) -> None:
  """Rerun in this process to the end; compare with the uninterrupted run (in this process too)."""
  history = f"NORMLAB_FAULT_SEED={FAULT_SEED}: " + "; ".join(log)
  got = train_and_evaluate(_config(overrides), str(workdir))
  ref_dir = str(tmp_path / "ref")
  ref = train_and_evaluate(_config(overrides), ref_dir)
  assert got["resumed_from_step"] == resumed_from, history
  assert {k: got[k] for k in EXACT_KEYS} == {k: ref[k] for k in EXACT_KEYS}, history
  n = overrides["num_steps"]
  assert _digest(workdir, n) == _digest(ref_dir, n), history
  print(history)


def test_sigint_then_sigterm_save_the_step_reached_and_the_rerun_ends_equal(tmp_path):
  rng = random.Random(FAULT_SEED)
  work, resumed_from, log = tmp_path / "run", 0, []
  for signum in (signal.SIGINT, signal.SIGTERM):
    delay = rng.uniform(0.0, 0.3)
    where = f"{signal.Signals(signum).name} {delay:.2f} s after the first log line"
    rc, lines = _signal_run(work, FAST, [(signum, delay)])
    resumed_from = _check_stopped(work, rc, signum, lines, resumed_from, where)
    log.append(f"{where}: stopped at step {resumed_from}, last logged {max(_logged(lines), default=0)}")
  _finish_and_compare(tmp_path, work, FAST, resumed_from, log)


def test_interrupted_line_and_exit_status():
  assert interrupts.Interrupted(700, signal.SIGINT).exit_code == 130
  assert interrupts.Interrupted(700, signal.SIGTERM).exit_code == 143
  assert LINE.match(interrupts.Interrupted(700, signal.SIGTERM).line())
  assert "nothing trained" in interrupts.Interrupted(0, signal.SIGINT).line()
  assert not interrupts.stop_requested()  # outside handled(): never


def _handlers_installed(p) -> bool:
  """scripts/train.py's handled() is in place: SIGTERM is caught (Linux /proc/<pid>/status, SigCgt)."""
  with open(f"/proc/{p.proc.pid}/status") as f:
    caught = int(next(line.split()[1] for line in f if line.startswith("SigCgt:")), 16)
  return bool(caught >> (signal.SIGTERM - 1) & 1)


@pytest.mark.slow  # ~8 script runs
def test_signals_at_startup_in_eval_in_a_save_and_twice_keep_the_work(tmp_path):
  if not os.path.exists("/proc/self/status"):
    pytest.skip("needs /proc to see when the handlers are installed")
  rng = random.Random(FAULT_SEED + 1)
  plan = ["startup", "train", "eval", "ckpt", "twice", "train"]
  rng.shuffle(plan)
  work, marker, resumed_from, log = tmp_path / "run", str(tmp_path / "paused"), 0, []
  for kind in plan:
    signum = rng.choice([signal.SIGINT, signal.SIGTERM])
    env, ready, delay = None, None, rng.uniform(0.0, 0.3)
    if kind in ("eval", "ckpt", "twice"):
      if os.path.exists(marker):
        os.remove(marker)
      env = dict(os.environ, NORMLAB_PAUSE=f"{'eval' if kind == 'eval' else 'ckpt'}:1", NORMLAB_PAUSE_MARKER=marker)
      if kind != "twice":
        env["NORMLAB_PAUSE_S"] = "1.0"  # a slow evaluation or write: the signal arrives meanwhile
      ready, delay = (lambda p: os.path.exists(marker)), rng.uniform(0.0, 0.5)
    elif kind == "startup":
      ready, delay = _handlers_installed, rng.uniform(0.0, 1.0)
    where = f"{kind}: {signal.Signals(signum).name} {delay:.2f} s in"
    if kind == "twice":  # a second Ctrl-C ends the process at once, inside the write
      before = _checkpoints(work)
      rc, lines = _signal_run(work, SLOW, [(signal.SIGINT, delay), (signal.SIGINT, 0.3)], ready, env)
      assert rc == -signal.SIGINT, f"{where}: exit status {rc}: {lines[-3:]}"
      tmp = [c for c in _checkpoints(work) if "tmp" in c]
      assert tmp and set(before) <= set(_checkpoints(work)), (where, before, _checkpoints(work))
      log.append(f"{where}: a second SIGINT ended it inside the write ({tmp[0]}); checkpoints {before} kept")
      continue
    rc, lines = _signal_run(work, SLOW, [(signum, delay)], ready, env)
    step = _check_stopped(work, rc, signum, lines, resumed_from, where)
    if kind in ("eval", "ckpt"):  # the evaluation / write finished and the run stopped right after it
      every = SLOW["eval_every" if kind == "eval" else "checkpoint_every"]
      assert step == (resumed_from // every + 1) * every, (where, resumed_from, step)
    log.append(f"{where}: stopped at step {step} (from {resumed_from}, last logged {max(_logged(lines), default=0)})")
    resumed_from = step
  _finish_and_compare(tmp_path, work, SLOW, resumed_from, log)


SWEEP = '''
import ml_collections as mlc


def get_config(arg=None):
  s = mlc.ConfigDict()
  s.base = "configs/mlp.py:smoke"
  s.title = "signals"
  s.x_key, s.line_key = "seed", "norm"
  s.grid = mlc.ConfigDict({"norm": ("batch", "layer"), "seed": (0,)})
  s.overrides = mlc.ConfigDict({"num_steps": 1000, "checkpoint_every": 250, "eval_every": 500, "log_every": 50})
  s.lr_scaling = "none"
  s.reference_batch_size = 64
  s.vmap_seeds = False
  return s
'''


@pytest.mark.slow  # three sweeps of two cells
def test_a_signal_stops_a_sweep_cell_with_a_checkpoint_and_the_rerun_ends_equal(tmp_path):
  rng = random.Random(FAULT_SEED + 2)
  config = tmp_path / "signals_sweep.py"
  config.write_text(SWEEP)
  work, args = tmp_path / "killed", [f"--config={config}"]
  signum, delay = rng.choice([signal.SIGINT, signal.SIGTERM]), rng.uniform(0.0, 0.3)
  p = _Proc(_script("scripts/sweep.py", work, *args))
  assert p.wait_for(lambda: _training_started(p)), p.lines[-5:]
  time.sleep(delay)
  os.kill(p.proc.pid, signum)
  rc = p.proc.wait(120)
  p.reader.join(10)
  where = f"{signal.Signals(signum).name} {delay:.2f} s after the first log line (NORMLAB_FAULT_SEED={FAULT_SEED})"
  assert rc == 128 + signum and re.match(r"interrupted at step \d+ in cell \S+; checkpoint saved", p.lines[-1]), \
      (where, rc, p.lines[-5:])
  assert not any("Traceback" in line for line in p.lines), where
  for name in ("ref", "killed"):
    done = subprocess.run(_script("scripts/sweep.py", tmp_path / name, *args), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (where, done.stderr[-2000:])
  keys = ("norm", "seed", "eval_accuracy", "eval_loss", "final_train_loss")
  rows = {}
  for name in ("ref", "killed"):
    with open(tmp_path / name / "results.csv") as f:
      rows[name] = [{k: r[k] for k in keys if k in r} for r in csv.DictReader(f)]
  assert len(rows["ref"]) == 2 and rows["killed"] == rows["ref"], where


def _two_processes(workdir, overrides: dict) -> list[_Proc]:
  """scripts/train.py as 2 JAX processes on localhost (jax.distributed, gloo), 1 CPU device each."""
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  cmd = _script("scripts/train.py", workdir, *_args(overrides))
  return [_Proc(cmd, env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
                              JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                              JAX_PROCESS_ID=str(pid))) for pid in range(2)]


def _wait_all(procs, timeout: float = 300) -> list[int]:
  codes = [p.proc.wait(timeout) for p in procs]
  for p in procs:
    p.reader.join(10)
  return codes


@pytest.mark.slow  # 2-process runs
@pytest.mark.parametrize("signum, victim", [(signal.SIGTERM, 1), (signal.SIGINT, 0)], ids=["sigterm_worker",
                                                                                        "sigint_coordinator"])
def test_two_processes_stop_at_the_same_step_and_resume_to_the_same_end(tmp_path, signum, victim):
  """One process gets the signal; JAX's preemption sync point stops both at the same step; the rerun of
  both resumes there and ends with the uninterrupted 2-process run's final state."""
  import normlab.data
  normlab.data.load("mnist1d", "train")  # prepare the data once, before the processes race for it
  overrides = {"num_steps": 1000, "log_every": 50, "checkpoint_every": 500, "eval_every": 500}
  delay = random.Random(FAULT_SEED + 3 + victim).uniform(0.0, 0.5)
  procs = _two_processes(tmp_path / "run", overrides)
  assert procs[0].wait_for(lambda: _training_started(procs[0])), procs[0].lines[-5:]
  time.sleep(delay)
  os.kill(procs[victim].proc.pid, signum)
  codes = _wait_all(procs)
  where = f"{signal.Signals(signum).name} to process {victim} {delay:.2f} s after the first log line"
  want = [128 + signum if pid == victim else 128 + signal.SIGTERM for pid in range(2)]
  assert codes == want, (where, codes, [p.lines[-3:] for p in procs])
  stops = {int(m.group(1)) for p in procs for line in p.lines if (m := LINE.match(line.strip()))}
  assert len(stops) == 1, (where, [p.lines[-3:] for p in procs])
  step = stops.pop()
  assert str(step) in _checkpoints(tmp_path / "run") and max(_logged(procs[0].lines)) <= step, where
  assert not any("Traceback" in line for p in procs for line in p.lines), where
  for name in ("run", "ref"):
    procs = _two_processes(tmp_path / name, overrides)
    assert _wait_all(procs) == [0, 0], (where, name, [p.lines[-5:] for p in procs])
  got, ref = _read_json(tmp_path, "run", "summary.json"), _read_json(tmp_path, "ref", "summary.json")
  assert got["resumed_from_step"] == step and ref["resumed_from_step"] == 0, where
  assert {k: got[k] for k in EXACT_KEYS} == {k: ref[k] for k in EXACT_KEYS}, where
  assert _digest(tmp_path / "run", 1000) == _digest(tmp_path / "ref", 1000), where
  print(f"{where}: both processes stopped at step {step} (exit {codes}); the rerun resumed there and ended equal")
