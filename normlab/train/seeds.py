"""`train_and_evaluate_seeds(configs, workdirs)`: S seeds of one config trained in one compiled program.

The S runs differ only in `seed` (model init, data order, per-step noise); everything else must be
equal (else they run one after the other with `train_and_evaluate`). Their TrainStates are stacked
on a leading seed axis and the step is `jax.vmap(step.train_step)` over (state, batch, seed), inside
the same `shard_map` over the 'data' mesh as a single run, so bn_mode sync/local mean the same.
Metrics stay on the device until a log/eval/checkpoint step (no per-step sync). With `scan_steps=K > 1`,
K steps run per call in a `lax.scan` (steps past a boundary are masked off, so one program serves every
segment length); the default K=1 is one dispatch per step, because on CPU XLA runs the convs of a scan
body several times slower than straight-line code (ResNet-1D, batch 64: 195 vs 22 ms/step).

Each seed's workdir gets exactly what a single run writes (config.json, metrics.jsonl, tb/,
checkpoints/<step>, summary.json), with the same log/eval/checkpoint steps, and resumes the same way
(all seeds from a common checkpoint step; otherwise the unfinished seeds resume one by one). A seed
whose loss goes non-finite under nan_policy='stop' is frozen at its last finite state (the step's own
select); the other seeds go on, and its summary.json records status 'diverged' and the step (no eval
numbers), so a sweep records the failure instead of stopping.

Results equal S separate `train_and_evaluate` runs up to floating-point reassociation: vmapped convs
and reductions are batched differently by XLA, so on CPU the params agree to ~1e-5 relative after
tens of steps (tests/test_sweep_train.py), and the difference grows with training like any
perturbation of SGD. Data batches and init are bit-identical; the per-step noise/dropout bits (noisy
norms, dropout) are not: XLA's 'rbg' PRNG (normlab's default) draws other bits under vmap.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from normlab import data
from normlab.train import distributed, optim, state as state_lib, step as step_lib
from normlab.train import workdir as workdir_lib
from normlab.train.checkpoint import Checkpointer
from normlab.train.errors import ConfigError
from normlab.train.loop import _EVAL_CACHE_BYTES, _test_split, build_model, resolved_config, train_and_evaluate
from normlab.train.metrics_io import MetricsWriter, read_json, write_json_atomic
from normlab.train.validate import HARMLESS_KEYS, check_batch_fits, validate

log = logging.getLogger("normlab.train")

DEFAULT_SCAN_STEPS = 1  # XLA:CPU runs convs ~2-9x slower inside a scan (while loop) than unrolled
_LOG_KEYS = ("train_loss", "train_accuracy", "grad_norm", "param_norm", "update_norm")


def _without_seed(config: mlc.ConfigDict) -> dict:
  d = config.to_dict()
  for key in ("seed", *HARMLESS_KEYS):
    d.pop(key, None)
  return workdir_lib.normalize(d)


def _sequential(configs, workdirs, reason: str) -> list[dict[str, Any]]:
  log.info("training %d runs one after the other (%s)", len(configs), reason)
  return [train_and_evaluate(c, w) for c, w in zip(configs, workdirs)]


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def _boundaries(config, start: int) -> list[int]:
  """The steps in (start, num_steps] after which the loop logs, evaluates or checkpoints."""
  n = int(config.num_steps)
  marks = {n}
  for every in (config.log_every, config.eval_every, config.checkpoint_every):
    marks.update(range(int(every), n + 1, int(every)))
  return sorted(s for s in marks if s > start)


def train_and_evaluate_seeds(configs: list[mlc.ConfigDict], workdirs: list[str], *,
                             scan_steps: int | None = None) -> list[dict[str, Any]]:
  """Trains the runs `configs[i]` -> `workdirs[i]` (same config up to `seed`) together; returns summaries.

  `scan_steps`: steps per compiled call (default 1); > 1 scans over that many steps per call.
  """
  if len(configs) != len(workdirs):
    raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  if not configs:
    return []
  if len(configs) == 1 and (scan_steps or DEFAULT_SCAN_STEPS) == 1:
    return [train_and_evaluate(configs[0], workdirs[0])]
  ref = _without_seed(configs[0])
  if any(_without_seed(c) != ref for c in configs[1:]):
    return _sequential(configs, workdirs, "configs differ in more than the seed")
  seeds = [int(c.seed) for c in configs]
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f"config.seed: the runs trained together need distinct seeds, got {seeds}")
  if jax.process_count() > 1:
    return _sequential(configs, workdirs, "multi-process run")
  t_start = time.perf_counter()
  config = configs[0]
  num_devices = validate(config)
  for c in configs[1:]:
    validate(c)
  workdirs = [os.path.abspath(os.path.expanduser(w)) for w in workdirs]
  summaries: dict[int, dict] = {}
  todo = []
  for i, (c, w) in enumerate(zip(configs, workdirs)):
    status = workdir_lib.prepare(w, resolved_config(c, num_devices), log=log.info)
    if status == workdir_lib.DONE:
      summaries[i] = read_json(workdir_lib.summary_path(w))
    else:
      todo.append(i)
  if not todo:
    return [summaries[i] for i in range(len(configs))]

  # Data (shared by the seeds; each seed has its own order).
  info = data.get_dataset_info(config.dataset)
  data_dir = config.data_dir or None
  train_ds = data.load(config.dataset, "train", data_dir=data_dir)
  test_ds = data.load(config.dataset, _test_split(info), data_dir=data_dir)
  check_batch_fits(config, len(train_ds))
  S = len(todo)
  run_seeds = [seeds[i] for i in todo]

  def host_batch(seed: int, step: int) -> dict[str, np.ndarray]:
    return data.train_batch(train_ds, config.batch_size, seed, step, augment=config.augment,
                            normalize_inputs=config.normalize_inputs)

  # Model, optimizer, the S initial states: one init program called per seed (not vmapped: the 'rbg'
  # PRNG draws other bits under vmap), each seed with its own first batch, as in the loop.
  mesh = distributed.make_mesh(num_devices)
  replicated = NamedSharding(mesh, P())
  tx, schedule = optim.make_optimizer(config), optim.make_schedule(config)
  model = build_model(config, info.num_classes)
  local = config.batch_size // num_devices
  try:
    init = jax.jit(lambda x, s: state_lib.create_state(state_lib.init_variables(model, x, s), tx))
    state = _stack([init(host_batch(s, 0)["x"][:local], jnp.asarray(s, jnp.int32)) for s in run_seeds])
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.model: {config.model!r} with {config.model_options.to_dict()} cannot be "
                      f"built for dataset {config.dataset!r}: {str(e).splitlines()[0]}") from e
  state = jax.device_put(state, replicated)
  workdir_lib.check_disk(workdirs[todo[0]],
                         state_lib.tree_bytes(state) * (config.keep_checkpoints + 2) + workdir_lib.MIN_FREE_BYTES)

  # Resume: every seed from the same checkpoint step, else one by one.
  ckpts = [Checkpointer(workdir_lib.checkpoint_dir(workdirs[i]), config.keep_checkpoints) for i in todo]
  restored = [ck.restore_latest(_unstack(state, j)) for j, ck in enumerate(ckpts)]
  steps = {r[1] for r in restored}
  if len(steps) > 1:
    for ck in ckpts:
      ck.close()
    for i in todo:
      summaries[i] = train_and_evaluate(configs[i], workdirs[i])
    return [summaries[i] for i in range(len(configs))]
  start = int(steps.pop() or 0)
  if start:
    state = jax.device_put(_stack([r[0] for r in restored]), replicated)
    log.info("resumed %d seeds from their checkpoints at step %d of %d", S, start, config.num_steps)
  del restored
  writers = [MetricsWriter(workdirs[i], resume_step=start) for i in todo]

  # The S-seed step: vmap(train_step) over (state, batch, seed) per device; scan over K steps.
  K = max(1, min(int(scan_steps or DEFAULT_SCAN_STEPS), int(config.num_steps)))
  one = functools.partial(
      step_lib.train_step, apply_fn=model.apply, tx=tx, schedule=schedule, num_classes=info.num_classes,
      nan_policy=config.nan_policy, label_smoothing=float(config.label_smoothing),
      debug_nan_at_step=int(config.debug_nan_at_step), axis_name=step_lib.DATA_AXIS)
  vstep = jax.vmap(lambda st, b, s: one(st, b, seed=s))

  def chunk(st, batches, active, seed_arr):
    def body(carry, inp):
      b, on = inp
      new, metrics = vstep(carry, b, seed_arr)
      return jax.tree.map(lambda a, o: jnp.where(on, a, o), new, carry), metrics
    return jax.lax.scan(body, st, (batches, active), unroll=K == 1)

  # check_vma=False as in step.make_data_parallel: train_step pmean's the per-device gradients itself.
  train_c = jax.jit(jax.shard_map(chunk, mesh=mesh, in_specs=(P(), P(None, None, step_lib.DATA_AXIS), P(), P()),
                                  out_specs=(P(), P()), check_vma=False), donate_argnums=(0,))
  veval = jax.vmap(functools.partial(step_lib.eval_step, apply_fn=model.apply, num_classes=info.num_classes,
                                     axis_name=step_lib.DATA_AXIS), in_axes=(0, None))
  eval_c = jax.jit(jax.shard_map(veval, mesh=mesh, in_specs=(P(), P(step_lib.DATA_AXIS)), out_specs=P(),
                                 check_vma=False))
  chunk_sharding = NamedSharding(mesh, P(None, None, step_lib.DATA_AXIS))
  batch_sharding = NamedSharding(mesh, P(step_lib.DATA_AXIS))
  seed_arr = jax.device_put(jnp.asarray(run_seeds, jnp.int32), replicated)

  def host_chunk(first: int, n: int):
    """K steps x S seeds of batches from step `first` (n real ones, the rest repeats, masked off)."""
    steps_ = [first + min(k, n - 1) for k in range(K)]
    per_step = [[host_batch(s, t) for s in run_seeds] for t in steps_]
    stacked = {key: np.stack([np.stack([b[key] for b in row]) for row in per_step]) for key in per_step[0][0]}
    return jax.device_put(stacked, chunk_sharding), jnp.asarray(np.arange(K) < n)

  eval_iter = lambda: data.eval_batches(test_ds, config.eval_batch_size,  # noqa: E731
                                        normalize_inputs=config.normalize_inputs)
  t0 = time.perf_counter()
  example, active = host_chunk(start, K)
  train_c = train_c.lower(state, example, active, seed_arr).compile()
  eval_example = jax.device_put(next(eval_iter()), batch_sharding)
  eval_c = eval_c.lower(state, eval_example).compile()
  compile_time = time.perf_counter() - t0
  eval_cache = None
  if len(test_ds) * int(np.prod(info.input_shape)) * 4 <= _EVAL_CACHE_BYTES:
    eval_cache = [jax.device_put(b, batch_sharding) for b in eval_iter()]

  def evaluate(st) -> list[dict[str, float]]:
    batches = eval_cache if eval_cache is not None else (jax.device_put(b, batch_sharding) for b in eval_iter())
    total = None
    for b in batches:
      sums = eval_c(st, b)
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = jax.device_get(total)
    return [{"eval_loss": float(total["loss_sum"][j]) / float(total["count"][j]),
             "eval_accuracy": float(total["correct"][j]) / float(total["count"][j])} for j in range(S)]

  # Train, segment by segment (a segment ends where the loop would log, evaluate or checkpoint).
  pending: list[dict] = []  # host metrics (per step, arrays over seeds) since the last log line
  eval_metrics: list[dict] = [{} for _ in range(S)]
  diverged: dict[int, int] = {}  # seed index -> first non-finite step (nan_policy='stop')
  train_time = 0.0
  step = start
  try:
    for end in _boundaries(config, start):
      t_seg = time.perf_counter()
      on_device = []
      while step < end:
        n = min(K, end - step)
        batches, active = host_chunk(step, n)
        state, metrics = train_c(state, batches, active, seed_arr)
        on_device.append((n, metrics))
        step += n
      for n, host in jax.device_get(on_device):
        pending.extend({k: v[t] for k, v in host.items()} for t in range(n))
      jax.block_until_ready(state)
      train_time += time.perf_counter() - t_seg
      for j in range(S):
        if j not in diverged and config.nan_policy == "stop" and int(pending[-1]["nonfinite_step"][j]) > 0:
          diverged[j] = int(pending[-1]["nonfinite_step"][j])
          log.warning("seed %d: non-finite loss or gradient at step %d; frozen there (nan_policy='stop')",
                      run_seeds[j], diverged[j])
      is_eval = end % config.eval_every == 0 or end == config.num_steps
      is_log = end % config.log_every == 0 or is_eval
      is_ckpt = end % config.checkpoint_every == 0 or end == config.num_steps
      if is_eval:
        eval_metrics = evaluate(state)
      if is_log:
        for j, w in enumerate(writers):
          if j in diverged:
            continue
          row: dict[str, Any] = {}
          for key in _LOG_KEYS:
            values = np.asarray([p[key][j] for p in pending], np.float64)
            finite = values[np.isfinite(values)]
            row[key] = float(finite.mean()) if finite.size else float("nan")
          row["learning_rate"] = float(pending[-1]["learning_rate"][j])
          row["num_skipped"] = int(pending[-1]["num_skipped"][j])
          row["steps_per_s"] = (step - start) / max(train_time, 1e-9)
          if is_eval:
            row.update(eval_metrics[j])
          w.write(end, row)
        pending.clear()
        log.info("step %d/%d (%d seeds): eval_accuracy %s", end, config.num_steps, S,
                 [round(m.get("eval_accuracy", float("nan")), 4) for m in eval_metrics] if is_eval else "-")
      if is_ckpt:
        for j, ck in enumerate(ckpts):
          if j not in diverged:
            ck.save(end, _unstack(state, j))
  finally:
    for w in writers:
      w.close()

  final = jax.device_get({"loss": state.last_train_loss, "skipped": state.num_skipped})
  for ck in ckpts:
    ck.close()
  ran = config.num_steps - start
  wall = time.perf_counter() - t_start
  for j, i in enumerate(todo):
    common = {"steps": int(config.num_steps), "resumed_from_step": start, "steps_this_run": ran,
              "wall_time_s": wall, "train_time_s": train_time,
              "steps_per_s": ran / train_time if train_time > 0 else 0.0, "compile_time_s": compile_time,
              "num_params": state_lib.num_params(_unstack(state.params, j)), "num_devices": num_devices,
              "device": jax.devices()[0].device_kind, "jax_version": jax.__version__,
              "vmapped_seeds": S, "scan_steps": K}
    if j in diverged:
      summary = {"status": "diverged", "nonfinite_step": diverged[j], "eval_accuracy": None, "eval_loss": None,
                 "final_train_loss": float("nan"), "num_skipped": int(final["skipped"][j]), **common}
    else:
      summary = {"eval_accuracy": eval_metrics[j]["eval_accuracy"], "eval_loss": eval_metrics[j]["eval_loss"],
                 "final_train_loss": float(final["loss"][j]), "num_skipped": int(final["skipped"][j]), **common}
    write_json_atomic(workdir_lib.summary_path(workdirs[i]), summary)
    summaries[i] = summary
  log.info("done: %d seeds in %.1f s (compile %.1f s, %.1f steps/s of %d seeds): eval_accuracy %s", S, wall,
           compile_time, ran / max(train_time, 1e-9), S, [summaries[i].get("eval_accuracy") for i in todo])
  if any(not math.isfinite(summaries[i]["final_train_loss"]) for i in todo) and config.nan_policy == "skip":
    log.warning("a final train loss is not finite")
  return [summaries[i] for i in range(len(configs))]
