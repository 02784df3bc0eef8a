"""Sweeps with the real training loop (smoke-sized ResNet-1D on mnist1d, one device): skip and resume of
finished/interrupted cells, and seeds vmapped together (normlab.train.train_and_evaluate_seeds) equal to
separate runs.

Tolerance of "equal": the vmapped program batches the convs and reductions of the seeds differently from
the single-seed program, so floats differ by reassociation only: after 10 SGD steps the train/eval losses
agree to rtol 1e-4 (observed ~1e-7 in float32), the data order and init are identical.
"""
import json
import os
import time

import ml_collections
import numpy as np
import pytest

from configs.sweeps import _common
from normlab import sweep
from normlab.train import metrics_io, train_and_evaluate_seeds


def tiny_sweep(vmap_seeds: bool):
  s = _common.base_sweep("smoke", title="test")
  s.variants = _common.norm_variants("smoke")
  s.grid.variant = ("BN",)
  s.grid.batch_size = (8,)
  s.grid.seed = (0, 1)
  s.vmap_seeds = vmap_seeds
  s.budget_examples = 80  # 10 steps
  s.overrides.num_devices = 1  # one device here (the studies' protocol uses 8)
  s.log_points = None
  s.overrides.log_every = 5
  return s


def _summary(wd, cell):
  with open(os.path.join(wd, "cells", cell.id, "summary.json")) as f:
    return json.load(f)


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_sweep_real_loop_vmapped_seeds_equal_separate_runs_then_skip_and_resume(tmp_path):
  seq_wd, vm_wd = str(tmp_path / "seq"), str(tmp_path / "vm")
  logs = []
  cells = sweep.run_sweep(tiny_sweep(False), seq_wd, log=logs.append)
  sweep.run_sweep(tiny_sweep(True), vm_wd, log=logs.append)
  assert any("2 seeds vmapped together" in line for line in logs)
  for c in cells:
    a, b = _summary(seq_wd, c), _summary(vm_wd, c)
    assert b["vmapped_seeds"] == 2 and "vmapped_seeds" not in a
    assert a["steps"] == b["steps"] == 10
    for key in ("final_train_loss", "eval_loss"):
      assert b[key] == pytest.approx(a[key], rel=1e-4), key
    assert abs(a["eval_accuracy"] - b["eval_accuracy"]) <= 0.002  # at most 2 of 1000 test examples flip
    files = lambda wd: sorted(f for f in os.listdir(os.path.join(wd, "cells", c.id)))  # noqa: E731
    assert files(seq_wd) == files(vm_wd) == ["cell.json", "checkpoints", "claims.jsonl", "config.json", "metrics.jsonl",
                                             "summary.json", "tb"]
    ma = metrics_io.read_metrics(os.path.join(seq_wd, "cells", c.id, "metrics.jsonl"))
    mb = metrics_io.read_metrics(os.path.join(vm_wd, "cells", c.id, "metrics.jsonl"))
    assert [r["step"] for r in ma] == [r["step"] for r in mb] == [5, 10]
    assert set(ma[-1]) == set(mb[-1])
    np.testing.assert_allclose([r["train_loss"] for r in mb], [r["train_loss"] for r in ma], rtol=1e-4)
    # the two seeds really differ
  assert _summary(vm_wd, cells[0])["final_train_loss"] != _summary(vm_wd, cells[1])["final_train_loss"]

  # A second run skips everything (no compile, no training).
  logs.clear()
  t0 = time.perf_counter()
  sweep.run_sweep(tiny_sweep(True), vm_wd, log=logs.append)
  assert time.perf_counter() - t0 < 10
  assert logs[0] == "sweep: 2/2 cells already finished, skipping them"

  # A cell killed after its last checkpoint but before its summary resumes there (the loop restores the
  # checkpoint the vmapped run wrote) and ends with the same result; the finished seed is not retrained.
  before = _summary(vm_wd, cells[1])
  os.remove(os.path.join(vm_wd, "cells", cells[1].id, "summary.json"))
  logs.clear()
  sweep.run_sweep(tiny_sweep(True), vm_wd, log=logs.append)
  assert logs[0] == "sweep: 1/2 cells already finished, skipping them"
  after = _summary(vm_wd, cells[1])
  assert after["resumed_from_step"] == 10 and after["steps_this_run"] == 0
  assert after["eval_loss"] == pytest.approx(before["eval_loss"], rel=1e-6)
  with open(os.path.join(vm_wd, "results.csv")) as f:
    assert f.readline().startswith("batch_size,seed,variant,global_batch,num_devices,eval_accuracy,eval_error")


def test_seeds_refuse_duplicate_seeds_and_run_differing_configs_one_by_one(tmp_path):
  from normlab.train import ConfigError
  cell = sweep.expand(tiny_sweep(True))[0]
  with pytest.raises(ConfigError, match="distinct seeds"):
    train_and_evaluate_seeds([cell.config, cell.config], [str(tmp_path / "a"), str(tmp_path / "b")])


@pytest.mark.slow
@pytest.mark.devices(8)
@pytest.mark.parametrize("bn_mode", ["sync", "local"])
def test_vmapped_seeds_on_8_devices_equal_separate_runs(tmp_path, bn_mode):
  """The sync_bn study's path: seeds vmapped inside the 8-device shard_map (gradients pmean'd once)."""
  from normlab.train import train_and_evaluate
  s = tiny_sweep(True)
  s.grid.batch_size = (2,)  # per device: global 16
  s.overrides.num_devices = 8
  s.overrides.bn_mode = bn_mode
  s.budget_examples = 96  # 6 steps
  cells = sweep.expand(s)
  sep = [train_and_evaluate(c.config, str(tmp_path / f"sep{i}")) for i, c in enumerate(cells)]
  vm = train_and_evaluate_seeds([c.config for c in cells], [str(tmp_path / f"vm{i}") for i in range(len(cells))])
  for a, b in zip(sep, vm):
    assert a["num_devices"] == b["num_devices"] == 8
    for key in ("final_train_loss", "eval_loss"):
      assert b[key] == pytest.approx(a[key], rel=1e-4), key


def test_vmapped_seeds_record_divergence_instead_of_raising(tmp_path):
  s = tiny_sweep(True)
  s.overrides.debug_nan_at_step = 3  # every seed's loss is NaN at step 3 (nan_policy='stop')
  s.overrides.model = "mlp"  # the loop's divergence path, not the model, is under test: the cheapest compile
  s.overrides.model_options = ml_collections.ConfigDict({"widths": (16,)})
  cells = sweep.expand(s)
  out = train_and_evaluate_seeds([c.config for c in cells], [str(tmp_path / str(i)) for i in range(len(cells))])
  assert [o["status"] for o in out] == ["diverged", "diverged"]
  assert all(o["nonfinite_step"] == 3 and o["eval_accuracy"] is None for o in out)
  assert not os.path.exists(tmp_path / "0" / "checkpoints" / "10")  # the frozen state is not checkpointed
