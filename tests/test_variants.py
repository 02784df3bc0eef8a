"""Ghost BN, batch renorm, frozen BN, l_p BN, noisy BN, FRN, EvoNorm-B0/S0, switchable norm and LRN
vs float64 NumPy references; the reference equivalences between them and plain batch norm."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normlab as nl
from normlab.core import stats_dtype

import references as R
from references import sample as _x, max_abs_diff as maxerr

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


X = _x((8, 3, 4, 6))               # (N, H, W, C)
G, B = _x((6,), 0.7, 1.0, seed=1), _x((6,), 0.5, 0.0, seed=2)
RM, RV = _x((6,), 0.5, 0.2, seed=3), _x((6,), 0.4, 1.3, seed=4) ** 2
V = _x((6,), 0.8, 0.0, seed=5)
TAU = _x((6,), 0.3, 0.0, seed=6)
ML, VL = _x((3,), 1.0, 0.0, seed=7), _x((3,), 1.0, 0.0, seed=8)

CASES = {
    "ghost_batch_v2": (lambda x: nl.ghost_batch_norm(x, G, B, virtual_batch_size=2),
                       lambda x: R.ghost_batch_norm(x, 2, G, B)),
    "ghost_batch_v4": (lambda x: nl.ghost_batch_norm(x, G, B, virtual_batch_size=4),
                       lambda x: R.ghost_batch_norm(x, 4, G, B)),
    "batch_renorm_clipped": (  # r_max/d_max small enough that some r and d are clipped
        lambda x: nl.batch_renorm(x, G, B, running=nl.Moments(RM, RV), r_max=1.2, d_max=0.1),
        lambda x: R.batch_renorm(x, RM, RV, 1.2, 0.1, G, B)),
    "batch_renorm_free": (
        lambda x: nl.batch_renorm(x, G, B, running=nl.Moments(RM, RV), r_max=10.0, d_max=10.0),
        lambda x: R.batch_renorm(x, RM, RV, 10.0, 10.0, G, B)),
    "frozen_batch": (lambda x: nl.frozen_batch_norm(x, RM, RV, G, B),
                     lambda x: R.batch_norm_eval(x, RM, RV, G, B)),
    "lp_batch_p1": (lambda x: nl.lp_batch_norm(x, G, B, p=1), lambda x: R.lp_batch_norm(x, 1, G, B)),
    "lp_batch_p2": (lambda x: nl.lp_batch_norm(x, G, B, p=2), lambda x: R.lp_batch_norm(x, 2, G, B)),
    "lp_batch_pinf": (lambda x: nl.lp_batch_norm(x, G, B, p="inf"), lambda x: R.lp_batch_norm(x, np.inf, G, B)),
    "filter_response": (lambda x: nl.filter_response_norm(x, G, B, TAU),
                        lambda x: R.filter_response_norm(x, G, B, TAU)),
    "filter_response_no_tlu": (lambda x: nl.filter_response_norm(x, G, B),
                               lambda x: R.filter_response_norm(x, G, B)),
    "evonorm_b0": (lambda x: nl.evonorm_b0(x, G, B, V), lambda x: R.evonorm_b0(x, G, B, V)),
    "evonorm_b0_eval": (lambda x: nl.evonorm_b0(x, G, B, V, running=nl.Moments(RM, RV)),
                        lambda x: R.evonorm_b0(x, G, B, V, running_var=RV)),
    "evonorm_s0_g2": (lambda x: nl.evonorm_s0(x, G, B, V, num_groups=2), lambda x: R.evonorm_s0(x, G, B, V, 2)),
    "evonorm_s0_gs3": (lambda x: nl.evonorm_s0(x, G, B, V, num_groups=None, group_size=3),
                       lambda x: R.evonorm_s0(x, G, B, V, 2)),
    "switchable": (lambda x: nl.switchable_norm(x, G, B, ML, VL), lambda x: R.switchable_norm(x, ML, VL, G, B)),
    "switchable_uniform": (lambda x: nl.switchable_norm(x), lambda x: R.switchable_norm(x, np.zeros(3), np.zeros(3))),
    "local_response_5": (lambda x: nl.local_response_norm(x, size=5, alpha=0.3, beta=0.75, k=2.0),
                         lambda x: R.local_response_norm(x, 5, 0.3, 0.75, 2.0)),
    "local_response_2": (lambda x: nl.local_response_norm(x, size=2, alpha=1.0, beta=0.5, k=1.0),
                         lambda x: R.local_response_norm(x, 2, 1.0, 0.5, 1.0)),
}


@functools.lru_cache(maxsize=None)
def _outputs():
    """Every case in one jit: one XLA compile instead of one per primitive."""
    return jax.jit(lambda x: {k: v[0](x) for k, v in CASES.items()})(jnp.asarray(X))


@pytest.mark.parametrize("name", sorted(CASES))
def test_vs_float64_reference(name):
    ours, ref = CASES[name]
    y = _outputs()[name]
    assert y.dtype == jnp.float64 and y.shape == X.shape
    err = maxerr(y, ref(X))
    print(f"maxerr vs float64 reference [{name}]: {err:.2e}")
    assert err < 1e-12


def test_renorm_case_actually_clips():
    """The clipped renorm case is only meaningful if some r and d hit their bounds."""
    mu, var = R.batch_stats(X)
    r = np.sqrt(var + 1e-5) / np.sqrt(RV + 1e-5)
    d = (mu - RM) / np.sqrt(RV + 1e-5)
    assert np.any((r > 1.2) | (r < 1 / 1.2)) and np.any(np.abs(d) > 0.1)
    assert np.any(np.abs(d) < 10.0) and np.all(r < 10) and np.all(r > 0.1)


def test_evonorm_b0_uses_both_branches_of_the_max():
    """The reference check above is only meaningful if both denominators win somewhere."""
    sp = (1, 2)
    var_b = R.batch_stats(X)[1]
    var_i = X.var(sp, keepdims=True)
    first = np.sqrt(var_b + 1e-5) >= V * X + np.sqrt(var_i + 1e-5)
    assert first.any() and (~first).any()


def test_frn_tlu_is_active():
    y = R.filter_response_norm(X, G, B)
    assert np.any(y < TAU) and np.any(y > TAU)


# --- noisy BN ------------------------------------------------------------------------------------


def test_noisy_batch_norm_vs_reference_with_same_draws():
    @jax.jit
    def run(x, key):
        z = nl.noisy_batch_norm(x, key, G, B, mean_range=1.0, std_range=2.0)
        # the documented draws: split(key, 3) -> per-channel noise mean, per-channel noise std, N(0, 1) per activation
        k_m, k_s, k_n = jax.random.split(key, 3)
        return z, (jax.random.uniform(k_m, (6,), jnp.float64, -1.0, 1.0),
                   jax.random.uniform(k_s, (6,), jnp.float64, 1.0, 2.0),
                   jax.random.normal(k_n, X.shape, jnp.float64))

    # rbg keys: much cheaper to compile than threefry, and the layout argument is the same
    z, (mu, sigma, noise) = run(jnp.asarray(X), jax.random.key(3, impl="rbg"))
    err = maxerr(z, R.noisy_batch_norm(X, mu, sigma, noise, G, B))
    print(f"maxerr vs float64 reference [noisy_batch]: {err:.2e}")
    assert err < 1e-12


def _noise_of(key, x, mean_range=0.5, std_range=3.0):
    """n = z - BN(x): the noise noisy_batch_norm added, (N * spatial, C)."""
    z = np.asarray(jax.jit(lambda x, k: nl.noisy_batch_norm(x, k, mean_range=mean_range, std_range=std_range))(x, key))
    return (z - R.batch_norm(x)).reshape(-1, x.shape[-1])


def test_noisy_batch_norm_noise_is_additive_and_independent_of_the_input():
    """Same key, two inputs: the same noise (z1 - z2 = y1 - y2): the noise depends on the step's key only."""
    key = jax.random.key(11, impl="rbg")
    x1, x2 = _x((64, 2, 2, 6), seed=12), _x((64, 2, 2, 6), 2.0, -1.0, seed=13)
    assert np.max(np.abs(_noise_of(key, x1) - _noise_of(key, x2))) < 1e-8


def test_noisy_batch_norm_noise_moments_per_channel_in_range_and_redrawn_every_step():
    """Per channel, the noise has a non-zero mean in [-mean_range, mean_range] and a std in [1, std_range];
    the moments differ between channels (one distribution per activation) and between two keys (steps)."""
    x = _x((512, 2, 2, 6), seed=12)
    moments = []
    for k in (11, 12):
        n = _noise_of(jax.random.key(k, impl="rbg"), x)  # 2048 draws per channel
        mu, sd = n.mean(0), n.std(0)
        assert np.all(np.abs(mu) <= 0.5 + 4 * sd / np.sqrt(len(n)))
        assert np.all((sd >= 1.0 - 0.1) & (sd <= 3.0 + 0.15))
        assert np.ptp(mu) > 0.1 and np.ptp(sd) > 0.1   # per-channel distributions
        moments.append(np.stack([mu, sd]))
    assert np.min(np.abs(moments[0] - moments[1]).max(0)) > 0.02  # every channel's distribution moved


def test_noisy_batch_norm_noise_is_iid_over_samples():
    """Within a channel, the draws of different samples are independent: no two samples share their
    noise, and the correlation between the noise of sample halves is ~0 (not one draw per channel)."""
    x = _x((512, 6), seed=12)
    n = _noise_of(jax.random.key(5, impl="rbg"), x)
    c = n - n.mean(0)
    assert np.min(np.abs(c[0] - c[1])) > 0 and np.all(n.std(0) > 0.9)
    corr = np.mean(c[:256] * c[256:], 0) / (c[:256].std(0) * c[256:].std(0))
    assert np.all(np.abs(corr) < 4 / np.sqrt(256))


@pytest.mark.parametrize("kw", [{"mean_range": -0.1}, {"std_range": 0.5}])
def test_noisy_batch_norm_rejects_bad_ranges(kw):
    with pytest.raises(ValueError, match="noisy_batch_norm: (mean|std)_range="):
        nl.noisy_batch_norm(jnp.asarray(X), jax.random.key(0), **kw)


# --- equivalences with plain batch norm ----------------------------------------------------------

_CT = _x(X.shape, seed=21)
_ONE_HOT = [np.where(np.arange(3) == k, 60.0, -60.0) for k in range(3)]  # softmax -> one-hot to 1e-52
EQUIV = {
    "bn": lambda x: nl.batch_norm(x, G, B),
    "bn_plain": lambda x: nl.batch_norm(x),
    "ghost_full": lambda x: nl.ghost_batch_norm(x, G, B, virtual_batch_size=8),
    "ghost_stats_v4": lambda x: nl.ghost_batch_norm(x, virtual_batch_size=4, return_stats=True)[1],
    "renorm_r1_d0": lambda x: nl.batch_renorm(x, G, B, running=nl.Moments(RM, RV), r_max=1.0, d_max=0.0,
                                              return_stats=True),
    "renorm_grad": jax.grad(lambda x: jnp.sum(
        nl.batch_renorm(x, running=nl.Moments(RM, RV), r_max=10.0, d_max=10.0) * _CT)),
    "bn_grad": jax.grad(lambda x: jnp.sum(nl.batch_norm(x) * _CT)),
    "lp2_vs_bn": lambda x: {eps: (nl.lp_batch_norm(x, p=2, eps=eps), nl.batch_norm(x, eps=eps))
                            for eps in (1e-5, 1e-3, 1e-14)},
    "lp_tiny_eps": lambda x: {str(p): nl.lp_batch_norm(x, p=p, eps=1e-14) for p in (1, 2, "inf")},
    "lp1_stats": lambda x: nl.lp_batch_norm(x, p=1, return_stats=True)[1],
    "frozen": lambda x: nl.frozen_batch_norm(x, RM, RV, G, B),
    "bn_eval": lambda x: nl.batch_norm(x, G, B, running=nl.Moments(RM, RV)),
    "frozen_grad": jax.grad(lambda x: jnp.sum(nl.frozen_batch_norm(x, RM, RV, G, B))),
    "switchable_one_hot": lambda x: [nl.switchable_norm(x, mean_logits=lg, var_logits=lg) for lg in _ONE_HOT],
    "switchable_eval_bn": lambda x: nl.switchable_norm(x, mean_logits=_ONE_HOT[2], var_logits=_ONE_HOT[2],
                                                       running=nl.Moments(RM, RV)),
    "evonorm_b0_no_v": lambda x: nl.evonorm_b0(x),
}


@functools.lru_cache(maxsize=None)
def _equiv():
    return jax.jit(lambda x: {k: f(x) for k, f in EQUIV.items()})(jnp.asarray(X))


def test_ghost_batch_norm_full_virtual_batch_is_batch_norm():
    out = _equiv()
    assert maxerr(out["ghost_full"], out["bn"]) < 1e-13
    # and with virtual batches it is NOT batch norm
    assert maxerr(_outputs()["ghost_batch_v2"], out["bn"]) > 1e-2


def test_ghost_batch_norm_stats_are_mean_of_virtual_batch_stats():
    st = _equiv()["ghost_stats_v4"]
    s1, s2 = R.batch_stats(X[:4]), R.batch_stats(X[4:])
    assert maxerr(st.mean, (s1[0] + s2[0]) / 2) < 1e-13
    assert maxerr(st.var, (s1[1] + s2[1]) / 2) < 1e-12


def test_batch_renorm_rmax1_dmax0_is_batch_norm():
    y, st = _equiv()["renorm_r1_d0"]
    assert maxerr(y, _equiv()["bn"]) < 1e-13
    mu, var = R.batch_stats(X)
    assert maxerr(st.mean, mu) < 1e-13 and maxerr(st.var, var) < 1e-12


def test_batch_renorm_gradient_treats_r_d_as_constants():
    """Ioffe 2017: r and d are stop_gradient'ed, so dy/dx is BN's Jacobian scaled by r per channel."""
    r = np.sqrt(R.batch_stats(X)[1] + 1e-5) / np.sqrt(RV + 1e-5)
    assert maxerr(_equiv()["renorm_grad"], np.asarray(_equiv()["bn_grad"]) * r) < 1e-12


def test_lp2_batch_norm_vs_batch_norm_eps_placement():
    """l2 BN divides by sqrt(var) + eps, BN by sqrt(var + eps): exactly lp2 = bn * sqrt(var + eps) /
    (sqrt(var) + eps). With eps=1e-5 and sigma ~1.5 they differ by ~|x_hat| eps / (2 sigma) ~ 1e-5,
    which is the honest tolerance for "lp2 == BN"; as eps -> 0 they coincide."""
    _, var = R.batch_stats(X)
    s = np.sqrt(var)
    out = _equiv()["lp2_vs_bn"]
    for eps in (1e-5, 1e-3):
        lp2, bn = np.asarray(out[eps][0]), np.asarray(out[eps][1])
        assert maxerr(lp2, bn * np.sqrt(var + eps) / (s + eps)) < 1e-12
        diff = maxerr(lp2, bn)
        bound = np.max(np.abs(bn)) * np.max(np.abs(np.sqrt(var + eps) / (s + eps) - 1))
        print(f"lp2 vs BN, eps={eps}: max |diff| {diff:.2e} (first-order bound {bound:.2e})")
        assert 0.5 * bound < diff <= bound * (1 + 1e-9)
    assert maxerr(*out[1e-14]) < 1e-12


def test_lp_batch_norm_scales():
    """Each l_p BN divides by its own scale: mean |y| = 1 (p=1), rms y = 1 (p=2), max |y| = 1 (p=inf)."""
    out = {p: np.asarray(y) for p, y in _equiv()["lp_tiny_eps"].items()}
    axes = (0, 1, 2)
    assert maxerr(np.abs(out["1"]).mean(axes), 1.0) < 1e-12
    assert maxerr(np.sqrt((out["2"] ** 2).mean(axes)), 1.0) < 1e-12
    assert maxerr(np.abs(out["inf"]).max(axes), 1.0) < 1e-12


def test_lp_batch_norm_returned_stats_are_mean_and_squared_scale():
    st = _equiv()["lp1_stats"]
    mu, _ = R.batch_stats(X)
    s1 = np.abs(X - mu).mean((0, 1, 2))
    assert maxerr(st.mean, mu) < 1e-13 and maxerr(st.var, s1 ** 2) < 1e-12


def test_frozen_batch_norm_is_eval_mode_batch_norm_and_has_no_stat_gradient():
    out = _equiv()
    assert maxerr(out["frozen"], out["bn_eval"]) < 1e-15
    # frozen: the output is affine in x with slope scale / sqrt(var + eps), no batch coupling
    assert maxerr(out["frozen_grad"], np.broadcast_to(G / np.sqrt(RV + 1e-5), X.shape)) < 1e-13


def test_switchable_norm_one_hot_weights_recover_in_ln_bn():
    refs = [R.instance_norm(X), R.layer_norm(X, axes=(1, 2, 3)), R.batch_norm(X)]
    for y, ref in zip(_equiv()["switchable_one_hot"], refs):
        assert maxerr(y, ref) < 1e-12


def test_switchable_norm_eval_uses_running_bn_moments():
    assert maxerr(_equiv()["switchable_eval_bn"], R.batch_norm_eval(X, RM, RV)) < 1e-12


def test_evonorm_b0_without_v_is_batch_scaling_without_centering():
    assert maxerr(_equiv()["evonorm_b0_no_v"], X / np.sqrt(R.batch_stats(X)[1] + 1e-5)) < 1e-12


# --- masks: ghost BN and EvoNorm-B0 vs references that drop the masked rows ------------------------

MASK = np.array([1, 0, 1, 1, 0, 0, 1, 1], np.float64)  # per example of X; v=2 leaves one batch empty
MASK4 = jnp.asarray(MASK).reshape(-1, 1, 1, 1)


def _ghost_without_masked_rows(x, v):
    """Float64 ghost BN of each virtual batch's valid rows (NaN on the masked rows), and the mean of
    those batches' moments weighted by their valid element counts."""
    y = np.full(x.shape, np.nan)
    means, variances, counts = [], [], []
    for k in range(0, len(x), v):
        rows = [i for i in range(k, k + v) if MASK[i]]
        if rows:
            y[rows] = R.batch_norm(x[rows], G, B)
            mu, var = R.batch_stats(x[rows])
            means.append(mu)
            variances.append(var)
            counts.append(len(rows))
    w = np.asarray(counts, np.float64)[:, None] / sum(counts)
    return y, ((w * np.array(means)).sum(0), (w * np.array(variances)).sum(0))


@pytest.mark.parametrize("v", [2, 4, 8])
def test_ghost_batch_norm_mask_drops_the_masked_rows(v):
    y, stats = jax.jit(lambda x, m: nl.ghost_batch_norm(x, G, B, virtual_batch_size=v, mask=m,
                                                        return_stats=True))(jnp.asarray(X), MASK4)
    ref, (mu, var) = _ghost_without_masked_rows(X, v)
    valid = MASK > 0
    assert maxerr(np.asarray(y)[valid], ref[valid]) < 1e-12
    assert np.isfinite(np.asarray(y)).all()  # masked rows (an empty virtual batch at v=2 too) stay finite
    assert maxerr(stats.mean, mu) < 1e-12 and maxerr(stats.var, var) < 1e-12
    unmasked = nl.ghost_batch_norm(jnp.asarray(X), G, B, virtual_batch_size=v, mask=jnp.ones((8, 1, 1, 1)))
    assert maxerr(unmasked, nl.ghost_batch_norm(jnp.asarray(X), G, B, virtual_batch_size=v)) < 1e-12


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_ghost_batch_norm_mask_gradient_is_that_of_the_valid_rows():
    """With a cotangent on the valid rows only, masked rows get no gradient and the valid rows get
    that of batch norm over their virtual batch's valid rows."""
    ct = np.where(MASK[:, None, None, None] > 0, _CT, 0.0)
    g = jax.grad(lambda x: jnp.sum(nl.ghost_batch_norm(x, G, B, virtual_batch_size=4, mask=MASK4) * ct))(
        jnp.asarray(X))
    ref = np.zeros(X.shape)
    for k in (0, 4):
        rows = [i for i in range(k, k + 4) if MASK[i]]
        ref[rows] = jax.grad(lambda x: jnp.sum(nl.batch_norm(x, G, B) * ct[rows]))(jnp.asarray(X[rows]))
    assert maxerr(g, ref) < 1e-12


def test_evonorm_b0_mask_drops_the_masked_rows():
    y, stats = jax.jit(lambda x, m: nl.evonorm_b0(x, G, B, V, mask=m, return_stats=True))(jnp.asarray(X), MASK4)
    valid = MASK > 0
    assert maxerr(np.asarray(y)[valid], R.evonorm_b0(X[valid], G, B, V)) < 1e-12
    assert np.isfinite(np.asarray(y)).all()
    _, var = R.batch_stats(X[valid])
    assert maxerr(stats.var, var) < 1e-12
    assert maxerr(np.asarray(y)[valid], np.asarray(nl.evonorm_b0(jnp.asarray(X), G, B, V))[valid]) > 1e-3


def test_switchable_norm_mask_drops_the_masked_rows():
    y, stats = jax.jit(lambda x, m: nl.switchable_norm(x, G, B, ML, VL, mask=m, return_stats=True))(
        jnp.asarray(X), MASK4)
    valid = MASK > 0
    assert maxerr(np.asarray(y)[valid], R.switchable_norm(X[valid], ML, VL, G, B)) < 1e-12
    assert np.isfinite(np.asarray(y)).all()
    mu, var = R.batch_stats(X[valid])
    assert maxerr(stats.mean, mu) < 1e-12 and maxerr(stats.var, var) < 1e-12
    assert maxerr(np.asarray(y)[valid], np.asarray(nl.switchable_norm(jnp.asarray(X), G, B, ML, VL))[valid]) > 1e-3


def test_switchable_norm_mask_over_positions_matches_the_valid_positions():
    """A (N, T, 1) mask on sequences: example n's statistics use its first L_n steps only."""
    x = _x((3, 5, 4), seed=11)
    lengths = [5, 2, 3]
    m = np.zeros((3, 5, 1))
    for n, L in enumerate(lengths):
        m[n, :L] = 1.0
    y = nl.switchable_norm(jnp.asarray(x), G[:4], B[:4], ML, VL, mask=jnp.asarray(m))
    # reference: IN/LN per example over its valid steps; BN over all valid (n, t) positions
    valid = [x[n, :L] for n, L in enumerate(lengths)]
    allv = np.concatenate(valid, 0)
    mu_b, var_b = allv.mean(0), allv.var(0)
    wm, wv = (np.exp(v - v.max()) / np.exp(v - v.max()).sum() for v in (ML, VL))
    for n, xv in enumerate(valid):
        mu_i, var_i = xv.mean(0), xv.var(0)
        mu_l, var_l = xv.mean(), xv.var()
        mu = wm[0] * mu_i + wm[1] * mu_l + wm[2] * mu_b
        var = wv[0] * var_i + wv[1] * var_l + wv[2] * var_b
        ref = (xv - mu) / np.sqrt(var + 1e-5) * G[:4] + B[:4]
        assert maxerr(np.asarray(y)[n, :lengths[n]], ref) < 1e-12


# --- low precision and bad input -----------------------------------------------------------------

LOWP = {
    "ghost_batch": lambda x: nl.ghost_batch_norm(x, G, B, virtual_batch_size=4),
    "batch_renorm": lambda x: nl.batch_renorm(x, G, B, running=nl.Moments(RM, RV)),
    "lp_batch_p1": lambda x: nl.lp_batch_norm(x, G, B, p=1),
    "frn": lambda x: nl.filter_response_norm(x, G, B, TAU),
    "evonorm_b0": lambda x: nl.evonorm_b0(x, G, B, V),
    "evonorm_s0": lambda x: nl.evonorm_s0(x, G, B, V, num_groups=2),
    "switchable": lambda x: nl.switchable_norm(x, G, B, ML, VL),
    "local_response": lambda x: nl.local_response_norm(x, size=3, alpha=0.3),
}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_same_dtype_out(dtype):
    dt = jnp.dtype(dtype)
    assert stats_dtype(dt) == jnp.float32
    x_lp = jnp.asarray(X).astype(dt)
    ulp = 2.0 ** -7 if dtype == "bfloat16" else 2.0 ** -10
    out_lp, out32 = jax.jit(lambda a, b: ({k: f(a) for k, f in LOWP.items()},
                                          {k: f(b) for k, f in LOWP.items()}))(x_lp, x_lp.astype(jnp.float32))
    for name in LOWP:
        y, y32 = out_lp[name], np.asarray(out32[name], np.float64)
        assert y.dtype == dt, name
        err = np.abs(np.asarray(y, np.float64) - y32)
        assert np.all(err <= ulp * np.abs(y32) + 1e-6), (name, float(err.max()))


def test_bad_inputs():
    x = jnp.ones((6, 2, 2, 4))
    with pytest.raises(ValueError, match="virtual_batch_size=4 must be a positive divisor of the batch size 6"):
        nl.ghost_batch_norm(x, virtual_batch_size=4)
    with pytest.raises(ValueError, match="r_max"):
        nl.batch_renorm(x, running=nl.Moments(jnp.zeros(4), jnp.ones(4)), r_max=0.5)
    with pytest.raises(ValueError, match=r"unknown p 3; valid choices: 1, 2, inf"):
        nl.lp_batch_norm(x, p=3)
    with pytest.raises(ValueError, match="rank"):
        nl.filter_response_norm(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="rank"):
        nl.evonorm_b0(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="rank"):
        nl.switchable_norm(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="size must be > 0"):
        nl.local_response_norm(x, size=0)
    with pytest.raises(ValueError, match="4 channels cannot be split into num_groups=3"):
        nl.evonorm_s0(x, num_groups=3)
    with pytest.raises(ValueError, match="exactly one of num_groups or group_size.*pass num_groups=None"):
        nl.evonorm_s0(x, num_groups=2, group_size=2)  # the group-count rule of group_norm and the layers
    with pytest.raises(ValueError, match="eps"):
        nl.filter_response_norm(x, eps=0.0)
    with pytest.raises(ValueError, match="not bound"):
        nl.lp_batch_norm(x, axis_name="nope")
