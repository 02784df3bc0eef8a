"""Sweeps beyond one process: concurrent cells (Slurm array script + a whole-sweep worker) equal a
sequential run, a stalled owner's cell is taken over after the lock timeout, --status, a 2-process cell."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(REPO_ROOT, "scripts", "sweep.py")
RESULT_COLUMNS = ("eval_accuracy", "eval_error", "final_train_loss", "steps", "status")

TINY_SWEEP = '''
import ml_collections as mlc
def get_config(arg=None):
  c = mlc.ConfigDict()
  c.base = "configs/mlp.py:smoke"
  c.grid = mlc.ConfigDict({"batch_size": (4, 8), "seed": (0, 1)})  # per device: global 16, 32
  c.overrides = mlc.ConfigDict({"num_steps": 12, "eval_every": 12, "log_every": 6, "checkpoint_every": 6,
                                "num_devices": 4})  # emulated on one device where 4 do not exist
  c.lr_scaling = "none"
  c.x_key = "batch_size"
  c.line_key = "seed"
  return c
'''


@pytest.fixture(scope="module")
def sweep_spec(tmp_path_factory):
  import normlab.data
  normlab.data.load("mnist1d", "train")  # prepared once, before processes race for it
  path = tmp_path_factory.mktemp("sweepcfg") / "tiny_sweep.py"
  path.write_text(TINY_SWEEP)
  return str(path)


def sweep_cmd(spec, workdir, *args):
  return [sys.executable, SWEEP, f"--config={spec}", f"--workdir={workdir}", *args]


def results(workdir):
  with open(os.path.join(workdir, "results.csv")) as f:
    return [{k: r[k] for k in ("batch_size", "seed", *RESULT_COLUMNS)} for r in csv.DictReader(f)]


@pytest.mark.slow  # several JAX processes: minutes on a loaded 2-core machine
def test_concurrent_cells_equal_a_sequential_run(sweep_spec, tmp_path):
  work = str(tmp_path / "concurrent")
  script = tmp_path / "array.sbatch"
  gen = subprocess.run(sweep_cmd(sweep_spec, work, "--print_commands", "--format=slurm",
                                 "--sbatch_options=--time=00:10:00 --cpus-per-task=1"),
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
  assert gen.returncode == 0, gen.stderr
  script.write_text(gen.stdout)
  assert "#SBATCH --array=0,1,2,3" in gen.stdout and "#SBATCH --time=00:10:00" in gen.stdout
  assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
  # 4 array tasks (as Slurm would start them) and one whole-sweep worker, all at once
  procs = [subprocess.Popen(["bash", str(script)], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            env=dict(os.environ, SLURM_ARRAY_TASK_ID=str(k), PYTHON=sys.executable))
           for k in range(4)]
  procs.append(subprocess.Popen(sweep_cmd(sweep_spec, work), cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT))
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0] * 5, "\n---\n".join(outs)
  sequential = str(tmp_path / "sequential")
  seq = subprocess.run(sweep_cmd(sweep_spec, sequential), capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
  assert seq.returncode == 0, seq.stderr
  assert results(work) == results(sequential)
  assert all(r["status"] == "done" for r in results(work))
  for cell in os.listdir(os.path.join(work, "cells")):  # no cell trained twice
    with open(os.path.join(work, "cells", cell, "claims.jsonl")) as f:
      assert len(f.readlines()) == 1, cell
  again = subprocess.run(sweep_cmd(sweep_spec, work, "--print_commands", "--format=slurm"), capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=120)
  assert again.stdout == "" and "# 0 unfinished cells" in again.stderr


def _status(spec, work):
  r = subprocess.run(sweep_cmd(spec, work, "--status"), capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
  assert r.returncode == 0, r.stderr
  return r.stdout


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_stalled_owner_is_taken_over_after_the_timeout_and_status(sweep_spec, tmp_path):
  work = str(tmp_path / "w")
  env = dict(os.environ, NORMLAB_LOCK_STALE_S="4", NORMLAB_LOCK_HEARTBEAT_S="0.5")
  before = set(os.listdir(tmp_path))
  status = _status(sweep_spec, work)
  assert "4 cells: 0 finished, 0 running, 0 stale, 4 pending" in status and set(os.listdir(tmp_path)) == before
  owner = subprocess.Popen(sweep_cmd(sweep_spec, work, "--cell=0"), cwd=REPO_ROOT, env=env, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  cells = os.path.join(work, "cells")
  deadline = time.time() + 240
  while not (os.path.isdir(cells) and any(os.path.exists(os.path.join(cells, c, "metrics.jsonl"))
                                          for c in os.listdir(cells))):
    assert owner.poll() is None and time.time() < deadline
    time.sleep(0.05)
  os.kill(owner.pid, signal.SIGSTOP)  # alive but silent: only the heartbeat timeout can free the cell
  try:
    status = subprocess.run(sweep_cmd(sweep_spec, work, "--status"), capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120, env=env).stdout
    assert "1 running" in status and "running  cell 0 " in status and f"pid {owner.pid} on " in status
    time.sleep(4.5)
    status = subprocess.run(sweep_cmd(sweep_spec, work, "--status"), capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120, env=env).stdout
    assert "1 stale" in status and "no heartbeat for" in status
    taker = subprocess.run(sweep_cmd(sweep_spec, work, "--cell=0"), cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert taker.returncode == 0, taker.stderr
    assert "took over the stale lock of cell 0 " in taker.stdout and f"from pid {owner.pid}" in taker.stdout
    os.kill(owner.pid, signal.SIGCONT)  # the stalled owner wakes up, finds its claim gone and stops
    _, err = owner.communicate(timeout=60)
    assert owner.returncode == 4 and "error: lost the lock" in err
  finally:
    if owner.poll() is None:
      owner.kill()
      owner.wait()
  cell0 = os.path.join(cells, sorted(os.listdir(cells))[0])
  assert json.load(open(os.path.join(cell0, "summary.json")))["steps"] == 12
  assert len(open(os.path.join(cell0, "claims.jsonl")).readlines()) == 2  # the owner's and the taker's
  status = _status(sweep_spec, work)
  assert "1 finished, 0 running, 0 stale, 3 pending" in status
  assert "wall time of the finished cells" in status and "remaining: 3 cells, about" in status


@pytest.mark.slow  # several JAX processes: minutes on a loaded 2-core machine
def test_two_process_cell_equals_one_process_with_as_many_devices(sweep_spec, tmp_path):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  multi = str(tmp_path / "multi")
  procs = []
  for pid in range(2):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(sweep_cmd(sweep_spec, multi, "--cell=1"), cwd=REPO_ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(outs)
  single = str(tmp_path / "single")
  one = subprocess.run(sweep_cmd(sweep_spec, single, "--cell=1"), cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4"))
  assert one.returncode == 0, one.stderr
  cell = sorted(os.listdir(os.path.join(multi, "cells")))[0]
  a = json.load(open(os.path.join(multi, "cells", cell, "summary.json")))
  b = json.load(open(os.path.join(single, "cells", cell, "summary.json")))
  assert a["num_devices"] == b["num_devices"] == 4
  assert a["eval_accuracy"] == b["eval_accuracy"]
  assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-5)
  assert a["final_train_loss"] == pytest.approx(b["final_train_loss"], rel=1e-5)
  assert os.path.exists(os.path.join(multi, "results.csv"))
  assert "sweep: results in" in outs[0] and "sweep: results in" not in outs[1]  # process 0 writes the reports
