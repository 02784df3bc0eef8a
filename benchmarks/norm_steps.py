"""Per-norm training steps: the same small model with normlab's layer and with flax.linen's.

Three models, each trained by the training loop's own compiled step (`train_step.loop_step`: loss,
gradients, SGD with momentum, BatchNorm's running statistics, finiteness checks), timed interleaved
(`timing.interleaved_best`). The norms are built in training mode; the models take the loop's `train`
argument and ignore it.

- conv: a 3x3 stem conv and three 1x1 convs, each followed by the norm and a ReLU, global average
  pool, dense head; images (batch, 32, 32, 3), 64 channels. Norms: bn, gn, in.
- block: a pre-norm transformer-style MLP block (norm, dense 4x, GELU, dense, residual) twice,
  then the norm and a dense head; sequences (batch, 128, 256). Norms: ln, rms.
- gru: a GRU over 32 steps whose gate pre-activations (input and hidden parts) are layer-normed
  (Ba et al. 2016, sec. 3.1), then a dense head; sequences (batch, 32, 64), hidden 256. Norm: ln.
"""
from __future__ import annotations

import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import impls
from benchmarks.timing import interleaved_best
from benchmarks.train_step import loop_step

# (model, norm) pairs timed by default
STEPS = (("conv", "bn"), ("conv", "gn"), ("conv", "in"), ("block", "ln"), ("block", "rms"), ("gru", "ln"))
BATCH = {"conv": 64, "block": 8, "gru": 32}
LIBS = ("normlab", "flax")


def norm_layer(lib: str, norm: str) -> Callable[[], Callable]:
  """A factory of `norm(x) -> y` in training mode, for normlab's layer or flax.linen's."""
  module = impls.normlab_module if lib == "normlab" else impls.flax_module  # the same fields and call
  return lambda: module(norm, jnp.float32)


class ConvNet(nn.Module):
  norm: Callable
  width: int = 64

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = nn.relu(self.norm()(nn.Conv(self.width, (3, 3), use_bias=False)(x)))
    for _ in range(3):
      x = nn.relu(self.norm()(nn.Conv(self.width, (1, 1), use_bias=False)(x)))
    return nn.Dense(10)(jnp.mean(x, (1, 2)))


class MLPBlocks(nn.Module):
  norm: Callable
  depth: int = 2

  @nn.compact
  def __call__(self, x, train: bool = True):
    d = x.shape[-1]
    for _ in range(self.depth):
      x = x + nn.Dense(d)(nn.gelu(nn.Dense(4 * d)(self.norm()(x))))
    return nn.Dense(10)(jnp.mean(self.norm()(x), 1))


class _LNGRUCell(nn.Module):
  norm: Callable
  hidden: int

  @nn.compact
  def __call__(self, h, gx_t):
    gh = self.norm()(nn.Dense(3 * self.hidden, use_bias=False)(h))
    k = self.hidden
    r = jax.nn.sigmoid(gx_t[:, :k] + gh[:, :k])
    z = jax.nn.sigmoid(gx_t[:, k:2 * k] + gh[:, k:2 * k])
    n = jnp.tanh(gx_t[:, 2 * k:] + r * gh[:, 2 * k:])
    return (1 - z) * n + z * h, None


class LNGRU(nn.Module):
  norm: Callable
  hidden: int = 256

  @nn.compact
  def __call__(self, x, train: bool = True):
    gx = self.norm()(nn.Dense(3 * self.hidden, use_bias=False)(x))  # every step's input part: (B, T, 3H)
    cell = nn.scan(_LNGRUCell, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1)
    h, _ = cell(norm=self.norm, hidden=self.hidden)(jnp.zeros((x.shape[0], self.hidden), x.dtype), gx)
    return nn.Dense(10)(h)


def model(kind: str, lib: str, norm: str) -> nn.Module:
  cls = {"conv": ConvNet, "block": MLPBlocks, "gru": LNGRU}[kind]
  return cls(norm=norm_layer(lib, norm))


def batch(kind: str, size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  shape = {"conv": (size, 32, 32, 3), "block": (size, 128, 256), "gru": (size, 32, 64)}[kind]
  return jnp.asarray(rng.standard_normal(shape), jnp.float32), jnp.asarray(rng.integers(0, 10, size), jnp.int32)


def run_norm_steps(steps=STEPS, *, repeats: int = 5, warmup: int = 2, batch_scale: float = 1.0,
                   clock=time.perf_counter, log: Callable[[str], None] | None = None) -> list[dict]:
  """Seconds per step (best of `repeats` interleaved rounds) with normlab's and flax's layer."""
  rows = []
  for kind, norm in steps:
    size = max(2, int(BATCH[kind] * batch_scale))
    x, y = batch(kind, size)
    t0 = time.perf_counter()
    fns = {lib: loop_step(model(kind, lib, norm), x, y, num_classes=10) for lib in LIBS}
    compile_s = time.perf_counter() - t0
    best = interleaved_best(fns, repeats=repeats, warmup=warmup, clock=clock)
    rows.append({"model": kind, "norm": norm, "input": list(x.shape), "normlab_s": best["normlab"],
                 "flax_s": best["flax"], "ratio": best["normlab"] / best["flax"], "compile_s": compile_s})
    if log:
      log(f"train step {kind}/{norm} {list(x.shape)}: normlab {1e3 * best['normlab']:.2f} ms, "
          f"flax {1e3 * best['flax']:.2f} ms, ratio {best['normlab'] / best['flax']:.2f}")
  return rows
