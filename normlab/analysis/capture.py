"""Per-layer activations of a flax model and the loss gradients w.r.t. them, without changing the model.

    cap = capture(model, variables, x, y, loss_fn=cross_entropy)      # one forward + one backward
    cap.pre_norm["BatchNorm_0"], cap.grad_post_norm["BatchNorm_0"], cap.kernel_grads["Dense_1"]

Why interception rather than `sow`: `sow("intermediates", ...)` and `capture_intermediates=True` only
*record* values; a gradient w.r.t. an activation needs a point where the activation enters the graph
as a differentiable input (flax's `perturb`, which the model would have to call). We get that point
for every layer of any model by wrapping module calls with `nn.intercept_methods`:

* a norm module (any layer of `normlab.registry`, `Identity` for norm='none' included, and flax's
  own norm layers) called as `norm(x, ...)` gets `x + e_pre` and returns `norm(...) + e_post`;
* a kernel module (`Dense`/`Conv`, ours or flax's) returns `out + e_act` (its pre-activation);

with all `e` zero. The gradients of the loss w.r.t. the `e` are the gradients w.r.t. those
activations; values and the loss are unchanged (adding an exact zero). Sown intermediates are
returned as well (`Capture.intermediates`), so models that `sow` per-layer values lose nothing.

Keys are module paths joined by "/" ("block1/Conv_0"); a module called more than once (weight
sharing) gets "path#1", "path#2" for its later calls. `Capture.order` lists the modules that own
parameters in the order the forward pass first calls them: that is the layer order used by
`normlab.analysis.ics` (a param dict's key order is not reliable: jax tree operations sort dict keys).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax import traverse_util

Array = jax.Array
LossFn = Callable[[Any, Any], Array]  # (model output, targets) -> scalar

_FLAX_NORMS = tuple(t for t in (getattr(nn, n, None) for n in (
    "BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm", "InstanceNorm", "SpectralNorm", "WeightNorm"))
                    if t is not None)
_FLAX_KERNELS = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose)


def norm_module_types() -> tuple[type, ...]:
  """Module classes treated as norm layers: every layer in `normlab.registry` plus flax's norms."""
  from normlab import registry
  ours = tuple(dict.fromkeys(e.layer for e in registry.entries().values()))
  return ours + _FLAX_NORMS


def kernel_module_types() -> tuple[type, ...]:
  from normlab import layers
  return (layers.Dense, layers.Conv) + _FLAX_KERNELS


def path_key(path: Sequence[Any]) -> str:
  return "/".join(str(p) for p in path)


@flax.struct.dataclass
class Capture:
  """What one `capture` call returns; every dict is keyed by module path (see the module docstring).

  pre_norm / post_norm: input and output of each norm layer; grad_pre_norm / grad_post_norm: dL/d of
  them. preact / grad_preact: output of each Dense/Conv (the layer's pre-activation) and dL/d of it.
  kernels / kernel_grads: each kernel-owning module's `kernel` parameter and dL/d kernel.
  param_grads: dL/d params (the whole tree). intermediates: the sown 'intermediates' collection,
  flattened to "path/name". state: the updated non-parameter collections (e.g. batch_stats).
  order: paths (tuples) of the parameter-owning modules in first-call order.
  """
  loss: Array
  output: Any
  pre_norm: dict
  post_norm: dict
  grad_pre_norm: dict
  grad_post_norm: dict
  preact: dict
  grad_preact: dict
  kernels: dict
  kernel_grads: dict
  param_grads: Any
  intermediates: dict
  state: dict
  order: tuple = flax.struct.field(pytree_node=False, default=())

  @property
  def norm_layers(self) -> tuple[str, ...]:
    return tuple(self.pre_norm)

  @property
  def kernel_layers(self) -> tuple[str, ...]:
    return tuple(self.kernels)


class _Recorder:
  """The interceptor: records (and perturbs) norm inputs/outputs and kernel-layer outputs."""

  def __init__(self, norm_types, kernel_types, e_pre=None, e_post=None, e_act=None):
    self.norm_types, self.kernel_types = norm_types, kernel_types
    self.e_pre, self.e_post, self.e_act = e_pre, e_post, e_act
    self.pre, self.post, self.act = {}, {}, {}
    self.calls: dict[tuple, int] = {}
    self.order: list[tuple] = []

  def _key(self, path: tuple) -> str:
    n = self.calls.get(path, 0)
    self.calls[path] = n + 1
    if n == 0:
      self.order.append(path)
    return path_key(path) + (f"#{n}" if n else "")

  def __call__(self, next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    module = context.module
    key = self._key(tuple(module.path))
    if isinstance(module, self.norm_types) and args:
      x = args[0]
      if self.e_pre is not None:
        x = x + self.e_pre[key]
      self.pre[key] = x
      out = next_fun(x, *args[1:], **kwargs)
      if self.e_post is not None:
        out = out + self.e_post[key]
      self.post[key] = out
      return out
    out = next_fun(*args, **kwargs)
    if isinstance(module, self.kernel_types) and isinstance(out, jax.Array):
      if self.e_act is not None:
        out = out + self.e_act[key]
      self.act[key] = out
    return out


def _subtree(tree, path: Sequence[Any]):
  for p in path:
    tree = tree[p]
  return tree


def owns_params(params, path: Sequence[Any]) -> bool:
  """True when the module at `path` holds parameters itself (not only through submodules)."""
  try:
    node = _subtree(params, path)
  except (KeyError, IndexError, TypeError):
    return False
  if not isinstance(node, dict):
    return not isinstance(node, (list, tuple))
  return any(not isinstance(v, dict) for v in node.values())


def _flatten_sown(tree) -> dict:
  flat = traverse_util.flatten_dict(tree, sep="/") if tree else {}
  return {k: (v[0] if isinstance(v, tuple) and len(v) == 1 else v) for k, v in flat.items()}


def make_capture(model: nn.Module, loss_fn: LossFn, *, train: bool = True, method: str | None = None,
                 norm_types: tuple[type, ...] | None = None, kernel_types: tuple[type, ...] | None = None,
                 jit: bool = True, **apply_kwargs) -> Callable[..., Capture]:
  """A (jitted) `fn(variables, x, y, rngs=None) -> Capture` for `model` and `loss_fn(output, y)`.

  The model is called as `model.apply(variables, x, train=train, **apply_kwargs)` (pass `train=None`
  for models without a `train` argument). In train mode every non-parameter collection present in
  `variables` (batch_stats) is mutable and its update is returned in `Capture.state`.
  """
  norm_types = norm_module_types() if norm_types is None else tuple(norm_types)
  kernel_types = kernel_module_types() if kernel_types is None else tuple(kernel_types)
  kwargs = dict(apply_kwargs)
  if train is not None:
    kwargs["train"] = train
  if method is not None:
    kwargs["method"] = method

  def forward(params, others, x, rngs, e_pre, e_post, e_act):
    rec = _Recorder(norm_types, kernel_types, e_pre, e_post, e_act)
    mutable = ["intermediates"] + ([c for c in others] if train else [])
    with nn.intercept_methods(rec):
      out, state = model.apply({"params": params, **others}, x, mutable=mutable, rngs=rngs, **kwargs)
    return out, state, rec

  def run(variables, x, y, rngs=None):
    params = variables["params"]
    others = {k: v for k, v in variables.items() if k not in ("params", "intermediates")}
    order_box = []

    def shapes_only(params):
      _, _, rec = forward(params, others, x, rngs, None, None, None)
      order_box.append(tuple(rec.order))
      return rec.pre, rec.post, rec.act

    pre_s, post_s, act_s = jax.eval_shape(shapes_only, params)
    zeros = lambda t: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), t)

    def loss_of(params, e_pre, e_post, e_act):
      out, state, rec = forward(params, others, x, rngs, e_pre, e_post, e_act)
      return loss_fn(out, y), (out, state, rec.pre, rec.post, rec.act)

    (loss, (out, state, pre, post, act)), (gp, g_pre, g_post, g_act) = jax.value_and_grad(
        loss_of, argnums=(0, 1, 2, 3), has_aux=True)(params, zeros(pre_s), zeros(post_s), zeros(act_s))
    order = tuple(p for p in order_box[0] if owns_params(params, p))
    kernels, kgrads = {}, {}
    for p in order:
      node = _subtree(params, p)
      if isinstance(node, dict) and "kernel" in node:
        kernels[path_key(p)] = node["kernel"]
        kgrads[path_key(p)] = _subtree(gp, p)["kernel"]
    state = dict(state)
    sown = _flatten_sown(state.pop("intermediates", {}))
    return Capture(loss=loss, output=out, pre_norm=pre, post_norm=post, grad_pre_norm=g_pre,
                   grad_post_norm=g_post, preact=act, grad_preact=g_act, kernels=kernels,
                   kernel_grads=kgrads, param_grads=gp, intermediates=sown, state=state, order=order)

  return jax.jit(run) if jit else run


def capture(model: nn.Module, variables, x, y, *, loss_fn: LossFn, rngs=None, **kwargs) -> Capture:
  """One-off `make_capture(model, loss_fn, **kwargs)(variables, x, y, rngs)` (see `make_capture`)."""
  return make_capture(model, loss_fn, **kwargs)(variables, x, y, rngs)


def module_call_order(model: nn.Module, variables, *args, **apply_kwargs) -> tuple[tuple, ...]:
  """Paths of the modules that own parameters, in the order a forward pass first calls them.

  Runs the model abstractly (`jax.eval_shape`: no FLOPs). Extra collections are made mutable so
  train-mode calls work; pass the model's own call arguments (x, train=True, ...).
  """
  rec = _Recorder((), ())
  others = [k for k in variables if k != "params"]

  def fwd(variables):
    with nn.intercept_methods(rec):
      return model.apply(variables, *args, mutable=others + ["intermediates"], **apply_kwargs)

  jax.eval_shape(fwd, variables)
  return tuple(p for p in rec.order if owns_params(variables["params"], p))


@dataclasses.dataclass(frozen=True)
class Losses:
  """Standard losses with the (output, targets) signature `make_capture` expects."""

  @staticmethod
  def cross_entropy(logits, labels):
    logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
    return -jnp.mean(jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1))

  @staticmethod
  def mse(pred, target):
    return 0.5 * jnp.mean(jnp.sum(jnp.reshape(pred - target, (pred.shape[0], -1)) ** 2, axis=-1))


cross_entropy = Losses.cross_entropy
mse = Losses.mse
