"""normlab.layers through the registry: every name builds, inits, applies in train and eval mode, and
updates batch_stats only in training (writing an immutable collection raises, as in flax)."""
import os
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normlab as nl
from normlab import layers
from normlab.registry import NORM_NAMES, make_norm

import references as R

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = np.random.default_rng(0).normal(size=(4, 5, 5, 8)) * 2.0 + 0.5  # NumPy float64 (float64 fixture)
# options each norm needs for 8 channels and a batch of 4
OPTIONS = {"group": {"num_groups": 4}, "ghost_batch": {"virtual_batch_size": 2}, "evonorm_s0": {"num_groups": 2}}
# rbg keys: XLA's RngBitGenerator compiles much faster than threefry on CPU (tests only)
RNGS = {"params": jax.random.key(0, impl="rbg"), "noise": jax.random.key(1, impl="rbg")}
KERNEL_NORMS = ("weight", "weight_std", "spectral")


def _build(name):
    f = make_norm(name, **OPTIONS.get(name, {}))
    if f.reparam is None:
        return f, f()
    return f, layers.Conv(features=8, kernel_size=(3, 3), reparam=f.reparam)


def _mode(mod, train):
    """The call keywords for train/eval: use_running_average where the module has it (flax's API)."""
    if isinstance(mod, (layers.Dense, layers.Conv)):
        return {"train": train}
    return {"use_running_average": not train} if hasattr(mod, "use_running_average") else {}


def _tree_equal(a, b):
    return all(np.array_equal(np.asarray(u), np.asarray(v))
               for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("name", NORM_NAMES)
def test_every_norm_builds_inits_applies_train_and_eval(name):
    f, mod = _build(name)
    variables = mod.init(RNGS, X, **_mode(mod, True))
    stats = variables.get("batch_stats", {})
    assert bool(stats) == (f.uses_batch_stats or name == "frozen_batch"), name

    # train, batch_stats mutable: stats change exactly for norms that keep running statistics
    noise = {"noise": jax.random.key(2, impl="rbg")}
    y, upd = mod.apply(variables, X, mutable=["batch_stats"], rngs=noise, **_mode(mod, True))
    assert y.shape == X.shape and y.dtype == X.dtype and bool(jnp.all(jnp.isfinite(y)))
    changed = not _tree_equal(upd.get("batch_stats", {}), stats)
    assert changed == f.uses_batch_stats, name

    # train, batch_stats immutable: flax raises when a norm writes it; the others run unchanged
    if f.uses_batch_stats and f.reparam is None:
        with pytest.raises(flax.errors.ModifyScopeVariableError):
            mod.apply(variables, X, rngs=noise, **_mode(mod, True))
    else:
        y_frozen = mod.apply(variables, X, rngs=noise, **_mode(mod, True))
        np.testing.assert_array_equal(np.asarray(y_frozen), np.asarray(y))

    # eval: no mutation requested and none attempted (flax raises if a module writes an immutable one)
    y_eval, upd_eval = mod.apply(variables, X, mutable=["batch_stats"], **_mode(mod, False))
    assert y_eval.shape == X.shape and bool(jnp.all(jnp.isfinite(y_eval)))
    assert _tree_equal(upd_eval.get("batch_stats", {}), stats), name
    mod.apply(variables, X, **_mode(mod, False))

    if name == "none":
        np.testing.assert_array_equal(np.asarray(y), np.asarray(X))


@pytest.mark.parametrize("name", ["batch", "l1_batch", "l2_batch", "linf_batch", "evonorm_b0", "switchable"])
def test_eval_with_running_equal_to_batch_stats_reproduces_train_output(name):
    """With momentum 0 the running statistics become the batch statistics, so eval mode on the same
    batch must reproduce the train-mode output (checks the eval formula of each layer)."""
    mod = make_norm(name, momentum=0.0)()
    variables = mod.init(RNGS, X, use_running_average=True)
    params = jax.tree_util.tree_map(lambda p: p + 0.3, variables["params"])  # non-trivial affine
    variables = dict(variables, params=params)
    y, upd = mod.apply(variables, X, use_running_average=False, mutable=["batch_stats"])
    y_eval = mod.apply(dict(variables, **upd), X, use_running_average=True)
    err = float(jnp.max(jnp.abs(y - y_eval)))
    # running statistics are stored in float32 (relative rounding 6e-8, outputs O(5)): 1e-6
    assert err < 1e-6, (name, err)


def test_batch_norm_layer_running_average_equals_update_running_stats():
    mod = layers.BatchNorm(momentum=0.8)
    variables = mod.init(RNGS, X, use_running_average=False)
    st0 = nl.Moments(variables["batch_stats"]["mean"], variables["batch_stats"]["var"])
    assert np.all(np.asarray(st0.mean) == 0) and np.all(np.asarray(st0.var) == 1)
    x2 = X * 1.5 - 0.7
    state = variables
    expected = st0
    for x in (X, x2):
        y, upd = mod.apply(state, x, use_running_average=False, mutable=["batch_stats"])
        y_fn, batch = nl.batch_norm(x, state["params"]["scale"], state["params"]["bias"], return_stats=True)
        np.testing.assert_array_equal(np.asarray(y), np.asarray(y_fn))
        expected = nl.update_running_stats(expected, batch, 0.8)
        state = dict(state, **upd)
        np.testing.assert_allclose(state["batch_stats"]["mean"], expected.mean, rtol=0, atol=1e-7)
        np.testing.assert_allclose(state["batch_stats"]["var"], expected.var, rtol=0, atol=1e-7)
    # and vs the float64 reference EMA (running stats are stored in float32)
    mu1, v1 = R.batch_stats(np.asarray(X))
    mu2, v2 = R.batch_stats(np.asarray(x2))
    ref_mean = 0.8 * (0.8 * 0 + 0.2 * mu1) + 0.2 * mu2
    ref_var = 0.8 * (0.8 * 1 + 0.2 * v1) + 0.2 * v2
    assert state["batch_stats"]["mean"].dtype == jnp.float32
    np.testing.assert_allclose(state["batch_stats"]["mean"], ref_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(state["batch_stats"]["var"], ref_var, rtol=1e-6)
    # eval mode uses them
    y_eval = mod.apply(state, X, use_running_average=True)
    ref = R.batch_norm_eval(np.asarray(X), np.asarray(state["batch_stats"]["mean"]),
                            np.asarray(state["batch_stats"]["var"]))
    np.testing.assert_allclose(np.asarray(y_eval), ref, atol=1e-12)


def test_frozen_batch_norm_layer_never_updates_and_uses_stored_stats():
    mod = layers.FrozenBatchNorm()
    variables = mod.init(RNGS, X)
    stats = {"mean": jnp.full(8, 0.5, jnp.float32), "var": jnp.full(8, 4.0, jnp.float32)}
    variables = dict(variables, batch_stats=stats)
    y_train, upd = mod.apply(variables, X, mutable=["batch_stats"])
    assert _tree_equal(upd["batch_stats"], stats)
    np.testing.assert_allclose(np.asarray(y_train), (np.asarray(X) - 0.5) / np.sqrt(4.0 + 1e-5), atol=1e-12)


def test_spectral_conv_updates_u_only_in_mutable_train():
    mod = layers.Dense(features=3, reparam="spectral", n_power_iterations=1)
    x = X[:, 0, 0]
    variables = mod.init(RNGS, x)
    u0 = variables["batch_stats"]["u"]
    _, upd = mod.apply(variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(np.asarray(upd["batch_stats"]["u"]), np.asarray(u0))
    _, same = mod.apply(variables, x, train=False, mutable=["batch_stats"])
    np.testing.assert_array_equal(np.asarray(same["batch_stats"]["u"]), np.asarray(u0))
    # the output uses W / sigma(W, u): after many updates sigma -> the top singular value
    state = variables
    for _ in range(30):
        _, upd = mod.apply(state, x, train=True, mutable=["batch_stats"])
        state = dict(state, **upd)
    w = np.asarray(state["params"]["kernel"], np.float64)
    _, _, sigma = nl.spectral_normalize(jnp.asarray(w), state["batch_stats"]["u"], n_iters=1)
    assert abs(float(sigma) / R.spectral_norm_exact(w) - 1) < 1e-4


def test_group_norm_layer_group_size_option():
    """make_norm('group', group_size=2) gives groups of 2 channels (the registry sets num_groups=None,
    as flax requires); the layer itself, like flax's, refuses both set."""
    mod = make_norm("group", group_size=2)()
    variables = mod.init(RNGS, X)
    np.testing.assert_allclose(np.asarray(mod.apply(variables, X)), R.group_norm(np.asarray(X), 4), atol=1e-12)
    mod = make_norm("group", num_groups=2)()
    np.testing.assert_allclose(np.asarray(mod.apply(variables, X)), R.group_norm(np.asarray(X), 2), atol=1e-12)
    with pytest.raises(ValueError, match="exactly one of num_groups or group_size"):
        layers.GroupNorm(group_size=2).init(RNGS, X)
    with pytest.raises(ValueError, match=r"num_groups=3 .*valid group counts: \[1, 2, 4, 8\]"):
        layers.GroupNorm(num_groups=3).init(RNGS, X)


def test_masked_batch_norm_layer():
    mask = jnp.asarray([1.0, 1.0, 0.0, 1.0]).reshape(4, 1, 1, 1)
    mod = layers.BatchNorm(momentum=0.9, use_running_average=False)
    variables = mod.init(RNGS, X)
    y, upd = mod.apply(variables, X, mask=mask, mutable=["batch_stats"])
    ref = R.batch_norm(np.asarray(X), mask=np.asarray(mask))
    np.testing.assert_allclose(np.asarray(y), ref, atol=1e-12)
    mu, _ = R.batch_stats(np.asarray(X), mask=np.asarray(mask))
    np.testing.assert_allclose(np.asarray(upd["batch_stats"]["mean"]), 0.1 * mu, atol=1e-7)


@pytest.mark.parametrize("name", ["ghost_batch", "evonorm_b0"])
def test_masked_ghost_and_evonorm_b0_layers_pass_the_mask_on(name):
    mask = jnp.asarray([1.0, 0.0, 1.0, 1.0]).reshape(4, 1, 1, 1)
    mod = make_norm(name, **OPTIONS.get(name, {}))()
    variables = mod.init(RNGS, X, use_running_average=False)
    y, upd = mod.apply(variables, X, use_running_average=False, mask=mask, mutable=["batch_stats"])
    p = variables["params"]
    if name == "ghost_batch":
        ref, stats = nl.ghost_batch_norm(X, p["scale"], p["bias"], virtual_batch_size=2, mask=mask, return_stats=True)
    else:
        ref, stats = nl.evonorm_b0(X, p["scale"], p["bias"], p["v"], mask=mask, return_stats=True)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), atol=1e-12)
    np.testing.assert_allclose(np.asarray(upd["batch_stats"]["mean"]), 0.1 * np.asarray(stats.mean), atol=1e-7)
    y_all = mod.apply(variables, X, use_running_average=False, mutable=["batch_stats"])[0]
    assert not np.allclose(np.asarray(y)[0], np.asarray(y_all)[0])  # the mask changes a valid row's output


def test_import_normlab_does_not_import_flax():
    code = ("import sys, normlab; import normlab.core, normlab.norms, normlab.variants, normlab.reparam; "
            "print(sorted(m for m in sys.modules if m == 'flax' or m.startswith('flax.'))); "
            "import normlab.layers; print('flax' in sys.modules)")  # sanity: the probe does see flax
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stdout
