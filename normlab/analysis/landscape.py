"""The loss landscape along the gradient, as in Santurkar et al. (2018) section 3.1 (their Figure 4).

At parameters theta with gradient g = grad L(theta), for each step size eta in a list:

    loss(eta)      = L(theta - eta g)
    grad_diff(eta) = || grad L(theta - eta g) - grad L(theta) ||_2
    beta(eta)      = grad_diff(eta) / || eta g ||_2

and the three per-step summaries the paper plots over training:

    loss variation           = max_eta loss(eta) - min_eta loss(eta)   ("range of the loss")
    gradient predictiveness  = the range of grad_diff(eta)             (small = predictive gradient)
    effective beta-smoothness = max_eta beta(eta)

The ranges run over the given step sizes only: include 0 in `step_sizes` to count L(theta) itself.
With `unit_direction=True` the move is along g / ||g||, so the step sizes are distances in parameter
space (eta ||g|| in the paper's terms): two networks compared at the same step sizes then move equally far.
(For a quadratic 1/2 x^T A x, beta(eta) = ||A g|| / ||g||: the top eigenvalue when g is a top
eigenvector, and between the smallest and largest eigenvalue in general.) The loss function is the
training loss on a fixed batch, so for BN it uses that batch's statistics at every eta.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array


def _norm(tree) -> Array:
  return jnp.sqrt(sum(jnp.vdot(x, x).real for x in jax.tree_util.tree_leaves(tree)))


@flax.struct.dataclass
class Landscape:
  step_sizes: Array   # (n,)
  losses: Array       # (n,) L(theta - eta g)
  grad_diffs: Array   # (n,) ||grad L(theta - eta g) - grad L(theta)||
  betas: Array        # (n,) grad_diff / ||eta g||  (0 at eta = 0)
  loss0: Array        # L(theta)
  grad_norm: Array    # ||g||

  @property
  def loss_variation(self) -> Array:
    return jnp.max(self.losses) - jnp.min(self.losses)

  @property
  def grad_variation(self) -> Array:
    return jnp.max(self.grad_diffs) - jnp.min(self.grad_diffs)

  @property
  def beta(self) -> Array:
    """Effective beta-smoothness: the largest gradient change per unit distance moved."""
    return jnp.max(self.betas)


def along_gradient(loss_fn: Callable[[Any], Array], params, step_sizes: Sequence[float] | Array,
                   direction=None, unit_direction: bool = False) -> Landscape:
  """Loss and gradient at theta - eta * d for every eta (d = grad L(theta) unless `direction` given;
  with `unit_direction`, d is scaled to norm 1, so eta is the distance moved).

  Jit-compatible; the step sizes are evaluated one after another (`lax.map`), one gradient each.
  """
  loss0, g0 = jax.value_and_grad(loss_fn)(params)
  d = g0 if direction is None else direction
  if unit_direction:
    n = _norm(d)
    d = jax.tree_util.tree_map(lambda v: v / jnp.where(n > 0, n, 1).astype(v.dtype), d)
  etas = jnp.asarray(step_sizes, dtype=jnp.result_type(*jax.tree_util.tree_leaves(params)))
  dnorm = _norm(d)

  def at(eta):
    p = jax.tree_util.tree_map(lambda x, v: x - eta.astype(x.dtype) * v, params, d)
    loss, g = jax.value_and_grad(loss_fn)(p)
    diff = _norm(jax.tree_util.tree_map(lambda a, b: a - b, g, g0))
    dist = jnp.abs(eta) * dnorm
    beta = jnp.where(dist > 0, diff / jnp.where(dist > 0, dist, 1), 0.0)
    return loss, diff, beta

  losses, diffs, betas = jax.lax.map(at, etas)
  return Landscape(step_sizes=etas, losses=losses, grad_diffs=diffs, betas=betas, loss0=loss0,
                   grad_norm=_norm(g0))
