"""A full training step of a CIFAR ResNet with normlab's BatchNorm vs the same model with flax's.

Both models come from `normlab.models.get_model` with the norm injected, and both steps are the
project's own `normlab.train.step.train_step` (loss, gradients, SGD with momentum, running
statistics, finiteness checks): the only difference is the norm layer.
"""
from __future__ import annotations

import functools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from normlab.bench.timing import interleaved_best


def flax_batch_norm_factory():
  """flax.linen.BatchNorm (momentum 0.9, eps 1e-5, as the registry's 'batch') injected as it is: models
  take any flax norm constructor and bind use_running_average / axis_name themselves."""
  from normlab.registry import as_factory
  return as_factory(functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5))


def _step_fn(model, x, y, num_classes: int):
  from normlab.train.state import create_state, init_variables
  from normlab.train.step import train_step
  tx = optax.sgd(0.1, momentum=0.9)
  state = create_state(init_variables(model, x, seed=0), tx)
  step = jax.jit(functools.partial(train_step, apply_fn=model.apply, tx=tx, schedule=lambda s: 0.1,
                                   num_classes=num_classes, seed=0, axis_name=None))
  batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  compiled = step.lower(state, batch).compile()
  return lambda: jax.block_until_ready(compiled(state, batch))


def run_train_step(*, model: str = "resnet20", batch: int = 64, repeats: int = 5, warmup: int = 1,
                   seed: int = 0, model_options: dict | None = None, clock=time.perf_counter) -> dict:
  """Seconds per step (best of `repeats` interleaved rounds) for normlab's and flax's BatchNorm.

  `model_options` go to `get_model` (e.g. a smaller `stage_sizes` for a quick check).
  """
  try:
    from normlab.models import get_model
    from normlab.registry import make_norm
  except ImportError as e:  # the models package is another part of the project
    return {"skipped": f"normlab.models not importable ({e})"}
  image = (32, 32, 3)
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, *image)).astype(np.float32)
  y = rng.integers(0, 10, size=(batch,)).astype(np.int32)
  t0 = time.perf_counter()
  opts = dict(model_options or {})
  fns = {
      "normlab": _step_fn(get_model(model, num_classes=10, norm=make_norm("batch"), **opts), x, y, 10),
      "flax": _step_fn(get_model(model, num_classes=10, norm=flax_batch_norm_factory(), **opts), x, y, 10),
  }
  compile_s = time.perf_counter() - t0
  best = interleaved_best(fns, repeats=repeats, warmup=warmup, clock=clock)
  return {"model": model, "batch": batch, "image": list(image), "dtype": "float32",
          "normlab_s": best["normlab"], "flax_s": best["flax"], "ratio": best["normlab"] / best["flax"],
          "compile_s": compile_s, "repeats": repeats}
