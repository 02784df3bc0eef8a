"""normlab.bench and scripts/bench.py run end to end on tiny shapes and produce ratios.

Only the machinery is tested: no assertion here is about absolute times or speed ratios.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from normlab import bench
from normlab.bench import impls, suite, timing

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
  assert md.count("\n| ") == len(rows) + 1  # header + one line per row
  data = json.loads(bench.to_json(report))
  assert len(data["ratios"]) == len(rows) and data["env"]["jax"]
  return rows


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
  assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}


def test_run_suite_sequences_and_bfloat16():
  cfg = bench.BenchConfig(norms=("bn", "gn"), shapes=(TINY_SEQ,), dtypes=("bfloat16",),
                          peers=("flax", "torch_cl"), repeats=1, warmup=0)
  _check_report(bench.run_suite(cfg), cfg)


def test_a_peer_with_a_different_output_is_reported_not_timed():
  ref = np.zeros((2, 3), np.float32)
  good = impls.Bench(fwd=lambda: None, fwd_bwd=lambda: None, output=lambda: ref + 1e-4)
  bad = impls.Bench(fwd=lambda: None, fwd_bwd=lambda: None, output=lambda: ref + 1.0)
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


def test_script_writes_json_and_markdown(tmp_path):
  out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
  cmd = [sys.executable, os.path.join(REPO, "scripts", "bench.py"), "--norms=rms",
         "--shapes=2x4x4x32", "--dtypes=float32", "--peers=flax", "--repeats=1", "--warmup=0",
         f"--json={out_json}", f"--markdown={out_md}", "--noprogress"]
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
  from normlab.bench.train_step import run_train_step
  out = run_train_step(model="resnet", batch=2, repeats=1, warmup=0,
                       model_options={"stage_sizes": (1,), "widths": (8,)})
  assert out["normlab_s"] > 0 and out["flax_s"] > 0 and out["ratio"] > 0


# --- the graph-shaping paths of normlab.core (its performance work) compute the same numbers ----

@pytest.mark.parametrize("axes, center, masked", [
    ((-1,), True, False), ((1, -1), True, True), ((0, -2), False, False),
    ((1, 2, 4), True, True), ((0, 1, 2, 4), True, False), ((1, 3), False, True),
])
def test_core_view_paths_match_a_plain_two_pass(axes, center, masked):
  """Group-norm-style split axes (the merged view), negative axes, masks: values and VJP vs jnp."""
  import jax
  import jax.numpy as jnp

  from normlab import core
  shape = (3, 4, 2, 5, 3)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape) * 2 + 0.5)
  ct = jnp.asarray(rng.normal(size=shape))
  mask = jnp.asarray((rng.uniform(size=(3, 4, 1, 1, 1)) > 0.3).astype(np.float64)) if masked else None
  pos = tuple(a % len(shape) for a in axes)

  def plain(x):
    m = jnp.ones_like(x) if mask is None else jnp.broadcast_to(mask, x.shape)
    n = jnp.maximum(jnp.sum(m, pos, keepdims=True), 1)
    mu = jnp.sum(x * m, pos, keepdims=True) / n if center else 0.0
    var = jnp.sum((x - mu) ** 2 * m, pos, keepdims=True) / n
    return (x - mu) / jnp.sqrt(var + 1e-3)

  def value_and_vjp(f):
    return jax.jit(lambda x, ct: (lambda y, vjp: (y, vjp(ct)[0]))(*jax.vjp(f, x)))(x, ct)

  ours, ours_dx = value_and_vjp(lambda x: core.standardize(x, axes, eps=1e-3, mask=mask, center=center)[0])
  ref, ref_dx = value_and_vjp(plain)
  np.testing.assert_allclose(ours, ref, atol=1e-12)
  np.testing.assert_allclose(ours_dx, ref_dx, atol=1e-11)
  (mean, var), _ = core.moments(x, axes, mask=mask, center=center)
  assert mean.shape == var.shape == tuple(1 if a in pos else d for a, d in enumerate(shape))


@pytest.mark.parametrize("axes, masked, center, scale_shape", [
    ((0, 1, 2), False, True, (6,)),    # batch norm: fused path
    ((0, 1, 2), True, False, (6,)),
    ((1, 2), True, True, (6,)),        # instance norm: fused path, parameter grads summed over N too
    ((0, 1, 2), False, True, ()),      # a scalar scale is constant over S as well
    ((-1,), False, True, (6,)),        # layer norm: scale varies over S -> the composition
    ((0, 3), True, True, (6,)),        # staged (view) reduction -> the composition
])
def test_standardize_affine_equals_the_composition(axes, masked, center, scale_shape):
  import jax
  import jax.numpy as jnp

  from normlab import core
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(4, 3, 5, 6)) * 2 + 0.5)
  ct = jnp.asarray(rng.normal(size=x.shape))
  s = jnp.asarray(rng.normal(size=scale_shape))
  b = jnp.asarray(rng.normal(size=scale_shape))
  mask = jnp.asarray((rng.uniform(size=(4, 1, 1, 1)) > 0.3).astype(np.float64)) if masked else None

  def composed(x, s, b):
    x_hat, stats = core.standardize(x, axes, eps=1e-3, mask=mask, center=center)
    return core.affine(x_hat, s, b, x.dtype), stats

  def fused(x, s, b):
    return core.standardize_affine(x, axes, s, b, eps=1e-3, mask=mask, center=center)

  def run(f):
    def go(x, s, b, ct):
      (y, stats), vjp = jax.vjp(f, x, s, b)
      return y, stats, vjp((ct, jax.tree.map(jnp.zeros_like, stats)))
    return jax.jit(go)(x, s, b, ct)

  (ya, sa, ga), (yb, sb, gb) = run(composed), run(fused)
  np.testing.assert_allclose(yb, ya, atol=1e-12)
  for p, q in zip(jax.tree.leaves(sb), jax.tree.leaves(sa)):
    np.testing.assert_allclose(p, q, atol=1e-12)
  for p, q in zip(gb, ga):
    assert p.shape == q.shape
    np.testing.assert_allclose(p, q, atol=1e-11)


def test_standardize_affine_across_devices_matches_the_composition():
  """SyncBN-style psum over a named axis: the input gradient uses global sums, the parameter
  gradients this device's own (as the composition's autodiff gives them)."""
  import jax
  import jax.numpy as jnp

  from normlab import core
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(4, 3, 5, 6)))  # 4 "devices" on the vmapped axis
  ct = jnp.asarray(rng.normal(size=x.shape))
  s, b = jnp.asarray(rng.normal(size=(6,))), jnp.asarray(rng.normal(size=(6,)))

  def per_device(fused):
    def f(x, s, b):
      if fused:
        return core.standardize_affine(x, (0, 1), s, b, eps=1e-3, axis_name="d")[0]
      return core.affine(core.standardize(x, (0, 1), eps=1e-3, axis_name="d")[0], s, b, x.dtype)
    return lambda x, s, b: jax.vmap(f, in_axes=(0, None, None), axis_name="d")(x, s, b)

  ya, va = jax.vjp(per_device(False), x, s, b)
  yb, vb = jax.vjp(per_device(True), x, s, b)
  np.testing.assert_allclose(yb, ya, atol=1e-12)
  for p, q in zip(vb(ct), va(ct)):
    np.testing.assert_allclose(p, q, atol=1e-11)


def test_standardize_affine_second_order_gradients():
  import jax
  import jax.numpy as jnp
  from jax.test_util import check_grads

  from normlab import core
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(6, 3, 4)))
  s, b = jnp.asarray(rng.normal(size=(4,))), jnp.asarray(rng.normal(size=(4,)))
  m = jnp.asarray([1., 1., 0., 1., 1., 0.])[:, None, None]
  f = jax.jit(lambda x, s, b: core.standardize_affine(x, (0, 1), s, b, eps=1e-5, mask=m)[0])
  check_grads(f, (x, s, b), order=2, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-4)


def test_fast_core_keeps_the_numerics_the_issue_asks_for():
  """float32 inputs with mean 1e3 and std 0.1: every norm's output within 5e-3 of float64 (on the
  same float32 numbers); bfloat16 inputs get float32 statistics."""
  import jax
  import jax.numpy as jnp

  import normlab as nl
  from normlab import core
  rng = np.random.default_rng(0)
  x32 = jnp.asarray(rng.normal(size=(8, 4, 4, 64)) * 0.1 + 1e3, jnp.float32)
  x64 = jnp.asarray(np.asarray(x32), jnp.float64)
  norms = {"bn": nl.batch_norm, "ln": nl.layer_norm, "in": nl.instance_norm, "rms": nl.rms_norm,
           "gn": lambda x: nl.group_norm(x, num_groups=32)}
  for name, f in norms.items():
    err = float(jnp.max(jnp.abs(jax.jit(f)(x32).astype(jnp.float64) - f(x64))))
    assert err < 5e-3, (name, err)
  x_hat, stats = core.standardize(x32.astype(jnp.bfloat16), (0, 1, 2), eps=1e-5)
  assert x_hat.dtype == stats.mean.dtype == stats.var.dtype == jnp.float32
