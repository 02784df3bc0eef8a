"""normlab.core: moments/standardize vs float64 references, the custom VJP vs autodiff, BN's closed-form
input gradient (and the seed's wrong sign), second-order gradient checks, precision of the statistics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import normlab as nl
from normlab import core

import references as R
from references import sample as _x, max_abs_diff as maxerr

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


def _mask(shape, seed):
    """A random 0/1 mask (~35% dropped) whose index-0 slice along every axis stays valid, so every
    reduction set (any non-empty set of axes) keeps at least one valid element."""
    m = (np.random.default_rng(seed).uniform(size=shape) > 0.35).astype(np.float64)
    m[0] = 1.0
    m[:, 0] = 1.0
    m[:, :, 0] = 1.0
    m[..., 0] = 1.0
    return m


# --- standardize: values vs float64 NumPy, custom VJP vs autodiff of a plain two-pass version ------

# batch-norm-like, spatial (instance), feature (layer), non-contiguous, and everything
AXES_SETS = [(0, 1, 2), (1, 2), (3,), (1, 3), (0, 1, 2, 3)]


def plain_standardize(x, axes, eps, mask=None, center=True):
    """Two-pass standardization written with jnp only (no custom VJP): autodiff is the ground truth."""
    m = jnp.ones_like(x) if mask is None else jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    n = jnp.sum(m, axes, keepdims=True)
    mu = jnp.sum(x * m, axes, keepdims=True) / n if center else 0.0
    var = jnp.sum((x - mu) ** 2 * m, axes, keepdims=True) / n
    return (x - mu) / jnp.sqrt(var + eps)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_standardize_values_and_custom_vjp(center, masked):
    """For every axes set: x_hat and the statistics vs the float64 NumPy reference (1e-12: O(1) values,
    ~5000 ulp), and the custom VJP vs autodiff of `plain_standardize` (1e-11: gradients are O(10))."""
    x = _x((4, 3, 5, 6), seed=3)
    mask = _mask((4, 3, 5, 6), seed=8) if masked else None
    ct = np.random.default_rng(9).normal(size=x.shape)
    eps = 1e-3

    @jax.jit
    def run(x, ct):
        out = {}
        for axes in AXES_SETS:
            ours = lambda x: core.standardize(x, axes, eps=eps, mask=mask, center=center)
            (x_hat, stats), vjp = jax.vjp(ours, x)
            zero_stats = jax.tree_util.tree_map(jnp.zeros_like, stats)
            g_ours = vjp((ct, zero_stats))[0]
            g_ref = jax.vjp(lambda x: plain_standardize(x, axes, eps, mask, center), x)[1](ct)[0]
            out[axes] = (x_hat, stats, g_ours, g_ref)
        return out

    for axes, (x_hat, stats, g_ours, g_ref) in run(jnp.asarray(x), jnp.asarray(ct)).items():
        tag = f"axes={axes} center={center} masked={masked}"
        err = maxerr(x_hat, R.standardize(x, axes, eps, mask=mask, center=center))
        m = np.ones_like(x) if mask is None else np.broadcast_to(mask, x.shape)
        n = m.sum(axes, keepdims=True)
        mu = (x * m).sum(axes, keepdims=True) / n if center else np.zeros_like(n)
        var = ((x - mu) ** 2 * m).sum(axes, keepdims=True) / n
        assert maxerr(stats.mean, np.broadcast_to(mu, stats.mean.shape)) < 1e-13, tag
        assert maxerr(stats.var, var) < 1e-12, tag
        g_err = maxerr(g_ours, g_ref)
        print(f"maxerr standardize {tag}: value {err:.2e}, custom VJP vs autodiff {g_err:.2e}")
        assert err < 1e-12, tag
        assert g_err < 1e-11, tag
        assert float(jnp.max(jnp.abs(g_ref))) > 1e-2  # a non-trivial gradient was compared


def test_moments_empty_mask_gives_zeros_not_nan():
    x = jnp.asarray(_x((4, 3)))
    (mean, var), n = core.moments(x, (0,), mask=jnp.zeros((4, 1)))
    np.testing.assert_array_equal(np.asarray(n), 0.0)
    np.testing.assert_array_equal(np.asarray(mean), 0.0)
    np.testing.assert_array_equal(np.asarray(var), 0.0)


def test_moments_count_is_number_of_valid_elements():
    x = jnp.asarray(_x((5, 2, 3)))
    mask = np.array([1, 0, 1, 1, 0], np.float64).reshape(5, 1, 1)
    _, n = core.moments(x, (0, 1), mask=mask)
    np.testing.assert_array_equal(np.asarray(n).ravel(), [6.0, 6.0, 6.0])


def test_standardize_returns_stop_gradient_statistics():
    x = jnp.asarray(_x((6, 3)))
    g = jax.grad(lambda x: jnp.sum(core.standardize(x, (0,), eps=1e-5)[1].var))(x)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_custom_vjp_under_jit_and_float32():
    x = jnp.asarray(_x((8, 5), seed=4), jnp.float32)
    ct = jnp.asarray(np.random.default_rng(5).normal(size=x.shape), jnp.float32)

    @jax.jit
    def run(x, ct):
        ours = jax.vjp(lambda x: core.standardize(x, (0,), eps=1e-5)[0], x)[1](ct)[0]
        ref = jax.vjp(lambda x: plain_standardize(x, (0,), 1e-5), x.astype(jnp.float64))[1](ct.astype(jnp.float64))[0]
        return ours, ref

    ours, ref = run(x, ct)
    assert ours.dtype == jnp.float32
    # gradients are O(3); float32 rounding of x_hat and of the two sums over 8 elements: ~1e-6
    assert maxerr(ours, ref) < 2e-5


# --- BN's closed-form input gradient and the seed's sign ---------------------------------------


@jax.jit
def _bn_grads(x, gamma, g_y):
    """(autodiff through normlab's custom VJP, autodiff of the plain two-pass BN), eps -> 0 (1e-300) so
    sigma is exactly the closed form's sigma."""
    ours = jax.grad(lambda x: jnp.sum(nl.batch_norm(x, gamma, None, eps=1e-300) * g_y))(x)
    plain = jax.grad(lambda x: jnp.sum(plain_standardize(x, (0,), 1e-300) * gamma * g_y))(x)
    return ours, plain


def test_bn_closed_form_gradient_matches_autodiff():
    x, g_y = _x((10, 4), seed=11), _x((10, 4), seed=12)
    gamma = np.array([0.5, -1.2, 2.0, 1.0])
    ours, plain = _bn_grads(x, gamma, g_y)
    closed = R.bn_input_grad(x, g_y, gamma, sign=-1.0)
    err = maxerr(ours, closed)
    print(f"maxerr BN closed-form dx vs autodiff: {err:.2e}")
    assert err < 1e-12
    assert maxerr(plain, closed) < 1e-12  # autodiff of the plain implementation, not our custom VJP


def test_seed_002_plus_sign_gradient_is_wrong():
    """Seed 002 prints dx = gamma/(m sigma) (m g - sum g + x_hat sum(x_hat g)): the '+' is wrong."""
    x, g_y = _x((10, 4), seed=21), _x((10, 4), seed=22)
    gamma = np.array([1.0, 2.0, 0.5, -1.0])
    _, auto = _bn_grads(x, gamma, g_y)
    wrong = R.bn_input_grad(x, g_y, gamma, sign=+1.0)
    right = R.bn_input_grad(x, g_y, gamma, sign=-1.0)
    assert maxerr(auto, right) < 1e-12
    diff = maxerr(auto, wrong)
    print(f"seed-002 '+' version differs from autodiff by {diff:.3f}")
    assert diff > 1e-2
    # the '+' gradient is not even orthogonal to x - mu (a BN output is invariant to scaling x - mu,
    # so the true gradient satisfies <dx, x - mu> = 0 per channel)
    xc = x - x.mean(0)
    np.testing.assert_allclose((right * xc).sum(0), 0.0, atol=1e-12)
    assert np.max(np.abs((wrong * xc).sum(0))) > 1e-2


# --- gradient checks (finite differences, first and second order) -----------------------------

_MASK6 = np.array([1., 1., 0., 1., 1., 0.])[:, None, None]
CORE_NORMS = {
    "batch": lambda x, s, b: nl.batch_norm(x, s, b),
    "batch_masked": lambda x, s, b: nl.batch_norm(x, s, b, mask=_MASK6),
    "layer": lambda x, s, b: nl.layer_norm(x, s, b),
    "layer_2axes": lambda x, s, b: nl.layer_norm(x, None, None, reduction_axes=(1, 2)),
    "rms": lambda x, s, b: nl.rms_norm(x, s),
    "instance": lambda x, s, b: nl.instance_norm(x, s, b),
    "group": lambda x, s, b: nl.group_norm(x, s, b, num_groups=2),
    "standardize_center_false_masked": lambda x, s, b: core.standardize(x, (0, 1), eps=1e-3, mask=_MASK6,
                                                                        center=False)[0],
}
GX = _x((6, 3, 4), seed=31)  # NumPy float64: jax arrays are made inside the tests (float64 fixture)
GS = _x((4,), seed=32)
GB = _x((4,), seed=33)
# float64 central differences with eps=1e-4 have O(eps^2) ~ 1e-8 truncation error: 1e-6 is honest


def test_check_grads_core_norms_first_order():
    """Every core norm at once (one pytree output): first-order reverse mode vs finite differences."""
    all_norms = jax.jit(lambda x, s, b: {k: f(x, s, b) for k, f in CORE_NORMS.items()})
    check_grads(all_norms, (GX, GS, GB), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-4)


@pytest.mark.parametrize("name", ["batch", "group"])
def test_check_grads_second_order(name):
    """Second order differentiates the custom backward pass itself."""
    check_grads(jax.jit(CORE_NORMS[name]), (GX, GS, GB), order=2, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-4)


# --- precision of the statistics ---------------------------------------------------------------


def test_stats_dtype_promotion():
    assert core.stats_dtype(jnp.bfloat16) == jnp.float32
    assert core.stats_dtype(jnp.float16) == jnp.float32
    assert core.stats_dtype(jnp.float32) == jnp.float32
    assert core.stats_dtype(jnp.float64) == jnp.float64


def test_two_pass_moments_large_mean_float32():
    """|mean| >> std in float32: the two-pass variance keeps ~f32 accuracy where E[x^2]-E[x]^2 cannot.
    An error d in the f32 mean (~1e-4 here) enters the two-pass variance only as d^2/var ~ 1e-6
    (measured 1.6e-7); the one-pass formula loses everything below ulp(1e6) = 0.06 >> var = 0.01."""
    x = (np.random.default_rng(51).normal(size=(256, 4)) * 0.1 + 1e3).astype(np.float32)
    (mean, var), _ = core.moments(jnp.asarray(x), (0,))
    ref_mu, ref_var = R.batch_stats(x)
    assert mean.dtype == jnp.float32
    rel = np.abs(np.asarray(var).ravel() - ref_var) / ref_var
    print(f"large-mean f32 variance relative error: {rel.max():.2e}")
    assert rel.max() < 1e-5
    one_pass = np.mean(x * x, 0, dtype=np.float32) - np.mean(x, 0, dtype=np.float32) ** 2
    assert np.min(np.abs(one_pass - ref_var) / ref_var) > 1.0  # measured 47-81x the variance (even < 0)


def test_normalize_with_and_affine_dtype():
    x = jnp.asarray(_x((4, 3)), jnp.bfloat16)
    st = nl.Moments(jnp.zeros(3), jnp.ones(3) * 4.0)
    y = core.normalize_with(x, st, 1e-5)
    assert y.dtype == jnp.float32
    out = core.affine(y, jnp.ones(3), jnp.zeros(3), x.dtype)
    assert out.dtype == jnp.bfloat16
