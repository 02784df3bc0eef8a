"""The two layouts of the loop's runs: one run (`Single`), or S seeds whose TrainStates are stacked on a
leading seed axis and trained by `jax.vmap` of the same step in one program (`Vmapped`, for
normlab.train.seeds), K steps per call in a `lax.scan`.

A layout says how to build and place the initial state, how to pick one run's state out of it, which
compiled steps train and evaluate, what one call's input is (`host_input` on the host, `device_input`
on the devices) and how a call's metrics split into per-step rows (each value an array over the runs).
The loop itself is the same for both.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from normlab.train import devices as devices_lib, distributed, state as state_lib, step as step_lib

HostBatch = Callable[[int, int], dict]  # (seed, step) -> the host batch {'x', 'y'}


def _first_rows(x, rows: int):
  return jax.tree.map(lambda a: a[:rows], x)


class Single:
  """One run: one step per call, the state replicated over the mesh."""
  vmapped = False

  def __init__(self, seeds, mesh):
    self.seeds, self.S, self.K, self.mesh = [int(seeds[0])], 1, 1, mesh

  def init_state(self, model, tx, host_batch: HostBatch, rows: int):
    x0 = _first_rows(host_batch(self.seeds[0], 0)["x"], rows)
    return state_lib.create_state(state_lib.init_variables(model, x0, self.seeds[0]), tx)

  def place(self, state):
    return distributed.replicate(state, step_lib.state_sharding(self.mesh))

  def restored(self, states: list):
    return states[0]

  def one(self, state, j: int):
    return state

  def steps(self, config, *, apply, tx, schedule, num_classes: int, donate: bool):
    return step_lib.build_steps(config, apply_fn=apply, tx=tx, schedule=schedule, num_classes=num_classes,
                                mesh=self.mesh, donate=donate)

  def host_input(self, host_batch: HostBatch, first: int, n: int) -> dict:
    return host_batch(self.seeds[0], first)

  def device_input(self, arrays: dict, n: int) -> tuple:
    return (distributed.global_batch(arrays, step_lib.batch_sharding(self.mesh)),)

  def rows(self, n: int, metrics: dict) -> list[dict]:
    return [{k: np.asarray(v)[None] for k, v in metrics.items()}]


class Vmapped:
  """S seeds stacked on a leading axis, `jax.vmap` of the step over (state, batch, seed), K steps per
  call (steps past the call's count are masked off, so one program serves every call length)."""
  vmapped = True

  def __init__(self, seeds, mesh, scan_steps: int, num_steps: int):
    self.seeds, self.S, self.mesh = [int(s) for s in seeds], len(seeds), mesh
    self.K = max(1, min(int(scan_steps), int(num_steps)))
    self._chunk_sharding = NamedSharding(mesh, P(None, None, step_lib.DATA_AXIS))
    self._seeds = jax.device_put(jnp.asarray(self.seeds, jnp.int32), step_lib.state_sharding(mesh))

  def init_state(self, model, tx, host_batch: HostBatch, rows: int):
    # One init program called per seed (not vmapped: the 'rbg' PRNG draws other bits under vmap), each
    # seed with its own first batch.
    init = jax.jit(lambda x, s: state_lib.create_state(state_lib.init_variables(model, x, s), tx))
    return _stack([init(_first_rows(host_batch(s, 0)["x"], rows), jnp.asarray(s, jnp.int32)) for s in self.seeds])

  def place(self, state):
    return jax.device_put(state, step_lib.state_sharding(self.mesh))

  def restored(self, states: list):
    return self.place(_stack(states))

  def one(self, state, j: int):
    return jax.tree.map(lambda x: x[j], state)

  def steps(self, config, *, apply, tx, schedule, num_classes: int, donate: bool):
    mesh = self.mesh
    step_one = functools.partial(
        step_lib.train_step, apply_fn=apply, tx=tx, schedule=schedule, num_classes=num_classes,
        nan_policy=config.nan_policy, label_smoothing=float(config.label_smoothing),
        debug_nan_at_step=int(config.debug_nan_at_step), axis_name=step_lib.DATA_AXIS,
        emulated_devices=devices_lib.emulated_devices(config))
    vstep = jax.vmap(lambda st, b, s: step_one(st, b, seed=s))
    unroll = self.K == 1

    def chunk(st, batches, active, seeds):
      def body(carry, inp):
        b, on = inp
        new, metrics = vstep(carry, b, seeds)
        return jax.tree.map(lambda a, o: jnp.where(on, a, o), new, carry), metrics
      return jax.lax.scan(body, st, (batches, active), unroll=unroll)
    # check_vma=False as in step.make_data_parallel: train_step pmean's the per-device gradients itself.
    in_specs = (P(), self._chunk_sharding.spec, P(), P())
    train = jax.jit(jax.shard_map(chunk, mesh=mesh, in_specs=in_specs, out_specs=(P(), P()), check_vma=False),
                    donate_argnums=(0,) if donate else ())
    veval = jax.vmap(functools.partial(step_lib.eval_step, apply_fn=apply, num_classes=num_classes,
                                       axis_name=step_lib.DATA_AXIS), in_axes=(0, None))
    evaluate = jax.jit(jax.shard_map(veval, mesh=mesh, in_specs=(P(), P(step_lib.DATA_AXIS)), out_specs=P(),
                                     check_vma=False))
    return train, evaluate

  def host_input(self, host_batch: HostBatch, first: int, n: int) -> dict:
    """K steps x S seeds of host arrays (the steps past n repeat the last one and are masked off)."""
    per_step = [[host_batch(s, first + min(k, n - 1)) for s in self.seeds] for k in range(self.K)]
    return {key: np.stack([np.stack([b[key] for b in row]) for row in per_step]) for key in per_step[0][0]}

  def device_input(self, arrays: dict, n: int) -> tuple:
    return jax.device_put(arrays, self._chunk_sharding), jnp.asarray(np.arange(self.K) < n), self._seeds

  def rows(self, n: int, metrics: dict) -> list[dict]:
    return [{k: np.asarray(v)[t] for k, v in metrics.items()} for t in range(n)]


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
