"""normlab.train.lock: exclusive lock files with owner, heartbeat and stale takeover (no training here)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from normlab.train import lock as lock_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plant(path, **fields):
  """A lock file written by 'someone else'."""
  now = time.time()
  record = {"host": socket.gethostname(), "pid": os.getppid(), "start_time": now - 5, "heartbeat": now,
            "token": "planted", **fields}
  with open(path, "w") as f:
    json.dump(record, f)
  return record


def test_acquire_release_and_nested(tmp_path):
  path = str(tmp_path / "lock.json")
  with lock_lib.acquire(path, purpose="x", heartbeat=False) as held:
    owner = lock_lib.read(path)
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    assert lock_lib.acquire(path, purpose="x") is held and held.depth == 2  # same process: nested
    held.release()
    assert os.path.exists(path)
  assert not os.path.exists(path)


def test_live_owner_is_named_and_not_taken_over(tmp_path):
  path = str(tmp_path / "lock.json")
  owner = plant(path)
  with pytest.raises(lock_lib.LockHeldError) as e:
    lock_lib.acquire(path, purpose="workdir W", wait_s=0.3)
  message = str(e.value)
  assert "\n" not in message and message.startswith("workdir W is locked by ")
  assert f"pid {owner['pid']} on {owner['host']}" in message and path in message
  assert lock_lib.read(path)["token"] == "planted"


@pytest.mark.parametrize("fields,reason", [
    ({"pid": 2 ** 22 + 12345}, "is dead on"),                                     # dead pid on this host
    ({"host": "elsewhere", "heartbeat": time.time() - 10_000}, "no heartbeat for"),  # silent for too long
])
def test_stale_lock_is_taken_over_with_a_message(tmp_path, fields, reason):
  path = str(tmp_path / "lock.json")
  plant(path, **fields)
  messages = []
  with lock_lib.acquire(path, purpose="cell 3", log=messages.append, heartbeat=False):
    assert lock_lib.read(path)["pid"] == os.getpid()
  assert len(messages) == 1 and messages[0].startswith("took over the stale lock of cell 3 from pid ")
  assert reason in messages[0]


def test_fresh_heartbeat_on_another_host_is_live(tmp_path):
  path = str(tmp_path / "lock.json")
  plant(path, host="elsewhere", pid=1)
  with pytest.raises(lock_lib.LockHeldError, match="on elsewhere"):
    lock_lib.acquire(path, purpose="x")


HOLDER = """
import os, sys, time, types
path, root = sys.argv[1:3]
package = types.ModuleType("normlab")  # the lock module alone, without importing jax via normlab/__init__
package.__path__ = [os.path.join(root, "normlab")]
sys.modules["normlab"] = package
from normlab.train import lock
lock.acquire(path, purpose="cell 5")
time.sleep(60)
"""


def test_heartbeat_advances_and_a_holder_that_lost_its_lock_stops(tmp_path):
  path = str(tmp_path / "lock.json")
  env = dict(os.environ, NORMLAB_LOCK_HEARTBEAT_S="0.05")
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, REPO_ROOT], env=env, stderr=subprocess.PIPE,
                            text=True)
  deadline = time.time() + 60
  while lock_lib.read(path) is None:
    assert time.time() < deadline and holder.poll() is None
    time.sleep(0.02)
  first = lock_lib.read(path)["heartbeat"]
  while lock_lib.read(path)["heartbeat"] == first:
    assert time.time() < deadline, "the heartbeat never advanced"
    time.sleep(0.02)
  plant(path, host="elsewhere")  # judged stale and taken over by another host meanwhile
  _, err = holder.communicate(timeout=30)
  assert holder.returncode == lock_lib.LOST_EXIT
  assert err.strip().startswith("error: lost the lock") and "on elsewhere" in err and len(err.strip().splitlines()) == 1
  assert lock_lib.read(path)["token"] == "planted"  # the new owner's lock is left alone


RACER = """
import os, sys, time, types
path, ready, go, root = sys.argv[1:5]
package = types.ModuleType("normlab")  # the lock module alone, without importing jax via normlab/__init__
package.__path__ = [os.path.join(root, "normlab")]
sys.modules["normlab"] = package
from normlab.train import lock
open(ready, "w").close()
while not os.path.exists(go):
  time.sleep(0.005)
try:
  with lock.acquire(path, purpose="race", log=lambda m: None):
    print("won", flush=True)
    time.sleep(2.0)
except lock.LockHeldError:
  print("lost", flush=True)
"""


def test_racing_takeovers_have_one_winner(tmp_path):
  path = str(tmp_path / "lock.json")
  plant(path, pid=2 ** 22 + 54321)  # stale: every racer wants to take it over
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  go = str(tmp_path / "go")
  racers = [subprocess.Popen([sys.executable, "-c", RACER, path, str(tmp_path / f"ready{i}"), go, REPO_ROOT],
                             stdout=subprocess.PIPE, text=True, env=env) for i in range(6)]
  deadline = time.time() + 120
  while not all(os.path.exists(tmp_path / f"ready{i}") for i in range(6)):
    assert time.time() < deadline and all(r.poll() is None for r in racers)
    time.sleep(0.02)
  open(go, "w").close()
  results = [r.communicate(timeout=120)[0].strip() for r in racers]
  assert sorted(results) == ["lost"] * 5 + ["won"], results
