"""Batch / layer / RMS / instance / group norm vs float64 NumPy references, torch.nn.functional and
flax.linen; the large-mean precision case; bf16/f16 in -> same dtype out; bad-input errors."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normlab as nl

import references as R
from references import sample as _x, max_abs_diff as maxerr

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


X4 = _x((4, 5, 6, 8))          # (N, H, W, C)
G8 = _x((8,), 0.7, 1.0, seed=1)
B8 = _x((8,), 0.5, 0.0, seed=2)

# name -> (normlab call, reference call) on float64 input; outputs are O(1), so 1e-12 is ~5000 ulp
CASES = {
    "batch": (lambda x: nl.batch_norm(x, G8, B8), lambda x: R.batch_norm(x, G8, B8)),
    "batch_2d": (lambda x: nl.batch_norm(x[:, 0, 0], G8, B8), lambda x: R.batch_norm(x[:, 0, 0], G8, B8)),
    "batch_feature_axes": (lambda x: nl.batch_norm(x, feature_axes=(2, 3)),
                           lambda x: R.standardize(x, (0, 1), 1e-5)),
    "batch_masked": (lambda x: nl.batch_norm(x, G8, B8, mask=np.array([1., 0., 1., 1.])[:, None, None, None]),
                     lambda x: R.batch_norm(x, G8, B8, mask=np.array([1., 0., 1., 1.])[:, None, None, None])),
    "layer": (lambda x: nl.layer_norm(x, G8, B8), lambda x: R.layer_norm(x, G8, B8)),
    "layer_chw": (lambda x: nl.layer_norm(x, reduction_axes=(1, 2, 3)), lambda x: R.layer_norm(x, axes=(1, 2, 3))),
    "rms": (lambda x: nl.rms_norm(x, G8), lambda x: R.rms_norm(x, G8)),
    "instance": (lambda x: nl.instance_norm(x, G8, B8), lambda x: R.instance_norm(x, G8, B8)),
    "group4": (lambda x: nl.group_norm(x, G8, B8, num_groups=4), lambda x: R.group_norm(x, 4, G8, B8)),
    "group_size2": (lambda x: nl.group_norm(x, G8, B8, group_size=2), lambda x: R.group_norm(x, 4, G8, B8)),
    "group_mlp": (lambda x: nl.group_norm(x[:, 0, 0], num_groups=2), lambda x: R.group_norm(x[:, 0, 0], 2)),
}


@functools.lru_cache(maxsize=None)
def _outputs(table):
    """All normlab outputs of a case table in one jit (one XLA compile instead of one per primitive)."""
    fns = {"ref": {k: v[0] for k, v in CASES.items()}, "equiv": EQUIV}[table]
    return jax.jit(lambda x: {k: f(x) for k, f in fns.items()})(jnp.asarray(X4))


@pytest.mark.parametrize("name", sorted(CASES))
def test_vs_float64_reference(name):
    ours, ref = CASES[name]
    y = _outputs("ref")[name]
    assert y.dtype == jnp.float64
    err = maxerr(y, ref(X4))
    print(f"maxerr vs float64 reference [{name}]: {err:.2e}")
    assert err < 1e-12


# --- reference equivalences ---------------------------------------------------------------------


_ZM = X4 - X4.mean(-1, keepdims=True)  # zero-mean rows
EQUIV = {
    "gn1": lambda x: nl.group_norm(x, num_groups=1),
    "ln_hwc": lambda x: nl.layer_norm(x, reduction_axes=(1, 2, 3)),
    "gnC": lambda x: nl.group_norm(x, G8, B8, num_groups=8),
    "in": lambda x: nl.instance_norm(x, G8, B8),
    "rms_zero_mean": lambda x: nl.rms_norm(jnp.asarray(_ZM), eps=1e-5),
    "ln_zero_mean": lambda x: nl.layer_norm(jnp.asarray(_ZM), eps=1e-5),
}


def test_group_norm_one_group_is_layer_norm_over_spatial_and_channels():
    out = _outputs("equiv")
    assert maxerr(out["gn1"], out["ln_hwc"]) < 1e-13


def test_group_norm_c_groups_is_instance_norm():
    out = _outputs("equiv")
    assert maxerr(out["gnC"], out["in"]) < 1e-13


def test_rms_norm_equals_layer_norm_on_zero_mean_rows():
    out = _outputs("equiv")
    assert maxerr(out["rms_zero_mean"], out["ln_zero_mean"]) < 1e-13


def test_batch_norm_eval_and_running_stats():
    mean, var = _x((8,), seed=5), _x((8,), 0.3, 2.0, seed=6) ** 2
    y = nl.batch_norm(jnp.asarray(X4), G8, B8, running=nl.Moments(mean, var))
    assert maxerr(y, R.batch_norm_eval(X4, mean, var, G8, B8)) < 1e-12
    _, st = nl.batch_norm(jnp.asarray(X4), return_stats=True)
    mu, v = R.batch_stats(X4)
    assert st.mean.shape == (8,) and maxerr(st.mean, mu) < 1e-13 and maxerr(st.var, v) < 1e-12
    new = nl.update_running_stats(nl.Moments(jnp.asarray(mean), jnp.asarray(var)), st, momentum=0.9)
    assert maxerr(new.mean, 0.9 * mean + 0.1 * mu) < 1e-14
    assert maxerr(new.var, 0.9 * var + 0.1 * v) < 1e-14


def test_masked_batch_norm_ignores_masked_values():
    """Garbage (even huge) values at masked positions must not change the valid outputs."""
    mask = np.array([1., 1., 0., 1.])[:, None, None, None]
    x2 = X4.copy()
    x2[2] = 1e6
    y1 = nl.batch_norm(jnp.asarray(X4), mask=mask)
    y2 = nl.batch_norm(jnp.asarray(x2), mask=mask)
    assert maxerr(np.asarray(y1)[[0, 1, 3]], np.asarray(y2)[[0, 1, 3]]) < 1e-13
    assert maxerr(np.asarray(y1)[[0, 1, 3]], R.batch_norm(X4[[0, 1, 3]])) < 1e-12


# --- torch.nn.functional -------------------------------------------------------------------------

# name -> (normlab call on a channels-last array, torch.nn.functional call on a channels-first tensor)
TORCH_CASES = {
    "batch": (lambda x: nl.batch_norm(x, G8.astype(x.dtype), B8.astype(x.dtype), eps=1e-5),
              lambda F, t, w, b: F.batch_norm(t, None, None, w, b, training=True, eps=1e-5)),
    "layer": (lambda x: nl.layer_norm(x, G8.astype(x.dtype), B8.astype(x.dtype), eps=1e-5),
              None),  # layer_norm over the last (channel) axis: no transpose, see below
    "instance": (lambda x: nl.instance_norm(x, G8.astype(x.dtype), B8.astype(x.dtype), eps=1e-5),
                 lambda F, t, w, b: F.instance_norm(t, weight=w, bias=b, eps=1e-5)),
    "group": (lambda x: nl.group_norm(x, G8.astype(x.dtype), B8.astype(x.dtype), num_groups=4, eps=1e-5),
              lambda F, t, w, b: F.group_norm(t, 4, w, b, eps=1e-5)),
    "local_response": (lambda x: nl.local_response_norm(x, size=3, alpha=0.2, beta=0.75, k=1.5),
                       lambda F, t, w, b: F.local_response_norm(t, 3, alpha=0.2, beta=0.75, k=1.5)),
    "local_response_even": (lambda x: nl.local_response_norm(x, size=4, alpha=0.5, beta=0.6, k=1.0),
                            lambda F, t, w, b: F.local_response_norm(t, 4, alpha=0.5, beta=0.6, k=1.0)),
}


@functools.lru_cache(maxsize=None)
def _normlab_torch_outputs(dtype):
    return jax.jit(lambda x: {k: v[0](x) for k, v in TORCH_CASES.items()})(jnp.asarray(X4.astype(dtype)))


def _torch_output(name, dtype):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = X4.astype(dtype)
    w, b = torch.from_numpy(G8.astype(dtype)), torch.from_numpy(B8.astype(dtype))
    if name == "layer":
        return F.layer_norm(torch.from_numpy(x), (8,), w, b, eps=1e-5).numpy()
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))  # channels-last -> channels-first
    return np.moveaxis(TORCH_CASES[name][1](F, t, w, b).numpy(), 1, -1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_vs_torch_functional(name, dtype):
    theirs = _torch_output(name, dtype)
    y = _normlab_torch_outputs(dtype)[name]
    assert y.dtype == jnp.dtype(dtype)
    err = maxerr(y, theirs)
    print(f"maxerr vs torch [{name}, {dtype}]: {err:.2e}")
    # float64: both exact to rounding; float32: outputs are O(3) (ulp 2.4e-7) and the two libraries
    # accumulate in different orders over 120-480 elements
    assert err < (1e-12 if dtype == "float64" else 1e-5)


# --- flax.linen ------------------------------------------------------------------------------------


def _flax_modules(fast, dt):
    import flax.linen as nn
    common = dict(use_fast_variance=fast, param_dtype=dt, dtype=dt)
    return {
        "batch": nn.BatchNorm(use_running_average=False, epsilon=1e-5, **common),
        "layer": nn.LayerNorm(epsilon=1e-5, **common),
        "group": nn.GroupNorm(num_groups=4, epsilon=1e-5, **common),
        "rms": nn.RMSNorm(epsilon=1e-6, **common),
        "instance": nn.InstanceNorm(epsilon=1e-5, **common),
    }


def _normlab_like_flax(dt):
    g, b = G8.astype(dt), B8.astype(dt)
    return {
        "batch": lambda x: nl.batch_norm(x, g, b, eps=1e-5),
        "layer": lambda x: nl.layer_norm(x, g, b, eps=1e-5),
        "group": lambda x: nl.group_norm(x, g, b, num_groups=4, eps=1e-5),
        "rms": lambda x: nl.rms_norm(x, g, eps=1e-6),
        "instance": lambda x: nl.instance_norm(x, g, b, eps=1e-5),
    }


def _flax_apply(module, x, scale, bias):
    """init + apply with the given scale/bias (train mode for BatchNorm)."""
    variables = module.init(jax.random.key(0, impl="rbg"), x)
    params = dict(variables["params"])
    params["scale"] = jnp.asarray(scale, params["scale"].dtype)
    if "bias" in params:
        params["bias"] = jnp.asarray(bias, params["bias"].dtype)
    return module.apply(dict(variables, params=params), x, mutable=["batch_stats"])[0]


@functools.lru_cache(maxsize=None)
def _flax_and_normlab(dtype):
    dt = jnp.dtype(dtype)
    mods, ours = _flax_modules(False, dt), _normlab_like_flax(dt)

    @jax.jit
    def run(x):
        return {k: (ours[k](x), _flax_apply(m, x, G8, B8)) for k, m in mods.items()}

    return run(jnp.asarray(X4.astype(dtype)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["batch", "layer", "group", "rms", "instance"])
def test_vs_flax_linen_exact_variance(name, dtype):
    y, z = _flax_and_normlab(dtype)[name]
    assert y.dtype == z.dtype == jnp.dtype(dtype)
    err = maxerr(y, z)
    print(f"maxerr vs flax [{name}, {dtype}, use_fast_variance=False]: {err:.2e}")
    assert err < (1e-12 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("name", ["batch", "layer"])
def test_large_mean_precision_vs_flax_default(name):
    """Mean 1e3, std 0.1 in float32. The f32 spacing at 1e3 is 6.1e-5 = 6e-4 std, and the f32 sum
    behind the mean rounds at ~1e-4 relative to its partial sums, so even a careful float32 two-pass
    computation is off by ~1e-3 in x_hat: the bound 5e-3 leaves room. Flax's default one-pass
    E[x^2] - E[x]^2 cancels catastrophically (1e6 vs a variance of 1e-2)."""
    rng = np.random.default_rng(2024)
    x = (rng.normal(size=(64, 64)) * 0.1 + 1e3).astype(np.float32)
    one, zero = np.ones(64, np.float32), np.zeros(64, np.float32)
    ref = R.batch_norm(x) if name == "batch" else R.layer_norm(x)
    fast = _flax_modules(True, jnp.float32)[name]
    slow = _flax_modules(False, jnp.float32)[name]
    norm = nl.batch_norm if name == "batch" else nl.layer_norm
    ours_fn = lambda x: norm(x, one, zero, eps=1e-5)  # noqa: E731

    @jax.jit
    def run(x):
        return ours_fn(x), _flax_apply(fast, x, one, zero), _flax_apply(slow, x, one, zero)

    ours, y_fast, y_slow = run(jnp.asarray(x))
    e_ours, e_fast, e_slow = maxerr(ours, ref), maxerr(y_fast, ref), maxerr(y_slow, ref)
    print(f"large-mean [{name}] max |err| vs float64: normlab {e_ours:.2e}, flax default (fast variance) "
          f"{e_fast:.2e}, flax use_fast_variance=False {e_slow:.2e}")
    assert ours.dtype == jnp.float32
    assert e_ours < 5e-3
    assert e_fast > 10 * e_ours
    assert e_fast > 1.0  # not just "worse": the fast-variance output is O(1) wrong


# --- low precision in -> same dtype out, f32 statistics -----------------------------------------

LOWP = {
    "batch": lambda x: nl.batch_norm(x, G8, B8),
    "layer": lambda x: nl.layer_norm(x, G8, B8),
    "rms": lambda x: nl.rms_norm(x, G8),
    "instance": lambda x: nl.instance_norm(x, G8, B8),
    "group": lambda x: nl.group_norm(x, G8, B8, num_groups=4),
    "batch_stats": lambda x: nl.batch_norm(x, return_stats=True)[1],
}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_same_dtype_out_f32_statistics(dtype):
    dt = jnp.dtype(dtype)
    # shifted data (mean 3, std 0.5) over 120-480 elements: accumulating in bf16 would be visibly off
    x_lp = jnp.asarray(_x((4, 5, 6, 8), 0.5, 3.0, seed=9)).astype(dt)
    x32 = x_lp.astype(jnp.float32)
    out_lp, out32 = jax.jit(lambda a, b: ({k: f(a) for k, f in LOWP.items()},
                                          {k: f(b) for k, f in LOWP.items()}))(x_lp, x32)
    # a correctly rounded f32 result is within half an ulp of the low-precision type (relative
    # bf16: 2^-8, f16: 2^-11); allow 1 ulp for the double rounding f32 -> low precision
    ulp = 2.0 ** -7 if dtype == "bfloat16" else 2.0 ** -10
    for name in LOWP:
        if name == "batch_stats":
            continue
        y, y32 = out_lp[name], np.asarray(out32[name], np.float64)
        assert y.dtype == dt, name
        err = np.abs(np.asarray(y, np.float64) - y32)
        assert np.all(err <= ulp * np.abs(y32) + 1e-6), (name, float(err.max()))
    st = out_lp["batch_stats"]
    assert st.mean.dtype == st.var.dtype == jnp.float32
    mu, var = R.batch_stats(np.asarray(x32))
    assert np.max(np.abs(np.asarray(st.mean) - mu) / np.abs(mu)) < 1e-6
    assert np.max(np.abs(np.asarray(st.var) - var) / var) < 1e-5


# --- bad input -----------------------------------------------------------------------------------


def test_group_norm_indivisible_channels_message():
    with pytest.raises(ValueError) as e:
        nl.group_norm(jnp.ones((2, 4, 30)), num_groups=8)
    msg = str(e.value)
    assert "30" in msg and "8" in msg and "group" in msg
    with pytest.raises(ValueError, match="group_size"):
        nl.group_norm(jnp.ones((2, 4, 30)), group_size=4)
    with pytest.raises(ValueError, match="exactly one"):
        nl.group_norm(jnp.ones((2, 4, 30)), num_groups=2, group_size=15)


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), float("inf")])
@pytest.mark.parametrize("fn", ["batch_norm", "layer_norm", "rms_norm", "instance_norm", "group_norm"])
def test_bad_eps(fn, eps):
    kw = {"num_groups": 2} if fn == "group_norm" else {}
    with pytest.raises(ValueError, match="eps"):
        getattr(nl, fn)(jnp.ones((2, 3, 4)), eps=eps, **kw)


def test_wrong_rank():
    with pytest.raises(ValueError, match="rank"):
        nl.instance_norm(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="rank"):
        nl.group_norm(jnp.ones((4,)), num_groups=1)
    with pytest.raises(ValueError, match="out of range"):
        nl.layer_norm(jnp.ones((4, 3)), reduction_axes=2)
    with pytest.raises(ValueError, match="repeats"):
        nl.layer_norm(jnp.ones((4, 3)), reduction_axes=(1, -1))
    with pytest.raises(ValueError, match="empty"):
        nl.batch_norm(jnp.ones((4, 3)), feature_axes=(0, 1))


def test_unknown_axis_name_outside_shard_map():
    with pytest.raises(ValueError, match="'batch'.*not bound"):
        nl.batch_norm(jnp.ones((4, 3)), axis_name="batch")


@pytest.mark.parametrize("fn", ["batch_norm", "layer_norm", "instance_norm", "group_norm"])
def test_mismatched_mask_shape(fn):
    kw = {"num_groups": 2} if fn == "group_norm" else {}
    with pytest.raises(ValueError, match=r"mask of shape \(3, 1\)"):
        getattr(nl, fn)(jnp.ones((4, 5, 6)), mask=jnp.ones((3, 1)), **kw)


def test_update_running_stats_bad_momentum():
    st = nl.Moments(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match="momentum"):
        nl.update_running_stats(st, st, momentum=1.5)



def _reductions(f, *args) -> int:
  return str(jax.make_jaxpr(f)(*args)).count("reduce_sum")


GROUPS = lambda x: x.reshape(4, 5, 6, 2, 4)  # noqa: E731


@pytest.mark.parametrize("name,norm,view,axes", [
    ("batch", lambda x: nl.batch_norm(x, G8, B8), lambda x: x, (0, 1, 2)),
    ("layer", lambda x: nl.layer_norm(x, G8, B8), lambda x: x, (3,)),
    ("instance", lambda x: nl.instance_norm(x, G8, B8), lambda x: x, (1, 2)),
    ("group", lambda x: nl.group_norm(x, G8, B8, num_groups=2), GROUPS, (1, 2, 4)),
    ("linen_LayerNorm", "LayerNorm", lambda x: x, (3,)),
    ("linen_GroupNorm", "GroupNorm", GROUPS, (1, 2, 4)),
    ("linen_BatchNorm", "BatchNorm", lambda x: x, (0, 1, 2)),
])
def test_the_statistics_are_computed_once(name, norm, view, axes):
  """A norm's forward pass reduces as often as one `core.moments` over its set (mean and variance once),
  through the flax layers too."""
  if isinstance(norm, str):
    from normlab import layers
    module = getattr(layers, norm)(**({"num_groups": 2} if norm == "GroupNorm" else {}))
    call = {"use_running_average": False} if norm == "BatchNorm" else {}
    v = module.init(jax.random.key(0), X4, **call)
    norm = lambda x: module.apply(v, x, mutable=["batch_stats"], **call)  # noqa: E731
  assert _reductions(norm, X4) == _reductions(lambda x: nl.moments(view(x), axes), X4)
