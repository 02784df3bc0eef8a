"""normlab.analysis.paper_dln (the paper's DLN by full-batch GD, ICS over training) and paper_dln_claims (the
three comparisons and the rule): the moment form is the batch loss (float64, numpy reference), the jitted scan
is the step-by-step loop, x64 stays scoped, and the rules on hand-made grids."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.experiments import ics as ics_config
from normlab.analysis import ics as ics_lib
from normlab.analysis import paper_dln as P
from normlab.analysis import paper_dln_claims as C
from normlab.errors import UserError


def _perturbed(ws, bn, affine=True, seed=1):
  """Parameters away from init (BN scales != 1, biases != 0), float64."""
  r = np.random.default_rng(seed)
  params = P.init_params(ws, bn, affine)
  return jax.tree_util.tree_map(lambda v: v + 0.3 * jnp.asarray(r.normal(size=v.shape)), params)


def _numpy_loss(params, x, a, bn, eps=1e-5):
  h = np.asarray(x)
  for i, layer in enumerate(params):
    h = h @ np.asarray(layer["kernel"])
    if bn and i < len(params) - 1:
      h = (h - h.mean(0)) / np.sqrt(h.var(0) + eps)
      if "scale" in layer:
        h = h * np.asarray(layer["scale"]) + np.asarray(layer["bias"])
  return float(np.sum((h - x @ a.T) ** 2))


@pytest.mark.parametrize("bn,affine", [(False, True), (True, True), (True, False)])
def test_moment_loss_is_the_batch_loss_float64(float64, bn, affine):
  x, a, ws = P.make_problem(3, 4, 3, 20)
  params = _perturbed(ws, bn, affine)
  stats = {k: jnp.asarray(v) for k, v in P.moments(x, a).items()}
  ref = _numpy_loss(params, x, a, bn)
  assert float(P.loss(params, jnp.asarray(x), jnp.asarray(x @ a.T), bn)) == pytest.approx(ref, rel=1e-12)
  assert float(P.moment_loss(params, stats, bn)) == pytest.approx(ref, rel=1e-12)
  g1 = jax.tree_util.tree_leaves(jax.grad(P.loss)(params, jnp.asarray(x), jnp.asarray(x @ a.T), bn))
  g2 = jax.tree_util.tree_leaves(jax.grad(P.moment_loss)(params, stats, bn))
  scale = max(float(jnp.linalg.norm(g)) for g in g1)
  for u, v in zip(g1, g2):  # BN biases the next BN cancels: 0 in one form, rounding in the other
    assert float(jnp.linalg.norm(u - v)) <= 1e-11 * scale
  assert ("scale" in params[0]) == (bn and affine) and "scale" not in params[-1]


def test_problem_is_glorot_and_shared_by_the_two_nets():
  x, a, ws = P.make_problem(0, 25, 10, 1000)
  x2, _a2, ws2 = P.make_problem(0, 25, 10, 1000)
  assert x.shape == (1000, 10) and a.shape == (10, 10) and len(ws) == 25
  assert np.array_equal(x, x2) and np.array_equal(ws[7], ws2[7])
  limit = math.sqrt(6 / 20)
  w = np.stack(ws)
  assert np.all(np.abs(w) <= limit) and np.var(w) == pytest.approx(limit ** 2 / 3, rel=0.1)
  assert not np.array_equal(P.make_problem(1, 25, 10, 1000)[0], x)


@pytest.mark.parametrize("bn", [False, True])
def test_train_scan_is_the_step_by_step_loop(float64, bn):
  """Losses, measured steps and per-layer ICS of the jitted scan = a Python loop of GD steps on the batch loss
  with internal_covariate_shift at the same steps."""
  x, a, ws = P.make_problem(2, 4, 3, 16)
  params = P.init_params(ws, bn)
  stats = {k: jnp.asarray(v) for k, v in P.moments(x, a).items()}
  lr, steps, every = 3e-3, 12, 4
  out = jax.jit(lambda p: P.train(p, stats, lr, steps=steps, measure_every=every, bn=bn))(params)
  batch_loss = lambda p: P.loss(p, jnp.asarray(x), jnp.asarray(x @ a.T), bn)
  p, losses, measured = params, [], []
  for t in range(steps):
    g = jax.grad(batch_loss)(p)
    new = [{k: v - lr * g[i][k] for k, v in layer.items()} for i, layer in enumerate(p)]
    losses.append(float(batch_loss(p)))
    if t % every == 0:
      measured.append(ics_lib.internal_covariate_shift(batch_loss, p, new))
    p = new
  np.testing.assert_allclose(np.asarray(out["loss"]), losses, rtol=1e-10)
  assert float(out["final_loss"]) == pytest.approx(float(batch_loss(p)), rel=1e-10)
  assert out["l2"].shape == (steps // every, 4) and out["l2"].dtype == jnp.float64
  for m, r in enumerate(measured):
    np.testing.assert_allclose(np.asarray(out["l2"][m]), np.asarray(r.l2), rtol=1e-7, atol=1e-9 * float(r.l2.max()))
    np.testing.assert_allclose(np.asarray(out["normalized"][m]), np.asarray(r.normalized), rtol=1e-7,
                               atol=1e-9 * float(r.normalized.max()))
    np.testing.assert_allclose(np.asarray(out["cos"][m]), np.asarray(r.cos), atol=1e-9)
  assert np.all(np.asarray(out["l2"][:, 0]) == 0) and np.all(np.asarray(out["update_norm"][:, 1:]) > 0)


def test_run_grid_scopes_x64_and_float32_follows_float64():
  g64 = P.run_grid([1e-4, 1e-3], [0, 1], depth=3, width=3, examples=20, steps=10, measure_every=5)
  assert jnp.ones(1).dtype == jnp.float32  # x64 was on only inside
  g32 = P.run_grid([1e-4, 1e-3], [0, 1], depth=3, width=3, examples=20, steps=10, measure_every=5, dtype="float32")
  for net in ("batch", "none"):
    d64, d32 = g64["nets"][net], g32["nets"][net]
    assert d64["loss"].shape == (2, 2, 10) and d64["l2"].shape == (2, 2, 2, 3)
    np.testing.assert_allclose(d32["loss"], d64["loss"], rtol=1e-4)
    assert not np.array_equal(d32["loss"], d64["loss"])  # float32 really ran in float32
  np.testing.assert_array_equal(g64["measured_steps"], [0, 5])


def test_bad_settings_raise_one_line_errors():
  kw = {"depth": 3, "width": 3, "examples": 20, "steps": 10, "measure_every": 5}
  with pytest.raises(UserError, match="dtype must be one of float32, float64, got 'float16'"):
    P.run_grid([1e-3], [0], dtype="float16", **kw)
  with pytest.raises(UserError, match=r"steps \(10\) must be a multiple of measure_every \(3\)"):
    P.run_grid([1e-3], [0], **{**kw, "measure_every": 3})
  with pytest.raises(UserError, match="positive numbers"):
    P.run_grid([-1.0], [0], **kw)
  with pytest.raises(UserError, match="depth must be an integer >= 2"):
    P.run_grid([1e-3], [0], **{**kw, "depth": 1})
  with pytest.raises(UserError, match="nets must be among"):
    P.run_grid([1e-3], [0], nets=("layer",), **kw)


def test_unstable_and_edge():
  assert P.unstable([3.0, 2.0, np.nan], 1.0) and P.unstable([3.0, 2.0], 3.5) and not P.unstable([3.0, 2.0], 1.0)
  g = P.run_grid([1e-5, 1e-1, 1.0], [0], depth=3, width=3, examples=20, steps=20, measure_every=10, nets=("none",))
  assert P.instability_edge(g) == 1e-1


# ----- the comparisons and the rule on hand-made grids ---------------------------------------------------------

def _grid(delta, lrs=(1e-7, 1e-6), steps=4, every=2, depth=3, final=None):
  """BN's ||G - G'|| = plain's x exp(delta[seed]) at every lr, step and layer (layer 1: 0); losses decrease."""
  seeds = tuple(range(len(delta)))
  r = np.random.default_rng(0)
  shape = (len(lrs), len(seeds), steps // every, depth)
  base = np.exp(r.normal(size=shape))
  base[..., 0] = 0
  nets = {}
  for net, fac in (("none", np.zeros(len(seeds))), ("batch", np.asarray(delta, float))):
    loss = np.tile(np.linspace(100, 10, steps), (len(lrs), len(seeds), 1))
    fl = np.full((len(lrs), len(seeds)), 5.0) if final is None else np.asarray(final[net], float)
    l2 = base * np.exp(fac)[None, :, None, None]
    nets[net] = {"loss": loss, "final_loss": fl, "l2": l2, "normalized": l2 / 2, "cos": np.full(shape, 0.5),
                 "grad_norm": np.ones(shape), "update_norm": np.ones(shape)}
  return {"lrs": tuple(lrs), "seeds": seeds, "steps": steps, "measure_every": every, "depth": depth,
          "dtype": "float64", "measured_steps": np.arange(0, steps, every), "nets": nets}


def test_same_and_best_lr_comparisons_are_the_seed_log_ratios():
  g = _grid([-0.5, -0.7, -0.6])
  c = C.compare_same_lr(g, 1e-6)
  assert c.mean == pytest.approx(-0.6) and c.se == pytest.approx(0.1 / math.sqrt(3)) and c.n == 3
  assert C.not_lower_verdict(c, True) == "not reproduced"
  assert C.not_lower_verdict(C.compare_same_lr(g, 1e-6, "normalized"), True) == "not reproduced"
  assert C.compare_same_lr(g, 1e-7, "cos").mean == 0.0
  g = _grid([0.1, -0.1, 0.05], final={"batch": [[4, 4, 4], [1, 1, 1]], "none": [[1, 1, 1], [np.nan, 2, 2]]})
  assert C.best_lr(g, "batch") == 1e-6 and C.best_lr(g, "none") == 1e-7  # a non-finite seed rules an lr out
  assert C.compare_best_lr(g).lr_bn == 1e-6
  assert C.not_lower_verdict(C.compare_best_lr(g), True) == "reproduced"
  with pytest.raises(UserError, match="lr 0.5 is not in the grid"):
    C.compare_same_lr(g, 0.5)
  with pytest.raises(UserError, match="form must be one of"):
    C.compare_same_lr(g, 1e-7, "rel")


def test_matched_loss_takes_the_first_step_below_the_common_level():
  lb, lp = np.array([100.0, 50, 20, 10, 5, 4]), np.array([80.0, 70, 60, 45, 30, 20])
  ib, ip, level = C.matched_steps(lb, lp, np.arange(6))
  assert level == pytest.approx(math.sqrt(80 * 20)) and (ib, ip) == (2, 4)
  assert C.matched_steps(lb, lp, np.arange(0, 6, 2))[:2] == (1, 2)  # only measured steps count
  assert C.matched_steps(np.array([10.0, 9]), np.array([5.0, 4]), np.arange(2)) is None  # no common level
  g = _grid([-0.3, -0.2, -0.4])
  g["nets"]["batch"]["loss"] = g["nets"]["batch"]["loss"] * 0.5  # BN reaches the level earlier
  c = C.compare_matched_loss(g)
  lm = lambda net, s, m: C.layer_mean(g["nets"][net]["l2"][1, s, m], "l2")
  assert c.mean == pytest.approx(np.mean([lm("batch", s, 1) - lm("none", s, 1) for s in range(3)]))
  with pytest.raises(UserError, match="q must be in"):
    C.compare_matched_loss(g, q=0)


def test_verdicts_need_training_and_two_seeds():
  lower = C.Comparison(-0.5, 0.1, 3, 1e-6, 1e-6)
  assert C.not_lower_verdict(lower, True) == "not reproduced"
  assert C.not_lower_verdict(C.Comparison(-0.15, 0.1, 3, 1e-6, 1e-6), True) == "reproduced"  # within 2 s.e.
  assert C.not_lower_verdict(C.Comparison(0.4, 0.1, 3, 1e-6, 1e-6), True) == "reproduced"
  assert C.not_lower_verdict(lower, False) == "inconclusive"
  assert C.not_lower_verdict(C.Comparison(-0.5, float("nan"), 1, 1e-6, 1e-6), True) == "inconclusive"
  assert C.not_higher_verdict(C.Comparison(0.5, 0.1, 3, 1e-6, 1e-6), True) == "not reproduced"
  assert C.not_higher_verdict(C.Comparison(-0.5, 0.1, 3, 1e-6, 1e-6), True) == "reproduced"
  g = _grid([-0.5, -0.7, -0.6])  # final 5 <= 0.75 x initial 100: trained
  rows = C.regime_rows(g)
  assert len(rows) == len(C.REGIMES) * len(C.FORMS)
  assert {r["verdict"] for r in rows if r["form"] == "l2"} == {"not reproduced"}
  g["nets"]["none"]["final_loss"][0] = 90.0  # the plain net at 1e-7 does not train
  r = next(r for r in C.regime_rows(g) if r["regime"] == "same lr 1e-7" and r["form"] == "l2")
  assert not r["converged"] and r["verdict"] == "inconclusive"
  with pytest.raises(UserError, match="regime kind must be one of"):
    C.regime_rows(g, [{"name": "x", "kind": "nope"}])


def test_smoke_preset_end_to_end():
  c = ics_config.get_config("smoke").paper_dln
  assert ics_config.get_config("cpu").paper_dln.depth == 25 and c.depth == 6
  g = P.run_config(c)
  assert g["lrs"] == tuple(sorted({*c.lrs, *c.lr_grid})) and g["nets"]["batch"]["l2"].shape[-1] == c.depth
  assert P.instability_edge(g) is not None  # the smoke grid reaches past the plain net's edge
  curves = C.layer_curves(g, "batch", 1e-6, "normalized", (3, 5, 99))
  assert sorted(curves) == [3, 5, 6] and curves[6].shape == (len(c.seeds), c.steps // c.measure_every)
  np.testing.assert_array_equal(curves[3], g["nets"]["batch"]["normalized"][g["lrs"].index(1e-6), :, :, 2])
  s = C.summary(g, c.plot_layers)
  assert set(s["batch"][0]["seeds"][0]) >= {"final_loss", "l2", "cos", "normalized", "layer3", "layer5"}
  rows = C.regime_rows(g)
  assert len(rows) == 12 and all(r["verdict"] in ("reproduced", "not reproduced", "inconclusive") for r in rows)
