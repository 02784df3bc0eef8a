"""Backend-specific spellings of `normlab.core`'s formulas: the same numbers, a different graph.

Each is chosen by the backend at trace time (`jax.default_backend()`), applies only where it
measured faster in a training step (BENCH.md, "Platform spellings"), and is tested against the
plain path in tests/test_core_fast_paths.py. Every other backend (GPU, TPU) gets the plain path.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def reduce_sum(t, axes: tuple[int, ...]):
  """jnp.sum(t, axes, keepdims=True).

  XLA:CPU: when the innermost axis is reduced but the one before it is kept (group norm's
  (N, ..., G, C/G) over (1, ..., -1)), the sum is first taken over the outer axes on the
  (N, ..., G * C/G) view, then over C/G on the small partial result.
  """
  last = t.ndim - 1
  if not (_on_cpu() and len(axes) > 1 and last in axes and last - 1 not in axes and t.shape[last] > 1):
    return jnp.sum(t, axes, keepdims=True)
  merged = t.reshape(t.shape[:-2] + (t.shape[-2] * t.shape[-1],))
  partial = jnp.sum(merged, axes[:-1], keepdims=True)
  return jnp.sum(partial.reshape(partial.shape[:-1] + t.shape[-2:]), -1, keepdims=True)

