"""The implementations under test, each built into a `Bench`: zero-argument calls per mode.

Inputs are channels-last, (N, H, W, C) images or (B, T, C) sequences, as normlab and flax take them.
The backward modes differentiate sum(y * w) with respect to x and the affine parameters, for a fixed
random cotangent w: `grad` returns the gradients only (XLA may then skip the forward output),
`value_and_grad` also returns the loss, so the forward output is computed as in a training step.
torch's forward+backward always computes the output: its one call serves both modes. The same numbers feed every
implementation, so their forward outputs can be checked against each other before timing.

- normlab: the `normlab.layers` module (params + running statistics, as a model uses it).
- flax: the `flax.linen` module with the same epsilon, parameters in float32, compute/output dtype
  the input's (`dtype=x.dtype`; flax's statistics are float32 either way).
- torch / torch_cl: `torch.nn.functional`, autograd for the backward, on torch's default
  channels-first layout (`torch`) and on the channels-last memory layout JAX uses (`torch_cl`:
  `torch.channels_last` for images, (B*T, C) / a transposed view for sequences). Layer and RMS norm
  normalize the contiguous last axis in either layout, so they have one torch variant.
- elementwise: `x * c` (and its gradient), the memory-bandwidth yardstick.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

EPS = {"bn": 1e-5, "ln": 1e-5, "gn": 1e-5, "in": 1e-5, "rms": 1e-6}
NUM_GROUPS = 32
MOMENTUM = 0.9  # flax/normlab convention; torch's momentum is 1 - this
class Unavailable(Exception):
  """An implementation that cannot run here (no torch, dtype unsupported, ...): the message says why."""


@dataclasses.dataclass
class Bench:
  fwd: Callable[[], object]
  grad: Callable[[], object]
  value_and_grad: Callable[[], object]
  output: Callable[[], np.ndarray]  # forward output, logical channels-last layout, float32
  note: str = ""


def _block(tree):
  return jax.block_until_ready(tree)


# ----------------------------------------------------------------------------------------------- JAX

def _module(lib, norm: str, dtype) -> nn.Module:
  """The benchmark's layer for `norm` from `lib` (flax.linen or normlab.layers: the same fields)."""
  return {
      "bn": lambda: lib.BatchNorm(use_running_average=False, momentum=MOMENTUM, epsilon=EPS["bn"], dtype=dtype),
      "ln": lambda: lib.LayerNorm(epsilon=EPS["ln"], dtype=dtype),
      "gn": lambda: lib.GroupNorm(num_groups=NUM_GROUPS, epsilon=EPS["gn"], dtype=dtype),
      "in": lambda: lib.InstanceNorm(epsilon=EPS["in"], dtype=dtype),
      "rms": lambda: lib.RMSNorm(epsilon=EPS["rms"], dtype=dtype),
  }[norm]()


def normlab_module(norm: str, dtype=None) -> nn.Module:
  from normlab import layers
  return _module(layers, norm, dtype)


def flax_module(norm: str, dtype) -> nn.Module:
  return _module(nn, norm, dtype)


def _loss(y, w):
  return jnp.sum((y * w).astype(jnp.float32))


def jax_module_bench(module: nn.Module, x: jax.Array, w: jax.Array, call_kwargs: dict | None = None) -> Bench:
  """Bench of `module.apply` in training mode: running statistics (if any) are updated in fwd."""
  kw = dict(call_kwargs or {})
  variables = module.init(jax.random.key(0), x, **kw)
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  mutable = sorted(state)

  def apply(params, state, x):
    if not mutable:
      return module.apply({"params": params}, x, **kw), state
    return module.apply({"params": params, **state}, x, mutable=mutable, **kw)

  def loss(params, x, state, w):
    return _loss(apply(params, state, x)[0], w)

  fwd = jax.jit(apply).lower(params, state, x).compile()
  g = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x, state, w).compile()
  vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, x, state, w).compile()
  return Bench(fwd=lambda: _block(fwd(params, state, x)),
               grad=lambda: _block(g(params, x, state, w)),
               value_and_grad=lambda: _block(vg(params, x, state, w)),
               output=lambda: np.asarray(fwd(params, state, x)[0], np.float32))


def normlab_bench(norm: str, x: jax.Array, w: jax.Array) -> Bench:
  return jax_module_bench(normlab_module(norm, x.dtype), x, w)


def flax_bench(norm: str, x: jax.Array, w: jax.Array) -> Bench:
  return jax_module_bench(flax_module(norm, x.dtype), x, w)


def elementwise_bench(x: jax.Array, w: jax.Array) -> Bench:
  """`x * c` and the gradient of sum(x * c * w): one read and one write of the array each."""
  c = jnp.asarray(1.5, x.dtype)
  fwd = jax.jit(lambda x, c: x * c).lower(x, c).compile()
  g = jax.jit(jax.grad(lambda x, c, w: _loss(x * c, w))).lower(x, c, w).compile()
  vg = jax.jit(jax.value_and_grad(lambda x, c, w: _loss(x * c, w))).lower(x, c, w).compile()
  return Bench(fwd=lambda: _block(fwd(x, c)), grad=lambda: _block(g(x, c, w)),
               value_and_grad=lambda: _block(vg(x, c, w)),
               output=lambda: np.asarray(fwd(x, c), np.float32))


# --------------------------------------------------------------------------------------------- torch

def torch_module_available() -> bool:
  from benchmarks.env import torch_module
  return torch_module() is not None


def torch_layouts(norm: str) -> tuple[str, ...]:
  """Peer names for `norm`: layer/RMS norm reduce the contiguous last axis, so one layout only."""
  return ("torch",) if norm in ("ln", "rms") else ("torch", "torch_cl")


def _to_torch_layout(t, norm: str, layout: str):
  """Channels-last logical tensor -> (tensor for torch, function mapping torch's output back)."""
  if norm in ("ln", "rms"):
    return t, lambda y: y
  if t.ndim == 3 and norm == "bn" and layout == "torch_cl":
    b, s, c = t.shape
    return t.reshape(b * s, c), lambda y: y.reshape(b, s, c)
  perm = (0, t.ndim - 1) + tuple(range(1, t.ndim - 1))  # (N, ..., C) -> (N, C, ...)
  back = (0,) + tuple(range(2, t.ndim)) + (1,)
  v = t.permute(*perm)
  if layout == "torch":
    v = v.contiguous()
  return v, lambda y: y.permute(*back)


def _torch_fn(torch, norm: str, channels: int, device, param_dtype):
  """(fn(x, weight, bias) -> y, uses_bias)."""
  F = torch.nn.functional
  if norm == "bn":
    rm = torch.zeros(channels, device=device, dtype=param_dtype)
    rv = torch.ones(channels, device=device, dtype=param_dtype)
    return (lambda x, wt, bt: F.batch_norm(x, rm, rv, wt, bt, training=True, momentum=1 - MOMENTUM,
                                           eps=EPS["bn"])), True
  if norm == "in":
    return (lambda x, wt, bt: F.instance_norm(x, weight=wt, bias=bt, eps=EPS["in"])), True
  if norm == "gn":
    return (lambda x, wt, bt: F.group_norm(x, NUM_GROUPS, wt, bt, eps=EPS["gn"])), True
  if norm == "ln":
    return (lambda x, wt, bt: F.layer_norm(x, (channels,), wt, bt, eps=EPS["ln"])), True
  if norm == "rms":
    if not hasattr(F, "rms_norm"):
      raise Unavailable(f"torch {torch.__version__} has no F.rms_norm")
    return (lambda x, wt, bt: F.rms_norm(x, (channels,), wt, eps=EPS["rms"])), False
  raise ValueError(f"unknown norm {norm!r}")


def torch_bench(torch, norm: str, layout: str, x: np.ndarray, w: np.ndarray, dtype: str, device: str) -> Bench:
  """Bench of torch.nn.functional on `layout` ('torch' = channels-first, 'torch_cl' = channels-last)."""
  tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(dtype)
  if tdtype is None:
    raise Unavailable(f"no torch dtype for {dtype}")
  channels = x.shape[-1]
  xt = torch.from_numpy(np.array(x, np.float32)).to(device=device, dtype=tdtype)
  wt_ = torch.from_numpy(np.array(w, np.float32)).to(device=device, dtype=tdtype)
  xt, back = _to_torch_layout(xt, norm, layout)
  wy, _ = _to_torch_layout(wt_, norm, layout)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  errors = []
  # Params in the input dtype first (how torch models run in bfloat16, and the dtype its fused CPU
  # kernels want), then float32 params (mixed precision, as the JAX side has them).
  for param_dtype in dict.fromkeys((tdtype, torch.float32)):
    try:
      fn, uses_bias = _torch_fn(torch, norm, channels, device, param_dtype)
      weight = torch.ones(channels, device=device, dtype=param_dtype, requires_grad=True)
      bias = torch.zeros(channels, device=device, dtype=param_dtype, requires_grad=True)
      wrt = [weight, bias] if uses_bias else [weight]

      def fwd(fn=fn, weight=weight, bias=bias):
        with torch.no_grad():
          y = fn(xt, weight, bias)
        sync()
        return y

      def fwd_bwd(fn=fn, weight=weight, bias=bias, wrt=wrt):
        xg = xt.detach().requires_grad_(True)
        loss = (fn(xg, weight, bias) * wy).sum(dtype=torch.float32)
        grads = torch.autograd.grad(loss, [xg, *wrt])
        sync()
        return loss.detach(), grads

      fwd()
      fwd_bwd()
    except Unavailable:
      raise
    except Exception as e:  # noqa: BLE001 (torch raises RuntimeError, TypeError or its not-implemented error)
      errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
      continue
    note = "" if param_dtype == tdtype else "float32 params"
    return Bench(fwd=fwd, grad=fwd_bwd, value_and_grad=fwd_bwd, note=note,
                 output=lambda fwd=fwd: back(fwd()).to(torch.float32).cpu().numpy())
  raise Unavailable("; ".join(errors))
