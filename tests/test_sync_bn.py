"""SyncBN: batch_norm(x_shard, axis_name=...) inside jax.shard_map on 8 fake CPU devices (the `devices` marker, tests/conftest.py)
equals full-batch batch norm -- values and gradients; tuple axis names; grouped SyncBN; masked /
unequal per-device counts; vmap axis names; unknown axis names."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

import normlab as nl

import references as R
from references import max_abs_diff as maxerr

pytestmark = [pytest.mark.devices(8), pytest.mark.usefixtures("float64")]  # see tests/conftest.py

C = 3
X = np.random.default_rng(0).normal(size=(32, 2, C)) * 1.7 + 0.4   # 4 examples per device
G = np.array([0.5, 1.5, -1.0])
B = np.array([0.1, -0.2, 0.3])
CT = np.random.default_rng(1).normal(size=X.shape)                 # cotangent for the gradient checks


def mesh1d():
    return Mesh(np.array(jax.devices()[:8]), ("batch",))


def mesh2d(names=("group", "batch")):
    return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), names)


def sharded_bn(mesh, spec, axis_name, **kw):
    return jax.jit(jax.shard_map(lambda x, s, b: nl.batch_norm(x, s, b, axis_name=axis_name, **kw),
                                 mesh=mesh, in_specs=(spec, P(), P()), out_specs=spec))


def test_sync_bn_equals_full_batch_values_and_gradients():
    f = sharded_bn(mesh1d(), P("batch"), "batch")
    x, s, b = jnp.asarray(X), jnp.asarray(G), jnp.asarray(B)
    y = f(x, s, b)
    err = maxerr(y, R.batch_norm(X, G, B))
    print(f"maxerr SyncBN (8 devices) vs float64 full-batch reference: {err:.2e}")
    assert err < 1e-12
    # local (unsynced) BN on the shards is different: the test would catch a missing psum
    local = sharded_bn(mesh1d(), P("batch"), None)(x, s, b)
    assert maxerr(local, y) > 1e-2

    loss_sync = lambda x, s, b: jnp.sum(f(x, s, b) * CT)
    loss_full = lambda x, s, b: jnp.sum(nl.batch_norm(x, s, b) * CT)
    g_sync = jax.jit(jax.grad(loss_sync, argnums=(0, 1, 2)))(x, s, b)
    g_full = jax.jit(jax.grad(loss_full, argnums=(0, 1, 2)))(x, s, b)
    # the full-batch gradient itself vs the closed form (per channel, m = 64 elements)
    xf, cf = X.reshape(-1, C), CT.reshape(-1, C)
    closed = R.bn_input_grad(xf, cf, G, eps=1e-5).reshape(X.shape)
    assert maxerr(g_full[0], closed) < 1e-12
    for name, a, bb in zip(("x", "scale", "bias"), g_sync, g_full):
        e = maxerr(a, bb)
        print(f"maxerr SyncBN grad wrt {name} vs full batch: {e:.2e}")
        assert e < 1e-12, name
    assert maxerr(g_sync[2], CT.sum((0, 1))) < 1e-12


def test_sync_bn_tuple_axis_name_on_2x4_mesh():
    mesh = mesh2d(("data", "model"))
    spec = P(("data", "model"))
    f = sharded_bn(mesh, spec, ("data", "model"))
    y = f(jnp.asarray(X), jnp.asarray(G), jnp.asarray(B))
    assert maxerr(y, R.batch_norm(X, G, B)) < 1e-12
    g = jax.jit(jax.grad(lambda x: jnp.sum(f(x, jnp.asarray(G), jnp.asarray(B)) * CT)))(jnp.asarray(X))
    g_full = jax.jit(jax.grad(lambda x: jnp.sum(nl.batch_norm(x, G, B) * CT)))(jnp.asarray(X))
    assert maxerr(g, g_full) < 1e-12
    # reducing over only one of the two axes is a different (grouped) result
    y_one = sharded_bn(mesh, spec, "model")(jnp.asarray(X), jnp.asarray(G), jnp.asarray(B))
    assert maxerr(y_one, y) > 1e-2


def test_grouped_sync_bn_reduces_within_groups():
    """2-D mesh ("group", "batch"); axis_name="batch": statistics over the 4 devices of each group,
    i.e. BN of the first 16 and of the last 16 examples separately."""
    mesh = mesh2d()
    f = sharded_bn(mesh, P(("group", "batch")), "batch")
    y = f(jnp.asarray(X), jnp.asarray(G), jnp.asarray(B))
    ref = np.concatenate([R.batch_norm(X[:16], G, B), R.batch_norm(X[16:], G, B)])
    err = maxerr(y, ref)
    print(f"maxerr grouped SyncBN vs per-group reference: {err:.2e}")
    assert err < 1e-12
    assert maxerr(ref, R.batch_norm(X, G, B)) > 1e-2
    # gradient: per-group BN gradients
    g = jax.jit(jax.grad(lambda x: jnp.sum(f(x, jnp.asarray(G), jnp.asarray(B)) * CT)))(jnp.asarray(X))
    g_ref = np.concatenate([R.bn_input_grad(X[i:i + 16].reshape(-1, C), CT[i:i + 16].reshape(-1, C), G,
                                            eps=1e-5).reshape(16, 2, C) for i in (0, 16)])
    assert maxerr(g, g_ref) < 1e-12


def test_masked_sync_bn_unequal_counts_uses_true_global_statistics():
    """Device k holds k+1 valid examples (of 4). The statistics must be the count-weighted global
    ones -- not the mean of per-device means."""
    n_dev, per = 8, 4
    x = np.random.default_rng(5).normal(size=(n_dev * per, C)) * 2.0 + np.repeat(np.arange(n_dev), per)[:, None]
    valid = np.concatenate([np.arange(per) < k + 1 for k in range(n_dev)]).astype(np.float64)
    mask = valid[:, None]
    f = jax.jit(jax.shard_map(
        lambda x, m: nl.batch_norm(x, axis_name="batch", mask=m, return_stats=True),
        mesh=mesh1d(), in_specs=(P("batch"), P("batch")), out_specs=(P("batch"), P())))
    y, stats = f(jnp.asarray(x), jnp.asarray(mask))
    ref = R.batch_norm(x, mask=mask)
    mu, var = R.batch_stats(x, mask=mask)
    err = max(maxerr(y, ref), maxerr(stats.mean, mu), maxerr(stats.var, var))
    print(f"maxerr masked SyncBN (unequal counts) vs global masked reference: {err:.2e}")
    assert err < 1e-12
    # the naive alternative (average of per-device masked means) is measurably different
    per_dev_means = [x[k * per:k * per + k + 1].mean(0) for k in range(n_dev)]
    naive = np.mean(per_dev_means, 0)
    print(f"global masked mean {mu}, mean of per-device means {naive}")
    assert np.min(np.abs(naive - mu)) > 0.5
    # gradient equals the full-batch masked BN gradient
    ct = np.random.default_rng(6).normal(size=x.shape)
    g_sync = jax.jit(jax.grad(lambda x: jnp.sum(f(x, jnp.asarray(mask))[0] * ct)))(jnp.asarray(x))
    g_full = jax.jit(jax.grad(lambda x: jnp.sum(nl.batch_norm(x, mask=mask) * ct)))(jnp.asarray(x))
    assert maxerr(g_sync, g_full) < 1e-12


def test_sync_variants_with_axis_name_equal_full_batch():
    """Every norm that takes axis_name (lp BN, batch renorm, EvoNorm-B0, switchable) syncs like BN."""
    xs = np.random.default_rng(7).normal(size=(16, 2, 2, C)) + 0.5
    mesh = mesh1d()
    running = nl.Moments(jnp.asarray([0.1, 0.2, 0.3]), jnp.asarray([1.5, 0.5, 2.0]))
    fns = {
        "lp1": lambda x, an: nl.lp_batch_norm(x, p=1, axis_name=an),
        "lpinf": lambda x, an: nl.lp_batch_norm(x, p="inf", axis_name=an),
        "renorm": lambda x, an: nl.batch_renorm(x, running=running, r_max=1.3, d_max=0.2, axis_name=an),
        "evonorm_b0": lambda x, an: nl.evonorm_b0(x, None, None, jnp.asarray([0.5, -1.0, 1.0]), axis_name=an),
        "switchable": lambda x, an: nl.switchable_norm(x, mean_logits=jnp.asarray([0.1, 0.2, 0.9]),
                                                       var_logits=jnp.asarray([-0.5, 0.2, 0.4]), axis_name=an),
    }
    sharded = jax.jit(jax.shard_map(lambda x: {k: fn(x, "batch") for k, fn in fns.items()},
                                    mesh=mesh, in_specs=P("batch"), out_specs=P("batch")))(jnp.asarray(xs))
    full = jax.jit(lambda x: {k: fn(x, None) for k, fn in fns.items()})(jnp.asarray(xs))
    for k in fns:
        e = maxerr(sharded[k], full[k])
        assert e < 1e-12, (k, e)


def test_vmap_axis_name():
    """vmap binds an axis name too: BN over (mapped axis, N) == BN of the flattened batch."""
    xv = X.reshape(4, 8, 2, C)
    y, y_sep = jax.jit(lambda x: (
        jax.vmap(lambda xi: nl.batch_norm(xi, G, B, axis_name="v"), axis_name="v")(x),
        # and vmap without the axis name normalizes each mapped slice separately
        jax.vmap(lambda xi: nl.batch_norm(xi, G, B))(x)))(jnp.asarray(xv))
    assert maxerr(np.asarray(y).reshape(X.shape), R.batch_norm(X, G, B)) < 1e-12
    assert maxerr(y_sep[1], R.batch_norm(xv[1], G, B)) < 1e-12


def test_unknown_axis_name_raises_value_error():
    f = jax.shard_map(lambda x: nl.batch_norm(x, axis_name="nope"), mesh=mesh1d(),
                      in_specs=P("batch"), out_specs=P("batch"))
    with pytest.raises(ValueError, match="axis_name 'nope' is not bound"):
        jax.jit(f)(jnp.asarray(X))
    f2 = jax.shard_map(lambda x: nl.batch_norm(x, axis_name=("batch", "nope")), mesh=mesh1d(),
                       in_specs=P("batch"), out_specs=P("batch"))
    with pytest.raises(ValueError, match="'nope'"):
        jax.jit(f2)(jnp.asarray(X))
    with pytest.raises(ValueError, match="'v2'"):
        jax.vmap(lambda xi: nl.batch_norm(xi, axis_name="v2"), axis_name="v")(jnp.asarray(X.reshape(4, 8, 2, C)))
