"""Models: shapes for every model/norm pair, placement, kernel norms, capture, masks, RNN statistics, registry."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from normlab.models import (MODEL_NAMES, RNN_NORMS, SequenceBatchNorm, flatten_intermediates, get_model,
                            model_options, norm_layer)
from normlab.registry import make_norm

F32 = jnp.float32
KEY = jax.random.key(0)

# Tiny versions of every named model, with an input they accept.
TINY = {
    "mlp": ({"widths": (8, 8)}, (4, 10, 1)),
    "dln": ({"width": 8, "depth": 3}, (4, 10, 1)),
    "resnet": ({"stage_sizes": (1, 1), "widths": (4, 8)}, (4, 8, 8, 3)),
    "resnet1d": ({"width": 0.125}, (4, 16, 1)),
    "resnet20": ({"width": 0.25}, (4, 8, 8, 3)),
    "resnet32": ({"width": 0.25}, (4, 8, 8, 3)),
    "resnet56": ({"width": 0.25}, (4, 8, 8, 3)),
    "resnet18": ({"width": 1 / 16}, (4, 16, 16, 3)),
    "resnet34": ({"width": 1 / 16}, (4, 16, 16, 3)),
    "resnet50": ({"width": 1 / 16}, (4, 16, 16, 3)),
    "vgg": ({"config": (4, "M", 8), "width": 1.0}, (4, 8, 8, 1)),
    "vgg11": ({"width": 1 / 16}, (4, 8, 8, 1)),
    "vgg16": ({"width": 1 / 16}, (4, 8, 8, 1)),
    "lstm": ({"hidden": 8}, (4, 6, 1)),
    "gru": ({"hidden": 8}, (4, 6, 1)),
}
NORMS = {
    "none": make_norm("none"),
    "batch": make_norm("batch"),
    "layer": make_norm("layer"),
    "group": make_norm("group", num_groups=None, group_size=2),
    "weight": make_norm("weight"),
    "frn": make_norm("frn"),
}
SPATIAL = {"resnet", "resnet1d", "resnet20", "resnet32", "resnet56", "resnet18", "resnet34", "resnet50",
           "vgg", "vgg11", "vgg16"}
RECURRENT_OK = {"none", "batch", "layer", "weight"}
ALL_NORMS_FOR = {"mlp", "resnet1d", "vgg11", "gru"}  # the rest: batch (+ group or layer for some)


def _cases():
  for name in MODEL_NAMES:
    some = {"lstm": ("batch", "layer"), "resnet20": ("batch", "group"), "resnet18": ("batch", "group")}
    some = some.get(name, ("batch",))
    for norm in NORMS if name in ALL_NORMS_FOR else some:
      if norm == "frn" and name not in SPATIAL:
        continue  # FRN normalizes over spatial axes: conv nets only
      if name in ("lstm", "gru") and norm not in RECURRENT_OK:
        continue
      yield name, norm


def _init(model, x, **kw):
  """Variables of the init's shapes filled from numpy: compiling flax's random initializers (truncated
  normals, one per kernel shape) costs seconds per model on CPU; `model.init` itself is tested by
  `_real_init` where its values matter."""
  shapes = jax.eval_shape(lambda: model.init(KEY, x, **kw))
  rng = np.random.default_rng(0)

  def fill(path, s):
    key = path[-1].key
    if key in ("scale", "var", "g", "v"):
      return jnp.ones(s.shape, s.dtype)
    if key in ("kernel", "u"):
      fan_in = int(np.prod(s.shape[:-1])) if key == "kernel" else 1
      return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(fan_in), s.dtype)
    return jnp.zeros(s.shape, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _real_init(model, x, **kw):
  return jax.jit(lambda x: model.init(KEY, x, **kw))(x)


def _apply(model, v, x, mask=None, train=True, mutable=False):
  """Jitted apply (eager flax runs op by op: far slower for the scanned RNNs)."""
  return jax.jit(lambda v, x, m: model.apply(v, x, train=train, mask=m, mutable=mutable))(v, x, mask)


def _build(name, norm="batch", **kw):
  opts, shape = TINY[name]
  model = get_model(name, num_classes=5, norm=NORMS[norm] if isinstance(norm, str) else norm, **{**opts, **kw})
  return model, jax.random.normal(jax.random.key(1), shape, F32)


@pytest.mark.parametrize("name,norm", list(_cases()))
def test_shapes(name, norm):
  model, x = _build(name, norm)
  variables = jax.eval_shape(lambda: model.init(KEY, x, train=False))
  for train in (True, False) if norm == "batch" else (True,):  # eval differs with running stats
    out = jax.eval_shape(lambda v: model.apply(v, x, train=train, mutable=["batch_stats"]), variables)
    assert out[0].shape == (x.shape[0], 5) and out[0].dtype == F32
  assert all(p.dtype == F32 for p in jax.tree.leaves(variables["params"]))


def test_every_model_runs_train_and_eval():
  for name in ("resnet1d", "lstm"):
    model, x = _build(name)
    v = _init(model, x, train=False)
    logits, upd = _apply(model, v, x, mutable=["batch_stats"])
    ev = _apply(model, {**v, **upd}, x, train=False)
    assert np.isfinite(logits).all() and np.isfinite(ev).all()
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), v["batch_stats"], upd["batch_stats"])
    assert any(jax.tree.leaves(changed)), name


@pytest.mark.parametrize("name", ["mlp", "resnet1d", "vgg11"])
def test_placement_changes_computation_and_sows(name):
  model_b, x = _build(name, "layer", placement="before_activation")
  model_a, _ = _build(name, "layer", placement="after_activation")
  v = _init(model_b, x)
  yb, sb = _apply(model_b, v, x, mutable=["intermediates"])
  ya, sa = _apply(model_a, v, x, mutable=["intermediates"])  # same parameter tree for layer norm
  assert not np.allclose(yb, ya)
  ib, ia = flatten_intermediates(sb), flatten_intermediates(sa)
  assert set(ib) == set(ia) and len(ib) >= 4
  first = "block0" if name != "resnet1d" else "stem"
  pre, normed = ia[f"{first}_preact"], ia[f"{first}_normed"]
  # after_activation: the norm sees relu(preact), layer norm over channels
  r = jax.nn.relu(pre)
  ref = (r - r.mean(-1, keepdims=True)) / jnp.sqrt(r.var(-1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(normed, ref, atol=1e-4)
  np.testing.assert_allclose(ib[f"{first}_preact"], pre, atol=1e-6)  # same first linear layer


def test_frn_replaces_activation_so_placements_coincide():
  mb, x = _build("resnet1d", "frn", placement="before_activation")
  ma, _ = _build("resnet1d", "frn", placement="after_activation")
  v = _init(mb, x)
  np.testing.assert_allclose(_apply(mb, v, x), _apply(ma, v, x), atol=1e-6)
  assert "tau" in v["params"]["stem"]


def test_resnet_intermediate_names_and_bias_rule():
  model, x = _build("resnet20", "batch")
  v = _init(model, x)
  _, st = _apply(model, v, x, mutable=["batch_stats", "intermediates"])
  keys = flatten_intermediates(st)
  assert {"stem_preact", "stage1_block0/norm1_preact", "stage2_block0/proj_normed",
          "stage3_block2/norm2_normed"} <= set(keys)
  # batch norm before the activation cancels a conv bias: none is created
  assert "bias" not in v["params"]["stem_conv"] and "bias" in v["params"]["head"]
  model_l, _ = _build("resnet20", "layer")
  assert "bias" in jax.eval_shape(lambda: model_l.init(KEY, x))["params"]["stem_conv"]


@pytest.mark.parametrize("name", ["mlp", "resnet1d", "vgg11", "dln", "gru"])
def test_weight_norm_creates_g_and_spectral_creates_u(name):
  mw, x = _build(name, "weight")
  vw = jax.eval_shape(lambda: mw.init(KEY, x))
  kernels = [p for p, _ in jax.tree_util.tree_flatten_with_path(vw["params"])[0] if p[-1].key == "kernel"]
  gs = [p for p, _ in jax.tree_util.tree_flatten_with_path(vw["params"])[0] if p[-1].key == "g"]
  assert len(kernels) == len(gs) > 1
  ms, _ = _build(name, make_norm("spectral"))
  vs = jax.eval_shape(lambda: ms.init(KEY, x))
  us = jax.tree_util.tree_flatten_with_path(vs["batch_stats"])[0]
  assert len(us) == len(kernels) and all(p[-1].key == "u" for p, _ in us)
  if name in ("mlp", "gru"):  # a train step moves u (power iteration)
    vs = _init(ms, x)
    _, upd = _apply(ms, vs, x, mutable=["batch_stats"])
    assert not np.allclose(jax.tree.leaves(upd)[0], jax.tree.leaves(vs["batch_stats"])[0])


def test_weight_norm_data_init_standardizes_first_layer():
  model, x = _build("mlp", "weight", data_init=True)
  x = jax.random.normal(jax.random.key(2), (64, 10, 1), F32) * 3 + 1
  v = _real_init(model, x)
  _, st = _apply(model, v, x, mutable=["intermediates"])
  pre = flatten_intermediates(st)["block0_preact"]
  np.testing.assert_allclose(pre.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(pre.std(0), 1, atol=1e-3)


def test_example_mask_keeps_padding_out_of_batch_stats():
  model, x = _build("resnet1d", "batch")
  v = _init(model, x, train=False)
  pad = jnp.concatenate([x, 100 + jax.random.normal(KEY, (3,) + x.shape[1:], F32)])
  mask = jnp.arange(pad.shape[0]) < x.shape[0]
  y1, u1 = _apply(model, v, x, mutable=["batch_stats"])
  y2, u2 = _apply(model, v, pad, mask=mask, mutable=["batch_stats"])
  np.testing.assert_allclose(y1, y2[: x.shape[0]], atol=1e-4)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5), u1, u2)


def test_bf16_compute_keeps_f32_params():
  model, x = _build("resnet1d", "batch", dtype=jnp.bfloat16)
  v = _init(model, x)
  assert all(p.dtype == F32 for p in jax.tree.leaves(v))
  y, st = _apply(model, v, x, mutable=["batch_stats", "intermediates"])
  assert flatten_intermediates(st)["stem_normed"].dtype == jnp.bfloat16
  assert y.dtype == F32


@pytest.mark.devices(4)
def test_syncbn_axis_name_matches_full_batch():
  devices = np.array(jax.devices()[:4])
  mesh = Mesh(devices, ("batch",))
  model, _ = _build("mlp", "batch")
  synced, _ = _build("mlp", "batch")
  synced = synced.clone(axis_name="batch")
  x = jax.random.normal(KEY, (8, 10, 1), F32)
  v = _init(model, x)
  ref, ref_upd = _apply(model, v, x, mutable=["batch_stats"])

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("batch")), out_specs=(P("batch"), P()))
  def fwd(v, xs):
    return synced.apply(v, xs, mutable=["batch_stats"])

  out, upd = jax.jit(fwd)(v, x)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5), upd, ref_upd)
  # norms without cross-device statistics get no axis_name
  assert norm_layer(make_norm("layer"), "batch", "n").name == "n"
  assert norm_layer(make_norm("batch"), "batch", "n").axis_name == "batch"


# ----- recurrent nets -----
def _rnn(cell, rnn_norm, hidden=8):
  norm = {"none": "none", "layer": "layer"}.get(rnn_norm, "batch")
  return get_model(cell, num_classes=5, norm=norm, hidden=hidden, rnn_norm=rnn_norm)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_layer_norm_padding_equals_shorter_sequence(cell):
  model = _rnn(cell, "layer")
  x = jax.random.normal(KEY, (3, 8, 2), F32)
  v = _init(model, x)
  mask = np.arange(8)[None] < np.array([8, 5, 5])[:, None]
  padded = jnp.where(mask[..., None], x, 50.0)
  out = _apply(model, v, padded, mask=mask)
  np.testing.assert_allclose(out[1:], _apply(model, v, x[1:, :5]), atol=1e-5)  # unpadded, shorter
  assert not np.allclose(out[1:], _apply(model, v, padded[1:]), atol=1e-3)  # the mask matters


@pytest.mark.parametrize("rnn_norm", ["batch", "batch_shared"])
def test_rnn_batch_norm_padded_steps_leave_stats_alone(rnn_norm):
  model = _rnn("lstm", rnn_norm)
  x = jax.random.normal(KEY, (4, 8, 2), F32)
  v = _init(model, x)
  mask = np.broadcast_to(np.arange(8) < 5, (4, 8))
  padded = jnp.where(mask[..., None], x, 50.0)
  y_pad, u_pad = _apply(model, v, padded, mask=mask, mutable=["batch_stats"])
  y_short, u_short = _apply(model, v, x[:, :5], mutable=["batch_stats"])
  np.testing.assert_allclose(y_pad, y_short, atol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5), u_pad, u_short)
  if rnn_norm == "batch":  # rows of the padded steps 5..7 keep their initial values
    for leaf_new, leaf_old in zip(jax.tree.leaves(u_pad), jax.tree.leaves(v["batch_stats"])):
      np.testing.assert_array_equal(leaf_new[5:], leaf_old[5:])


def test_rnn_per_step_stats_use_only_valid_examples():
  model = _rnn("gru", "batch")
  x = jax.random.normal(KEY, (4, 6, 2), F32)
  v = _init(model, x)
  stats = v["batch_stats"]["cell"]
  assert stats["norm_rz"]["mean"].shape == (6, 16) and stats["norm_n"]["var"].shape == (6, 8)
  mask = np.ones((4, 6), bool)
  mask[0, 3:] = False  # example 0 is 3 steps long
  _, st = _apply(model, v, x, mask=mask, mutable=["batch_stats", "intermediates"])
  pre = flatten_intermediates(st)["cell/rz_preact"]
  assert pre.shape == (4, 6, 16)
  for t in (1, 4):
    valid = mask[:, t]
    expected = 0.1 * pre[valid, t].mean(0)  # momentum 0.9 from a zero running mean
    np.testing.assert_allclose(st["batch_stats"]["cell"]["norm_rz"]["mean"][t], expected, atol=1e-5)
  # eval mode works, also past the trained length (steps >= 6 reuse the last row)
  y = _apply(model, {**v, "batch_stats": st["batch_stats"]}, jnp.concatenate([x, x], 1), train=False)
  assert y.shape == (4, 5) and np.isfinite(y).all()


def test_sequence_batch_norm_eval_reuses_last_row_beyond_trained_length():
  bn = SequenceBatchNorm(per_step=True, max_steps=3, use_bias=False)
  x = jax.random.normal(KEY, (2, 5, 4), F32)
  v = _init(bn, x[:, :3])
  assert v["batch_stats"]["mean"].shape == (3, 4)
  mean = jnp.arange(3.0)[:, None] * jnp.ones((3, 4))
  v = {**v, "batch_stats": {"mean": mean, "var": jnp.ones((3, 4))}}
  y = jax.jit(lambda v, x: bn.apply(v, x, train=False))(v, x)
  rows = jnp.array([0, 1, 2, 2, 2])
  np.testing.assert_allclose(y, (x - mean[rows]) / jnp.sqrt(1 + 1e-5), atol=1e-5)


@pytest.mark.devices(4)
@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_rnn_syncbn_with_padding_matches_full_batch():
  mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
  model = _rnn("lstm", "batch")
  synced = model.clone(axis_name="batch")
  x = jax.random.normal(KEY, (8, 5, 2), F32)
  mask = np.arange(5)[None] < np.array([5, 3, 5, 2, 5, 4, 1, 5])[:, None]
  v = _init(model, x)
  ref, ref_upd = _apply(model, v, x, mask=mask, mutable=["batch_stats"])
  fwd = jax.shard_map(lambda v, x, m: synced.apply(v, x, mask=m, mutable=["batch_stats"]), mesh=mesh,
                      in_specs=(P(), P("batch"), P("batch")), out_specs=(P("batch"), P()))
  out, upd = jax.jit(fwd)(v, x, mask)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5), upd, ref_upd)


def test_rnn_shared_stats_have_one_row_and_eval_runs():
  model = _rnn("lstm", "batch_shared")
  x = jax.random.normal(KEY, (4, 5, 1), F32)
  v = _init(model, x)
  assert v["batch_stats"]["cell"]["norm_gates"]["mean"].shape == (1, 32)
  _, upd = _apply(model, v, x, mutable=["batch_stats"])
  assert _apply(model, {**v, **upd}, x[:, :3], train=False).shape == (4, 5)


def test_rnn_spectral_power_iteration_once_per_call():
  model = get_model("gru", num_classes=5, norm="spectral", hidden=8)
  x = jax.random.normal(KEY, (4, 6, 1), F32)
  v = _init(model, x)
  y_mut, _ = _apply(model, v, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y_mut, _apply(model, v, x), atol=1e-6)  # same with stats read-only


# ----- registry and errors -----
def test_model_names_and_options():
  for name in ("mlp", "resnet1d", "resnet20", "resnet32", "resnet56", "resnet18", "resnet34", "resnet50",
               "vgg11", "vgg16", "lstm", "gru", "dln"):
    assert name in MODEL_NAMES
  assert model_options("mlp") == ("widths", "data_init", "init_scale", "dtype")
  assert "rnn_norm" in model_options("gru") and "cell" not in model_options("gru")
  assert "stage_sizes" not in model_options("resnet20") and "stage_sizes" in model_options("resnet")
  assert "kernel_size" in model_options("resnet1d")


def test_errors_name_the_bad_value_and_list_choices():
  with pytest.raises(ValueError, match=r"unknown model 'resnet99' \(did you mean 'resnet'\?\); valid choices: mlp, .*gru"):
    get_model("resnet99", num_classes=10, norm="batch")
  with pytest.raises(ValueError, match=r"model 'mlp': unknown option 'depth'; valid choices: widths"):
    get_model("mlp", num_classes=10, norm="batch", depth=3)
  with pytest.raises(ValueError, match=r"unknown placement 'middle'; valid placements"):
    get_model("mlp", num_classes=10, norm="batch", placement="middle")
  with pytest.raises(ValueError, match="unknown norm"):
    get_model("mlp", num_classes=10, norm="batchy")
  for name in ("dln", "gru"):  # no activation to place the norm around
    with pytest.raises(ValueError, match=r"valid placements: before_activation$"):
      get_model(name, num_classes=10, norm="batch", placement="after_activation")
  x = jnp.ones((2, 4, 1), F32)
  with pytest.raises(ValueError, match=r"unknown rnn_norm 'batchy'; valid choices: " + ", ".join(RNN_NORMS)):
    get_model("lstm", num_classes=3, norm="none", rnn_norm="batchy").init(KEY, x)
  with pytest.raises(ValueError, match=r"norm 'group' has no recurrent version; valid norms"):
    get_model("lstm", num_classes=3, norm=make_norm("group", num_groups=2)).init(KEY, x)
  with pytest.raises(ValueError, match="conv_dims=2"):
    get_model("resnet1d", num_classes=3, norm="none", conv_dims=2).init(KEY, x)
