"""normlab.analysis: the measurement machinery (not the paper's claims).

capture: values and gradients match hand-split models; ics: exactly 0 (cos 1) when earlier layers do
not move, a closed form for a 2-layer linear net, layer order = call order; landscape: a quadratic's
beta is its eigenvalue along an eigenvector and lies in [lambda_min, lambda_max], a linear loss
varies exactly linearly; theory: BN gradient (ours = autodiff, the seed's '+' is not), Theorem 4.1
on random instances, Theorem 4.2's first form is an identity, the initialization algebra.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from normlab import layers
from normlab.analysis import capture as cap_lib
from normlab.analysis import ics as ics_lib
from normlab.analysis import landscape as ls_lib
from normlab.analysis import theory as T

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


class TinyNet(nn.Module):
  """Dense -> norm -> relu, twice, then a head; sows like normlab.models do."""
  norm: str = "batch"
  widths: tuple = (6, 5)

  @nn.compact
  def __call__(self, x, train: bool = True):
    for i, w in enumerate(self.widths):
      x = layers.Dense(features=w, name=f"dense{i}")(x)
      self.sow("intermediates", f"block{i}_preact", x)
      x = (layers.BatchNorm(momentum=0.9, use_running_average=not train, name=f"norm{i}") if self.norm == "batch"
           else layers.Identity(name=f"norm{i}"))(x)
      x = nn.relu(x)
    return layers.Dense(features=3, name="head")(x)


def _data(n=12, d=4, seed=0):
  r = np.random.default_rng(seed)
  return jnp.asarray(r.normal(size=(n, d)) * 2 + 0.5), jnp.asarray(r.integers(0, 3, size=n))


def _init(model, x):
  return jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x)  # eager init is slow


def ce(logits, y):
  return cap_lib.cross_entropy(logits, y)


# ----- capture ------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_capture_values_and_gradients_match_hand_split_model(norm):
  model = TinyNet(norm=norm)
  x, y = _data()
  v = _init(model, x)
  c = cap_lib.capture(model, v, x, y, loss_fn=ce)
  out, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "intermediates"]))(v, x)
  np.testing.assert_allclose(c.output, out, rtol=1e-12, atol=1e-14)  # two compilations: rounding only
  assert float(c.loss) == pytest.approx(float(ce(out, y)), rel=1e-14)
  assert c.norm_layers == ("norm0", "norm1")
  assert c.kernel_layers == ("dense0", "dense1", "head")
  assert [cap_lib.path_key(p) for p in c.order] == (
      ["dense0", "norm0", "dense1", "norm1", "head"] if norm == "batch" else ["dense0", "dense1", "head"])
  # sown values come back, and are the norm inputs
  assert np.array_equal(c.intermediates["block0_preact"], c.pre_norm["norm0"])
  # kernel grads are the params grads
  g = jax.jit(jax.grad(lambda p: ce(model.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])[0], y)))(
      v["params"])
  for k in ("dense0", "dense1", "head"):
    np.testing.assert_allclose(c.kernel_grads[k], g[k]["kernel"], rtol=1e-12, atol=1e-14)
  # gradient w.r.t. the last norm's output: differentiate the tail of the network by hand
  p = v["params"]
  tail = lambda a: ce(jax.nn.relu(a) @ p["head"]["kernel"] + p["head"]["bias"], y)
  np.testing.assert_allclose(c.grad_post_norm["norm1"], jax.grad(tail)(c.post_norm["norm1"]), rtol=1e-12,
                             atol=1e-14)
  # chain rule through the norm: for BN, the closed-form input gradient
  if norm == "batch":
    gamma = p["norm1"]["scale"]
    expect = T.bn_input_grad(c.grad_post_norm["norm1"], c.pre_norm["norm1"], gamma, eps=1e-5)
  else:
    expect = c.grad_post_norm["norm1"]
  np.testing.assert_allclose(c.grad_pre_norm["norm1"], expect, rtol=1e-10, atol=1e-13)
  # the Dense output is the norm input: same gradient; dL/dW = input^T dL/d(out)
  np.testing.assert_allclose(c.grad_preact["dense1"], c.grad_pre_norm["norm1"], rtol=1e-12, atol=1e-14)
  h0 = jax.nn.relu(c.post_norm["norm0"])
  # (kernels are float32 params, so their gradients are float32-rounded)
  np.testing.assert_allclose(c.kernel_grads["dense1"], h0.T @ c.grad_preact["dense1"], rtol=1e-6, atol=1e-9)
  if norm == "batch":
    assert "norm0" in c.state["batch_stats"]


def test_capture_is_jittable_and_counts_shared_modules():
  class Shared(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
      n = layers.LayerNorm(name="ln")
      return n(n(x)).sum(-1, keepdims=True)

  x, y = _data()
  m = Shared()
  v = m.init(jax.random.PRNGKey(0), x)
  fn = cap_lib.make_capture(m, lambda o, t: jnp.mean(o ** 2), train=None)
  c1, c2 = fn(v, x, y), fn(v, x, y)
  assert set(c1.pre_norm) == {"ln", "ln#1"}
  assert np.array_equal(c1.pre_norm["ln#1"], c1.post_norm["ln"])
  assert np.array_equal(c1.grad_pre_norm["ln#1"], c2.grad_post_norm["ln"])


def test_module_call_order_is_call_order_not_key_order():
  class Deep(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
      for i in range(12):
        x = layers.Dense(features=3, name=f"Dense_{i}")(x)
      return x

  x, _ = _data()
  m = Deep()
  v = m.init(jax.random.PRNGKey(0), x)
  order = cap_lib.module_call_order(m, v, x)
  assert [p[0] for p in order] == [f"Dense_{i}" for i in range(12)]
  assert sorted(v["params"])[2] == "Dense_10"  # what sorted keys would have given


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_capture_with_project_models():
  models = pytest.importorskip("normlab.models")
  x, y = _data(n=8, d=10)
  for name, opts in [("mlp", {"widths": (8, 8)}), ("dln", {"depth": 3, "width": 5})]:
    m = models.get_model(name, num_classes=3, norm="batch", **opts)
    v = _init(m, x)
    c = cap_lib.capture(m, v, x, y, loss_fn=ce)
    assert len(c.pre_norm) == 2 and len(c.kernels) == 3
    for k, a in c.pre_norm.items():
      assert c.grad_pre_norm[k].shape == a.shape


# ----- ICS ----------------------------------------------------------------------------------------

def _loss(model, v, x, y):
  def f(params):
    out, _ = model.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])
    return ce(out, y)
  return f


@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_ics_is_exactly_zero_when_earlier_layers_do_not_move(norm):
  model = TinyNet(norm=norm)
  x, y = _data()
  v = _init(model, x)
  order = cap_lib.module_call_order(model, v, x, train=True)
  f = _loss(model, v, x, y)
  # lr = 0 everywhere
  tx = optax.sgd(0.0)
  res, new_p, _, _ = jax.jit(lambda p, s: ics_lib.ics_step(f, p, s, tx, order))(v["params"], tx.init(v["params"]))
  assert res.names == ("dense0", "dense1", "head")
  assert np.all(np.asarray(res.l2) == 0.0) and np.all(np.asarray(res.cos) == 1.0)
  # only the head moves (earlier layers frozen): still exactly 0 for every layer
  labels = {k: ("train" if k == "head" else "frozen") for k in v["params"]}
  tx = optax.multi_transform({"train": optax.sgd(0.5), "frozen": optax.set_to_zero()}, labels)
  res, new_p, _, _ = jax.jit(lambda p, s: ics_lib.ics_step(f, p, s, tx, order))(v["params"], tx.init(v["params"]))
  assert not np.array_equal(new_p["head"]["kernel"], v["params"]["head"]["kernel"])
  assert np.all(np.asarray(res.l2) == 0.0) and np.all(np.asarray(res.cos) == 1.0)
  # a real step: the first layer has no earlier layers (0), later ones shift
  tx2 = optax.sgd(0.5)
  res, *_ = jax.jit(lambda p, s: ics_lib.ics_step(f, p, s, tx2, order))(v["params"], tx2.init(v["params"]))
  assert float(res.l2[0]) == 0.0 and float(res.l2[1]) > 0 and float(res.l2[2]) > 0
  assert np.all(np.asarray(res.cos) <= 1.0 + 1e-12)


def test_ics_two_layer_linear_network_closed_form():
  r = np.random.default_rng(3)
  n, d, h, o = 7, 4, 3, 2
  x, t = r.normal(size=(n, d)), r.normal(size=(n, o))
  w1, w2 = r.normal(size=(d, h)), r.normal(size=(h, o))
  loss = lambda ws: 0.5 * jnp.sum((x @ ws[0] @ ws[1] - t) ** 2) / n
  lr = 0.1
  ws = [jnp.asarray(w1), jnp.asarray(w2)]
  tx = optax.sgd(lr)
  res, new_ws, _, _ = ics_lib.ics_step(loss, ws, tx.init(ws), tx, wrt="all")
  # by hand: G2 = (x W1)^T r / n with r = x W1 W2 - t; G2' the same with W1' = W1 - lr G1
  res_ = x @ w1 @ w2 - t
  g1 = x.T @ res_ @ w2.T / n
  w1p = w1 - lr * g1
  g2 = (x @ w1).T @ res_ / n
  g2p = (x @ w1p).T @ (x @ w1p @ w2 - t) / n
  assert res.names == ("0", "1")
  assert float(res.l2[0]) == 0.0
  assert float(res.l2[1]) == pytest.approx(np.linalg.norm(g2 - g2p), rel=1e-10)
  cos = np.sum(g2 * g2p) / np.linalg.norm(g2) / np.linalg.norm(g2p)
  assert float(res.cos[1]) == pytest.approx(cos, rel=1e-10)


def test_ics_normalized_form_three_layer_linear_network_float64(float64):
  """||G_i - G'_i|| / ||dW_(<i)|| against numpy's hand-derived gradients, float64; layer 1 is 0 (no earlier step)."""
  r = np.random.default_rng(5)
  n, d, h1, h2, o = 9, 4, 3, 5, 2
  x, t = r.normal(size=(n, d)), r.normal(size=(n, o))
  w = [r.normal(size=s) for s in ((d, h1), (h1, h2), (h2, o))]
  lr = 0.03
  loss = lambda ws: 0.5 * jnp.sum((x @ ws[0] @ ws[1] @ ws[2] - t) ** 2)
  tx = optax.sgd(lr)
  ws = [jnp.asarray(a) for a in w]
  res, _, _, _ = ics_lib.ics_step(loss, ws, tx.init(ws), tx, wrt="all")

  def grads(w1, w2, w3):  # of 0.5 ||x W1 W2 W3 - t||^2
    e = x @ w1 @ w2 @ w3 - t
    return [x.T @ e @ (w2 @ w3).T, (x @ w1).T @ e @ w3.T, (x @ w1 @ w2).T @ e]
  g = grads(*w)
  wp = [a - lr * b for a, b in zip(w, g)]
  g2 = grads(wp[0], w[1], w[2])[1]
  g3 = grads(wp[0], wp[1], w[2])[2]
  du2 = np.linalg.norm(wp[0] - w[0])
  du3 = np.sqrt(np.sum((wp[0] - w[0]) ** 2) + np.sum((wp[1] - w[1]) ** 2))
  assert res.l2.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(res.update_norm), [0.0, du2, du3], rtol=1e-12)
  np.testing.assert_allclose(np.asarray(res.l2)[1:], [np.linalg.norm(g[1] - g2), np.linalg.norm(g[2] - g3)], rtol=1e-10)
  np.testing.assert_allclose(np.asarray(res.normalized),
                             [0.0, np.linalg.norm(g[1] - g2) / du2, np.linalg.norm(g[2] - g3) / du3], rtol=1e-10)


def test_ics_update_norm_counts_every_leaf_of_earlier_entries():
  """dW_(<i) takes all leaves of the earlier entries (a norm's scale too), in `order`, not only kernels."""
  p = {"a": {"kernel": jnp.ones((2, 2)), "scale": jnp.ones(2)}, "b": {"kernel": jnp.ones((2, 2))}}
  f = lambda p: jnp.sum((p["a"]["kernel"] * p["a"]["scale"]) @ p["b"]["kernel"] ** 2)
  new = {"a": {"kernel": p["a"]["kernel"] + 1.0, "scale": p["a"]["scale"] + 2.0}, "b": {"kernel": p["b"]["kernel"] + 3}}
  res = ics_lib.internal_covariate_shift(f, p, new, [("a",), ("b",)])
  np.testing.assert_allclose(np.asarray(res.update_norm), [0.0, np.sqrt(4 * 1.0 + 2 * 4.0)], rtol=1e-6)
  assert float(res.normalized[0]) == 0.0
  assert float(res.normalized[1]) == pytest.approx(float(res.l2[1]) / np.sqrt(12.0), rel=1e-6)
  res = ics_lib.internal_covariate_shift(f, p, new, [("b",), ("a",)])
  np.testing.assert_allclose(np.asarray(res.update_norm), [0.0, 6.0], rtol=1e-6)


def test_ics_refuses_unowned_params_and_dict_without_order():
  p = {"a": {"kernel": jnp.ones((2, 2))}, "b": {"kernel": jnp.ones((2, 2))}}
  f = lambda p: jnp.sum(p["a"]["kernel"] @ p["b"]["kernel"])
  with pytest.raises(ValueError, match="belong to no entry"):
    ics_lib.internal_covariate_shift(f, p, p, [("a",)])
  with pytest.raises(ValueError, match="pass `order`"):
    ics_lib.internal_covariate_shift(f, p, p)
  res = ics_lib.internal_covariate_shift(f, p, jax.tree_util.tree_map(lambda a: a + 1, p), [("b",), ("a",)])
  assert res.names == ("b", "a") and float(res.l2[0]) == 0.0 and float(res.l2[1]) > 0


# ----- landscape ----------------------------------------------------------------------------------

def _spd(seed=0, n=6):
  r = np.random.default_rng(seed)
  q, _ = np.linalg.qr(r.normal(size=(n, n)))
  lam = np.sort(r.uniform(0.5, 5.0, size=n))
  return q @ np.diag(lam) @ q.T, lam, q


def test_beta_of_quadratic_is_top_eigenvalue_along_top_eigenvector():
  a, lam, q = _spd()
  f = lambda x: 0.5 * x @ a @ x
  res = ls_lib.along_gradient(f, jnp.asarray(3.0 * q[:, -1]), [0.0, 0.01, 0.05, 0.1])
  assert float(res.beta) == pytest.approx(lam[-1], rel=1e-10)
  res = ls_lib.along_gradient(f, jnp.asarray(q[:, 0]), [0.01, 0.1])
  assert float(res.beta) == pytest.approx(lam[0], rel=1e-10)
  for seed in range(5):
    x = jnp.asarray(np.random.default_rng(seed).normal(size=6))
    res = ls_lib.along_gradient(f, x, [0.01, 0.02, 0.3])
    assert lam[0] - 1e-10 <= float(res.beta) <= lam[-1] + 1e-10
    np.testing.assert_allclose(res.betas, res.betas[0], rtol=1e-10)  # quadratic: the same at every eta


def test_loss_variation_of_linear_function_is_exactly_linear():
  c = jnp.asarray([1.5, -2.0, 0.25, 3.0])
  f = lambda p: jnp.dot(c, p["w"]) + 0.7
  etas = np.array([0.0, 0.1, 0.2, 0.4, 0.8])
  res = ls_lib.along_gradient(f, {"w": jnp.ones(4)}, etas)
  expect = float(f({"w": jnp.ones(4)})) - etas * float(c @ c)
  np.testing.assert_allclose(res.losses, expect, rtol=1e-14, atol=1e-13)
  assert float(res.loss_variation) == pytest.approx(0.8 * float(c @ c), rel=1e-13)
  assert np.all(np.asarray(res.grad_diffs) == 0.0) and float(res.beta) == 0.0


def test_unit_direction_moves_the_given_distances():
  """unit_direction: eta is the distance; the losses are those at theta - eta g / ||g|| (a quadratic's
  closed form), and beta is the gradient change per unit distance, as without it."""
  a, lam, q = _spd(1)
  f = lambda x: 0.5 * x @ a @ x
  x = jnp.asarray(np.random.default_rng(2).normal(size=6))
  dists = np.array([0.0, 0.05, 0.3, 1.0])
  res = ls_lib.along_gradient(f, x, dists, unit_direction=True)
  g = a @ np.asarray(x)
  u = g / np.linalg.norm(g)
  np.testing.assert_allclose(res.losses, [0.5 * (x - d * u) @ a @ (x - d * u) for d in dists], rtol=1e-12)
  np.testing.assert_allclose(res.grad_diffs[1:], dists[1:] * np.linalg.norm(a @ u), rtol=1e-10)
  plain = ls_lib.along_gradient(f, x, dists[1:] / np.linalg.norm(g))
  assert float(res.beta) == pytest.approx(float(plain.beta), rel=1e-10)


def test_landscape_jits_on_a_flax_model():
  model = TinyNet()
  x, y = _data()
  v = _init(model, x)
  res = jax.jit(lambda p: ls_lib.along_gradient(_loss(model, v, x, y), p, jnp.array([0.0, 0.1, 0.2])))(v["params"])
  assert float(res.losses[0]) == pytest.approx(float(res.loss0)) and float(res.grad_diffs[0]) == 0.0
  assert float(res.beta) > 0


# ----- theory -------------------------------------------------------------------------------------

def test_bn_gradient_ours_matches_autodiff_and_seed_does_not():
  r = T.bn_gradient_check(0, shape=(16, 3), trials=5)
  print("bn gradient max |diff| vs autodiff:", r)
  assert r["ours"] < 1e-10 * r["scale"] and r["normlab"] < 1e-10 * r["scale"]
  assert r["seed"] > 1e-2 * r["scale"]


@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_theorem41_holds_on_random_instances(eps):
  f = jax.jit(T.theorem41, static_argnames="eps")
  for m in (2, 5, 16):
    for i in range(7):
      rng = np.random.default_rng(100 * m + i)
      y = rng.normal(size=m) * np.exp(rng.normal()) + 1.0
      g = rng.normal(size=m)
      r = f(y, g, 0.3 + i, eps=eps)
      assert float(r["rel_slack"]) >= -1e-12
      if eps == 0.0:
        assert abs(float(r["rel_slack"])) < 1e-10  # an identity without eps


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_theorem42_first_form_is_an_identity_and_b_iff_relnorm():
  for kind in T.KINDS:
    insts = T.random_instances(np.random.default_rng(len(kind)), 6, 6, kind, (0.2, 5.0))
    r = jax.device_get(T.theorem42_batch(insts, kind=kind))
    assert np.all(np.abs(r["lhs"] - r["rhs_a"]) <= 1e-9 * r["scale"])
    holds_b = r["rhs_b"] >= r["lhs"] - 1e-9 * r["scale"]
    assert np.array_equal(holds_b, r["relnorm"])


def test_theorem42_survey_runs_small():
  rows = T.theorem42_survey(0, kinds=("isotropic",), m=4, n=8)
  assert len(rows) == 2 and rows[0]["a_holds"] == 1.0 and rows[0]["b_holds_given_relnorm"] == 1.0
  assert rows[0]["b_holds"] == 1.0  # H = cI, gamma <= sigma: the assumptions of (4.2b) hold


def test_initialization_identity_and_scaled_distance():
  r = np.random.default_rng(0)
  for _ in range(10):
    w0, ws = r.normal(size=(5, 4)), r.normal(size=(5, 4))
    d = T.init_distance_identity(jnp.asarray(w0), jnp.asarray(ws))
    assert float(d["lhs"]) <= 1e-12
    assert max(float(d["err_seed"]), float(d["err_closed"]), float(d["err_paper"])) < 1e-13
    ks = np.linspace(1e-6, 5, 20001)
    brute = min(np.linalg.norm(w0 - k * ws) for k in ks)
    assert float(T.scaled_distance(jnp.asarray(w0), jnp.asarray(ws))) == pytest.approx(brute, rel=1e-6, abs=1e-6)
    per_unit = float(T.scaled_distance(jnp.asarray(w0), jnp.asarray(ws), per_unit=True))
    assert per_unit <= float(T.scaled_distance(jnp.asarray(w0), jnp.asarray(ws))) + 1e-12
  # a negative inner product: the best positive scale is k -> 0, distance ||w0||
  w0 = jnp.asarray([1.0, 0.0])
  assert float(T.scaled_distance(w0, -w0)) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- training (the studies' loop)

def _train_config(**overrides):
  from configs.experiments._common import train_defaults
  return train_defaults(**{"model_options": {"widths": (16,)}, "batch_size": 16, "num_steps": 3, **overrides})


@pytest.mark.slow  # minutes-scale or multi-process: `pytest -m slow` runs it
def test_training_runs_noisy_bn_with_the_train_steps_noise():
  """train runs noisy BN (it needs a 'noise' RNG at every train-mode call, the layer-order probe
  included), and `batch_loss(run, step)` uses the noise of normlab.train's step at that step: it
  reproduces the step's loss exactly, and another step's noise gives another loss."""
  from normlab.analysis import training

  def measure(run, step, state, batch, new_state):
    x, y = jnp.asarray(batch["x"]), jnp.asarray(batch["y"])
    return {"order": len(training.call_order(run)),
            "same": float(training.batch_loss(run, step)(state.params, state.batch_stats, x, y)),
            "other": float(training.batch_loss(run, step + 1)(state.params, state.batch_stats, x, y))}
  hist, _ = training.train(_train_config(norm="noisy_batch"), measure, measure_every=1, log=lambda *_: None)
  assert len(hist["measured"]) == 3 and hist["diverged_at"] is None
  for r in hist["measured"]:
    assert r["order"] == 3  # dense0, its norm, the head
    assert r["same"] == pytest.approx(r["train_loss"], rel=1e-6)
    assert abs(r["other"] - r["train_loss"]) > 1e-4


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_training_honours_norm_placement():
  from normlab.analysis import training
  _, run = training.train(_train_config(norm="batch", num_steps=1), log=lambda *_: None)
  assert run.model.placement == "before_activation"
  _, run = training.train(_train_config(norm="batch", norm_placement="after_activation", num_steps=1),
                          log=lambda *_: None)
  assert run.model.placement == "after_activation"


@pytest.mark.slow  # trains a tiny run (~10 s of CPU)
def test_clean_batch_stats_are_the_noise_free_batch_moments():
  """normlab.analysis.probes.clean_batch_stats on a noisy-BN run: a one-hidden-layer MLP's recollected
  statistics are the mean over the training batches of the batch mean / variance of the norm's input
  (Dense output, no noise involved), and the 'preact' probe reads that input."""
  from normlab.analysis.probes import clean_batch_stats, norm_outputs
  from normlab.analysis import training
  hist, run = training.train(_train_config(norm="noisy_batch"), log=lambda *_: None)
  stats = clean_batch_stats(run, run.state.params, 3)
  fn = norm_outputs(run.model, "preact")
  variables = {"params": run.state.params, "batch_stats": run.state.batch_stats}
  pre = [np.asarray(fn(variables, jnp.asarray(run.batch(k)["x"]), jax.random.key(0))["block0"], np.float64)
         for k in range(3)]
  got = stats["block0"]
  np.testing.assert_allclose(got["mean"], np.mean([p.mean(0) for p in pre], 0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got["var"], np.mean([p.var(0) for p in pre], 0), rtol=1e-3, atol=1e-5)
  assert np.max(np.abs(np.asarray(got["mean"]) - np.asarray(run.state.batch_stats["block0"]["mean"]))) > 0
