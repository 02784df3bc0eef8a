"""A full training step of a CIFAR ResNet with normlab's BatchNorm vs the same model with flax's.

Both models come from `normlab.models.get_model` with the norm injected, and both steps are the one
the training loop compiles (`normlab.train.step.build_steps`: loss, gradients, SGD with momentum,
running statistics, finiteness checks): the only difference is the norm layer.
"""
from __future__ import annotations

import functools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.timing import interleaved_best


def flax_batch_norm_factory():
  """flax.linen.BatchNorm (momentum 0.9, eps 1e-5, as the registry's 'batch') injected as it is: models
  take any flax norm constructor and bind use_running_average / axis_name themselves."""
  from normlab.registry import as_factory
  return as_factory(functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5))


def loop_step(model, x, y, num_classes: int):
  """The training loop's own compiled step (normlab.train.step.build_steps on a one-device mesh) for
  `model` (called as the loop calls models: `train=`, `rngs=`, `mutable=['batch_stats']`), SGD with
  momentum 0.1/0.9, seed 0; returns a function running it once on (x, y)."""
  import ml_collections as mlc

  from normlab.train import distributed, step as step_lib
  from normlab.train.state import create_state, init_variables
  tx = optax.sgd(0.1, momentum=0.9)
  mesh = distributed.make_mesh(1)
  state = jax.device_put(create_state(init_variables(model, x, seed=0), tx), step_lib.state_sharding(mesh))
  keys = mlc.ConfigDict({"seed": 0, "nan_policy": "stop", "label_smoothing": 0.0, "debug_nan_at_step": 0})
  step, _ = step_lib.build_steps(keys, apply_fn=model.apply, tx=tx, schedule=lambda s: 0.1,
                                 num_classes=num_classes, mesh=mesh, donate=False)
  batch = jax.device_put({"x": jnp.asarray(x), "y": jnp.asarray(y)}, step_lib.batch_sharding(mesh))
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
      "normlab": loop_step(get_model(model, num_classes=10, norm=make_norm("batch"), **opts), x, y, 10),
      "flax": loop_step(get_model(model, num_classes=10, norm=flax_batch_norm_factory(), **opts), x, y, 10),
  }
  compile_s = time.perf_counter() - t0
  best = interleaved_best(fns, repeats=repeats, warmup=warmup, clock=clock)
  return {"model": model, "batch": batch, "image": list(image), "dtype": "float32",
          "normlab_s": best["normlab"], "flax_s": best["flax"], "ratio": best["normlab"] / best["flax"],
          "compile_s": compile_s, "repeats": repeats}
