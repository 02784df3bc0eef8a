"""Forward mode through every functional norm: jax.jvp, jax.jacfwd and jax.hessian run, and in
float64 agree with the plain jnp formula (norms on `standardize`; `jax.hessian` is jacfwd of
jacrev) or with reverse mode (norms written in plain jnp already), and second order forward mode
agrees with finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import normlab as nl
from normlab import reparam as rp, variants as V

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)

# numpy float64 inputs: they become jax float64 inside the tests, where x64 is on
RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 2, 2, 4)) * 1.5 + 0.3
T = RNG.normal(size=X.shape)
S = RNG.normal(size=(4,))
B = RNG.normal(size=(4,))
MASK = np.asarray([1., 1., 0., 1.])[:, None, None, None]


def plain_standardize(x, axes, eps=1e-5, center=True, mask=None):
  m = jnp.ones_like(x) if mask is None else jnp.broadcast_to(mask, x.shape)
  n = jnp.sum(m, axes, keepdims=True)
  mu = jnp.sum(x * m, axes, keepdims=True) / n if center else 0.0
  var = jnp.sum((x - mu) ** 2 * m, axes, keepdims=True) / n
  return (x - mu) / jnp.sqrt(var + eps)


def plain_group_norm(x, groups):
  xg = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
  return plain_standardize(xg, (1, 2, 4)).reshape(x.shape)


def plain_ghost(x, v):
  xg = x.reshape(x.shape[0] // v, v, *x.shape[1:])
  return plain_standardize(xg, (1, 2, 3)).reshape(x.shape)


# (normlab, plain jnp formula) as functions of x alone
AGAINST_PLAIN = {
    "batch_norm": (lambda x: nl.batch_norm(x, S, B), lambda x: plain_standardize(x, (0, 1, 2)) * S + B),
    "batch_norm_masked": (lambda x: nl.batch_norm(x, S, B, mask=MASK),
                          lambda x: plain_standardize(x, (0, 1, 2), mask=MASK) * S + B),
    "layer_norm": (lambda x: nl.layer_norm(x, S, B), lambda x: plain_standardize(x, (3,)) * S + B),
    "instance_norm": (lambda x: nl.instance_norm(x, S, B), lambda x: plain_standardize(x, (1, 2)) * S + B),
    "group_norm": (lambda x: nl.group_norm(x, S, B, num_groups=2), lambda x: plain_group_norm(x, 2) * S + B),
    "rms_norm": (lambda x: nl.rms_norm(x, S), lambda x: plain_standardize(x, (3,), 1e-6, center=False) * S),
    "ghost_batch_norm": (lambda x: V.ghost_batch_norm(x, S, B, virtual_batch_size=2),
                         lambda x: plain_ghost(x, 2) * S + B),
    "filter_response_norm": (lambda x: V.filter_response_norm(x, S, B, 0.1),
                             lambda x: jnp.maximum(plain_standardize(x, (1, 2), 1e-6, center=False) * S + B, 0.1)),
}

RUNNING = nl.Moments(jnp.asarray(RNG.normal(size=(4,))), jnp.asarray(RNG.uniform(0.5, 2, size=(4,))))
# every other functional norm, as a function of its input alone
ALL_OTHERS = {
    "batch_norm_eval": lambda x: nl.batch_norm(x, S, B, running=RUNNING),
    "batch_renorm": lambda x: V.batch_renorm(x, S, B, running=RUNNING, r_max=1.5, d_max=0.5),
    "frozen_batch_norm": lambda x: V.frozen_batch_norm(x, RUNNING.mean, RUNNING.var, S, B),
    "lp_batch_norm_1": lambda x: V.lp_batch_norm(x, S, B, p=1),
    "lp_batch_norm_2": lambda x: V.lp_batch_norm(x, S, B, p=2),
    "lp_batch_norm_inf": lambda x: V.lp_batch_norm(x, S, B, p="inf"),
    "noisy_batch_norm": lambda x: V.noisy_batch_norm(x, jax.random.key(0), S, B),
    "evonorm_b0": lambda x: V.evonorm_b0(x, S, B, jnp.full((4,), 0.3)),
    "evonorm_s0": lambda x: V.evonorm_s0(x, S, B, jnp.full((4,), 0.3), num_groups=2),
    "switchable_norm": lambda x: V.switchable_norm(x, S, B, jnp.asarray([0.1, 0.2, -0.3]),
                                                   jnp.asarray([-0.2, 0.1, 0.3])),
    "local_response_norm": lambda x: V.local_response_norm(x, size=3),
    "weight_norm": lambda w: rp.weight_norm(w.reshape(-1, 4), S),
    "weight_standardize": lambda w: rp.weight_standardize(w.reshape(-1, 4)),
    "spectral_normalize": lambda w: rp.spectral_normalize(w.reshape(-1, 4), jnp.ones(4), n_iters=2)[0],
    "weight_norm_data_init": lambda t: rp.weight_norm_data_init(t.reshape(-1, 4)),
}


def _scalar(f):
  return lambda x: jnp.sum(jnp.sin(f(x)) * T)


@pytest.mark.parametrize("name", sorted(AGAINST_PLAIN))
def test_jvp_jacfwd_hessian_match_the_plain_formula(name):
  ours, plain = AGAINST_PLAIN[name]
  run = jax.jit(lambda f: (jax.jvp(f, (X,), (T,)), jax.hessian(_scalar(f))(X)), static_argnums=0)
  ((y, dy), h), ((y_ref, dy_ref), h_ref) = run(ours), run(plain)
  np.testing.assert_allclose(y, y_ref, atol=1e-12)
  np.testing.assert_allclose(dy, dy_ref, atol=1e-10)
  np.testing.assert_allclose(h, h_ref, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ALL_OTHERS))
def test_forward_mode_runs_and_matches_reverse_mode(name):
  f = ALL_OTHERS[name]
  j_fwd, j_rev = jax.jit(lambda x: (jax.jacfwd(f)(x), jax.jacrev(f)(x)))(X)
  for a, b in zip(jax.tree.leaves(j_fwd), jax.tree.leaves(j_rev)):
    np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("name", ["group_norm", "rms_norm"])
def test_forward_mode_second_order_vs_finite_differences(name):
  check_grads(jax.jit(_scalar(AGAINST_PLAIN[name][0])), (X,), order=2, modes=["fwd"], atol=1e-6, rtol=1e-6,
              eps=1e-4)
