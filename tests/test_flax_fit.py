"""normlab.layers / normlab.nnx as drop-ins for flax.linen / flax.nnx: the same fields and defaults,
the same variables, the same numbers, the same errors; and the swap in flax's own ImageNet ResNet."""
import dataclasses
import functools
import inspect
import os
import subprocess
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import normlab.nnx as nlx
from normlab import layers
from normlab.models import get_model
from normlab.registry import as_factory, make_norm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DROP_INS = ("BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm")
X = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3, 5, 8)) * 2.0 + 0.5, jnp.float32)
KEY = jax.random.key(0)


# normlab's additions to flax's fields: keyword fields after all of flax's, with a default that keeps
# flax's behaviour for every input flax handles (batch statistics over 1 value raise unless allowed).
EXTRA_FIELDS = ("allow_single_value",)


def _fields(cls, drop_extras=False):
  out = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in ("parent", "name")}
  if drop_extras:
    assert list(out)[len(out) - len(set(out) & set(EXTRA_FIELDS)):] == [n for n in out if n in EXTRA_FIELDS]
    out = {k: v for k, v in out.items() if k not in EXTRA_FIELDS}
  return out


@pytest.mark.parametrize("name", DROP_INS)
def test_linen_fields_defaults_and_call_signature_are_flax(name):
  ours, theirs = getattr(layers, name), getattr(nn, name)
  assert list(_fields(ours, drop_extras=True)) == list(_fields(theirs))
  assert _fields(ours, drop_extras=True) == _fields(theirs)
  sig = lambda c: [(p.name, p.kind, p.default) for p in inspect.signature(c.__call__).parameters.values()]  # noqa: E731
  assert sig(ours) == sig(theirs)


@pytest.mark.parametrize("name", DROP_INS)
def test_nnx_signature_is_flax(name):
  ours, theirs = inspect.signature(getattr(nlx, name)), inspect.signature(getattr(nnx, name).__init__)
  want = {p.name: (p.kind, p.default) for p in theirs.parameters.values() if p.name != "self"}
  have = {p.name: (p.kind, p.default) for p in ours.parameters.values() if p.name not in EXTRA_FIELDS}
  assert set(have) == set(want)
  for key, (kind, default) in want.items():
    if key.endswith("_init"):  # flax.nnx uses zeros_init()/ones_init() instances: same values
      continue
    assert have[key][0] == kind and (have[key][1] == default or (default is inspect.Parameter.empty)), key


CASES = [
    ("BatchNorm", {}, {"use_running_average": False}),
    ("BatchNorm", {"axis": (1, 3), "momentum": 0.8, "use_scale": False}, {"use_running_average": False}),
    ("BatchNorm", {"dtype": jnp.bfloat16}, {"use_running_average": False}),
    ("LayerNorm", {}, {}),
    ("LayerNorm", {"reduction_axes": (1, 2, 3), "feature_axes": (-1,)}, {}),
    ("RMSNorm", {"reduction_axes": (2, 3)}, {}),
    ("GroupNorm", {"num_groups": 4}, {}),
    ("GroupNorm", {"num_groups": None, "group_size": 2, "use_bias": False}, {}),
    ("InstanceNorm", {}, {}),
    ("InstanceNorm", {"feature_axes": (2, 3)}, {}),
]


@pytest.mark.parametrize("name,fields,call", CASES)
def test_linen_same_variables_and_numbers_as_flax_with_a_mask(name, fields, call):
  ours, theirs = getattr(layers, name)(**fields), getattr(nn, name)(**fields)
  mask = jnp.asarray(np.random.default_rng(1).random(X.shape) > 0.3)
  v = theirs.init(KEY, X, **call)
  assert jax.tree.map(jnp.shape, ours.init(KEY, X, **call)) == jax.tree.map(jnp.shape, v)
  v = jax.tree.map(lambda t: t + 0.25, v)  # a flax checkpoint with non-trivial values
  mutable = ["batch_stats"] if "batch_stats" in v else False
  for m in (None, mask):
    y1, y2 = (mod.apply(v, X, mask=m, mutable=mutable, **call) for mod in (theirs, ours))
    y1, y2 = ((y if mutable else (y, {})) for y in (y1, y2))
    assert y1[0].dtype == y2[0].dtype
    tol = 2e-2 if fields.get("dtype") == jnp.bfloat16 else 2e-5
    want, got = np.asarray(y1[0], np.float32), np.asarray(y2[0], np.float32)
    ok = np.isfinite(want)  # flax gives NaN where the mask leaves a reduction empty; normlab stays finite
    assert np.all(np.isfinite(got)) and ok.mean() > 0.8
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-4, atol=tol)  # rtol: near-empty reductions
    for a, b in zip(jax.tree.leaves(y1[1]), jax.tree.leaves(y2[1])):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5)


def test_use_running_average_merge_and_immutable_stats_raise_as_in_flax():
  bn = layers.BatchNorm()
  with pytest.raises(ValueError, match="use_running_average"):
    bn.init(KEY, X)
  with pytest.raises(ValueError, match="use_running_average"):
    layers.BatchNorm(use_running_average=True).init(KEY, X, use_running_average=False)
  v = bn.init(KEY, X, use_running_average=True)
  with pytest.raises(flax.errors.ModifyScopeVariableError):
    bn.apply(v, X, use_running_average=False)
  with pytest.raises(ValueError, match="use_running_average"):
    nlx.BatchNorm(8, use_running_average=None, rngs=nnx.Rngs(0))(X)


def test_refused_flax_fields_give_one_line_errors():
  with pytest.raises(ValueError, match=r"axis_index_groups=\(\(0, 1\),\).*shard_map.*2-D mesh \('group', 'batch'\)"):
    layers.BatchNorm(use_running_average=False, axis_index_groups=[[0, 1]]).init(KEY, X)
  with pytest.raises(ValueError, match="force_float32_reductions=False"):
    layers.LayerNorm(force_float32_reductions=False).init(KEY, X)
  with pytest.raises(ValueError, match=r"exactly one of num_groups or group_size"):
    layers.GroupNorm(group_size=4).init(KEY, X)
  with pytest.raises(ValueError, match=r"num_groups=3.*valid group counts: \[1, 2, 4, 8\]"):
    nlx.GroupNorm(8, num_groups=3, rngs=nnx.Rngs(0))(X)
  layers.BatchNorm(use_running_average=False, use_fast_variance=False).init(KEY, X)  # accepted, irrelevant


@pytest.mark.parametrize("name", ["GhostBatchNorm", "BatchRenorm", "LpBatchNorm", "NoisyBatchNorm", "EvoNormB0",
                                  "SwitchableNorm", "FilterResponseNorm", "EvoNormS0", "FrozenBatchNorm",
                                  "LocalResponseNorm"])
def test_extra_norms_follow_the_conventions_in_linen_and_nnx(name):
  lin, twin = getattr(layers, name), getattr(nlx, name)
  kw = {"num_groups": 4} if name == "EvoNormS0" else {}
  mod = lin(**kw)
  running = "use_running_average" in _fields(lin)
  call = {"use_running_average": False} if running else {}
  v = mod.init({"params": KEY, "noise": KEY}, X, **call)
  y, _ = mod.apply(v, X, mask=jnp.ones((4, 1, 1, 1), bool), mutable=["batch_stats"], rngs={"noise": KEY}, **call)
  assert y.shape == X.shape and y.dtype == X.dtype
  args = () if name == "LocalResponseNorm" else (8,)
  m = twin(*args, rngs=nnx.Rngs(0, noise=1), **kw)
  state = nnx.state(m, (nnx.Param, nnx.BatchStat))
  linen_vars = {**v.get("params", {}), **v.get("batch_stats", {})}
  assert jax.tree.map(jnp.shape, state.to_pure_dict()) == jax.tree.map(jnp.shape, linen_vars)
  nnx.replace_by_pure_dict(state, linen_vars)
  nnx.update(m, state)  # the linen variables load into the nnx module
  if name != "NoisyBatchNorm":  # noise streams differ between the front ends
    np.testing.assert_allclose(np.asarray(m(X)), np.asarray(y), atol=1e-5)


def test_models_take_flax_constructors_and_normlab_factories_alike():
  x = X[:, :, :, :3]
  flax_bn = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
  variables = {}
  for norm in ("batch", make_norm("batch"), layers.BatchNorm, flax_bn):
    model = get_model("resnet", num_classes=3, norm=norm, stage_sizes=(1,), widths=(4,))
    variables[str(norm)] = v = model.init(KEY, x, train=False)
    logits, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (4, 3)
  shapes = [jax.tree.map(jnp.shape, v) for v in variables.values()]
  assert all(s == shapes[0] for s in shapes)  # the same checkpoint layout, so the same bias rule too
  assert as_factory(nn.GroupNorm).rnn_norm is None and as_factory(nn.BatchNorm).bias_cancelling
  with pytest.raises(ValueError, match="flax module constructor"):
    get_model("mlp", num_classes=3, norm=3.5)


def test_swap_in_flax_imagenet_resnet_and_nnx_cnn_on_8_devices():
  """tests/swap_check.py in its own process (8 host devices): every comparison prints its max diff."""
  env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)
  out = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tests", "swap_check.py")], capture_output=True,
                       text=True, timeout=900, env=env, cwd=REPO_ROOT)
  assert out.returncode == 0 and "all match" in out.stdout, out.stdout + out.stderr[-3000:]


@pytest.mark.parametrize("reparam", ["weight", "weight_std", "spectral"])
def test_kernel_reparam_keeps_flax_conv_fields(reparam):
  """layers.Conv is flax's nn.Conv with the kernel reparameterized: dilation, feature groups and dtype
  behave as in flax (the same output as nn.Conv given the reparameterized kernel)."""
  from normlab import reparam as rp
  kw = dict(features=6, kernel_size=(3, 3), kernel_dilation=2, feature_group_count=2, dtype=jnp.bfloat16)
  x = X[:, :, :, :4]
  ours = layers.Conv(reparam=reparam, **kw)
  v = ours.init(KEY, x)
  y, _ = ours.apply(v, x, train=False, mutable=["batch_stats"])
  p = v["params"]
  if reparam == "weight":
    w = rp.weight_norm(p["kernel"], p["g"])
  elif reparam == "weight_std":
    w = rp.weight_standardize(p["kernel"])
  else:
    w = rp.spectral_normalize(p["kernel"], v["batch_stats"]["u"])[0]
  assert p["kernel"].shape == (3, 3, 2, 6) and y.dtype == jnp.bfloat16
  want = nn.Conv(**kw).apply({"params": {"kernel": w, "bias": p["bias"]}}, x)
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(want, np.float32), atol=1e-2)


def test_nnx_promote_dtype_has_flax_meaning():
  """flax.nnx's `promote_dtype((x, mean, var, scale, bias) or (x, scale, bias), dtype=dtype)` runs before
  the norm: the default casts x to `dtype` first (as flax.nnx does), the identity gives linen's numbers."""
  seen = []

  def record(args, *, dtype=None):
    seen.append((len(args), dtype))
    return args

  nlx.BatchNorm(8, dtype=jnp.bfloat16, promote_dtype=record, rngs=nnx.Rngs(0))(X)
  nlx.GroupNorm(8, num_groups=2, use_bias=False, promote_dtype=record, rngs=nnx.Rngs(0))(X)
  nlx.RMSNorm(8, promote_dtype=record, rngs=nnx.Rngs(0))(X)
  assert seen == [(5, jnp.bfloat16), (3, None), (2, None)]  # flax's tuples, None for an absent bias
  lin = layers.LayerNorm(dtype=jnp.bfloat16)
  v = lin.init(KEY, X)
  default = nlx.LayerNorm(8, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))(X)
  theirs = nnx.LayerNorm(8, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))(X)
  np.testing.assert_array_equal(np.asarray(default), np.asarray(lin.apply(v, X.astype(jnp.bfloat16))))
  np.testing.assert_allclose(np.asarray(default, np.float32), np.asarray(theirs, np.float32), atol=2e-2)
  ident = nlx.LayerNorm(8, dtype=jnp.bfloat16, promote_dtype=lambda a, **kw: a, rngs=nnx.Rngs(0))(X)
  np.testing.assert_array_equal(np.asarray(ident), np.asarray(lin.apply(v, X)))
  assert not np.array_equal(np.asarray(ident), np.asarray(default))  # the cast of x is what differs
  with pytest.raises(TypeError, match="promote_dtype must be a callable"):
    nlx.LayerNorm(8, promote_dtype=3, rngs=nnx.Rngs(0))
