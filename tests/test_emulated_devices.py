"""Emulated devices (normlab.train.devices): one device running 8 devices' train step equals the real
8-device shard_map step (8 fake CPU devices, the `devices` marker of tests/conftest.py).

A small ResNet-1D, per-device batch 4 (global 32), 3 SGD-momentum steps from the same state on the same
batches; compared: the train loss of every step, the params and the batch statistics after the last step.
Tolerance TOL (float32): the two paths reduce in other orders (an all-reduce over 8 partial sums
against one reduction over the 32 examples; conv gradients per shard against one over the batch), which
moves float32 results by ~1e-7 per operation; three steps keep the differences under TOL.
"""
import csv
import json
import os

import jax
import ml_collections as mlc
import numpy as np
import pytest

from normlab import sweep
from normlab.train import base_config, devices, optim, state as state_lib, step as step_lib
from normlab.train.errors import ConfigError

D, B, STEPS = 8, 4, 3
TOL = 1e-5  # observed: <= 5e-7 (loss), <= 1.2e-7 (params), <= 3e-7 (batch statistics)
CASES = {  # name -> (norm, norm_options, bn_mode)
    "BN local": ("batch", {}, "local"),
    "BN sync": ("batch", {}, "sync"),
    "GN": ("group", {"num_groups": 2}, "local"),
    "ghost BN": ("ghost_batch", {"virtual_batch_size": 2}, "local"),
    "batch renorm": ("batch_renorm", {"ramp_steps": 2}, "local"),
}


def _config(norm, options, bn_mode, mode):
  c = base_config.get_base_config()
  c.model, c.dataset, c.norm, c.bn_mode = "resnet", "mnist1d", norm, bn_mode
  c.model_options = {"stage_sizes": (1,), "widths": (8,), "kernel_size": 3, "stem_kernel": 3}
  c.norm_options = options
  c.batch_size, c.num_devices, c.devices = D * B, D, mode
  c.learning_rate, c.schedule, c.momentum = 0.1, "constant", 0.9
  return c


def _train(config):
  """(per-step losses, final state) of STEPS steps on the path config.devices picks."""
  from normlab.train.build import build_model
  rng = np.random.default_rng(0)
  batches = [{"x": rng.normal(size=(D * B, 40, 1)).astype(np.float32) * 1.5 + 0.3,
              "y": rng.integers(0, 10, size=(D * B,)).astype(np.int32)} for _ in range(STEPS)]
  model = build_model(config, 10)
  tx, schedule = optim.make_optimizer(config), optim.make_schedule(config)
  state = state_lib.create_state(state_lib.init_variables(model, batches[0]["x"][:B], 0), tx)
  mesh = devices.make_mesh(config, D)
  train, _ = step_lib.build_steps(config, apply_fn=model.apply, tx=tx, schedule=schedule, num_classes=10,
                                  mesh=mesh, donate=False)
  state = jax.device_put(state, step_lib.state_sharding(mesh))
  losses = []
  for b in batches:
    state, metrics = train(state, jax.device_put(b, step_lib.batch_sharding(mesh)))
    losses.append(float(metrics["train_loss"]))
  return np.asarray(losses), jax.device_get(state)


def _max_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.devices(8)
@pytest.mark.parametrize("case", list(CASES))
def test_emulated_equals_real_8_devices(case):
  norm, options, bn_mode = CASES[case]
  assert jax.device_count() == D
  per_example = norm in devices.PER_EXAMPLE_NORMS  # GN: the global batch in one step, no vmap
  assert devices.emulated_devices(_config(norm, options, bn_mode, "emulated")) == (1 if per_example else D)
  assert devices.emulated_devices(_config(norm, options, bn_mode, "auto")) == 0
  real_loss, real = _train(_config(norm, options, bn_mode, "real"))
  emu_loss, emu = _train(_config(norm, options, bn_mode, "emulated"))
  diffs = {"loss": float(np.max(np.abs(real_loss - emu_loss))), "params": _max_diff(real.params, emu.params),
           "batch_stats": _max_diff(real.batch_stats, emu.batch_stats) if real.batch_stats else 0.0}
  print(f"{case}: max abs diff real vs emulated after {STEPS} steps: {diffs}")
  assert all(d < TOL for d in diffs.values()), diffs
  assert real.step == emu.step == STEPS
  assert np.all(np.isfinite(real_loss)) and abs(real_loss[-1] - real_loss[0]) > 1e-3  # it trained


@pytest.mark.devices(8)
def test_emulated_local_bn_is_not_sync_bn():
  """The comparison above can fail: local and sync BN (the same batches) part by far more than TOL."""
  local_loss, local = _train(_config("batch", {}, "local", "emulated"))
  sync_loss, sync = _train(_config("batch", {}, "sync", "emulated"))
  assert np.max(np.abs(local_loss - sync_loss)) > 1e-3
  assert _max_diff(local.batch_stats, sync.batch_stats) > 1e-3


def test_per_example_norms_are_registered_and_have_no_batch_statistics():
  from normlab import registry
  assert set(devices.PER_EXAMPLE_NORMS) <= set(registry.NORM_NAMES)
  assert not any(registry.get_norm_entry(n).cross_device for n in devices.PER_EXAMPLE_NORMS)
  assert {"batch", "ghost_batch", "batch_renorm", "noisy_batch"}.isdisjoint(devices.PER_EXAMPLE_NORMS)


def test_choose_paths_and_errors():
  assert devices.choose("auto", 8, 8) == devices.choose("real", 8, 8) == devices.REAL
  assert devices.choose("auto", 8, 1) == devices.choose("emulated", 8, 8) == devices.EMULATED
  assert devices.choose("emulated", 1, 1) == devices.choose("auto", 0, 1) == devices.REAL
  with pytest.raises(ConfigError, match=r"config.num_devices: 8 is more than the 1 available devices; set "
                     r"devices='auto' or 'emulated'"):
    devices.choose("real", 8, 1)
  with pytest.raises(ConfigError, match=r"config.devices: unknown devices mode 'fake'; valid choices: auto, "
                     r"real, emulated"):
    devices.choose("fake", 8, 1)
  with pytest.raises(ConfigError, match="needs a single process"):
    devices.choose("auto", 8, 4, process_count=2)


def _loop_configs(mode: str, seeds=(0, 1)):
  """Two seeds of an 8-device local-BN cell (an MLP on mnist1d, per-device batch 2, 4 steps)."""
  c = base_config.get_base_config()
  c.model, c.model_options, c.norm, c.bn_mode = "mlp", {"widths": (16,)}, "batch", "local"
  c.batch_size, c.eval_batch_size, c.num_devices, c.devices = 16, 200, D, mode
  c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = 4, 2, 4, 4
  return [_with_seed(c, s) for s in seeds]


def _with_seed(config, seed):
  c = config.copy_and_resolve_references()
  c.seed = seed
  return c


@pytest.mark.slow  # ~15 s: `pytest -m slow` runs it
@pytest.mark.devices(8)
def test_loop_vmapped_seeds_emulated_equals_real(tmp_path):
  """The sweep's path through the training loop (seeds vmapped, shard_map over 8 devices, or over one
  device running the 8 devices' step): the same losses; summary.json names the path."""
  from normlab.train import train_and_evaluate_seeds
  out = {mode: train_and_evaluate_seeds(_loop_configs(mode), [str(tmp_path / f"{mode}{i}") for i in range(2)])
         for mode in ("real", "emulated")}
  for real, emu in zip(out["real"], out["emulated"]):
    assert (real["devices"], emu["devices"]) == ("real", "emulated")
    assert real["num_devices"] == emu["num_devices"] == D
    for key in ("final_train_loss", "eval_loss"):
      assert abs(real[key] - emu[key]) < TOL, (key, real[key], emu[key])


def test_sweep_cell_of_8_devices_runs_emulated_on_one_cpu_device(tmp_path):
  """What a CPU-only machine without XLA_FLAGS does with an 8-device sweep cell: devices='auto' emulates
  them; summary.json and results.csv name the path."""
  assert jax.device_count() == 1
  s = mlc.ConfigDict({"base": "configs/mlp.py:smoke", "lr_scaling": "none", "x_key": "batch_size",
                      "line_key": "norm"})
  s.grid = mlc.ConfigDict({"norm": ("batch",), "batch_size": (2,)})
  s.overrides = mlc.ConfigDict({"num_devices": D, "bn_mode": "local", "num_steps": 4, "eval_every": 4,
                                "log_every": 4, "checkpoint_every": 4, "eval_batch_size": 200})
  (cell,) = sweep.run_sweep(s, str(tmp_path), log=lambda *_: None)
  with open(tmp_path / "cells" / cell.id / "summary.json") as f:
    summary = json.load(f)
  assert (summary["devices"], summary["num_devices"], summary["steps"]) == ("emulated", D, 4)
  with open(os.path.join(tmp_path, "results.csv")) as f:
    (row,) = list(csv.DictReader(f))
  assert (row["batch_size"], row["global_batch"], row["devices"], row["status"]) == ("2", "16", "emulated", "done")
