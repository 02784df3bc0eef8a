"""Kernel norms: weight norm (+ data-dependent init), weight standardization, spectral normalization
vs float64 NumPy references, and their defining properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normlab as nl
from normlab import layers

import references as R
from references import max_abs_diff as maxerr

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


def _x(shape, scale=1.0, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=shape) * scale + shift


KERNELS = {"dense": _x((5, 7), seed=1), "conv": _x((3, 3, 4, 6), seed=2)}


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_weight_norm_vs_reference(kind):
    v = KERNELS[kind]
    g = _x((v.shape[-1],), 0.5, 1.0, seed=3)
    w = nl.weight_norm(jnp.asarray(v), g, eps=1e-300)
    err = maxerr(w, R.weight_norm(v, g))
    print(f"maxerr vs float64 reference [weight_norm {kind}]: {err:.2e}")
    assert err < 1e-14
    # each output unit's weight vector has norm |g|
    norms = np.sqrt((np.asarray(w).reshape(-1, v.shape[-1]) ** 2).sum(0))
    assert maxerr(norms, np.abs(g)) < 1e-14
    # and w does not depend on the scale of v (that is the point of the reparameterization)
    assert maxerr(nl.weight_norm(jnp.asarray(3.7 * v), g, eps=1e-300), w) < 1e-14


def test_weight_norm_gradient_is_orthogonal_to_v():
    """Salimans & Kingma eq. 4: grad_v = g/||v|| * M_w grad_w, M_w projects out w, so <grad_v, v> = 0."""
    v = jnp.asarray(KERNELS["dense"])
    c = jnp.asarray(_x(v.shape, seed=4))
    gv = jax.jit(jax.grad(lambda v: jnp.sum(nl.weight_norm(v, jnp.full(7, 2.0), eps=1e-300) * c)))(v)
    np.testing.assert_allclose(np.sum(np.asarray(gv) * np.asarray(v), 0), 0.0, atol=1e-13)


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_weight_standardize_vs_reference(kind):
    w = KERNELS[kind] * 0.3 + 0.1
    ws = nl.weight_standardize(jnp.asarray(w))
    err = maxerr(ws, R.weight_standardize(w))
    print(f"maxerr vs float64 reference [weight_standardize {kind}]: {err:.2e}")
    assert err < 1e-13
    m = np.asarray(ws).reshape(-1, w.shape[-1])
    assert maxerr(m.mean(0), 0.0) < 1e-14
    assert maxerr(m.var(0), w.reshape(-1, w.shape[-1]).var(0) / (w.reshape(-1, w.shape[-1]).var(0) + 1e-5)) < 1e-13


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_spectral_normalize_vs_reference(kind):
    w = KERNELS[kind]
    u0 = _x((w.shape[-1],), seed=5)
    for n_iters in (1, 3):
        w_sn, u, sigma = nl.spectral_normalize(jnp.asarray(w), jnp.asarray(u0), n_iters=n_iters)
        r_w, r_u, r_s = R.spectral_normalize(w, u0, n_iters)
        err = max(maxerr(w_sn, r_w), maxerr(u, r_u), abs(float(sigma) - r_s))
        print(f"maxerr vs float64 reference [spectral_normalize {kind}, {n_iters} iters]: {err:.2e}")
        assert err < 1e-13


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_spectral_normalize_converges_to_largest_singular_value(kind):
    w = KERNELS[kind]
    u = jnp.asarray(_x((w.shape[-1],), seed=6))
    w_sn, _, sigma = nl.spectral_normalize(jnp.asarray(w), u, n_iters=300)
    exact = R.spectral_norm_exact(w)
    assert abs(float(sigma) - exact) / exact < 1e-8
    assert abs(R.spectral_norm_exact(np.asarray(w_sn)) - 1.0) < 1e-8


def test_spectral_normalize_power_iteration_not_differentiated():
    """Miyato et al.: gradient flows through sigma = u^T W v with u, v treated as constants:
    d sigma / dW = u v^T exactly."""
    w = jnp.asarray(KERNELS["dense"])
    u0 = jnp.asarray(_x((7,), seed=7))
    _, u, _ = nl.spectral_normalize(w, u0, n_iters=2)
    grad = jax.grad(lambda w: nl.spectral_normalize(w, u0, n_iters=2)[2])(w)
    _, r_u, _ = R.spectral_normalize(np.asarray(w), np.asarray(u0), 2)
    mat = np.asarray(w).T
    v = mat.T @ R.spectral_normalize(np.asarray(w), np.asarray(u0), 1)[1]
    v = v / np.linalg.norm(v)
    np.testing.assert_allclose(np.asarray(u), r_u, atol=1e-14)
    assert maxerr(grad, np.outer(v, r_u)) < 1e-12


def test_weight_norm_data_init_function_vs_reference():
    t = _x((32, 5), 2.0, 3.0, seed=8)
    g, b = nl.weight_norm_data_init(jnp.asarray(t), eps=1e-12)
    rg, rb = R.weight_norm_data_init(t, eps=1e-12)
    assert maxerr(g, rg) < 1e-12 and maxerr(b, rb) < 1e-12


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_weight_norm_data_init_standardizes_first_batch(kind):
    """Salimans & Kingma sec. 3: after data-dependent init, the init batch's pre-activations have
    per-unit mean 0 and variance 1 (up to eps=1e-6 in the std)."""
    if kind == "dense":
        mod = layers.Dense(features=5, reparam="weight", data_init=True)
        x = jnp.asarray(_x((64, 3), 3.0, 2.0, seed=9))
    else:
        mod = layers.Conv(features=4, kernel_size=(3, 3), reparam="weight", data_init=True)
        x = jnp.asarray(_x((8, 6, 6, 3), 3.0, 2.0, seed=10))
    key = jax.random.key(0, impl="rbg")
    variables = jax.jit(mod.init)(key, x)
    apply = jax.jit(mod.apply)
    y = np.asarray(apply(variables, x))
    axes = tuple(range(y.ndim - 1))
    var = y.var(axes)
    # the kernel v and the gain g are float32 parameters (w = g v/||v|| is formed in float32), so the
    # float64 pre-activations carry ~1e-7 relative error; var(y) = var(t)/(var(t) + 1e-6) adds <1e-6
    assert maxerr(y.mean(axes), 0.0) < 1e-6
    assert maxerr(var, 1.0) < 3e-6
    # on another batch it is just a weight-normed layer (no re-init)
    x2 = x * 0.5 + 1.0
    y2 = np.asarray(apply(variables, x2))
    assert np.max(np.abs(y2.var(axes) - 1.0)) > 0.1
    # without data_init the gains are ones and the bias zeros (and the kernel is the same draw)
    v0 = jax.jit(mod.clone(data_init=False).init)(key, x)["params"]
    np.testing.assert_array_equal(np.asarray(v0["g"]), 1.0)
    np.testing.assert_array_equal(np.asarray(v0["bias"]), 0.0)
    np.testing.assert_array_equal(np.asarray(v0["kernel"]), np.asarray(variables["params"]["kernel"]))


def test_reparam_bad_input():
    with pytest.raises(ValueError, match="rank"):
        nl.weight_norm(jnp.ones((4,)))
    with pytest.raises(ValueError, match="eps"):
        nl.weight_norm(jnp.ones((4, 3)), eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        nl.weight_standardize(jnp.ones((4, 3)), eps=-1.0)
    with pytest.raises(ValueError, match="n_iters"):
        nl.spectral_normalize(jnp.ones((4, 3)), jnp.ones(3), n_iters=0)
    with pytest.raises(ValueError, match="unknown reparam 'bogus'"):
        layers.Dense(features=2, reparam="bogus").init(jax.random.key(0, impl="rbg"), jnp.ones((1, 3)))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reparam_low_precision_dtype(dtype):
    dt = jnp.dtype(dtype)
    v = jnp.asarray(KERNELS["conv"]).astype(dt)
    wn, ws, (w, u, s) = jax.jit(lambda v: (nl.weight_norm(v), nl.weight_standardize(v),
                                           nl.spectral_normalize(v, jnp.ones(6, dt))))(v)
    assert wn.dtype == ws.dtype == w.dtype == dt and s.dtype == jnp.float32
    v32 = np.asarray(v.astype(jnp.float32))
    # statistics in f32, result rounded to the low-precision type: within 1 ulp (2^-7 bf16, 2^-10 f16)
    ulp = 2.0 ** -7 if dtype == "bfloat16" else 2.0 ** -10
    for ours, ref in ((wn, R.weight_norm(v32)), (ws, R.weight_standardize(v32)),
                      (w, R.spectral_normalize(v32, np.ones(6))[0])):
        assert np.all(np.abs(np.asarray(ours, np.float64) - ref) <= ulp * np.abs(ref) + 1e-6)
