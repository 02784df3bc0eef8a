"""Training loop: end-to-end smoke runs, outputs, resume (exact), refusals, NaN handling, checkpoint
fallback, data parallelism. conftest.py gives 8 fake CPU devices, so batch sizes are multiples of 8.

Most tests train a tiny MLP in-process; the script tests run scripts/train.py as a subprocess (kill -9
and resume, exit codes, two processes); `@pytest.mark.slow` ones train the heavier smoke presets.
"""
import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from normlab.data import DatasetNotPreparedError
from normlab.train import ConfigError, TrainingDivergedError, WorkdirError, train_and_evaluate
from normlab.train import checkpoint as checkpoint_lib
from normlab.train import workdir as workdir_lib
from normlab.train.metrics_io import read_metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXACT_KEYS = ("eval_accuracy", "eval_loss", "final_train_loss")


def load_config(name: str, preset: str = "smoke"):
  path = os.path.join(REPO_ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def tiny(**overrides):
  """A few-second MLP run: 24 steps, logs every 4, evals every 12, checkpoints every 8."""
  c = load_config("mlp")
  c.model_options.widths = (16,)
  c.batch_size, c.num_steps = 32, 24
  c.eval_every, c.log_every, c.checkpoint_every, c.keep_checkpoints = 12, 4, 8, 2
  for key, value in overrides.items():
    c[key] = value
  return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """(config, workdir, summary) of one uninterrupted tiny run."""
  workdir = str(tmp_path_factory.mktemp("runs") / "tiny")
  config = tiny()
  summary = train_and_evaluate(config, workdir)
  return config, workdir, summary


def copy_run(src: str, dst) -> str:
  dst = str(dst)
  shutil.copytree(src, dst)
  return dst


# --- outputs ------------------------------------------------------------------------------------


def test_run_writes_summary_metrics_tb_config_checkpoints(finished):
  config, workdir, summary = finished
  for key in ("eval_accuracy", "eval_loss", "final_train_loss", "steps", "wall_time_s", "steps_per_s",
              "compile_time_s"):
    assert key in summary
  assert summary["steps"] == 24 and summary["num_devices"] == jax.device_count() and summary["resumed_from_step"] == 0
  assert all(np.isfinite(summary[k]) for k in EXACT_KEYS)
  assert summary["compile_time_s"] > 0 and summary["steps_per_s"] > 0
  assert json.load(open(os.path.join(workdir, "summary.json"))) == pytest.approx(summary)

  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in rows] == [4, 8, 12, 16, 20, 24]
  for r in rows:
    for key in ("train_loss", "train_accuracy", "grad_norm", "param_norm", "update_norm", "learning_rate"):
      assert np.isfinite(r[key]), (key, r)
  assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns
  assert [r["step"] for r in rows if "eval_accuracy" in r] == [12, 24]
  assert rows[-1]["eval_accuracy"] == summary["eval_accuracy"]

  assert glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*"))
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["learning_rate"] == config.learning_rate and saved["num_devices"] == jax.device_count()
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert steps == [16, 24]  # keep_checkpoints=2


def test_eval_is_exact_over_the_whole_split(finished):
  _, _, summary = finished
  # mnist1d has 1000 test examples; accuracy is a multiple of 1/1000 (padding is masked out).
  assert abs(summary["eval_accuracy"] * 1000 - round(summary["eval_accuracy"] * 1000)) < 1e-6


# --- rerun, refuse, fresh -----------------------------------------------------------------------


def test_finished_run_is_not_overwritten(finished):
  config, workdir, summary = finished
  files = ("summary.json", "metrics.jsonl", "config.json")
  before = {f: os.stat(os.path.join(workdir, f)).st_mtime_ns for f in files}
  again = train_and_evaluate(tiny(log_every=2), workdir)  # log_every is harmless
  assert again == summary
  assert {f: os.stat(os.path.join(workdir, f)).st_mtime_ns for f in files} == before


def test_workdir_of_another_config_is_refused(finished):
  _, workdir, _ = finished
  with pytest.raises(WorkdirError) as e:
    train_and_evaluate(tiny(learning_rate=0.123), workdir)
  message = str(e.value)
  assert "\n" not in message and "learning_rate" in message and "0.123" in message and "--fresh" in message


def test_fresh_moves_the_old_run_aside(finished, tmp_path):
  _, workdir, _ = finished
  work = copy_run(workdir, tmp_path / "w")
  summary = train_and_evaluate(tiny(seed=1), work, fresh=True)
  assert summary["resumed_from_step"] == 0
  old = glob.glob(str(tmp_path / "w.old-*"))
  assert len(old) == 1 and os.path.exists(os.path.join(old[0], "summary.json"))
  assert json.load(open(os.path.join(work, "config.json")))["seed"] == 1


def test_workdir_with_foreign_run_files_is_refused(tmp_path):
  work = tmp_path / "w"
  work.mkdir()
  (work / "metrics.jsonl").write_text("{}\n")
  with pytest.raises(WorkdirError, match="no config.json"):
    train_and_evaluate(tiny(), str(work))


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(WorkdirError, match="is not writable"):
    train_and_evaluate(tiny(), str(blocker / "w"))


def test_full_disk_is_a_clear_error(tmp_path, monkeypatch):
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(workdir_lib.shutil, "disk_usage", lambda p: usage._replace(free=1 << 20))
  with pytest.raises(WorkdirError, match="not enough disk space"):
    train_and_evaluate(tiny(), str(tmp_path / "w"))


def test_config_is_validated_before_data_or_workdir(tmp_path, monkeypatch):
  import normlab.data
  monkeypatch.setattr(normlab.data, "load", lambda *a, **k: pytest.fail("data loaded before validation"))
  with pytest.raises(ConfigError, match="config.num_steps"):
    train_and_evaluate(tiny(num_steps=-1), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_dataset_not_prepared(tmp_path):
  config = tiny(dataset="cifar10", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(DatasetNotPreparedError, match="tfds build cifar10"):
    train_and_evaluate(config, str(tmp_path / "w"))


# --- resume -------------------------------------------------------------------------------------


class _Crash(Exception):
  pass


def test_resume_after_a_crash_is_exact(finished, tmp_path, monkeypatch):
  """Crash right after the step-8 checkpoint, rerun: same figures, no duplicated metrics lines."""
  _, _, reference = finished
  work = str(tmp_path / "w")
  original_save = checkpoint_lib.Checkpointer.save

  def crashing_save(self, step, state):
    original_save(self, step, state)
    if step == 8:
      raise _Crash()

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", crashing_save)
  with pytest.raises(_Crash):
    train_and_evaluate(tiny(), work)
  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", original_save)
  assert not os.path.exists(os.path.join(work, "summary.json"))
  summary = train_and_evaluate(tiny(), work)
  assert summary["resumed_from_step"] == 8
  assert {k: summary[k] for k in EXACT_KEYS} == {k: reference[k] for k in EXACT_KEYS}
  steps = [r["step"] for r in read_metrics(os.path.join(work, "metrics.jsonl"))]
  assert steps == [4, 8, 12, 16, 20, 24]


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(finished, tmp_path, caplog):
  _, workdir, reference = finished
  work = copy_run(workdir, tmp_path / "w")
  os.remove(os.path.join(work, "summary.json"))
  for path in glob.glob(os.path.join(work, "checkpoints", "24", "**", "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
  with caplog.at_level("INFO", logger="normlab.train"):
    summary = train_and_evaluate(tiny(), work)
  assert summary["resumed_from_step"] == 16
  assert {k: summary[k] for k in EXACT_KEYS} == {k: reference[k] for k in EXACT_KEYS}
  assert "checkpoint at step 24 is damaged" in caplog.text
  assert "resumed from the checkpoint at step 16" in caplog.text
  assert os.listdir(os.path.join(work, "checkpoints", "corrupt-24"))  # moved aside, not deleted
  steps = [r["step"] for r in read_metrics(os.path.join(work, "metrics.jsonl")) if "event" not in r]
  assert steps == [4, 8, 12, 16, 20, 24]


# --- non-finite values --------------------------------------------------------------------------


def test_nan_stops_at_that_step_without_checkpointing_it(tmp_path):
  work = str(tmp_path / "w")
  with pytest.raises(TrainingDivergedError) as e:
    train_and_evaluate(tiny(debug_nan_at_step=11), work)
  assert e.value.step == 11 and "step 11" in str(e.value) and "\n" not in str(e.value)
  steps = sorted(int(s) for s in os.listdir(os.path.join(work, "checkpoints")) if s.isdigit())
  assert steps and max(steps) <= 8
  assert not os.path.exists(os.path.join(work, "summary.json"))
  assert read_metrics(os.path.join(work, "metrics.jsonl"))[-1] == {"step": 11, "train_loss": "nan",
                                                                   "nonfinite": True}


def test_huge_learning_rate_diverges_and_stops(tmp_path):
  with pytest.raises(TrainingDivergedError) as e:
    train_and_evaluate(tiny(optimizer="sgd", learning_rate=1e30, schedule="constant"), str(tmp_path / "w"))
  assert 1 <= e.value.step <= 3


def test_nan_skip_policy_skips_and_counts(tmp_path):
  summary = train_and_evaluate(tiny(debug_nan_at_step=11, nan_policy="skip"), str(tmp_path / "w"))
  assert summary["num_skipped"] == 1 and np.isfinite(summary["final_train_loss"])
  rows = read_metrics(os.path.join(str(tmp_path / "w"), "metrics.jsonl"))
  assert rows[-1]["num_skipped"] == 1 and all(np.isfinite(r["train_loss"]) for r in rows)


# --- data parallelism ---------------------------------------------------------------------------


@pytest.mark.devices(8)  # guards the data-parallel contract: kept in the fast suite
@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_sync_bn_on_8_devices_matches_1_device_and_local_bn_differs(tmp_path):
  """pmean'd gradients + SyncBN: the 8-device run is the 1-device run (up to float reassociation).

  SGD+momentum is not scale invariant, so gradients N times too large would show.
  """
  kw = dict(optimizer="momentum", learning_rate=0.05, num_steps=8, eval_every=8, checkpoint_every=8)
  one = train_and_evaluate(tiny(num_devices=1, **kw), str(tmp_path / "one"))
  eight = train_and_evaluate(tiny(**kw), str(tmp_path / "eight"))
  local = train_and_evaluate(tiny(bn_mode="local", **kw), str(tmp_path / "local"))
  assert one["num_devices"] == 1 and eight["num_devices"] == 8
  np.testing.assert_allclose(eight["final_train_loss"], one["final_train_loss"], rtol=1e-4)
  np.testing.assert_allclose(eight["eval_loss"], one["eval_loss"], rtol=1e-4)
  assert abs(local["final_train_loss"] - eight["final_train_loss"]) > 1e-4


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_noise_rng_reaches_the_model_and_is_reproducible(tmp_path):
  """noisy_batch draws from the 'noise' stream (fold_in(key(seed), step), per device): the same run
  twice gives the same figures."""
  a = train_and_evaluate(tiny(norm="noisy_batch", num_steps=8, eval_every=8), str(tmp_path / "a"))
  b = train_and_evaluate(tiny(norm="noisy_batch", num_steps=8, eval_every=8), str(tmp_path / "b"))
  assert {k: a[k] for k in EXACT_KEYS} == {k: b[k] for k in EXACT_KEYS}
  assert np.isfinite(a["final_train_loss"])


# --- presets end to end (heavier ones slow), kill -9 and resume through the script ----------------------------


@pytest.mark.parametrize("name", [
    pytest.param("dln"),
    pytest.param("resnet", marks=pytest.mark.slow),
    pytest.param("rnn", marks=pytest.mark.slow),
    pytest.param("vgg", marks=pytest.mark.slow),
])
def test_smoke_preset_trains(name, tmp_path):
  summary = train_and_evaluate(load_config(name), str(tmp_path / "w"))
  rows = read_metrics(os.path.join(str(tmp_path / "w"), "metrics.jsonl"))
  assert np.isfinite(summary["final_train_loss"]) and np.isfinite(summary["eval_loss"])
  assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_mlp_smoke_preset_trains(tmp_path):
  summary = train_and_evaluate(load_config("mlp"), str(tmp_path / "w"))
  rows = read_metrics(os.path.join(str(tmp_path / "w"), "metrics.jsonl"))
  assert np.isfinite(summary["final_train_loss"]) and rows[-1]["train_loss"] < rows[0]["train_loss"]
  assert summary["eval_accuracy"] > 0.15  # above chance after 100 steps


SCRIPT = os.path.join(REPO_ROOT, "scripts", "train.py")
KILL_ARGS = ["--config=configs/mlp.py:smoke", "--config.num_steps=300", "--config.checkpoint_every=20",
             "--config.eval_every=100", "--config.log_every=20"]


def script(workdir, *args):
  return [sys.executable, SCRIPT, f"--workdir={workdir}", *args]


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_kill_9_and_resume_matches_an_uninterrupted_run(tmp_path):
  ref = subprocess.run(script(tmp_path / "ref", *KILL_ARGS), capture_output=True, text=True, cwd=REPO_ROOT,
                       timeout=300)
  assert ref.returncode == 0, ref.stderr
  work = tmp_path / "killed"
  proc = subprocess.Popen(script(work, *KILL_ARGS), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpts = work / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpts.is_dir() and any(p.isdigit() for p in os.listdir(ckpts)):
      break
    time.sleep(0.01)
  assert proc.poll() is None, "the run ended before its first checkpoint: make it longer"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (work / "summary.json").exists()
  again = subprocess.run(script(work, *KILL_ARGS), capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
  assert again.returncode == 0, again.stderr
  # the killed run's lock (its pid is dead on this host) is taken over with a message
  assert f"took over the stale lock of workdir {work} from pid {proc.pid}" in again.stderr
  assert f"pid {proc.pid} is dead" in again.stderr
  a = json.load(open(tmp_path / "ref" / "summary.json"))
  b = json.load(open(work / "summary.json"))
  assert b["resumed_from_step"] > 0
  assert {k: a[k] for k in EXACT_KEYS} == {k: b[k] for k in EXACT_KEYS}
  steps = [r["step"] for r in read_metrics(str(work / "metrics.jsonl"))]
  assert steps == sorted(set(steps)) and steps[-1] == 300
  # A third run says it is done and changes nothing.
  third = subprocess.run(script(work, *KILL_ARGS), capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
  assert third.returncode == 0 and "already finished" in third.stderr
  assert json.load(open(work / "summary.json")) == b


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_script_nan_exits_3_and_other_config_exits_2(tmp_path):
  nan = subprocess.run(script(tmp_path / "nan", "--config=configs/mlp.py:smoke", "--config.debug_nan_at_step=5"),
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
  assert nan.returncode == 3 and "error: non-finite loss or gradient at step 5" in nan.stderr
  assert "Traceback" not in nan.stderr
  other = subprocess.run(script(tmp_path / "nan", "--config=configs/mlp.py:smoke", "--config.seed=3"),
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
  assert other.returncode == 2 and other.stderr.strip().splitlines() == [other.stderr.strip()]
  assert "different config" in other.stderr and "seed" in other.stderr
  prep = subprocess.run(script(tmp_path / "c", "--config=configs/resnet.py:gpu",
                               f"--config.data_dir={tmp_path / 'tfds'}"),
                        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
  assert prep.returncode == 2 and len(prep.stderr.strip().splitlines()) == 1
  assert "tfds build cifar10" in prep.stderr and "Traceback" not in prep.stderr


def two_processes(cmd, devices_each: int, timeout: float = 300) -> list[str]:
  """Runs `cmd` as 2 JAX processes on localhost (jax.distributed via JAX_* variables, gloo) with
  `devices_each` fake CPU devices each; asserts both exit 0 and returns their stderr."""
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = []
  for pid in range(2):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}",
               JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE))
  errs = [p.communicate(timeout=timeout)[1] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], errs
  return errs


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_two_processes_match_one_process_with_as_many_devices(tmp_path):
  """2 processes x 2 CPU devices (jax.distributed, gloo) == 1 process x 4 devices."""
  import normlab.data
  normlab.data.load("mnist1d", "train")  # prepare the data once, before the processes race for it
  args = ["--config=configs/mlp.py:smoke", "--config.num_steps=40", "--config.checkpoint_every=20",
          "--config.optimizer=momentum", "--config.learning_rate=0.05"]
  two_processes(script(tmp_path / "multi", *args), devices_each=2)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  single = subprocess.run(script(tmp_path / "single", *args), cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert single.returncode == 0, single.stderr
  a = json.load(open(tmp_path / "multi" / "summary.json"))
  b = json.load(open(tmp_path / "single" / "summary.json"))
  assert a["num_devices"] == b["num_devices"] == 4
  assert a["eval_accuracy"] == b["eval_accuracy"]
  np.testing.assert_allclose([a["eval_loss"], a["final_train_loss"]], [b["eval_loss"], b["final_train_loss"]],
                             rtol=1e-5)
  assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["20", "40"]
