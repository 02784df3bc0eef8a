"""The deep linear network (DLN) of Santurkar et al. (2018, section 2.2, Appendix A), trained as the paper trains
it, with the exact ICS of every layer over training (normlab.analysis.ics, Definition 2.1).

The problem. Minimise L = sum_n ||W_k ... W_1 x_n - A x_n||^2, a squared loss summed (not averaged) over the
full batch of `examples` inputs; every W_i is width x width (10 x 10, k = 25 in the paper), no biases. Layer i
counts in forward order: layer 1 is the first matrix applied to x (the paper's plotted layers 9 and 17 are
read in this order). Training is full-batch gradient descent, W <- W - lr grad L (one line: `gd_step`).

BN. With `bn`, a batch norm follows every linear layer except the last: h -> gamma (h - mean) / sqrt(var + eps)
+ beta, mean and (biased) variance over the full batch, eps 1e-5. Whether the paper's BN has a learnable
affine is not stated in the paper, and its authors' code for this experiment could not be found (searched the
stored code and pages: nothing). We follow the BN the paper describes (Ioffe & Szegedy's, with gamma and beta)
and the frameworks' defaults (PyTorch BatchNorm1d affine=True, TF batch_normalization center=scale=True):
`affine=True`, gamma = 1 and beta = 0 at init; `affine=False` gives the parameter-free variant. A layer's BN
parameters belong to its entry (they move with it and are "earlier" for the next layer, also in dW_(<i)).

Data draw `seed`: x_n ~ N(0, I), A with N(0, 1) entries, W_i Glorot uniform (U(+-sqrt(6 / (2 width))), the
Glorot-Bengio form and the TF default), all from numpy's default_rng(seed) in float64: the BN and plain nets of
one seed share x, A and every W_i, and float32 and float64 runs start from the same numbers.

Precision. The paper's scale (losses ~1e5, lr 1e-6) needs float64: `dtype='float64'` turns on x64 only for
the computation (`jax.enable_x64` context); the rest of the process stays float32.

Computing. Linear layers and full-batch BN are affine in x, so the loss is a function of the batch's moments
(mean, covariance): `moment_loss` computes the very function `loss` computes on the batch, in O(depth width^3)
instead of O(depth examples width^2) (the same value and gradients to rounding, tested in float64; the BN
biases of layers 1..k-2, which the next BN cancels, get exactly 0 where the batch form gets ~1e-13 rounding).

Measuring. `train` runs `steps` GD steps; at steps 0, m, 2m, ... (m = `measure_every`) it measures the ICS of
every layer's W_i for that very step (||G - G'||, cos(G, G'), ||G - G'|| / ||dW_(<i)||) and records the loss at
every step (before the step) and after the last. One jit for the whole run: a lax.scan over measured chunks,
each a measure-and-step then a lax.scan over the m - 1 plain steps; runs (seeds x lrs) are vmapped.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from normlab.analysis.ics import internal_covariate_shift
from normlab.errors import UserError

FORMS = ("l2", "cos", "normalized", "grad_norm", "update_norm")  # per-layer arrays that `train` returns
DTYPES = ("float32", "float64")


def make_problem(seed: int, depth: int, width: int, examples: int):
  """(x (examples, width), A, [W_1 .. W_k]) for data draw `seed`, numpy float64 (module docstring)."""
  rng = np.random.default_rng(int(seed))
  x = rng.standard_normal((examples, width))
  a = rng.standard_normal((width, width))
  limit = np.sqrt(6.0 / (2 * width))
  ws = [rng.uniform(-limit, limit, (width, width)) for _ in range(depth)]
  return x, a, ws


def init_params(ws, bn: bool, affine: bool = True) -> list[dict]:
  """The parameter list: [{'kernel': W_i, and with BN + affine 'scale', 'bias' for i < k}] (row form h @ W_i)."""
  out = []
  for i, w in enumerate(ws):
    layer = {"kernel": jnp.asarray(w)}
    if bn and affine and i < len(ws) - 1:
      layer["scale"], layer["bias"] = jnp.ones(w.shape[1], layer["kernel"].dtype), jnp.zeros(w.shape[1],
                                                                                               layer["kernel"].dtype)
    out.append(layer)
  return out


def forward(params, x, bn: bool, eps: float = 1e-5):
  """W_k ... W_1 x for each row of x, a full-batch BN after every layer but the last when `bn`."""
  h = x
  for i, layer in enumerate(params):
    h = h @ layer["kernel"]
    if bn and i < len(params) - 1:
      mean = jnp.mean(h, 0)
      var = jnp.mean(jnp.square(h - mean), 0)
      h = (h - mean) * jax.lax.rsqrt(var + eps)
      if "scale" in layer:
        h = h * layer["scale"] + layer["bias"]
  return h


def loss(params, x, y, bn: bool, eps: float = 1e-5):
  """The paper's loss on the batch itself: sum over the batch of ||net(x_n) - A x_n||^2 (y = x A^T)."""
  return jnp.sum(jnp.square(forward(params, x, bn, eps) - y))


def moments(x, a) -> dict:
  """The full batch's sufficient statistics: n, mean mu (w,), biased covariance cov (w, w), target map t = A^T."""
  x = np.asarray(x, np.float64)
  mu = x.mean(0)
  xc = x - mu
  return {"n": np.float64(len(x)), "mu": mu, "cov": xc.T @ xc / len(x), "t": np.asarray(a, np.float64).T}


def moment_loss(params, stats: dict, bn: bool, eps: float = 1e-5):
  """`loss`, the same function of the parameters, computed from `moments` in O(depth width^3).

  Linear layers and full-batch BN are affine in x, so net(x) = x M + b for every row, with (M, b) built layer by
  layer: W maps (M, b) to (M W, b W); BN maps them to (M s, beta - mu M s) with s = gamma / sqrt(var + eps), var =
  diag(M^T cov M) (the batch variance of x M + b). Then L = n [tr(E^T cov E) + ||mu E + b||^2], E = M - A^T.
  """
  w = stats["cov"].shape[0]
  m, b = jnp.eye(w, dtype=stats["cov"].dtype), jnp.zeros(w, stats["cov"].dtype)
  for i, layer in enumerate(params):
    m, b = m @ layer["kernel"], b @ layer["kernel"]
    if bn and i < len(params) - 1:
      var = jnp.sum((stats["cov"] @ m) * m, 0)
      s = jax.lax.rsqrt(var + eps) * layer.get("scale", 1.0)
      m = m * s
      b = layer.get("bias", 0.0) - stats["mu"] @ m
  e = m - stats["t"]
  return stats["n"] * (jnp.sum((stats["cov"] @ e) * e) + jnp.sum(jnp.square(stats["mu"] @ e + b)))


def gd_step(loss_fn, params, lr):
  """One full-batch gradient-descent step: (new params, loss before the step)."""
  value, grads = jax.value_and_grad(loss_fn)(params)
  return jax.tree_util.tree_map(lambda w, g: w - lr * g, params, grads), value


def train(params, stats: dict, lr, *, steps: int, measure_every: int, bn: bool, eps: float = 1e-5) -> dict:
  """`steps` GD steps from `params` on the batch of `stats` (`moments`); returns {'loss': (steps,) the loss
  before each step, 'final_loss', and per measured step (steps // measure_every of them, at 0, m, 2m, ...) x
  layer: each of FORMS}. Pure and jit/vmap-compatible (steps, measure_every, bn, eps static)."""
  loss_fn = functools.partial(moment_loss, stats=stats, bn=bn, eps=eps)

  def chunk(p, _):
    new, first = gd_step(loss_fn, p, lr)
    ics = internal_covariate_shift(loss_fn, p, new)
    end, rest = jax.lax.scan(lambda q, _: gd_step(loss_fn, q, lr), new, None, length=measure_every - 1)
    forms = {"l2": ics.l2, "cos": ics.cos, "normalized": ics.normalized, "grad_norm": ics.grad_norm,
             "update_norm": ics.update_norm}
    return end, {"loss": jnp.concatenate([first[None], rest]), **forms}

  end, out = jax.lax.scan(chunk, params, None, length=steps // measure_every)
  out["loss"] = out["loss"].reshape(-1)
  out["final_loss"] = loss_fn(end)
  return out


def check(depth: int, width: int, examples: int, steps: int, measure_every: int, lrs, dtype: str) -> None:
  """One-line UserErrors for bad settings."""
  if dtype not in DTYPES:
    raise UserError(f"paper_dln: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
  for name, v, low in (("depth", depth, 2), ("width", width, 1), ("examples", examples, 2), ("steps", steps, 1),
                       ("measure_every", measure_every, 1)):
    if int(v) != v or v < low:
      raise UserError(f"paper_dln: {name} must be an integer >= {low}, got {v!r}")
  if steps % measure_every:
    raise UserError(f"paper_dln: steps ({steps}) must be a multiple of measure_every ({measure_every})")
  bad = [lr for lr in lrs if not (np.isfinite(lr) and lr > 0)]
  if bad or not len(lrs):
    raise UserError(f"paper_dln: learning rates must be a non-empty list of positive numbers, got {list(lrs)}")


def run_grid(lrs, seeds, *, depth: int = 25, width: int = 10, examples: int = 1000, steps: int = 10000,
             measure_every: int = 100, nets=("batch", "none"), affine: bool = True, eps: float = 1e-5,
             dtype: str = "float64") -> dict:
  """Every net in `nets` ('batch', 'none') at every lr in `lrs` and data draw in `seeds`.

  Returns numpy float64: {'lrs', 'seeds', 'steps', 'measure_every', 'measured_steps' (M,), 'depth', 'dtype',
  'nets': {net: {'loss': (L, S, steps), 'final_loss': (L, S), each of FORMS: (L, S, M, depth)}}}, L = len(lrs),
  S = len(seeds). x64 is on only inside (dtype='float64').
  """
  lrs, seeds = tuple(float(v) for v in lrs), tuple(int(s) for s in seeds)
  check(depth, width, examples, steps, measure_every, lrs, dtype)
  unknown = [n for n in nets if n not in ("batch", "none")]
  if unknown or not nets:
    raise UserError(f"paper_dln: nets must be among 'batch', 'none', got {list(nets)}")
  problems = [make_problem(s, depth, width, examples) for s in seeds]
  stats_of = [moments(x, a) for x, a, _ in problems]
  out = {"lrs": lrs, "seeds": seeds, "steps": steps, "measure_every": measure_every, "depth": depth,
         "dtype": dtype, "measured_steps": np.arange(0, steps, measure_every), "nets": {}}
  with jax.enable_x64(dtype == "float64"):
    f = jnp.dtype(dtype)
    for net in nets:
      bn = net == "batch"
      params = [init_params([np.asarray(w, np.float64) for w in p[2]], bn, affine) for _ in lrs for p in problems]
      params = jax.tree_util.tree_map(lambda *a: jnp.stack(a).astype(f), *params)
      stats = [stats_of[s] for _ in lrs for s in range(len(seeds))]
      stats = {k: jnp.asarray(np.stack([st[k] for st in stats]), f) for k in stats[0]}
      lr = jnp.asarray([v for v in lrs for _ in problems], f)
      run = jax.jit(jax.vmap(functools.partial(train, steps=steps, measure_every=measure_every, bn=bn, eps=eps)))
      res = jax.device_get(run(params, stats, lr))
      out["nets"][net] = {k: np.asarray(v, np.float64).reshape(len(lrs), len(seeds), *np.shape(v)[1:])
                          for k, v in res.items()}
  return out


def unstable(loss_curve, final_loss) -> bool:
  """The plain net's instability: a non-finite loss anywhere, or a final loss not below the initial one."""
  c = np.asarray(loss_curve, np.float64)
  return bool(not np.all(np.isfinite(c)) or not np.isfinite(final_loss) or final_loss >= c[0])


def instability_edge(grid: dict, net: str = "none") -> float | None:
  """The smallest lr of `grid` at which `net` is unstable (`unstable`) for some seed; None if none is."""
  d = grid["nets"][net]
  for i, lr in sorted(enumerate(grid["lrs"]), key=lambda t: t[1]):
    if any(unstable(d["loss"][i, s], d["final_loss"][i, s]) for s in range(len(grid["seeds"]))):
      return lr
  return None


def run_config(c) -> dict:
  """`run_grid` over the config section `c` (configs/experiments/ics.py `paper_dln`): lrs = its `lrs` and
  `lr_grid` together, sorted."""
  lrs = tuple(sorted({float(v) for v in (*c.lrs, *c.lr_grid)}))
  return run_grid(lrs, c.seeds, depth=c.depth, width=c.width, examples=c.examples, steps=c.steps,
                  measure_every=c.measure_every, affine=c.affine, eps=c.eps, dtype=c.dtype)
