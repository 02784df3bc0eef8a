"""`train_and_evaluate(config, workdir)`: validate, (re)start, train data-parallel, evaluate, summarize.

Order of work, so that user mistakes cost nothing: validate the config -> check the workdir (done?
another run? writable?) -> load data -> build and init the model -> restore the newest intact
checkpoint -> compile (timed) -> train. Step s (0-based) trains on the batch `batch_indices(seed, s)`
and after it `state.step == s + 1`; logs, evals and checkpoints happen at step counts divisible by
log_every / eval_every / checkpoint_every and at num_steps. Resuming from checkpoint k replays
steps k.. exactly as an uninterrupted run would (data and noise depend on (seed, step) only).
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import shutil
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from normlab import data, registry
from normlab.checks import SingleValueError
from normlab.train import distributed, optim, state as state_lib, step as step_lib
from normlab.train import workdir as workdir_lib
from normlab.train.checkpoint import Checkpointer
from normlab.train.errors import ConfigError, TrainingDivergedError
from normlab.train.metrics_io import MetricsWriter, read_json, write_json_atomic
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


def train_and_evaluate(config: mlc.ConfigDict, workdir: str, *, fresh: bool = False,
                       progress: bool | None = None) -> dict[str, Any]:
  """Train `config` in `workdir` (resuming what is there) and return the summary dict.

  Raises ConfigError / WorkdirError / DatasetNotPreparedError for user mistakes (before any
  compilation) and TrainingDivergedError when the loss goes non-finite under nan_policy='stop'.
  """
  t_start = time.perf_counter()
  num_devices = validate(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  main = distributed.is_main_process()
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

  # Data.
  info = data.get_dataset_info(config.dataset)
  data_dir = config.data_dir or None
  train_ds = data.load(config.dataset, "train", data_dir=data_dir)
  test_ds = data.load(config.dataset, _test_split(info), data_dir=data_dir)
  check_batch_fits(config, len(train_ds))

  def host_batch(step: int) -> dict[str, np.ndarray]:
    return data.train_batch(train_ds, config.batch_size, config.seed, step, augment=config.augment,
                            normalize_inputs=config.normalize_inputs)

  # Model, optimizer, state.
  mesh = distributed.make_mesh(num_devices)
  replicated, sharded = step_lib.state_sharding(mesh), step_lib.batch_sharding(mesh)
  tx, schedule = optim.make_optimizer(config), optim.make_schedule(config)
  try:
    model = build_model(config, info.num_classes)
    variables = state_lib.init_variables(model, host_batch(0)["x"][: config.batch_size // num_devices],
                                         config.seed)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.model: {config.model!r} with {config.model_options.to_dict()} cannot be "
                      f"built for dataset {config.dataset!r}: {str(e).splitlines()[0]}") from e
  state = distributed.replicate(state_lib.create_state(variables, tx), replicated)
  del variables
  state_bytes = state_lib.tree_bytes(state)
  workdir_lib.check_disk(workdir, state_bytes * (config.keep_checkpoints + 2) + workdir_lib.MIN_FREE_BYTES)

  ckpt = Checkpointer(workdir_lib.checkpoint_dir(workdir), config.keep_checkpoints, main=main)
  state, restored = ckpt.restore_latest(state)
  start = int(restored or 0)
  if restored is not None:
    log.info("resumed from the checkpoint at step %d of %d", start, config.num_steps)
  elif status == workdir_lib.RESUME:
    log.info("no readable checkpoint in %s: starting from step 0", workdir)
  writer = MetricsWriter(workdir, resume_step=start) if main else None

  # Compile (ahead of time, so the time is measured and nothing retraces later).
  train_fn, eval_fn = step_lib.build_steps(config, apply_fn=model.apply, tx=tx, schedule=schedule,
                                           num_classes=info.num_classes, mesh=mesh)
  eval_iter = lambda: data.eval_batches(test_ds, config.eval_batch_size,  # noqa: E731
                                        normalize_inputs=config.normalize_inputs)
  t0 = time.perf_counter()
  example = distributed.global_batch(host_batch(start), sharded)
  try:
    train_c = train_fn.lower(state, example).compile()
  except SingleValueError as e:
    raise ConfigError(str(e.with_hint(
        f"set --config.norm_options.allow_single_value=True (norm {config.norm!r}, batch_size "
        f"{config.batch_size} over {num_devices} devices)"))) from None
  eval_example = distributed.global_batch(next(eval_iter()), sharded)
  eval_c = eval_fn.lower(state, eval_example).compile()
  compile_time = time.perf_counter() - t0

  eval_cache = None
  if len(test_ds) * int(np.prod(info.input_shape)) * 4 <= _EVAL_CACHE_BYTES:
    eval_cache = [distributed.global_batch(b, sharded) for b in eval_iter()]

  def evaluate(st) -> dict[str, float]:
    batches = eval_cache if eval_cache is not None else (distributed.global_batch(b, sharded)
                                                         for b in eval_iter())
    total = None
    for b in batches:
      sums = eval_c(st, b)
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = jax.device_get(total)
    count = float(total["count"])
    return {"eval_loss": float(total["loss_sum"]) / count, "eval_accuracy": float(total["correct"]) / count}

  # Train.
  progress_ = _Progress(start, config.num_steps, progress)
  pending: list[tuple[int, dict]] = []  # per-step device metrics since the last log line
  unchecked: list[tuple[int, dict]] = []  # steps whose finiteness is not yet checked
  eval_metrics: dict[str, float] = {}
  train_time = 0.0
  t_segment, steps_segment = time.perf_counter(), 0

  def check(upto: int) -> None:
    """Check finiteness of the steps <= `upto` (blocks on them); stop or log skips per nan_policy."""
    while unchecked and unchecked[0][0] <= upto:
      s, m = unchecked.pop(0)
      finite, first_bad, skipped, loss = jax.device_get(
          (m["finite"], m["nonfinite_step"], m["num_skipped"], m["train_loss"]))
      if finite:
        continue
      if config.nan_policy == "stop":
        if writer is not None:
          writer.write(int(first_bad), {"train_loss": float(loss), "nonfinite": True})
        raise TrainingDivergedError(
            int(first_bad), f"non-finite loss or gradient at step {int(first_bad)} (train_loss={float(loss)}); "
            f"stopped without checkpointing it (nan_policy='stop'; lower learning_rate, clip gradients "
            f"or set nan_policy='skip')")
      progress_.message(f"step {s}: non-finite loss or gradient (train_loss={float(loss)}); update skipped "
                        f"({int(skipped)} skipped so far)")

  step = start
  prefetch = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batches")
  upcoming = prefetch.submit(host_batch, step) if step < config.num_steps else None
  try:
    while step < config.num_steps:
      arrays = upcoming.result()
      if step + 1 < config.num_steps:  # the next batch is assembled on the host while this step runs
        upcoming = prefetch.submit(host_batch, step + 1)
      batch = distributed.global_batch(arrays, sharded)
      state, metrics = train_c(state, batch)
      step += 1
      steps_segment += 1
      pending.append((step, metrics))
      unchecked.append((step, metrics))
      check(step - 1)  # the previous step is done (or nearly): keeps one step in flight
      progress_.update()
      is_eval = step % config.eval_every == 0 or step == config.num_steps
      is_log = step % config.log_every == 0 or is_eval
      is_ckpt = step % config.checkpoint_every == 0 or step == config.num_steps
      if not (is_log or is_ckpt):
        continue
      check(step)
      jax.block_until_ready(state)
      train_time += time.perf_counter() - t_segment
      row: dict[str, Any] = {}
      if is_log:
        host = jax.device_get([m for _, m in pending])
        for key in ("train_loss", "train_accuracy", "grad_norm", "param_norm", "update_norm"):
          values = np.asarray([h[key] for h in host], np.float64)
          finite = values[np.isfinite(values)]  # skipped steps (nan_policy='skip') are left out
          row[key] = float(finite.mean()) if finite.size else float("nan")
        row["learning_rate"] = float(host[-1]["learning_rate"])
        row["num_skipped"] = int(host[-1]["num_skipped"])
        row["steps_per_s"] = steps_segment / max(train_time, 1e-9) if train_time else 0.0
        pending.clear()
      if is_eval:
        eval_metrics = evaluate(state)
        row.update(eval_metrics)
      if is_log:
        if writer is not None:
          writer.write(step, row)
        shown = {k: v for k, v in row.items() if k in ("train_loss", "train_accuracy", "eval_loss",
                                                       "eval_accuracy", "steps_per_s")}
        progress_.message(f"step {step}/{config.num_steps}: {_fmt(shown)}",
                          postfix={k: f"{v:.3g}" for k, v in shown.items()} if progress_.bar else None)
        if progress_.bar is not None and is_eval:
          progress_.message(f"step {step}: {_fmt(eval_metrics)}")
      if is_ckpt:
        ckpt.save(step, state)
      t_segment = time.perf_counter()
  finally:
    prefetch.shutdown(wait=True, cancel_futures=True)
    progress_.close()
    if writer is not None:
      writer.close()

  if not eval_metrics:  # resumed from the final checkpoint of a run killed before its summary
    eval_metrics = evaluate(state)
  final = jax.device_get({"loss": state.last_train_loss, "skipped": state.num_skipped})
  ckpt.save(config.num_steps, state)
  ckpt.close()
  ran = config.num_steps - start
  summary = {
      "eval_accuracy": eval_metrics["eval_accuracy"],
      "eval_loss": eval_metrics["eval_loss"],
      "final_train_loss": float(final["loss"]),
      "steps": int(config.num_steps),
      "num_skipped": int(final["skipped"]),
      "resumed_from_step": start,
      "steps_this_run": ran,
      "wall_time_s": time.perf_counter() - t_start,
      "train_time_s": train_time,
      "steps_per_s": ran / train_time if train_time > 0 else 0.0,
      "compile_time_s": compile_time,
      "num_params": state_lib.num_params(state.params),
      "num_devices": num_devices,
      "device": jax.devices()[0].device_kind,
      "jax_version": jax.__version__,
  }
  if main:
    write_json_atomic(workdir_lib.summary_path(workdir), summary)
  log.info("done: eval_accuracy=%.4f eval_loss=%.4f final_train_loss=%.4f (%d steps, %.1f steps/s, "
           "compile %.1f s, wall %.1f s)", summary["eval_accuracy"], summary["eval_loss"],
           summary["final_train_loss"], summary["steps"], summary["steps_per_s"], compile_time,
           summary["wall_time_s"])
  if not math.isfinite(summary["final_train_loss"]) and config.nan_policy == "skip":
    log.warning("the final train loss is not finite (%d updates were skipped)", summary["num_skipped"])
  return summary


def train_and_evaluate_seeds(configs: list[mlc.ConfigDict], workdirs: list[str]) -> list[dict[str, Any]]:
  """Several runs (e.g. seeds of one sweep cell), one after the other."""
  return [train_and_evaluate(c, w) for c, w in zip(configs, workdirs)]
