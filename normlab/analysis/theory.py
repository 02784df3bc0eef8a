"""Numeric checks of the theory in Santurkar et al. (2018), section 4, on small random instances.

Setting (one BN channel, the paper's section 4.1). A batch of m pre-BN activations y in R^m of one
feature; y_hat = (y - mu) / sigma with mu, sigma^2 the batch mean and (biased) variance; the BN output
z = gamma * y_hat + beta feeds the rest of the network, whose loss is L(z). The BN network's loss as a
function of y is L_hat(y) = L(z(y)). The paper writes the gradient of the network *without* BN as
"grad_y L": it is the gradient of the same downstream loss w.r.t. its input, here

    g     = grad_z L(z)          (m,)      the paper's  g_hat_j = grad_{y_j} L
    H     = hess_z L(z)          (m, m)    the paper's  H_jj
    g_bn  = grad_y L_hat(y)      (m,)      the paper's  grad_{y_j} L_hat
    H_bn  = hess_y L_hat(y)      (m, m)    the paper's  d^2 L_hat / dy_j dy_j

BN input gradient (closed form, checked against autodiff):

    g_bn = (gamma / sigma) * (g - mean(g) - y_hat * mean(g * y_hat))
         = (gamma / (m sigma)) * (m g - <1, g> 1 - <g, y_hat> y_hat)

Seed document 002 (section 2.5.1) prints the last term with a '+': wrong (`bn_input_grad_seed`).
Seed 002 also writes ||.||_2 on the left of its "norm" identities where the right side is a squared
norm: the identities below are for squared norms.

Theorem 4.1 (paper): ||g_bn||^2 <= (gamma^2 / sigma^2) (||g||^2 - <1, g>^2 / m - <g, y_hat>^2 / m).
With eps = 0 this is an *identity*: (I - 11^T/m - y_hat y_hat^T/m) is the orthogonal projection off
span{1, y_hat} (||1||^2 = ||y_hat||^2 = m, <1, y_hat> = 0), and g_bn = (gamma/sigma) P g. With eps > 0
(sigma^2 = var + eps, ||y_hat||^2 = m var/(var + eps) < m) the slack is
(eps / (var + eps)) * (gamma^2/sigma^2) <g, y_hat>^2 / m >= 0. So it holds on every instance.

Theorem 4.2 (paper, "the effect of BatchNorm on smoothness"):

    (4.2a)  g_bn^T H_bn g_bn <= (gamma^2/sigma^2) g_bn^T H g_bn - (gamma/(m sigma^2)) <g, y_hat> ||g_bn||^2
    (4.2b)  if H "preserves the relative norms of g and g_bn":
            g_bn^T H_bn g_bn <= (gamma^2/sigma^2) (g^T H g - (1/(m gamma)) <g, y_hat> ||g_bn||^2)

(4.2b as transcribed in secondary sources and the issue; a variant with ||g||^2 in place of
||g_bn||^2 in the last term is checked too, as `rhs_b_gnorm`.) What holds, exactly, with eps = 0:

* (4.2a) is an identity. Differentiating L(z(y)) twice, H_bn = J H J + sum_k g_k hess z_k with
  J = (gamma/sigma) P; g_bn lies in range(P), so J g_bn = (gamma/sigma) g_bn, and along a direction
  v orthogonal to 1 and y_hat, d^2 y_hat / dt^2 = -y_hat ||v||^2 / (m sigma^2). No assumption on H.
* Given (4.2a), (4.2b) holds iff  g_bn^T H g_bn <= g^T H g  (for gamma > 0). That is the precise
  content of "H preserves relative norms": it is implied by H = c I with c >= 0 (H PSD and isotropic)
  together with ||g_bn|| <= ||g|| (e.g. gamma <= sigma), and it can fail when H is PSD but
  anisotropic, when H is indefinite (a locally non-convex loss in z), or when gamma > sigma.
  `theorem42` measures each term and these conditions; `theorem42_survey` counts, over random
  instances of each kind, how often each form holds.

Lemma 4.5 (initialization): BN is invariant to W -> k W (k > 0) for the weights feeding a BN layer
(per output unit), so k W* is an optimum of the BN network when W* is. With k = <W0, W*>/||W*||^2,

    ||W0 - k W*||^2 - ||W0 - W*||^2 = (k^2 - 1) ||W*||^2 - 2 (k - 1) <W0, W*>     (seed 002, correct)
                                    = -(k - 1)^2 ||W*||^2
                                    = -(||W*||^2 - <W0, W*>)^2 / ||W*||^2  <= 0      (paper's form)

It needs k > 0, i.e. <W0, W*> > 0 (a negative scale flips the BN output's sign and is not an optimum).
`init_distance_identity` checks the algebra numerically; `scaled_distance` is the distance from W0 to
the ray {k W : k > 0} (per column with `per_unit=True`, BN's actual invariance).
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# ----- BN on one channel: a pure-jnp reference, and normlab's own (used for the theorems) -----------

def batch_moments(y, eps: float = 0.0, axis: int = 0):
  mu = jnp.mean(y, axis=axis, keepdims=True)
  var = jnp.mean((y - mu) ** 2, axis=axis, keepdims=True)
  return mu, jnp.sqrt(var + eps)


def bn_reference(y, gamma=1.0, beta=0.0, eps: float = 0.0, axis: int = 0):
  """z = gamma * (y - mu) / sqrt(var + eps) + beta over `axis` (the batch), written in plain jnp."""
  mu, sigma = batch_moments(y, eps, axis)
  return gamma * (y - mu) / sigma + beta


def bn(y, gamma=1.0, beta=0.0, eps: float = 0.0, axis: int = 0):
  """The same with normlab's standardization (`normlab.core.standardize`, whose closed-form
  derivative works in forward and reverse mode): the theorems' gradients and Hessians are taken
  through normlab's own BN. eps = 0 is allowed here (the theorems' exact setting)."""
  from normlab import core
  return gamma * core.standardize(y, (axis,), eps=eps)[0] + beta


def bn_input_grad(g, y, gamma=1.0, eps: float = 0.0, axis: int = 0):
  """The correct closed form: (gamma/sigma) (g - mean(g) - y_hat mean(g y_hat))."""
  mu, sigma = batch_moments(y, eps, axis)
  yh = (y - mu) / sigma
  return gamma / sigma * (g - jnp.mean(g, axis, keepdims=True) - yh * jnp.mean(g * yh, axis, keepdims=True))


def bn_input_grad_seed(g, y, gamma=1.0, eps: float = 0.0, axis: int = 0):
  """Seed 002's printed formula, (gamma/(m sigma)) (m g - sum g + y_hat sum(y_hat g)): the '+' is wrong."""
  m = y.shape[axis]
  mu, sigma = batch_moments(y, eps, axis)
  yh = (y - mu) / sigma
  return gamma / (m * sigma) * (m * g - jnp.sum(g, axis, keepdims=True) + yh * jnp.sum(yh * g, axis, keepdims=True))


def bn_gradient_check(seed: int = 0, *, shape=(32, 8), eps: float = 1e-5, trials: int = 20) -> dict:
  """Max |difference| to autodiff of the pure-jnp BN (`bn_reference`), over random instances, for: our closed form,
  normlab's custom VJP (`normlab.norms.batch_norm`), and the seed's formula. Also the max |autodiff|
  entry (the scale), so differences can be read relative to it."""
  from normlab import norms

  @jax.jit
  def diffs(y, g, gamma):
    ref = jax.vjp(lambda y: bn_reference(y, gamma, 0.0, eps), y)[1](g)[0]
    nl = jax.vjp(lambda y: norms.batch_norm(y, gamma, None, eps=eps), y)[1](g)[0]
    d = lambda a: jnp.max(jnp.abs(a - ref))
    return {"ours": d(bn_input_grad(g, y, gamma, eps)), "normlab": d(nl),
            "seed": d(bn_input_grad_seed(g, y, gamma, eps)), "scale": jnp.max(jnp.abs(ref))}

  rng = np.random.default_rng(seed)
  out = {"ours": 0.0, "normlab": 0.0, "seed": 0.0, "scale": 0.0}
  for _ in range(trials):
    y = rng.normal(size=shape) * np.exp(rng.uniform(-2, 2)) + rng.normal(size=shape[-1])
    r = diffs(y, rng.normal(size=shape), np.exp(rng.normal(size=shape[-1])))
    out = {k: max(out[k], float(r[k])) for k in out}
  return out


# ----- Theorem 4.1 ---------------------------------------------------------------------------------

def theorem41(y, g, gamma, eps: float = 0.0) -> dict:
  """LHS ||grad_y L_hat||^2 (autodiff) and RHS of Theorem 4.1 for one channel y (m,), upstream g (m,).

  rel_slack = (rhs - lhs) / ((gamma^2/sigma^2) ||g||^2): relative to the bound's scale, not to rhs,
  which vanishes when 1 and y_hat span the batch (m = 2).
  """
  m = y.shape[0]
  mu, sigma = batch_moments(y, eps)
  yh = (y - mu) / sigma
  g_bn = jax.vjp(lambda y: bn(y, gamma, 0.0, eps), y)[1](g)[0]
  lhs = jnp.sum(g_bn ** 2)
  rhs = (gamma ** 2 / sigma[0] ** 2) * (jnp.sum(g ** 2) - jnp.sum(g) ** 2 / m - jnp.dot(g, yh) ** 2 / m)
  scale = (gamma ** 2 / sigma[0] ** 2) * jnp.sum(g ** 2)  # the bound's size before the projections
  return {"lhs": lhs, "rhs": rhs, "slack": rhs - lhs,
          "rel_slack": (rhs - lhs) / jnp.maximum(scale, jnp.finfo(rhs.dtype).tiny)}


# ----- downstream losses L(z) for random instances -------------------------------------------------

KINDS = ("isotropic", "psd", "indefinite", "network")


def random_instance(rng: np.random.Generator, m: int, kind: str, ratio_range=(0.1, 1.0), *,
                    channels: int = 4, hidden: int = 8, classes: int = 3) -> dict:
  """A random instance as numpy arrays: the batch y (m,) of one channel (random scale and offset),
  gamma = r * std(y) with r log-uniform in `ratio_range` (the theorem's gamma/sigma), and the
  parameters of a random twice-differentiable downstream loss L(z) of the BN output (`downstream`):

  isotropic: (c/2)||z - t||^2 (H = c I: PSD, preserves all relative norms); psd: a random positive
  semi-definite quadratic; indefinite: a random symmetric (indefinite) quadratic plus a linear term;
  network: z is channel 0 of an (m, channels) hidden layer (other channels fixed), then a tanh MLP
  and softmax cross-entropy on random labels (H generally indefinite).
  """
  if kind not in KINDS:
    raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
  y = rng.normal(size=m) * np.exp(rng.uniform(-2.0, 2.0)) + 3.0 * rng.normal()
  r = np.exp(rng.uniform(np.log(ratio_range[0]), np.log(ratio_range[1])))
  inst = {"y": y, "gamma": np.asarray(r * np.std(y))}
  if kind == "isotropic":
    inst.update(c=np.asarray(np.exp(rng.uniform(-1.0, 1.0))), t=rng.normal(size=m))
  elif kind == "psd":
    b = rng.normal(size=(m, m)) / np.sqrt(m)
    inst.update(a=b.T @ b, t=rng.normal(size=m))
  elif kind == "indefinite":
    s = rng.normal(size=(m, m)) / np.sqrt(m)
    inst.update(a=0.5 * (s + s.T), t=rng.normal(size=m))
  else:
    inst.update(rest=rng.normal(size=(m, channels - 1)),
                w1=rng.normal(size=(channels, hidden)) / np.sqrt(channels),
                w2=rng.normal(size=(hidden, classes)) / np.sqrt(hidden),
                onehot=np.eye(classes)[rng.integers(0, classes, size=m)])
  return inst


def random_instances(rng: np.random.Generator, n: int, m: int, kind: str, ratio_range=(0.1, 1.0)) -> dict:
  """`n` instances stacked along a leading axis (for `theorem42_batch`)."""
  insts = [random_instance(rng, m, kind, ratio_range) for _ in range(n)]
  return {k: np.stack([i[k] for i in insts]) for k in insts[0]}


def downstream(kind: str, inst: dict) -> Callable[[Array], Array]:
  """The loss L(z) of a `random_instance`."""
  if kind == "isotropic":
    return lambda z: 0.5 * inst["c"] * jnp.sum((z - inst["t"]) ** 2)
  if kind == "psd":
    return lambda z: 0.5 * (z - inst["t"]) @ inst["a"] @ (z - inst["t"])
  if kind == "indefinite":
    return lambda z: 0.5 * (z - inst["t"]) @ inst["a"] @ (z - inst["t"]) + jnp.dot(inst["t"], z)
  if kind == "network":
    def loss(z):
      h = jnp.tanh(jnp.concatenate([z[:, None], inst["rest"]], axis=1) @ inst["w1"])
      return -jnp.sum(inst["onehot"] * jax.nn.log_softmax(h @ inst["w2"]))
    return loss
  raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")


# ----- Theorem 4.2 ---------------------------------------------------------------------------------

def theorem42(loss_z: Callable[[Array], Array], y, gamma, beta=0.0, eps: float = 0.0) -> dict:
  """Every term of Theorem 4.2 for one channel: Hessians by autodiff through normlab's BN (`bn`).

  Returns lhs = g_bn^T H_bn g_bn; rhs_a (4.2a); rhs_b (4.2b, ||g_bn||^2 last); rhs_b_gnorm (||g||^2
  last); the conditions h_min_eig (smallest eigenvalue of H), relnorm (g_bn^T H g_bn <= g^T H g),
  norm_ratio ||g_bn|| / ||g||, g_dot_yhat <g, y_hat>, gamma_over_sigma; and reduced
  (g_bn^T H_bn g_bn <= g^T H g: BN's quadratic form below the plain network's).
  """
  m = y.shape[0]
  mu, sigma = batch_moments(y, eps)
  sigma = sigma[0]
  yh = (y - mu) / sigma
  z = bn(y, gamma, beta, eps)
  lhat = lambda y: loss_z(bn(y, gamma, beta, eps))
  g = jax.grad(loss_z)(z)
  h = jax.hessian(loss_z)(z)
  g_bn = jax.grad(lhat)(y)
  h_bn = jax.hessian(lhat)(y)
  lhs = g_bn @ h_bn @ g_bn
  r2 = gamma ** 2 / sigma ** 2
  gy = jnp.dot(g, yh)
  nb2, ng2 = jnp.sum(g_bn ** 2), jnp.sum(g ** 2)
  q_bn, q = g_bn @ h @ g_bn, g @ h @ g
  rhs_a = r2 * q_bn - gamma / (m * sigma ** 2) * gy * nb2
  rhs_b = r2 * (q - gy * nb2 / (m * gamma))
  rhs_bg = r2 * (q - gy * ng2 / (m * gamma))
  scale = jnp.abs(lhs) + jnp.abs(r2 * q_bn) + jnp.abs(gamma / (m * sigma ** 2) * gy * nb2) + jnp.finfo(lhs.dtype).tiny
  return {"lhs": lhs, "rhs_a": rhs_a, "rhs_b": rhs_b, "rhs_b_gnorm": rhs_bg, "scale": scale,
          "h_min_eig": jnp.linalg.eigvalsh(0.5 * (h + h.T))[0], "relnorm": q_bn <= q,
          "norm_ratio": jnp.sqrt(nb2 / ng2), "g_dot_yhat": gy, "gamma_over_sigma": gamma / sigma,
          "reduced": lhs <= q, "q": q, "q_bn": q_bn}


@functools.partial(jax.jit, static_argnames=("kind", "eps"))
def theorem42_batch(insts: dict, *, kind: str, eps=0.0) -> dict:
  """`theorem42` (plus Theorem 4.1's rel_slack as t41_rel_slack) on every instance of
  `random_instances(...)`: one compiled, vmapped call; every entry gets a leading axis."""
  def one(inst):
    loss_z, y, gamma = downstream(kind, inst), inst["y"], inst["gamma"]
    r = theorem42(loss_z, y, gamma, 0.0, eps)
    t41 = theorem41(y, jax.grad(loss_z)(bn(y, gamma, 0.0, eps)), gamma, eps)
    return dict(r, t41_rel_slack=t41["rel_slack"])
  return jax.vmap(one)(insts)


def theorem42_survey(seed: int = 0, *, kinds=KINDS,
                     regimes=(("gamma<=sigma", (0.1, 1.0)), ("gamma>sigma", (1.0, 10.0))),
                     m: int = 8, n: int = 200, eps: float = 0.0, rtol: float = 1e-8) -> list[dict]:
  """Fraction of random instances on which each form of Theorem 4.2 (and Theorem 4.1) holds.

  A form "holds" when lhs <= rhs + rtol * scale. Also reports the largest |lhs - rhs_a| / scale (0
  up to rounding: (4.2a) is an identity at eps = 0) and how often (4.2b) holds on the instances where
  its precise condition g_bn^T H g_bn <= g^T H g is met (always, given (4.2a)).
  """
  rows = []
  for ki, kind in enumerate(kinds):
    for ri, (regime, rr) in enumerate(regimes):
      rng = np.random.default_rng([seed, ki, ri])
      res = jax.device_get(theorem42_batch(random_instances(rng, n, m, kind, rr), kind=kind, eps=float(eps)))
      col = lambda name: np.asarray(res[name], dtype=np.float64)
      lhs, scale = col("lhs"), col("scale")
      tol = rtol * scale
      holds = lambda name: col(name) + tol >= lhs
      relnorm = col("relnorm").astype(bool)
      psd = col("h_min_eig") >= -1e-10 * np.maximum(1.0, np.abs(col("h_min_eig")).max())
      hb = holds("rhs_b")
      rows.append({
          "kind": kind, "regime": regime, "n": n, "m": m,
          "t41_holds": float(np.mean(col("t41_rel_slack") >= -rtol)),
          "t41_min_rel_slack": float(col("t41_rel_slack").min()),
          "a_holds": float(np.mean(holds("rhs_a"))),
          "a_max_rel_dev": float(np.max(np.abs(lhs - col("rhs_a")) / scale)),
          "b_holds": float(np.mean(hb)),
          "b_gnorm_holds": float(np.mean(holds("rhs_b_gnorm"))),
          "h_psd": float(np.mean(psd)),
          "relnorm": float(np.mean(relnorm)),
          "b_holds_given_relnorm": float(np.mean(hb[relnorm])) if relnorm.any() else float("nan"),
          "b_holds_given_psd": float(np.mean(hb[psd])) if psd.any() else float("nan"),
          "reduced": float(np.mean(col("reduced").astype(bool))),
      })
  return rows


# ----- Lemma 4.5 -----------------------------------------------------------------------------------

def init_distance_identity(w0, wstar) -> dict:
  """Every expression of the initialization argument (module docstring) and their disagreements."""
  w0, ws = jnp.ravel(w0), jnp.ravel(wstar)
  nw = jnp.dot(ws, ws)
  ip = jnp.dot(w0, ws)
  k = ip / nw
  lhs = jnp.sum((w0 - k * ws) ** 2) - jnp.sum((w0 - ws) ** 2)
  seed = (k ** 2 - 1) * nw - 2 * (k - 1) * ip
  closed = -(k - 1) ** 2 * nw
  paper = -(nw - ip) ** 2 / nw
  scale = jnp.sum(w0 ** 2) + nw
  return {"k": k, "lhs": lhs, "seed_expr": seed, "closed": closed, "paper_expr": paper,
          "err_seed": jnp.abs(lhs - seed) / scale, "err_closed": jnp.abs(lhs - closed) / scale,
          "err_paper": jnp.abs(lhs - paper) / scale}


def scaled_distance(w0, w, *, per_unit: bool = False) -> Array:
  """min over k > 0 of ||w0 - k w|| (k per output column, the last axis, with per_unit=True).

  The optimal k is <w0, w>/||w||^2 when positive; when <w0, w> <= 0 the infimum is ||w0|| (k -> 0+).
  """
  if not per_unit:
    w0, w = jnp.ravel(w0)[:, None], jnp.ravel(w)[:, None]
  else:
    w0, w = jnp.reshape(w0, (-1, w0.shape[-1])), jnp.reshape(w, (-1, w.shape[-1]))
  k = jnp.maximum(jnp.sum(w0 * w, 0) / jnp.maximum(jnp.sum(w * w, 0), jnp.finfo(w.dtype).tiny), 0.0)
  return jnp.sqrt(jnp.sum((w0 - k * w) ** 2))
