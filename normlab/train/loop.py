"""`train_and_evaluate(config, workdir)`: validate, (re)start, train data-parallel, evaluate, summarize.

Order of work, so that user mistakes cost nothing: validate the config -> check the workdir (done?
another run? writable?) -> load data -> build and init the model -> restore the newest intact
checkpoint -> compile (timed) -> train. Step s (0-based) trains on the batch `batch_indices(seed, s)`
and after it `state.step == s + 1`; logs, evals and checkpoints happen at step counts divisible by
log_every / eval_every / checkpoint_every and at num_steps. Resuming from checkpoint k replays
steps k.. exactly as an uninterrupted run would (data and noise depend on (seed, step) only).

Studies run on this loop too: `hooks` (normlab.train.hooks, CLU-style periodic actions) see each
step's state before and after, the batch and the step number; `workdir=None` trains in memory (no
config.json, metrics, checkpoints or summary file); `batches(step)` replaces the (seed, step) batches.
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import os
import shutil
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from normlab import data, registry
from normlab.checks import SingleValueError
from normlab.train import distributed, hooks as hooks_lib, optim, state as state_lib, step as step_lib
from normlab.train import devices as devices_lib, workdir as workdir_lib
from normlab.train.checkpoint import Checkpointer
from normlab.train.errors import ConfigError, TrainingDivergedError, diverged_message
from normlab.train.metrics_io import MetricsWriter, count_events, read_json, write_json_atomic
from normlab.train.validate import check_batch_fits, validate

log = logging.getLogger("normlab.train")

_EVAL_CACHE_BYTES = 256 << 20  # keep the eval split on device when it is this small


def _test_split(info: data.DatasetInfo) -> str:
  return "test" if "test" in info.splits else info.splits[-1]


def build_model(config: mlc.ConfigDict, num_classes: int):
  from normlab import models
  norm = registry.make_norm(config.norm, **dict(config.norm_options))
  axis_name = step_lib.DATA_AXIS if config.bn_mode == "sync" else None
  return models.get_model(config.model, num_classes=num_classes, norm=norm, placement=config.norm_placement,
                          axis_name=axis_name, **_plain(config.model_options))


def _plain(options) -> dict:
  return options.to_dict() if isinstance(options, mlc.ConfigDict) else dict(options)


def resolved_config(config: mlc.ConfigDict, num_devices: int) -> dict:
  """The config as recorded in config.json: num_devices resolved to the actual count."""
  d = config.to_dict()
  d["num_devices"] = num_devices
  return d


class _Progress:
  """tqdm bar on a terminal, plain log lines otherwise."""

  def __init__(self, start: int, total: int, enabled: bool | None):
    self.bar = None
    if enabled if enabled is not None else sys.stderr.isatty():
      from tqdm import tqdm
      # shutil falls back to 80x24 where a terminal reports a 0 size (tqdm would then draw nothing).
      size = shutil.get_terminal_size()
      self.bar = tqdm(total=total, initial=start, unit="step", ncols=size.columns, nrows=size.lines,
                      file=sys.stderr)

  def update(self, n: int = 1) -> None:
    if self.bar is not None:
      self.bar.update(n)

  def message(self, text: str, postfix: dict | None = None) -> None:
    if self.bar is not None:
      if postfix:
        self.bar.set_postfix(postfix, refresh=False)
      if postfix is None:
        self.bar.write(text, file=sys.stderr)
    else:
      log.info(text)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def _fmt(metrics: dict) -> str:
  parts = []
  for k, v in metrics.items():
    parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
  return " ".join(parts)


def train_and_evaluate(config: mlc.ConfigDict, workdir: str | None, *, fresh: bool = False,
                       progress: bool | None = None, hooks: Sequence[Any] = (),
                       batches: Callable[[int], dict] | None = None) -> dict[str, Any]:
  """Train `config` in `workdir` (resuming what is there; None: in memory) and return the summary dict.

  `hooks`: see normlab.train.hooks. `batches(step) -> {'x', 'y'}` (host arrays; 'x' may be
  {'x', 'mask'}) replaces the config's (seed, step) training batches; evaluation is then left to
  the hooks (the test split has not that form).
  Raises ConfigError / WorkdirError / DatasetNotPreparedError for user mistakes (before any
  compilation), LockHeldError when another live process holds the workdir, and TrainingDivergedError
  when the loss goes non-finite under nan_policy='stop'.
  """
  if workdir is None:
    return _train_and_evaluate(config, None, fresh=fresh, progress=progress, hooks=hooks, batches=batches)
  validate(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  with workdir_lib.locked(workdir, log=log.info):  # one writer per workdir, before anything touches it
    return _train_and_evaluate(config, workdir, fresh=fresh, progress=progress, hooks=hooks, batches=batches)


def _train_and_evaluate(config, workdir, *, fresh, progress, hooks, batches) -> dict[str, Any]:
  t_start = time.perf_counter()
  num_devices = validate(config)
  persist = workdir is not None
  main = distributed.is_main_process()
  status = workdir_lib.NEW
  if persist:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if main:
      status = workdir_lib.prepare(workdir, resolved_config(config, num_devices), fresh=fresh, log=log.info)
    distributed.barrier("workdir prepared")
    if not main:
      status = workdir_lib.prepare(workdir, resolved_config(config, num_devices), write=False)
  if status == workdir_lib.DONE:
    summary = read_json(workdir_lib.summary_path(workdir))
    log.info("run in %s is already finished (eval_accuracy=%s after %s steps); nothing to do", workdir,
             summary.get("eval_accuracy"), summary.get("steps"))
    return summary
  return train_runs(config, num_devices, [int(config.seed)], [workdir], vmapped=False, hooks=hooks,
                    batches=batches, progress=progress, t_start=t_start,
                    resuming=status == workdir_lib.RESUME)[0]


class MixedResume(Exception):
  """The vmapped runs' newest checkpoints are at different steps (they resume one by one instead)."""


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def _boundaries(config, start: int) -> list[int]:
  """The step counts in (start, num_steps] after which the loop logs, evaluates or checkpoints."""
  n = int(config.num_steps)
  marks = {n}
  for every in (config.log_every, config.eval_every, config.checkpoint_every):
    marks.update(range(int(every), n + 1, int(every)))
  return sorted(s for s in marks if s > start)


_LOG_KEYS = ("train_loss", "train_accuracy", "grad_norm", "param_norm", "update_norm")


def train_runs(config: mlc.ConfigDict, num_devices: int, seeds: Sequence[int], workdirs: Sequence[str | None], *,
               vmapped: bool, scan_steps: int = 1, hooks: Sequence[Any] = (),
               batches: Callable[[int], dict] | None = None, progress: bool | None = None,
               t_start: float | None = None, resuming: bool = False) -> list[dict[str, Any]]:
  """The training loop: runs of `config` with `seeds` in the (prepared, not finished) `workdirs`
  (None: in memory). One run, or (`vmapped`) S runs whose TrainStates are stacked on a leading seed
  axis and trained by `jax.vmap` of the same step in one program (normlab.train.seeds), with
  `scan_steps` steps per call. Returns the summaries. Under nan_policy='stop' a lone run raises
  TrainingDivergedError; a vmapped one is frozen at its last finite state and so recorded."""
  t_start = time.perf_counter() if t_start is None else t_start
  S = len(seeds)
  K = max(1, min(int(scan_steps), int(config.num_steps))) if vmapped else 1
  if hooks and K > 1:
    raise ValueError("hooks see every step: they need scan_steps=1")
  persist = workdirs[0] is not None
  main = distributed.is_main_process()

  # Data (shared by the runs; each seed has its own order).
  info = data.get_dataset_info(config.dataset)
  data_dir = config.data_dir or None
  train_ds = data.load(config.dataset, "train", data_dir=data_dir)
  test_ds = data.load(config.dataset, _test_split(info), data_dir=data_dir)
  check_batch_fits(config, len(train_ds))

  def host_batch(seed: int, step: int) -> dict[str, np.ndarray]:
    if batches is not None:
      return batches(step)
    return data.train_batch(train_ds, config.batch_size, seed, step, augment=config.augment,
                            normalize_inputs=config.normalize_inputs)

  # Model, optimizer, state. Vmapped: one init program called per seed (not vmapped: the 'rbg' PRNG
  # draws other bits under vmap), each seed with its own first batch.
  mesh = devices_lib.make_mesh(config, num_devices)  # one device when emulated
  replicated, sharded = step_lib.state_sharding(mesh), step_lib.batch_sharding(mesh)
  tx, schedule = optim.make_optimizer(config), optim.make_schedule(config)
  local = config.batch_size // num_devices
  try:
    model = build_model(config, info.num_classes)
    x0 = jax.tree.map(lambda a: a[:local], host_batch(seeds[0], 0)["x"])
    if vmapped:
      init = jax.jit(lambda x, s: state_lib.create_state(state_lib.init_variables(model, x, s), tx))
      state = _stack([init(jax.tree.map(lambda a: a[:local], host_batch(s, 0)["x"]), jnp.asarray(s, jnp.int32))
                      for s in seeds])
    else:
      state = state_lib.create_state(state_lib.init_variables(model, x0, seeds[0]), tx)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.model: {config.model!r} with {config.model_options.to_dict()} cannot be "
                      f"built for dataset {config.dataset!r}: {str(e).splitlines()[0]}") from e
  state = jax.device_put(state, replicated) if vmapped else distributed.replicate(state, replicated)
  one = (lambda st, j: _unstack(st, j)) if vmapped else (lambda st, j: st)  # noqa: E731

  # Resume: every run from its newest intact checkpoint (vmapped: all at the same step).
  ckpts, writers, start = [], [], 0
  if persist:
    workdir_lib.check_disk(workdirs[0], state_lib.tree_bytes(state) * (config.keep_checkpoints + 2)
                           + workdir_lib.MIN_FREE_BYTES)
    ckpts = [Checkpointer(workdir_lib.checkpoint_dir(w), config.keep_checkpoints, main=main) for w in workdirs]
    restored = [ck.restore_latest(one(state, j)) for j, ck in enumerate(ckpts)]
    steps = {r[1] for r in restored}
    if len(steps) > 1:
      for ck in ckpts:
        ck.close()
      raise MixedResume(sorted(steps, key=lambda s: s or 0))
    start = int(steps.pop() or 0)
    if start and vmapped:
      state = jax.device_put(_stack([r[0] for r in restored]), replicated)
      log.info("resumed %d seeds from their checkpoints at step %d of %d", S, start, config.num_steps)
    elif start:
      state = restored[0][0]
      log.info("resumed from the checkpoint at step %d of %d", start, config.num_steps)
    elif resuming:
      log.info("no intact checkpoint in %s: starting from step 0", workdirs[0])
    del restored
    writers = [MetricsWriter(w, resume_step=start) for w in workdirs] if main else []
    for writer, ck in zip(writers, ckpts):
      for bad in ck.fallbacks:
        writer.event(start, "checkpoint_fallback", damaged_step=bad.step, file=bad.file, reason=bad.reason,
                     moved_to=bad.moved_to, resumed_from_step=start)
  apply = state_lib.input_apply(model, x0)
  run = hooks_lib.Run(config, model, apply, tx, schedule, info.num_classes, train_ds,
                      lambda step: host_batch(seeds[0], step), state, init_state=state)
  for hook in hooks:
    if hasattr(hook, "start"):
      hook.start(run)

  # The step: data-parallel over the mesh (normlab.train.step); vmapped over the seeds and scanned over
  # K steps. With hooks it keeps its input state (they see it), otherwise it donates it.
  test_eval = batches is None  # custom batches have no test split of their form: hooks evaluate
  if vmapped:
    seed_arr = jax.device_put(jnp.asarray(list(seeds), jnp.int32), replicated)
    step_one = functools.partial(
        step_lib.train_step, apply_fn=apply, tx=tx, schedule=schedule, num_classes=info.num_classes,
        nan_policy=config.nan_policy, label_smoothing=float(config.label_smoothing),
        debug_nan_at_step=int(config.debug_nan_at_step), axis_name=step_lib.DATA_AXIS,
        emulated_devices=devices_lib.emulated_devices(config, num_devices))
    vstep = jax.vmap(lambda st, b, s: step_one(st, b, seed=s))

    def chunk(st, batches_, active, seed_arr_):
      def body(carry, inp):
        b, on = inp
        new, metrics = vstep(carry, b, seed_arr_)
        return jax.tree.map(lambda a, o: jnp.where(on, a, o), new, carry), metrics
      return jax.lax.scan(body, st, (batches_, active), unroll=K == 1)
    # check_vma=False as in step.make_data_parallel: train_step pmean's the per-device gradients itself.
    train_fn = jax.jit(jax.shard_map(chunk, mesh=mesh, in_specs=(P(), P(None, None, step_lib.DATA_AXIS), P(), P()),
                                     out_specs=(P(), P()), check_vma=False), donate_argnums=() if hooks else (0,))
    veval = jax.vmap(functools.partial(step_lib.eval_step, apply_fn=apply, num_classes=info.num_classes,
                                       axis_name=step_lib.DATA_AXIS), in_axes=(0, None))
    eval_fn = jax.jit(jax.shard_map(veval, mesh=mesh, in_specs=(P(), P(step_lib.DATA_AXIS)), out_specs=P(),
                                    check_vma=False))
    chunk_sharding = NamedSharding(mesh, P(None, None, step_lib.DATA_AXIS))
  else:
    train_fn, eval_fn = step_lib.build_steps(config, apply_fn=apply, tx=tx, schedule=schedule,
                                             num_classes=info.num_classes, mesh=mesh, donate=not hooks)

  def host_input(first: int, n: int):
    """The host arrays of steps first..first+n-1 (vmapped: K steps x S seeds, repeats past n masked off)."""
    if not vmapped:
      return host_batch(seeds[0], first)
    per_step = [[host_batch(s, first + min(k, n - 1)) for s in seeds] for k in range(K)]
    return {key: np.stack([np.stack([b[key] for b in row]) for row in per_step]) for key in per_step[0][0]}

  def device_input(arrays, n: int) -> tuple:
    if not vmapped:
      return (distributed.global_batch(arrays, sharded),)
    return jax.device_put(arrays, chunk_sharding), jnp.asarray(np.arange(K) < n), seed_arr

  def per_step_rows(n: int, metrics) -> list[dict]:
    """Host metrics of a call: one dict per step, each value an array over the runs."""
    if not vmapped:
      return [{k: np.asarray(v)[None] for k, v in metrics.items()}]
    return [{k: np.asarray(v)[t] for k, v in metrics.items()} for t in range(n)]

  eval_iter = lambda: data.eval_batches(test_ds, config.eval_batch_size,  # noqa: E731
                                        normalize_inputs=config.normalize_inputs)
  t0 = time.perf_counter()
  try:
    train_c = train_fn.lower(state, *device_input(host_input(start, K), K)).compile()
  except SingleValueError as e:
    raise ConfigError(str(e.with_hint(
        f"set --config.norm_options.allow_single_value=True (norm {config.norm!r}, batch_size "
        f"{config.batch_size} over {num_devices} devices)"))) from None
  if test_eval:
    eval_c = eval_fn.lower(state, distributed.global_batch(next(eval_iter()), sharded)).compile()
  compile_time = time.perf_counter() - t0
  eval_cache = None
  if test_eval and len(test_ds) * int(np.prod(info.input_shape)) * 4 <= _EVAL_CACHE_BYTES:
    eval_cache = [distributed.global_batch(b, sharded) for b in eval_iter()]

  def evaluate(st) -> list[dict[str, float | None]]:
    if not test_eval:
      return [{"eval_loss": None, "eval_accuracy": None} for _ in seeds]
    total = None
    for b in eval_cache if eval_cache is not None else (distributed.global_batch(b, sharded) for b in eval_iter()):
      sums = eval_c(st, b)
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = {k: np.reshape(np.asarray(v, np.float64), (S,)) for k, v in jax.device_get(total).items()}
    return [{"eval_loss": float(total["loss_sum"][j]) / float(total["count"][j]),
             "eval_accuracy": float(total["correct"][j]) / float(total["count"][j])} for j in range(S)]

  # Train, call by call; at a log/eval/checkpoint step (and where a hook is due) the metrics come to
  # the host and every step's finiteness is checked.
  progress_ = _Progress(start, config.num_steps, progress if not vmapped else False)
  in_flight: list[tuple[int, Any]] = []  # (steps, device metrics) of the calls not yet on the host
  rows: list[dict] = []  # host metrics per step since the last log line
  eval_metrics: list[dict] = []
  diverged: dict[int, int] = {}  # run index -> first non-finite step (vmapped, nan_policy='stop')
  train_time = 0.0

  def sync(upto: int) -> None:
    """Bring the calls in flight to the host and check their steps (stop or log skips per nan_policy)."""
    first = upto - sum(n for n, _ in in_flight)
    for n, host in jax.device_get(in_flight):
      for t, r in enumerate(per_step_rows(n, host)):
        rows.append(r)
        for j in range(S):
          if bool(r["finite"][j]) or j in diverged:
            continue
          bad = int(r["nonfinite_step"][j])
          if config.nan_policy == "skip":
            progress_.message(f"step {first + t + 1}: non-finite loss or gradient (train_loss={float(r['train_loss'][j])});"
                              f" update skipped ({int(r['num_skipped'][j])} skipped so far)")
          elif vmapped:
            diverged[j] = bad
            log.warning("seed %d: non-finite loss or gradient at step %d; frozen there (nan_policy='stop')",
                        seeds[j], bad)
          else:
            if writers:
              writers[0].write(bad, {"train_loss": float(r["train_loss"][j]), "nonfinite": True})
            raise TrainingDivergedError(bad, diverged_message(bad, float(r["train_loss"][j]), start or None))
      first += n
    in_flight.clear()

  step = start
  prefetch = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batches")
  try:
    for end in _boundaries(config, start):
      t_segment = time.perf_counter()
      upcoming = prefetch.submit(host_input, step, min(K, end - step))
      while step < end:
        n = min(K, end - step)
        arrays = upcoming.result()
        if step + n < end:  # the next batch is assembled on the host while this step runs
          upcoming = prefetch.submit(host_input, step + n, min(K, end - step - n))
        before = state
        state, metrics = train_c(state, *device_input(arrays, n))
        in_flight.append((n, metrics))
        due = [h for h in hooks if hooks_lib.is_due(h, step, config.num_steps)]
        if due:
          sync(step + n)  # blocks: a hook never sees a non-finite step
          for hook in due:
            hook(step, before, arrays, state, metrics)
        del before
        step += n
        progress_.update(n)
      sync(end)
      jax.block_until_ready(state)
      train_time += time.perf_counter() - t_segment
      is_eval = end % config.eval_every == 0 or end == config.num_steps
      is_log = end % config.log_every == 0 or is_eval
      is_ckpt = end % config.checkpoint_every == 0 or end == config.num_steps
      if is_eval:
        eval_metrics = evaluate(state)
      if is_log:
        _log(end, config, rows, eval_metrics if is_eval else None, writers, diverged, progress_, vmapped, seeds,
             (step - start) / max(train_time, 1e-9))
        rows.clear()
      if is_ckpt:
        for j, ck in enumerate(ckpts):
          if j not in diverged:
            ck.save(end, one(state, j))
  finally:
    prefetch.shutdown(wait=True, cancel_futures=True)
    progress_.close()
    for w in writers:
      w.close()

  if not eval_metrics:  # resumed from the final checkpoint of a run killed before its summary
    eval_metrics = evaluate(state)
  final = jax.device_get({"loss": state.last_train_loss, "skipped": state.num_skipped})
  final = {k: np.reshape(np.asarray(v), (S,)) for k, v in final.items()}
  for j, ck in enumerate(ckpts):
    if j not in diverged:
      ck.save(config.num_steps, one(state, j))
    ck.close()
  run.state = state
  for hook in hooks:
    if hasattr(hook, "end"):
      hook.end(run)
  ran = config.num_steps - start
  summaries = []
  for j in range(S):
    summary = {"eval_accuracy": eval_metrics[j]["eval_accuracy"], "eval_loss": eval_metrics[j]["eval_loss"],
               "final_train_loss": float(final["loss"][j]), "steps": int(config.num_steps),
               "num_skipped": int(final["skipped"][j]), "resumed_from_step": start, "steps_this_run": ran,
               "checkpoint_fallbacks": (count_events(os.path.join(workdirs[j], "metrics.jsonl"), "checkpoint_fallback")
                                        if main and workdirs[j] else len(ckpts[j].fallbacks) if ckpts else 0),
               "wall_time_s": time.perf_counter() - t_start, "train_time_s": train_time,
               "steps_per_s": ran / train_time if train_time > 0 else 0.0, "compile_time_s": compile_time,
               "num_params": state_lib.num_params(one(state, j).params), "num_devices": num_devices,
               "devices": devices_lib.for_config(config, num_devices),
               "device": jax.devices()[0].device_kind, "jax_version": jax.__version__}
    if vmapped:
      summary.update(vmapped_seeds=S, scan_steps=K)
    if j in diverged:
      summary.update(status="diverged", nonfinite_step=diverged[j], eval_accuracy=None, eval_loss=None,
                     final_train_loss=float("nan"))
    if main and persist:
      write_json_atomic(workdir_lib.summary_path(workdirs[j]), summary)
    summaries.append(summary)
  shown = {k: summaries[0][k] for k in ("eval_accuracy", "eval_loss", "final_train_loss", "steps", "steps_per_s",
                                        "compile_time_s", "wall_time_s")}
  log.info("done%s: %s", f" ({S} seeds, first shown)" if vmapped else "", _fmt(shown))
  if any(not math.isfinite(s["final_train_loss"]) for s in summaries) and config.nan_policy == "skip":
    log.warning("a final train loss is not finite (%s updates were skipped)", [s["num_skipped"] for s in summaries])
  return summaries


def _log(step: int, config, rows: list[dict], eval_metrics: list[dict] | None, writers, diverged, progress_,
         vmapped: bool, seeds, steps_per_s: float) -> None:
  """One metrics row per run (means of the finite per-step values since the last row, eval metrics)."""
  shown_all = []
  for j in range(len(seeds)):
    if j in diverged:
      continue
    row: dict[str, Any] = {}
    for key in _LOG_KEYS:
      values = np.asarray([r[key][j] for r in rows], np.float64)
      finite = values[np.isfinite(values)]  # skipped steps (nan_policy='skip') are left out
      row[key] = float(finite.mean()) if finite.size else float("nan")
    row["learning_rate"] = float(rows[-1]["learning_rate"][j])
    row["num_skipped"] = int(rows[-1]["num_skipped"][j])
    row["steps_per_s"] = steps_per_s
    if eval_metrics is not None:
      row.update(eval_metrics[j])
    if writers:
      writers[j].write(step, row)
    shown_all.append(row)
  if vmapped:
    log.info("step %d/%d (%d seeds): eval_accuracy %s", step, config.num_steps, len(seeds),
             [round(m["eval_accuracy"], 4) if m["eval_accuracy"] is not None else None for m in eval_metrics]
             if eval_metrics is not None else "-")
    return
  shown = {k: v for k, v in shown_all[0].items() if k in ("train_loss", "train_accuracy", "eval_loss",
                                                          "eval_accuracy", "steps_per_s")}
  progress_.message(f"step {step}/{config.num_steps}: {_fmt(shown)}",
                    postfix={k: f"{v:.3g}" for k, v in shown.items() if v is not None} if progress_.bar else None)
  if progress_.bar is not None and eval_metrics is not None:
    progress_.message(f"step {step}: {_fmt(eval_metrics[0])}")
