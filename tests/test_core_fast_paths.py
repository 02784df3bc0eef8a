"""normlab.core's shaped paths (`standardize_affine`'s JVP with the scale folded in, the staged
group-norm sum of normlab._platform) compute the same numbers and derivatives as the plain
composition, across devices and under shard_map's type checks too."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P
from jax.test_util import check_grads

import normlab as nl
from normlab import _platform, core

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


@pytest.mark.parametrize("axes, center, masked", [
    ((-1,), True, False), ((1, -1), True, True), ((0, -2), False, False),
    ((1, 2, 4), True, True), ((0, 1, 2, 4), True, False), ((1, 3), False, True),
])
def test_core_view_paths_match_a_plain_two_pass(axes, center, masked):
  """Group-norm-style split axes (the merged view), negative axes, masks: values and VJP vs jnp."""

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
    ((0, 1, 2), False, True, (6,)),    # batch norm
    ((0, 1, 2), True, False, (6,)),
    ((1, 2), True, True, (6,)),        # masked instance norm: parameter grads summed over N too
    ((1, 2), False, True, (6,)),       # instance norm
    ((0, 1, 2), False, True, ()),      # a scalar scale is constant over S as well
    ((-1,), False, True, (6,)),        # layer norm: the scale varies over S
    ((-1,), False, False, (6,)),       # RMS norm
    ((1, 2, 3), False, True, (6,)),    # layer norm over a trailing block
    ((-1,), False, True, (4, 1, 1, 1)),  # a per-example scale
    ((-1,), True, True, (6,)),         # masked layer norm
    ((0, 3), True, True, (6,)),        # innermost axis reduced, the one before kept (staged sum)
    ((0, 3), False, True, (5, 1)),     # scale varies over a kept axis
    ((0, 3), False, True, (4, 1, 1, 1)),  # varies over an outer reduced axis
    ((1, 2, 4), True, True, (2, 3)),   # group norm (N, H, W, G, C/G)
    ((1, 2, 4), False, False, (1, 3)), # group norm, scale shared by the groups
    ((1, 2, 4), False, True, (4, 1, 1, 2, 3)),  # a per-example scale (varies over kept N)
])
def test_standardize_affine_equals_the_composition(axes, masked, center, scale_shape):

  rng = np.random.default_rng(1)
  shape = (4, 3, 5, 2, 3) if 4 in axes else (4, 3, 5, 6)
  x = jnp.asarray(rng.normal(size=shape) * 2 + 0.5)
  ct = jnp.asarray(rng.normal(size=x.shape))
  s = jnp.asarray(rng.normal(size=scale_shape))
  b = jnp.asarray(rng.normal(size=scale_shape))
  mask = jnp.asarray((rng.uniform(size=(4,) + (1,) * (x.ndim - 1)) > 0.3).astype(np.float64)) if masked else None

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
  tangents = (ct, jnp.asarray(rng.normal(size=scale_shape)), jnp.asarray(rng.normal(size=scale_shape)))
  dya = jax.jvp(lambda *a: composed(*a)[0], (x, s, b), tangents)[1]
  dyb = jax.jvp(lambda *a: fused(*a)[0], (x, s, b), tangents)[1]
  np.testing.assert_allclose(dyb, dya, atol=1e-11)


def test_standardize_affine_across_devices_matches_the_composition():
  """SyncBN-style psum over a named axis: the input gradient uses global sums, the parameter
  gradients this device's own (as the composition's autodiff gives them)."""

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

  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(6, 3, 4)))
  s, b = jnp.asarray(rng.normal(size=(4,))), jnp.asarray(rng.normal(size=(4,)))
  m = jnp.asarray([1., 1., 0., 1., 1., 0.])[:, None, None]
  f = jax.jit(lambda x, s, b: core.standardize_affine(x, (0, 1), s, b, eps=1e-5, mask=m)[0])
  check_grads(f, (x, s, b), order=2, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-4)


def test_fast_core_keeps_the_numerics_the_issue_asks_for():
  """float32 inputs with mean 1e3 and std 0.1: every norm's output within 5e-3 of float64 (on the
  same float32 numbers); bfloat16 inputs get float32 statistics."""

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


@pytest.mark.devices(4)  # a subprocess with 4 fake devices (tests/conftest.py); one for all the cases below
def test_standardize_affine_under_shard_map_matches_the_composition():
  """Replicated scale/bias meeting per-device activations: with shard_map's type checks on, the
  parameter gradients are summed over devices (autodiff's transpose of the implicit cast), with
  them off they are per device -- for the fused VJP exactly as for the composition."""
  for check_vma in (True, False):
    for axis_name, axes in ((None, (0, 1)), ("d", (0, 1)), (None, (-1,))):
      _check_shard_map_case(check_vma, axis_name, axes)


def _check_shard_map_case(check_vma, axis_name, axes):
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(8, 3, 5)) + 0.3)
  ct = jnp.asarray(rng.normal(size=x.shape))
  s, b = jnp.asarray(rng.normal(size=(5,))), jnp.asarray(rng.normal(size=(5,)))
  mesh = Mesh(np.array(jax.devices()[:4]), ("d",))

  def grads(fused):
    def f(x, s, b):
      if fused:
        return core.standardize_affine(x, axes, s, b, eps=1e-3, axis_name=axis_name)[0]
      return core.affine(core.standardize(x, axes, eps=1e-3, axis_name=axis_name)[0], s, b, x.dtype)
    out = P() if check_vma else P("d")  # per-device parameter gradients are stacked when unchecked
    def per_device(x, s, b, ct):
      _, vjp = jax.vjp(f, x, s, b)
      dx, ds, db = vjp(ct)
      return dx, (ds if check_vma else ds[None]), (db if check_vma else db[None])
    return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("d"), P(), P(), P("d")),
                                 out_specs=(P("d"), out, out), check_vma=check_vma))(x, s, b, ct)

  for p, q in zip(grads(True), grads(False)):
    assert p.shape == q.shape
    np.testing.assert_allclose(p, q, atol=1e-11)


@pytest.mark.parametrize("center", [True, False])
def test_layer_norm_second_order_gradients(center):
  """The scale varies over S (layer and RMS norm): twice differentiable in reverse mode."""
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(3, 4, 6)) + 0.2)
  s, b = jnp.asarray(rng.normal(size=(6,))), jnp.asarray(rng.normal(size=(6,)))
  f = jax.jit(lambda x, s, b: core.standardize_affine(x, (-1,), s, b, eps=1e-5, center=center)[0])
  check_grads(f, (x, s, b), order=2, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-4)


def test_low_precision_and_large_mean():
  """bfloat16 in, float32 statistics, bfloat16 out; mean 1e3 with std 0.1 in float32 stays close to
  float64 on the same numbers (two-pass statistics, in the derivative too)."""
  rng = np.random.default_rng(6)
  x32 = jnp.asarray(rng.normal(size=(16, 64)) * 0.1 + 1e3, jnp.float32)
  ct = jnp.asarray(rng.normal(size=x32.shape), jnp.float32)
  s = jnp.linspace(0.5, 1.5, 64)
  f = lambda x: core.standardize_affine(x, (-1,), s.astype(x.dtype), None, eps=1e-5)[0]
  y32, vjp32 = jax.vjp(f, x32)
  y64, vjp64 = jax.vjp(f, x32.astype(jnp.float64))
  assert float(jnp.max(jnp.abs(y32 - y64))) < 5e-3
  g32, g64 = vjp32(ct)[0], vjp64(ct.astype(jnp.float64))[0]
  assert float(jnp.max(jnp.abs(g32 - g64)) / jnp.max(jnp.abs(g64))) < 5e-3
  ybf = f(x32.astype(jnp.bfloat16))
  assert ybf.dtype == jnp.bfloat16


@pytest.mark.parametrize("on_cpu", [True, False])
def test_platform_sum_is_the_plain_sum(on_cpu, monkeypatch):
  """The staged group sum equals jnp.sum; off CPU (GPU, TPU) the plain sum is taken as is."""
  monkeypatch.setattr(_platform, "_on_cpu", lambda: on_cpu)
  t = jnp.asarray(np.random.default_rng(7).normal(size=(3, 4, 5, 2, 3)))
  for axes in [(1, 2, 4), (0, 4), (1, 2), (4,), (0, 1, 2, 3, 4)]:
    np.testing.assert_allclose(_platform.reduce_sum(t, axes), jnp.sum(t, axes, keepdims=True), rtol=1e-13)
  jaxpr = str(jax.make_jaxpr(lambda t: _platform.reduce_sum(t, (1, 2, 4)))(t))
  assert jaxpr.count("reduce_sum") == (2 if on_cpu else 1)
