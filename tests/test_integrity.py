"""A run's workdir is trustworthy: damaged checkpoints are detected (digest or orbax error), moved to
checkpoints/corrupt-<step> and skipped; a divergence right after a resume says so; one writer per workdir.
"""
import glob
import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from normlab.train import TrainingDivergedError, train_and_evaluate
from normlab.train import checkpoint as checkpoint_lib
from normlab.train.errors import diverged_message
from normlab.train.metrics_io import read_metrics

from test_train import EXACT_KEYS, REPO_ROOT, script, tiny, two_processes

KEEP3 = dict(keep_checkpoints=3)  # checkpoints 8, 16, 24


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("integrity") / "ref")
  return workdir, train_and_evaluate(tiny(**KEEP3), workdir)


def rewrite_data(step_dir):
  """Replace the state's bytes by another valid state (it decodes; only the digest can tell)."""
  import jax
  import orbax.checkpoint as ocp
  item = os.path.join(step_dir, "default")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # whatever topology saved it
  meta = ocp.StandardCheckpointer().metadata(item).item_metadata
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), dict(meta))
  target = ocp.StandardCheckpointer().restore(item, abstract)
  changed = dict(target)
  changed["params"] = jax.tree.map(lambda a: np.asarray(a) * np.asarray(1.5, np.asarray(a).dtype), target["params"])
  shutil.rmtree(item)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(item, changed)
  ckptr.wait_until_finished()


def flip_bytes(step_dir):
  """64 bytes flipped in the middle of every data file of the state (what an operator saw from bit rot).

  Every file, not only the largest: which of orbax's data files holds the values a restore reads (the
  index's or the process's copy) depends on their sizes, so damaging one of them alone is not always
  damage to the checkpoint."""
  paths = glob.glob(os.path.join(step_dir, "default", "**", "d", "*"), recursive=True)
  assert paths, step_dir
  for path in paths:
    n = os.path.getsize(path)
    with open(path, "r+b") as f:
      f.seek(n // 2)
      chunk = f.read(64)
      f.seek(n // 2)
      f.write(bytes(b ^ 0xFF for b in chunk))


def delete_digest(step_dir):
  shutil.rmtree(os.path.join(step_dir, "digest"))


def delete_orbax_metadata(step_dir):
  os.remove(os.path.join(step_dir, "default", "_METADATA"))


def truncate_files(step_dir):
  for path in glob.glob(os.path.join(step_dir, "**", "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize("damage_24,damage_16", [
    (rewrite_data, delete_digest),
    (flip_bytes, truncate_files),
    pytest.param(delete_orbax_metadata, flip_bytes, marks=pytest.mark.slow),
], ids=["rewritten+digest_deleted", "flipped+truncated", "orbax_metadata_deleted+flipped"])
def test_damaged_checkpoints_fall_back_to_an_intact_one(reference, tmp_path, caplog, damage_24, damage_16):
  ref_dir, ref = reference
  work = str(tmp_path / "w")
  shutil.copytree(ref_dir, work)
  os.remove(os.path.join(work, "summary.json"))
  damage_24(os.path.join(work, "checkpoints", "24"))
  damage_16(os.path.join(work, "checkpoints", "16"))
  with caplog.at_level("INFO", logger="normlab.train"):
    summary = train_and_evaluate(tiny(**KEEP3), work)
  assert summary["resumed_from_step"] == 8 and summary["checkpoint_fallbacks"] == 2
  assert {k: summary[k] for k in EXACT_KEYS} == {k: ref[k] for k in EXACT_KEYS}
  lines = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert len(lines) == 2 and all("\n" not in m for m in lines)
  for step, line in zip((24, 16), lines):
    assert line.startswith(f"checkpoint at step {step} is damaged") and os.path.join(work, "checkpoints", str(step)) in line
  for step in (24, 16):  # kept as evidence, not deleted
    assert os.listdir(os.path.join(work, "checkpoints", f"corrupt-{step}"))
  rows = read_metrics(os.path.join(work, "metrics.jsonl"))
  events = [r for r in rows if r.get("event") == "checkpoint_fallback"]
  assert [e["damaged_step"] for e in events] == [24, 16] and all(e["step"] == 8 for e in events)
  assert [r["step"] for r in rows if "event" not in r] == [4, 8, 12, 16, 20, 24]


def test_digest_detects_a_changed_leaf_and_names_it():
  import jax.numpy as jnp
  tree = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}
  saved = {"algorithm": "sha256", "step": 1, "leaves": checkpoint_lib.tree_digest(tree)}
  assert checkpoint_lib.digest_mismatch(saved, tree) is None
  bad = {"w": tree["w"].at[1, 2].set(np.nextafter(np.float32(5), np.float32(6))), "b": tree["b"]}
  assert checkpoint_lib.digest_mismatch(saved, bad) == "leaf ['w'] does not match its sha256 digest"
  assert "malformed" in checkpoint_lib.digest_mismatch({"leaves": 3}, tree)


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_divergence_right_after_a_resume_names_the_resume_step(tmp_path):
  work = str(tmp_path / "w")
  config = tiny(debug_nan_at_step=18)
  with pytest.raises(TrainingDivergedError) as first:
    train_and_evaluate(config, work)
  assert "lower learning_rate" in str(first.value)  # no resume: the usual advice
  with pytest.raises(TrainingDivergedError) as again:
    train_and_evaluate(config, work)
  message = str(again.value)
  assert "\n" not in message and "step 18" in message and "resumed from the checkpoint at step 16" in message
  assert "lower learning_rate" not in message
  assert "lower learning_rate" in diverged_message(40, float("nan"), 16)  # long after the resume


SHORT_ARGS = ["--config=configs/mlp.py:smoke", "--config.num_steps=240", "--config.checkpoint_every=40",
              "--config.eval_every=120", "--config.log_every=10"]


def test_two_runs_on_one_workdir_exactly_one_trains(tmp_path):
  work = tmp_path / "w"
  first = subprocess.Popen(script(work, *SHORT_ARGS), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while not (work / "lock.json").exists():
    assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() is not None else ""
    time.sleep(0.05)
  second = subprocess.run(script(work, *SHORT_ARGS), cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
  _, err = first.communicate(timeout=300)
  assert first.returncode == 0, err
  assert second.returncode == 2, second.stderr
  line = second.stderr.strip()
  assert len(line.splitlines()) == 1 and line.startswith("error: workdir") and "Traceback" not in line
  assert f"pid {first.pid} on " in line and "lock.json" in line
  steps = [r["step"] for r in read_metrics(str(work / "metrics.jsonl")) if "event" not in r]
  assert steps == list(range(10, 241, 10))
  assert not (work / "lock.json").exists()  # released at the end


@pytest.mark.slow  # several JAX processes: minutes on a loaded 2-core machine
def test_two_processes_agree_on_the_fallback_step(tmp_path):
  """2 processes (gloo): the newest checkpoint is damaged, both verify and resume from the older one."""
  import normlab.data
  normlab.data.load("mnist1d", "train")  # prepare once, before the processes race for it
  args = ["--config=configs/mlp.py:smoke", "--config.num_steps=40", "--config.checkpoint_every=20",
          "--config.eval_every=40", "--config.log_every=10"]
  work = tmp_path / "multi"
  two_processes(script(work, *args), devices_each=1)
  reference = json.load(open(work / "summary.json"))
  os.remove(work / "summary.json")
  rewrite_data(str(work / "checkpoints" / "40"))
  errs = two_processes(script(work, *args), devices_each=1)
  summary = json.load(open(work / "summary.json"))
  assert summary["resumed_from_step"] == 20 and summary["checkpoint_fallbacks"] == 1
  assert {k: summary[k] for k in EXACT_KEYS} == {k: reference[k] for k in EXACT_KEYS}
  damaged = [ln for ln in errs[0].splitlines() if "is damaged" in ln]
  assert len(damaged) == 1 and "checkpoint at step 40 is damaged" in damaged[0]
  assert sorted(os.listdir(work / "checkpoints")) == ["20", "40", "corrupt-40"]
