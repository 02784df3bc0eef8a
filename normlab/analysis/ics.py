"""Internal covariate shift as Santurkar et al. (2018) define it in section 2.2 (Definition 2.1).

For layer i at step t, with the batch (x_t, y_t) fixed:

    G_i  = grad_{W_i} L(W_1, ..., W_k; x_t, y_t)                       (all layers at step t)
    G'_i = grad_{W_i} L(W'_1, ..., W'_{i-1}, W_i, ..., W_k; x_t, y_t)  (earlier layers after step t)

where W'_j are the parameters after the optimizer step t (the same batch, the same update as
training uses). ICS_i = ||G_i - G'_i||_2; we also return cos(G_i, G'_i) and ||dW_(<i)||, the norm of the
update of every parameter of the entries before layer i (all their leaves, flattened together), which gives
the step-size-normalised form ||G_i - G'_i|| / ||dW_(<i)|| (`ICS.normalized`). Everything is exact: k + 1
gradient evaluations, no approximation.

Layer order. "Earlier" needs an order on the layers. We take it as an explicit list `order` of paths
(tuples of keys) into the params tree, one per parameter-owning module, in the order the forward
pass calls them: `normlab.analysis.capture.module_call_order(model, variables, x, train=True)` gives
it for any flax model (names do not matter; a param dict's key order is not used, since jax tree
operations sort dict keys, so 'Dense_10' would come before 'Dense_2'). For a deep linear network
stored as a list of matrices, `order=None` means list order. Every parameter must belong to exactly
one entry of `order` (ValueError otherwise): an entry's parameters (kernel, bias, a norm's scale and
bias) move together. A BN layer after layer i-1 is "earlier" than layer i, since it is called first.

Measured layers are the entries that own a `kernel` leaf (wrt='kernel', the paper's W_i), or every
entry (wrt='all': all of the entry's leaves, flattened and concatenated; use it for plain arrays).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax

from normlab.analysis.capture import path_key

Array = jax.Array


@flax.struct.dataclass
class ICS:
  """Per measured layer (in `names` order): ||G - G'||, cos(G, G'), ||G||, ||G'|| and ||dW_(<i)|| (the
  update of all parameters of the entries before the layer, flattened; 0 for the first entry)."""
  l2: Array
  cos: Array
  grad_norm: Array
  grad_norm_shifted: Array
  update_norm: Array
  names: tuple = flax.struct.field(pytree_node=False, default=())

  @property
  def relative(self) -> Array:
    """||G - G'|| / ||G|| (0 where G = 0)."""
    return jnp.where(self.grad_norm > 0, self.l2 / jnp.where(self.grad_norm > 0, self.grad_norm, 1), 0.0)

  @property
  def normalized(self) -> Array:
    """||G - G'|| / ||dW_(<i)||, ICS per unit of the earlier layers' step (0 where they did not move: then
    G' = G exactly)."""
    moved = self.update_norm > 0
    return jnp.where(moved, self.l2 / jnp.where(moved, self.update_norm, 1), 0.0)


def _key_entry(k) -> Any:
  for attr in ("key", "idx", "name"):
    if hasattr(k, attr):
      return getattr(k, attr)
  return k


def _leaf_paths(params) -> list[tuple]:
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return [tuple(_key_entry(k) for k in path) for path, _ in flat]


def default_order(params) -> list[tuple]:
  """List/tuple params (a deep linear network's matrices): their index order."""
  if isinstance(params, (list, tuple)):
    return [(i,) for i in range(len(params))]
  raise ValueError("internal_covariate_shift: pass `order` (the layer order) for dict params, e.g. "
                   "normlab.analysis.capture.module_call_order(model, variables, x, train=True); dict key "
                   "order is not a layer order")


def _assign(leaf_paths: list[tuple], order: Sequence[tuple]) -> list[int]:
  """Index into `order` of the entry owning each leaf (longest matching prefix)."""
  owner = []
  for lp in leaf_paths:
    best, best_len = -1, -1
    for i, p in enumerate(order):
      if len(p) <= len(lp) and tuple(lp[:len(p)]) == tuple(p) and len(p) > best_len:
        best, best_len = i, len(p)
    owner.append(best)
  missing = [path_key(lp) for lp, o in zip(leaf_paths, owner) if o < 0]
  if missing:
    raise ValueError(f"internal_covariate_shift: parameters {missing} belong to no entry of `order` "
                     f"{[path_key(p) for p in order]}; every parameter needs a layer")
  return owner


def internal_covariate_shift(loss_fn: Callable[[Any], Array], params, new_params,
                             order: Sequence[tuple] | None = None, *, wrt: str = "kernel") -> ICS:
  """ICS of every measured layer for one optimizer step params -> new_params (see module docstring).

  `loss_fn(params) -> scalar` is the training loss on the step's batch (batch statistics in train
  mode for BN). Jit-compatible: `order` and `wrt` are static.
  """
  if wrt not in ("kernel", "all"):
    raise ValueError(f"internal_covariate_shift: wrt must be 'kernel' or 'all', got {wrt!r}")
  order = [tuple(p) for p in (default_order(params) if order is None else order)]
  leaf_paths = _leaf_paths(params)
  owner = _assign(leaf_paths, order)
  old_leaves, treedef = jax.tree_util.tree_flatten(params)
  new_leaves = treedef.flatten_up_to(new_params)

  measured = []  # (order index, [leaf indices])
  for i, p in enumerate(order):
    leaves = [j for j, o in enumerate(owner) if o == i]
    if wrt == "kernel":
      leaves = [j for j in leaves if leaf_paths[j][len(p):] == ("kernel",)]
    if leaves:
      measured.append((i, leaves))
  if not measured:
    raise ValueError("internal_covariate_shift: no layer to measure (no 'kernel' leaves; use wrt='all')")

  # Row 0: nothing updated (gives G). Row r: entries before measured layer r-1 updated (gives G').
  # All rows run the same compiled body, so identical inputs give bitwise identical gradients.
  rows = [[False] * len(owner)] + [[o < i for o in owner] for i, _ in measured]
  masks = jnp.asarray(rows, dtype=bool)

  def body(mask):
    leaves = [jnp.where(mask[j], n, o) for j, (o, n) in enumerate(zip(old_leaves, new_leaves))]
    grads = jax.tree_util.tree_leaves(jax.grad(loss_fn)(jax.tree_util.tree_unflatten(treedef, leaves)))
    return [jnp.concatenate([grads[j].ravel() for j in ls]) for _, ls in measured]

  stacked = jax.lax.map(body, masks)
  # ||new - old||^2 per leaf, in the leaves' dtype; the update norm of layer i sums the leaves owned before it
  sq = [jnp.sum(jnp.square(n - o)) for o, n in zip(old_leaves, new_leaves)]
  zero = jnp.zeros((), jnp.result_type(*old_leaves))
  un = [jnp.sqrt(sum((sq[j] for j, o in enumerate(owner) if o < i), zero)) for i, _ in measured]
  l2, cos, gn, gn2 = [], [], [], []
  for r, g_rows in enumerate(stacked, start=1):
    g, g2 = g_rows[0], g_rows[r]
    n1, n2 = jnp.linalg.norm(g), jnp.linalg.norm(g2)
    d = jnp.linalg.norm(g - g2)
    c = jnp.clip(jnp.vdot(g, g2) / jnp.maximum(n1 * n2, jnp.finfo(g.dtype).tiny), -1.0, 1.0)
    l2.append(d)
    cos.append(jnp.where(d == 0, jnp.ones_like(c), c))  # G' = G exactly: cos is exactly 1, not 1 - ulp
    gn.append(n1)
    gn2.append(n2)
  names = tuple(path_key(order[i]) for i, _ in measured)
  return ICS(l2=jnp.stack(l2), cos=jnp.stack(cos), grad_norm=jnp.stack(gn), grad_norm_shifted=jnp.stack(gn2),
             update_norm=jnp.stack(un).astype(jnp.stack(l2).dtype), names=names)


def ics_step(loss_fn: Callable[[Any], Array], params, opt_state, tx: optax.GradientTransformation,
             order: Sequence[tuple] | None = None, *, wrt: str = "kernel"):
  """One optimizer step that also measures its ICS: returns (ics, new_params, new_opt_state, loss).

  The update is `tx` applied to the full gradient at `params` (the step training takes); ICS compares
  the gradients before and after the earlier layers take that very step.
  """
  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, new_opt_state = tx.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  return internal_covariate_shift(loss_fn, params, new_params, order, wrt=wrt), new_params, new_opt_state, loss
