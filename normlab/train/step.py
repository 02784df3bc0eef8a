"""Pure train/eval steps and their data-parallel (shard_map over the 'data' mesh axis) jitted forms.

Inside `shard_map` every device sees its shard of the batch; gradients, metrics and the running
statistics are `pmean`'d over 'data', so params/opt state stay replicated. The model was built with
`axis_name='data'` for bn_mode='sync' (statistics over the global batch) or None for 'local' (over
each device's shard). Per-step randomness is `fold_in(key(seed), step)`, with the device index folded in
when there is more than one device. `emulated_devices=D` runs D devices' step on one device (vmap over
the D shards of the batch; normlab.train.devices says when): the loop then maps over a 1-device mesh.

The step checks that the loss and every gradient are finite. A non-finite step never changes the
params, statistics or optimizer state (a `where` select inside the step): with nan_policy='skip' it
is counted in `num_skipped`; with 'stop' its number is recorded in `nonfinite_step` and every later
step is a no-op too, so the loop can stop there without writing the bad state.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec as P

from normlab.train import devices
from normlab.train.state import TrainState, make_key

DATA_AXIS = "data"


def _tree_all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
  onehot = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
  if label_smoothing:
    onehot = optax.smooth_labels(onehot, label_smoothing)
  return optax.softmax_cross_entropy(logits, onehot)


def _step_rngs(seed: int, step, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
  """(noise, dropout) keys of a step: fold_in(key(seed), step), with the device index folded in over
  more than one device on `axis_name` (a shard_map axis, or the emulated devices' vmap axis)."""
  rng = jax.random.fold_in(make_key(seed), step)
  if axis_name is not None and jax.lax.axis_size(axis_name) > 1:  # one device: the same keys as no axis
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  noise_rng, dropout_rng = jax.random.split(rng)
  return noise_rng, dropout_rng


def _device_loss(params, state: TrainState, x, y, *, apply_fn: Callable, num_classes: int, seed: int,
                 label_smoothing: float, axis_name: str | None):
  """One device's mean loss over its examples, with (logits, its new batch_stats)."""
  noise_rng, dropout_rng = _step_rngs(seed, state.step, axis_name)
  logits, new_vars = apply_fn({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                              rngs={"noise": noise_rng, "dropout": dropout_rng}, mutable=["batch_stats"])
  loss = jnp.mean(cross_entropy(logits, y, num_classes, label_smoothing))
  return loss, (logits, new_vars.get("batch_stats", {}))


def shard_devices(tree, devices: int):
  """Every leaf's rows (leading axis) split into `devices` equal shards: (N, ...) -> (devices, N / devices, ...),
  device d holding rows [d N/devices, (d+1) N/devices), as the 'data' mesh splits a batch."""
  return jax.tree.map(lambda a: a.reshape(devices, a.shape[0] // devices, *a.shape[1:]), tree)


def _emulated_loss(params, state: TrainState, batch: dict, devices: int, **kw):
  """The mean loss of `devices` emulated devices on one: device d's shard is rows [d*b, (d+1)*b) of the
  batch, its forward runs under `jax.vmap` over the devices with axis name DATA_AXIS (so sync BN's
  collectives and the device index see D devices), and the batch_stats are averaged over the devices
  (the real path's pmean). The gradient of this mean is taken outside the vmap (params unbatched)."""
  forward = jax.vmap(lambda x, y: _device_loss(params, state, x, y, axis_name=DATA_AXIS, **kw), axis_name=DATA_AXIS)
  losses, (logits, batch_stats) = forward(*shard_devices((batch["x"], batch["y"]), devices))
  logits = logits.reshape(-1, *logits.shape[2:])
  return jnp.mean(losses), (logits, jax.tree.map(lambda a: jnp.mean(a, 0), batch_stats))


def train_step(state: TrainState, batch: dict, *, apply_fn: Callable, tx: optax.GradientTransformation,
               schedule: Callable, num_classes: int, seed: int, nan_policy: str = "stop",
               label_smoothing: float = 0.0, debug_nan_at_step: int = 0,
               axis_name: str | None = DATA_AXIS, emulated_devices: int = 0) -> tuple[TrainState, dict]:
  """One update on `batch` ({'x', 'y'}: this device's shard). Returns (new state, metrics).

  With `axis_name` (inside shard_map) gradients and metrics are averaged over that axis.
  `emulated_devices=D` (> 1): this device runs D devices' step on its batch of D*b examples
  (normlab.train.devices): the same math as D real devices with `batch` sharded over them (1 or 0: one
  device's step on `batch`).
  """
  pmean = (lambda t: jax.lax.pmean(t, axis_name)) if axis_name is not None else (lambda t: t)
  kw = dict(apply_fn=apply_fn, num_classes=num_classes, seed=seed, label_smoothing=label_smoothing)

  def loss_fn(params):
    if emulated_devices > 1:
      loss, aux = _emulated_loss(params, state, batch, emulated_devices, **kw)
    else:
      loss, aux = _device_loss(params, state, batch["x"], batch["y"], axis_name=axis_name, **kw)
    if debug_nan_at_step:
      loss = jnp.where(state.step + 1 == debug_nan_at_step, jnp.nan, 1.0).astype(loss.dtype) * loss
    return loss, aux

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = pmean(grads)
  batch_stats = pmean(batch_stats)
  loss = pmean(loss)
  accuracy = pmean(jnp.mean((jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)))

  updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)

  finite = jnp.isfinite(loss) & _tree_all_finite(grads)
  apply = finite if nan_policy == "skip" else finite & (state.nonfinite_step < 0)
  select = lambda new, old: jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)  # noqa: E731
  step = state.step + 1
  new_state = state.replace(
      step=step,
      params=select(new_params, state.params),
      batch_stats=select(batch_stats, state.batch_stats),
      opt_state=select(new_opt_state, state.opt_state),
      num_skipped=state.num_skipped + (~finite).astype(jnp.int32),
      nonfinite_step=jnp.where((state.nonfinite_step < 0) & ~finite, step, state.nonfinite_step),
      last_train_loss=loss.astype(jnp.float32),
  )
  metrics = {
      "train_loss": loss,
      "train_accuracy": accuracy,
      "grad_norm": optax.global_norm(grads),
      "param_norm": optax.global_norm(new_state.params),
      "update_norm": optax.global_norm(updates),
      "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
      "finite": finite,
      "num_skipped": new_state.num_skipped,
      "nonfinite_step": new_state.nonfinite_step,
  }
  return new_state, metrics


def eval_step(state: TrainState, batch: dict, *, apply_fn: Callable, num_classes: int,
              axis_name: str | None = DATA_AXIS) -> dict:
  """Sums over `batch` ({'x', 'y', 'mask'}) with eval-mode norms: loss_sum, correct, count."""
  logits = apply_fn({"params": state.params, "batch_stats": state.batch_stats}, batch["x"], train=False)
  mask = batch["mask"].astype(jnp.float32)
  loss = cross_entropy(logits.astype(jnp.float32), batch["y"], num_classes)
  sums = {
      "loss_sum": jnp.sum(jnp.where(mask > 0, loss, 0.0) * mask),
      "correct": jnp.sum((jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32) * mask),
      "count": jnp.sum(mask),
  }
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  return sums


def make_data_parallel(fn: Callable, mesh: Mesh, *, donate_state: bool) -> Callable:
  """jit(shard_map(fn)) with fn(state, batch): state replicated, batch split on 'data', outputs replicated.

  check_vma=False: each device differentiates its own loss and `train_step` pmean's the gradients.
  (With VMA checking on, JAX already sums the gradients of replicated params over devices, so the
  pmean would leave them N times too large; it also rejects models whose scan carries start
  replicated and become per-device, like the RNNs'.) Every output is pmean'd/psum'd, so P() holds.
  """
  sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=P(), check_vma=False)
  return jax.jit(sharded, donate_argnums=(0,) if donate_state else ())


def build_steps(config, *, apply_fn: Callable, tx, schedule, num_classes: int, mesh: Mesh,
                donate: bool = True) -> tuple[Callable, Callable]:
  """(train_step, eval_step): jitted, data-parallel over `mesh`, config values baked in; the train
  step donates its input state when `donate`. On the emulated path (normlab.train.devices) `mesh` is
  one device and the train step runs config.num_devices devices' math on it (a config without the
`devices` key, as the benchmark's, runs the real path)."""
  train = functools.partial(
      train_step, apply_fn=apply_fn, tx=tx, schedule=schedule, num_classes=num_classes, seed=int(config.seed),
      nan_policy=config.nan_policy, label_smoothing=float(config.label_smoothing),
      debug_nan_at_step=int(config.debug_nan_at_step), axis_name=DATA_AXIS,
      emulated_devices=devices.emulated_devices(config) if "devices" in config else 0)
  evaluate = functools.partial(eval_step, apply_fn=apply_fn, num_classes=num_classes, axis_name=DATA_AXIS)
  return (make_data_parallel(train, mesh, donate_state=donate),
          make_data_parallel(evaluate, mesh, donate_state=False))


def state_sharding(mesh: Mesh) -> Any:
  return jax.sharding.NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> Any:
  return jax.sharding.NamedSharding(mesh, P(DATA_AXIS))
