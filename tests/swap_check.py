"""The swap test, run as its own process (8 host devices, set here before jax loads).

linen: flax's examples/imagenet ResNet (tests/third_party/flax_imagenet_models.py) with normlab.layers.BatchNorm
swapped for nn.BatchNorm, trained one step under shard_map with axis_name='batch' on 8 devices, must
match flax's layer in train logits, updated batch_stats, gradients and eval logits, from the same
(flax-initialized) variables. nnx: a small CNN with normlab.nnx norms vs flax.nnx's: the state loads
both ways, and outputs, gradients and running statistics match. Prints one line per comparison
(max abs difference) and exits non-zero on a mismatch.
"""
import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import functools  # noqa: E402
import sys  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import normlab.layers  # noqa: E402
import normlab.nnx  # noqa: E402
from third_party import flax_imagenet_models as fim  # noqa: E402

TOL = 2e-5  # float32 (measured <= 2.2e-6); flax's one-pass variance vs normlab's two-pass
failures = []


def report(what, a, b, tol=TOL):
  errs = [float(np.max(np.abs(np.asarray(u, np.float32) - np.asarray(v, np.float32)), initial=0.0))
          for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  same_tree = jax.tree.structure(a) == jax.tree.structure(b)
  err = max(errs) if errs else 0.0
  print(f"{what}: max abs diff {err:.2e}{'' if same_tree else ' (tree structures differ)'}")
  if err > tol or not same_tree:
    failures.append(what)


def perturbed(tree, seed, scale=0.1, positive=False):
  """tree + scale * N(0, 1) noise (drawn in numpy: no XLA compile per leaf shape); |.| if positive."""
  rng = np.random.default_rng(seed)

  def one(v):
    w = np.asarray(v) + scale * rng.standard_normal(v.shape).astype(v.dtype)
    return jnp.asarray(np.abs(w) if positive else w)
  return jax.tree.map(one, tree)


def linen_swap():
  assert jax.device_count() == 8, jax.devices()
  mesh = jax.make_mesh((8,), ("batch",))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((16, 16, 16, 3), np.float32) * 2.0 + 0.5)
  y = jnp.asarray(rng.integers(0, 10, (16,)))
  models = {name: fim._ResNet1(num_classes=10, num_filters=8, norm_cls=cls)
            for name, cls in (("flax", nn.BatchNorm), ("normlab", normlab.layers.BatchNorm))}
  init = {name: jax.jit(functools.partial(m.init, train=False))(jax.random.key(1), x[:2])
          for name, m in models.items()}
  report("linen init: param and batch_stats trees", jax.tree.map(jnp.shape, init["flax"]),
         jax.tree.map(jnp.shape, init["normlab"]))
  # a flax checkpoint, perturbed so that no scale is zero and the statistics are not (0, 1)
  variables = {"params": perturbed(init["flax"]["params"], 1),
               "batch_stats": perturbed(init["flax"]["batch_stats"], 2, 0.5, positive=True)}

  def train_step(model, v, x, y):
    def loss(params):
      logits, upd = model.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                                mutable=["batch_stats"])
      ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
      return ce, (logits, upd["batch_stats"])
    (_, (logits, stats)), grads = jax.value_and_grad(loss, has_aux=True)(v["params"])
    return logits, stats, jax.lax.pmean(grads, "batch")

  def eval_step(model, v, x):
    return model.apply(v, x, train=False)

  put = lambda t, spec: jax.device_put(t, jax.NamedSharding(mesh, spec))  # noqa: E731
  variables, x, y = put(variables, P()), put(x, P("batch")), put(y, P("batch"))
  out = {}
  for name, m in models.items():
    step = jax.jit(jax.shard_map(functools.partial(train_step, m), mesh=mesh,
                                 in_specs=(P(), P("batch"), P("batch")), out_specs=(P("batch"), P(), P())))
    ev = jax.jit(jax.shard_map(functools.partial(eval_step, m), mesh=mesh, in_specs=(P(), P("batch")),
                               out_specs=P("batch")))
    logits, stats, grads = step(variables, x, y)
    out[name] = (logits, stats, grads, ev({"params": variables["params"], "batch_stats": stats}, x))
  for i, what in enumerate(("train logits", "updated batch_stats", "gradients", "eval logits")):
    report(f"linen {what}", out["flax"][i], out["normlab"][i])


class CNN(nnx.Module):
  def __init__(self, norms, *, rngs):
    self.conv1 = nnx.Conv(3, 8, (3, 3), use_bias=False, rngs=rngs)
    self.bn1 = norms.BatchNorm(8, momentum=0.9, rngs=rngs)
    self.conv2 = nnx.Conv(8, 8, (3, 3), use_bias=False, rngs=rngs)
    self.gn = norms.GroupNorm(8, num_groups=4, rngs=rngs)
    self.ln = norms.LayerNorm(8, rngs=rngs)
    self.head = nnx.Linear(8, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = nnx.relu(self.gn(self.conv2(x)))
    return self.head(self.ln(x.mean((1, 2))))


def nnx_swap():
  x = jnp.asarray(np.random.default_rng(2).standard_normal((8, 12, 12, 3), np.float32) * 2.0 + 0.5)
  ours, theirs = CNN(normlab.nnx, rngs=nnx.Rngs(0)), CNN(nnx, rngs=nnx.Rngs(0))
  report("nnx state trees and values at init", nnx.state(theirs), nnx.state(ours), tol=0.0)
  state = perturbed(nnx.state(theirs), 3)
  nnx.update(theirs, state)
  nnx.update(ours, state)  # flax's state loads into normlab's

  def loss(model, x):
    return jnp.mean(model(x) ** 2)

  grad_step = nnx.jit(lambda m, x: nnx.grad(loss)(m, x))  # training mode: updates mean/var in the module
  grads = {name: grad_step(m, x) for name, m in (("flax", theirs), ("normlab", ours))}
  report("nnx train gradients", grads["flax"], grads["normlab"])
  report("nnx state after a train step (running statistics)", nnx.state(theirs), nnx.state(ours))
  if np.allclose(ours.bn1.mean[...], state["bn1"]["mean"][...]):
    failures.append("nnx train step left the running mean unchanged")
  for m in (theirs, ours):
    m.bn1.use_running_average = True
  report("nnx eval outputs", *(nnx.jit(lambda m, x: m(x))(m, x) for m in (theirs, ours)))
  back = CNN(nnx, rngs=nnx.Rngs(5))
  nnx.update(back, nnx.state(ours))  # and normlab's state loads into flax's
  report("nnx state round trip normlab -> flax", nnx.state(back), nnx.state(ours), tol=0.0)


if __name__ == "__main__":
  linen_swap()
  nnx_swap()
  if failures:
    print("MISMATCH: " + "; ".join(failures))
    sys.exit(1)
  print("all match")
