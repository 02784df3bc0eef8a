"""benchmarks and scripts/bench.py run end to end on tiny shapes and produce ratios.

Only the machinery is tested: no assertion here is about absolute times or speed ratios.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import benchmarks as bench
from benchmarks import impls, suite, timing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = (2, 4, 4, 32)  # GroupNorm(32) needs channels divisible by 32
TINY_SEQ = (2, 8, 32)


def test_interleaved_best_takes_the_minimum_and_rotates_the_order():
  ticks = iter(range(1000))
  calls = []
  durations = {"a": [5, 3, 4], "b": [2, 2, 1]}

  def make(name):
    def fn():
      calls.append(name)
      for _ in range(durations[name].pop(0) - 1):  # each clock() call advances time by one tick
        next(ticks)
    return fn

  best = timing.interleaved_best({"a": make("a"), "b": make("b")}, repeats=3, warmup=0,
                                 clock=lambda: next(ticks))
  assert best == {"a": 3, "b": 1}
  assert calls == ["a", "b", "b", "a", "a", "b"]  # round r starts at implementation r % 2
  with pytest.raises(ValueError, match="repeats"):
    timing.interleaved_best({}, repeats=0)


def _check_report(report, cfg):
  rows = bench.ratio_rows(report)
  assert len(rows) == len(cfg.shapes) * len(cfg.dtypes) * len(cfg.norms) * len(suite.MODES)
  for row in rows:
    assert row["normlab_s"] > 0 and row["elementwise_s"] > 0
    assert row["ratio_elementwise"] > 0 and math.isfinite(row["ratio_elementwise"])
    assert row["best_peer"] in cfg.peers  # flax always runs, so there is a best peer
    assert row["ratio_best_peer"] > 0
    assert row["ratio_best_peer"] == pytest.approx(row["normlab_s"] / row["best_peer_s"])
  text = bench.format_table(report)
  for norm in cfg.norms:
    assert suite.NORM_TITLES[norm] in text
  md = bench.to_markdown(report)
  summary = len(cfg.norms) + 1  # the value_and_grad summary: header + one line per norm
  assert md.count("\n| ") == len(rows) + 1 + summary  # header + one line per row
  data = json.loads(bench.to_json(report))
  assert len(data["ratios"]) == len(rows) and data["env"]["jax"]
  return rows


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_run_suite_tiny_all_norms_and_peers():
  cfg = bench.BenchConfig(shapes=(TINY,), dtypes=("float32",), repeats=1, warmup=0)
  lines = []
  report = bench.run_suite(cfg, log=lines.append)
  assert len(lines) == len(cfg.norms)
  rows = _check_report(report, cfg)
  if impls.torch_module_available():
    ran = {(r.norm, r.impl) for r in report.results if r.seconds is not None}
    for norm in cfg.norms:
      for peer in impls.torch_layouts(norm):
        assert (norm, peer) in ran, f"torch peer {peer} did not run for {norm}"
  assert {r["mode"] for r in rows} == {"fwd", "grad", "value_and_grad"}
  if impls.torch_module_available():  # torch's one forward+backward call serves both modes, timed once
    for r in rows:
      if r["mode"] == "grad":
        assert r["torch_s"] == report.seconds(r["norm"], TINY, "float32", "value_and_grad", "torch")


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_run_suite_sequences_and_bfloat16():
  cfg = bench.BenchConfig(norms=("bn", "gn"), shapes=(TINY_SEQ,), dtypes=("bfloat16",),
                          peers=("flax", "torch_cl"), repeats=1, warmup=0)
  _check_report(bench.run_suite(cfg), cfg)


def test_a_peer_with_a_different_output_is_reported_not_timed():
  ref = np.zeros((2, 3), np.float32)
  nop = lambda: None  # noqa: E731
  good = impls.Bench(fwd=nop, grad=nop, value_and_grad=nop, output=lambda: ref + 1e-4)
  bad = impls.Bench(fwd=nop, grad=nop, value_and_grad=nop, output=lambda: ref + 1.0)
  benches, notes = {"flax": good, "torch": bad}, {}
  suite._check(ref, benches, notes, "float32")
  assert list(benches) == ["flax"]
  assert "differs" in notes["torch"]


@pytest.mark.parametrize("kw, match", [
    ({"norms": ("bn", "nope")}, "unknown norm"),
    ({"dtypes": ("float16",)}, "unknown dtype"),
    ({"peers": ("jax",)}, "unknown peer"),
    ({"shapes": ((4, 4),)}, "want"),
    ({"shapes": ((2, 4, 4, 30),)}, "divisible by 32"),
    ({"repeats": 0}, "repeats"),
    ({"single_thread": True}, "XLA_FLAGS"),  # the test process's XLA runs multi-threaded
])
def test_config_validation(kw, match):
  with pytest.raises(ValueError, match=match):
    bench.BenchConfig(**kw).validate()


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_script_writes_json_and_markdown(tmp_path):
  out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
  cmd = [sys.executable, os.path.join(REPO, "scripts", "bench.py"), "--norms=rms",
         "--shapes=2x4x4x32", "--dtypes=float32", "--peers=flax", "--repeats=1", "--warmup=0",
         f"--json={out_json}", f"--markdown={out_md}", "--noprogress", "--nonorm_steps"]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "nl/best" in proc.stdout and "RMSNorm" in proc.stdout
  data = json.loads(out_json.read_text())
  assert {r["norm"] for r in data["ratios"]} == {"rms"}
  assert all(r["ratio_best_peer"] > 0 for r in data["ratios"])
  assert "| RMSNorm |" in out_md.read_text()


def test_script_rejects_a_bad_flag_with_one_line():
  cmd = [sys.executable, os.path.join(REPO, "scripts", "bench.py"), "--norms=bn,xx", "--noprogress"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown norm")


@pytest.mark.slow
def test_train_step_comparison_runs():
  from benchmarks.train_step import run_train_step
  out = run_train_step(model="resnet", batch=2, repeats=1, warmup=0,
                       model_options={"stage_sizes": (1,), "widths": (8,)})
  assert out["normlab_s"] > 0 and out["flax_s"] > 0 and out["ratio"] > 0


@pytest.mark.parametrize("flag, match", [("--seeds=2,x", "--seeds"), ("--seeds=0", "--seeds"),
                                         ("--seeds=2 --seed_batches=-4", "--seed_batches")])
def test_script_rejects_bad_seed_flags_with_one_line(flag, match):
  cmd = [sys.executable, os.path.join(REPO, "scripts", "bench.py"), *flag.split(), "--noprogress"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: " + match) and "positive integers" in last


@pytest.mark.slow
@pytest.mark.devices(8)
def test_seed_sweep_times_both_and_the_losses_agree():
  from benchmarks.seeds import run_seed_sweep
  rows = run_seed_sweep(seeds=(2,), batches=(4,), num_steps=3)
  (row,) = rows
  assert row["seeds"] == 2 and row["steps"] == 3
  assert row["sequential_s"] > 0 and row["vmapped_s"] > 0
  assert row["speedup"] == pytest.approx(row["sequential_s"] / row["vmapped_s"])
  assert row["max_rel_diff_final_loss"] < 1e-4
  report = bench.BenchReport(env={}, config=bench.BenchConfig(shapes=(), norms=()).as_dict(), results=[],
                             runtime_s=0.0, seed_sweep=rows)
  from benchmarks.report import _seed_lines
  (line,) = _seed_lines(report)
  assert "S=2" in line and "speed-up" in line
  assert json.loads(bench.to_json(report))["seed_sweep"][0]["seeds"] == 2


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_malloc_reuse_reruns_the_script_under_the_glibc_tunables():
  cmd = [sys.executable, os.path.join(REPO, "scripts", "bench.py"), "--malloc_reuse", "--norms=rms",
         "--shapes=2x4x4x32", "--dtypes=float32", "--peers=flax", "--repeats=1", "--warmup=0", "--noprogress", "--nonorm_steps"]
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=" in proc.stdout and "RMSNorm" in proc.stdout


def _report_with(times, *, peak_gbps=None, device_kind="cpu"):
  cfg = bench.BenchConfig(norms=("bn",), shapes=((4, 8, 8, 32),), dtypes=("float32",), peers=("flax",),
                          peak_gbps=peak_gbps)
  results = [suite.Result(norm, (4, 8, 8, 32), "float32", mode, impl, t) for (norm, impl, mode), t in times.items()]
  return bench.BenchReport(env={"device_kind": device_kind}, config=cfg.validate().as_dict(), results=results,
                           runtime_s=0.0)


TIMES = {("bn", "normlab", "fwd"): 3e-3, ("bn", "normlab", "value_and_grad"): 6e-3, ("bn", "flax", "fwd"): 4e-3,
         ("bn", "flax", "value_and_grad"): 5e-3, ("elementwise", "elementwise", "fwd"): 1e-3,
         ("elementwise", "elementwise", "value_and_grad"): 2e-3}


def test_roofline_uses_the_measured_elementwise_bandwidth_without_a_known_peak():
  rows = {r["mode"]: r for r in bench.ratio_rows(_report_with(TIMES))}
  # elementwise moves 2 passes; the norm at least 2 (fwd) / 3 (value_and_grad): roofline = passes/2 * t_ew
  assert rows["fwd"]["ratio_roofline"] == pytest.approx(3e-3 / (2 / 2 * 1e-3))
  assert rows["value_and_grad"]["ratio_roofline"] == pytest.approx(6e-3 / (3 / 2 * 2e-3))
  assert rows["value_and_grad"]["ratio_best_peer"] == pytest.approx(6e-3 / 5e-3)


@pytest.mark.parametrize("kw, gbps", [({"peak_gbps": 100.0}, 100.0),
                                      ({"device_kind": "NVIDIA H100 80GB HBM3"}, 3350.0)])
def test_roofline_with_a_given_or_known_peak_bandwidth(kw, gbps):
  report = _report_with(TIMES, **kw)
  size = 4 * 8 * 8 * 32 * 4
  rows = {r["mode"]: r for r in bench.ratio_rows(report)}
  assert rows["value_and_grad"]["roofline_s"] == pytest.approx(3 * size / (gbps * 1e9))
  assert rows["fwd"]["ratio_roofline"] == pytest.approx(3e-3 / (2 * size / (gbps * 1e9)))
  assert f"{gbps:g} GB/s" in suite.bandwidth_source(report)[1]


def test_peak_gbps_must_be_positive():
  with pytest.raises(ValueError, match="peak_gbps"):
    bench.BenchConfig(peak_gbps=0.0).validate()


@pytest.mark.slow
def test_norm_steps_time_normlab_and_flax_on_every_model():
  from benchmarks.norm_steps import STEPS, run_norm_steps
  rows = run_norm_steps(repeats=1, warmup=0, batch_scale=0.05)
  assert [(r["model"], r["norm"]) for r in rows] == list(STEPS)
  assert all(r["normlab_s"] > 0 and r["flax_s"] > 0 and r["ratio"] > 0 for r in rows)
  cfg = bench.BenchConfig(shapes=(), norms=())
  from benchmarks.env import environment
  report = bench.BenchReport(env=environment(None), config=cfg.as_dict(), results=[], runtime_s=0.0, norm_steps=rows)
  md = bench.to_markdown(report)
  assert md.count("| conv |") == 3 and "| gru |" in md


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_one_norm_step_gradients_agree_between_normlab_and_flax():
  """The conv step's model with normlab's GroupNorm and with flax's: same loss and gradients (same init)."""
  import jax
  from benchmarks import norm_steps
  x, y = norm_steps.batch("conv", 2)
  grads = {}
  for lib in norm_steps.LIBS:
    net = norm_steps.ConvNet(norm=norm_steps.norm_layer(lib, "gn"), width=32)
    params = net.init(jax.random.key(0), x)["params"]
    loss = lambda p: jax.numpy.mean(net.apply({"params": p}, x) ** 2)  # noqa: E731
    grads[lib] = jax.jit(jax.value_and_grad(loss))(params)
  (la, ga), (lb, gb) = grads["normlab"], grads["flax"]
  np.testing.assert_allclose(la, lb, rtol=1e-4)
  for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_emulation_bench_times_the_b2_cell_on_one_device_paths(monkeypatch):
  """benchmarks.emulation trains the batch_size sweep's BN b=2 cell on the emulated and the ghost-BN paths
  (the real 8-host-device path runs in a subprocess and is left out here) and reports both speeds. The sweep's
  smoke preset here: its cpu preset's data (mnist1d_large, 300,000 examples) take minutes to generate."""
  from benchmarks import emulation
  monkeypatch.setattr(emulation, "SWEEP", "configs/sweeps/batch_size.py:smoke")
  config = emulation.cell_config("emulated", 4)
  assert (config.norm, config.num_devices, config.batch_size, config.devices) == ("batch", 8, 16, "emulated")
  ghost = emulation.cell_config("ghost", 4)
  assert (ghost.norm, dict(ghost.norm_options), ghost.num_devices, ghost.batch_size) == (
      "ghost_batch", {"virtual_batch_size": 2}, 1, 16)
  result = emulation.run_emulation(steps=4, rounds=1, real=False)
  assert set(result["steps_per_s"]) == {"emulated", "ghost"} and result["emulated_over_ghost"] > 0
  assert "real 8 host devices: not run" in emulation.format_emulation(result)
