"""A two-process (jax.distributed, gloo) training run where one process dies: the survivor must exit
with an error within a bounded time, not hang in a collective."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEARTBEAT_S = 5
BOUND_S = 60  # heartbeat timeout + detection slack, generous for a loaded 2-core CI machine


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize("victim", [1, 0], ids=["worker_dies", "coordinator_dies"])
@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_survivor_exits_when_a_process_dies(tmp_path, victim):
  import normlab.data
  normlab.data.load("mnist1d", "train")  # prepare once, before the processes race for it
  port = _free_port()
  workdir = tmp_path / "run"
  procs = []
  for pid in range(2):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid),
               NORMLAB_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_S))
    cmd = [sys.executable, os.path.join(REPO_ROOT, "scripts", "train.py"), "--config=configs/mlp.py:smoke",
           f"--workdir={workdir}", "--config.num_steps=100000", "--config.eval_every=100000",
           "--config.checkpoint_every=100000", "--config.log_every=50"]
    procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(tmp_path / f"err{pid}.txt", "w")))
  try:
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and metrics.stat().st_size > 0):  # both processes are in the training loop
      assert all(p.poll() is None for p in procs), [open(tmp_path / f"err{i}.txt").read() for i in range(2)]
      assert time.time() < deadline, "the two-process run did not start training"
      time.sleep(0.5)
    os.kill(procs[victim].pid, signal.SIGKILL)
    killed_at = time.time()
    survivor = procs[1 - victim]
    try:
      rc = survivor.wait(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
      pytest.fail(f"the surviving process still runs {BOUND_S} s after its peer was killed")
    elapsed = time.time() - killed_at
    assert rc != 0, "the survivor must report the failure with a non-zero exit status"
    print(f"survivor exited with {rc} after {elapsed:.1f} s")
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
