"""`train_and_evaluate(config, workdir)`: validate, (re)start, train data-parallel, evaluate, summarize.

The stages, in an order where user mistakes cost nothing: config -> validate -> workdir (done? another
run? writable?) -> build (data, model, optimizer, initial state: normlab.train.build) -> restore the
newest intact checkpoint -> compile (timed) -> loop -> summary. Step s (0-based) trains on the batch
`batch_indices(seed, s)` and after it `state.step == s + 1`. Resuming from checkpoint k replays steps k..
exactly as an uninterrupted run would (data and noise depend on (seed, step) only).

The loop calls the compiled step and, after the steps they are due at, its hooks: the studies' hooks
(normlab.train.hooks) and then its own periodic actions, evaluate / log / checkpoint at step counts
divisible by eval_every / log_every / checkpoint_every and at num_steps (normlab.train.actions). Where a
hook is due the metrics come to the host first and every step's finiteness is checked, so no hook sees a
non-finite step. `workdir=None` trains in memory (no config.json, metrics, checkpoints or summary file);
`batches(step)` replaces the (seed, step) batches. Under `interrupts.handled()` a SIGINT/SIGTERM stops the
loop before its next step with a checkpoint at the count reached (normlab.train.interrupts).
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections as mlc
import numpy as np

from normlab.train import distributed, hooks as hooks_lib, interrupts, state as state_lib
from normlab.train import devices as devices_lib, workdir as workdir_lib
from normlab.train.actions import Checkpoint, Evaluate, Log, Tally, fmt, progress_bar, say
from normlab.train.build import Built, build, compile_steps, resolved_config
from normlab.train.checkpoint import Checkpointer
from normlab.train.errors import TrainingDivergedError, diverged_message
from normlab.train.metrics_io import MetricsWriter, count_events, read_json, write_json_atomic
from normlab.train.validate import validate

log = logging.getLogger("normlab.train")


def train_and_evaluate(config: mlc.ConfigDict, workdir: str | None, *, fresh: bool = False,
                       progress: bool | None = None, hooks: Sequence[Any] = (),
                       batches: Callable[[int], dict] | None = None) -> dict[str, Any]:
  """Train `config` in `workdir` (resuming what is there; None: in memory) and return the summary dict.

  `hooks`: see normlab.train.hooks. `batches(step) -> {'x', 'y'}` (host arrays; 'x' may be
  {'x', 'mask'}) replaces the config's (seed, step) training batches; evaluation is then left to
  the hooks (the test split has not that form).
  Raises ConfigError / WorkdirError / DatasetNotPreparedError for user mistakes (before any
  compilation), LockHeldError when another live process holds the workdir, TrainingDivergedError
  when the loss goes non-finite under nan_policy='stop', and interrupts.Interrupted on a signal.
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
  status = workdir_lib.NEW
  if workdir is not None:
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
  return train_runs(config, num_devices, [int(config.seed)], [workdir], vmapped=False, hooks=hooks,
                    batches=batches, progress=progress, t_start=t_start,
                    resuming=status == workdir_lib.RESUME)[0]


class MixedResume(Exception):
  """The vmapped runs' newest checkpoints are at different steps (they resume one by one instead)."""


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
  if hooks and vmapped and min(int(scan_steps), int(config.num_steps)) > 1:
    raise ValueError("hooks see every step: they need scan_steps=1")
  built = build(config, num_devices, seeds, vmapped=vmapped, scan_steps=scan_steps, batches=batches)
  state, start, ckpts, writers = _restore(config, built, workdirs, resuming)
  run = hooks_lib.Run(config, built.model, built.apply, built.tx, built.schedule, built.info.num_classes,
                      built.train_ds, lambda step: built.host_batch(built.layout.seeds[0], step), state,
                      init_state=state, num_devices=num_devices)
  for hook in hooks:
    if hasattr(hook, "start"):
      hook.start(run)
  donate = not any(getattr(h, "uses_before", True) for h in hooks)
  train, evaluator, compile_time = compile_steps(config, built, state, start, donate=donate,
                                                 test_eval=batches is None)
  tally = Tally(start)
  bar = progress_bar(start, config.num_steps, (progress if progress is not None else sys.stderr.isatty())
                     and not vmapped)
  evaluate, checkpoint, log_ = _actions(config, built, evaluator, tally, ckpts, writers, bar)
  try:
    state = _Loop(config, built, train, [*hooks, evaluate, log_, checkpoint], tally, bar, writers,
                  checkpoint).run(state, start)
  finally:
    bar.close()
    for w in writers:
      w.close()
  evals = evaluate.latest or evaluate.evaluator(state)  # none ran: resumed from the final checkpoint
  for ck in ckpts:
    ck.close()
  run.state = state
  for hook in hooks:
    if hasattr(hook, "end"):
      hook.end(run)
  return _summaries(config, built, state, evals, tally, ckpts, workdirs, num_devices,
                    {"compile_time_s": compile_time, "wall_time_s": time.perf_counter() - t_start})


def _actions(config, built: Built, evaluator, tally: Tally, ckpts, writers, bar) -> tuple[Evaluate, Checkpoint, Log]:
  """The loop's own periodic actions (normlab.train.actions); without a test split (custom batches) the
  evaluation is left to the hooks and records None."""
  layout = built.layout
  evaluate = Evaluate(config.eval_every, evaluator or (lambda st: [{"eval_loss": None, "eval_accuracy": None}
                                                                   for _ in layout.seeds]))
  log_ = Log(config.log_every, evaluate, tally, writers, bar, int(config.num_steps),
             layout.seeds if layout.vmapped else None)
  return evaluate, Checkpoint(config.checkpoint_every, ckpts, layout.one, tally), log_


def _restore(config, built: Built, workdirs, resuming: bool) -> tuple[Any, int, list, list]:
  """(state, start, checkpointers, metrics writers): every run from its newest intact checkpoint (vmapped:
  all at the same step, else MixedResume); in memory, the initial state at step 0 and no outputs."""
  if workdirs[0] is None:
    return built.state, 0, [], []
  layout, main = built.layout, distributed.is_main_process()
  workdir_lib.check_disk(workdirs[0], state_lib.tree_bytes(built.state) * (config.keep_checkpoints + 2)
                         + workdir_lib.MIN_FREE_BYTES)
  ckpts = [Checkpointer(workdir_lib.checkpoint_dir(w), config.keep_checkpoints, main=main) for w in workdirs]
  restored = [ck.restore_latest(layout.one(built.state, j)) for j, ck in enumerate(ckpts)]
  steps = {step for _, step in restored}
  if len(steps) > 1:
    for ck in ckpts:
      ck.close()
    raise MixedResume(sorted(steps, key=lambda s: s or 0))
  start, state = int(steps.pop() or 0), built.state
  if start:
    state = layout.restored([r[0] for r in restored])
    seeds = f"{layout.S} seeds from their checkpoints" if layout.vmapped else "from the checkpoint"
    log.info("resumed %s at step %d of %d", seeds, start, config.num_steps)
  elif resuming:
    log.info("no intact checkpoint in %s: starting from step 0", workdirs[0])
  writers = [MetricsWriter(w, resume_step=start) for w in workdirs] if main else []
  for writer, ck in zip(writers, ckpts):
    for bad in ck.fallbacks:
      writer.event(start, "checkpoint_fallback", damaged_step=bad.step, file=bad.file, reason=bad.reason,
                   moved_to=bad.moved_to, resumed_from_step=start)
  return state, start, ckpts, writers


class _Loop:
  """Calls the compiled step from the start count to num_steps, one call of K steps (vmapped) or one
  step at a time, the next call's batch assembled on the host meanwhile. After a call where hooks are due
  it brings the metrics in flight to the host, checks every step's finiteness, then calls them."""

  def __init__(self, config, built: Built, train, hooks, tally: Tally, bar, writers, checkpoint: Checkpoint):
    self.config, self.layout, self.host_batch, self.train = config, built.layout, built.host_batch, train
    self.hooks, self.tally, self.bar, self.writers, self.checkpoint = hooks, tally, bar, writers, checkpoint
    self.keep_before = any(getattr(h, "uses_before", True) for h in hooks)
    self.in_flight: list[tuple[int, Any]] = []  # (steps, device metrics) of the calls not yet on the host

  def run(self, state, start: int):
    num_steps = int(self.config.num_steps)
    step, n = start, self._call_size(start)
    prefetch = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batches")
    try:
      upcoming = prefetch.submit(self.layout.host_input, self.host_batch, step, n)
      t0 = time.perf_counter()
      while step < num_steps:
        if interrupts.stop_requested():
          self._stop(step, state, start)
        arrays = upcoming.result()
        following = self._call_size(step + n) if step + n < num_steps else 0
        if following:
          upcoming = prefetch.submit(self.layout.host_input, self.host_batch, step + n, following)
        before = state
        state, metrics = self.train(state, *self.layout.device_input(arrays, n))
        self.in_flight.append((n, metrics))
        last, step = step + n - 1, step + n
        self.bar.update(n)
        due = [h for h in self.hooks if hooks_lib.is_due(h, last, num_steps)]
        if due:
          self._sync(step)  # blocks: a hook never sees a non-finite step
          jax.block_until_ready(state)
          self.tally.train_time += time.perf_counter() - t0
          for hook in due:
            hook(last, before if self.keep_before else None, arrays, state, metrics)
          t0 = time.perf_counter()
        del before
        n = following
    finally:
      prefetch.shutdown(wait=True, cancel_futures=True)
    return state

  def _call_size(self, step: int) -> int:
    """Steps in the call from `step`: up to K, ending at the first step some hook is due at."""
    num_steps = int(self.config.num_steps)
    if self.layout.K == 1:
      return 1
    for n in range(1, min(self.layout.K, num_steps - step) + 1):
      if any(hooks_lib.is_due(h, step + n - 1, num_steps) for h in self.hooks):
        return n
    return min(self.layout.K, num_steps - step)

  def _sync(self, upto: int) -> None:
    """Bring the calls in flight to the host and check their steps (stop or log skips per nan_policy)."""
    first = upto - sum(n for n, _ in self.in_flight)
    for n, host in jax.device_get(self.in_flight):
      for t, r in enumerate(self.layout.rows(n, host)):
        self.tally.rows.append(r)
        for j in np.flatnonzero(~np.asarray(r["finite"], bool)):
          self._nonfinite(first + t + 1, int(j), r)
      first += n
    self.in_flight.clear()

  def _nonfinite(self, count: int, j: int, r: dict) -> None:
    if j in self.tally.diverged:
      return
    loss, bad = float(r["train_loss"][j]), int(r["nonfinite_step"][j])
    if self.config.nan_policy == "skip":
      say(self.bar, f"step {count}: non-finite loss or gradient (train_loss={loss}); update skipped "
          f"({int(r['num_skipped'][j])} skipped so far)")
    elif self.layout.vmapped:
      self.tally.diverged[j] = bad
      log.warning("seed %d: non-finite loss or gradient at step %d; frozen there (nan_policy='stop')",
                  self.layout.seeds[j], bad)
    else:
      if self.writers:
        self.writers[0].write(bad, {"train_loss": loss, "nonfinite": True})
      raise TrainingDivergedError(bad, diverged_message(bad, loss, self.tally.start or None))

  def _stop(self, step: int, state, start: int) -> None:
    """On a signal: check the steps run, checkpoint the count reached, raise interrupts.Interrupted."""
    self._sync(step)
    if step > start:
      self.checkpoint.save(step, state)
    raise interrupts.Interrupted(step, interrupts.received())


def _summaries(config, built: Built, state, evals: list[dict], tally: Tally, ckpts, workdirs, num_devices: int,
               times: dict) -> list[dict[str, Any]]:
  """One summary per run (written to workdir/summary.json by process 0) and the 'done' line."""
  layout, main = built.layout, distributed.is_main_process()
  final = jax.device_get({"loss": state.last_train_loss, "skipped": state.num_skipped})
  final = {k: np.reshape(np.asarray(v), (layout.S,)) for k, v in final.items()}
  ran = config.num_steps - tally.start
  summaries = []
  for j, workdir in enumerate(workdirs):
    fallbacks = (count_events(os.path.join(workdir, "metrics.jsonl"), "checkpoint_fallback") if main and workdir
                 else len(ckpts[j].fallbacks) if ckpts else 0)
    summary = {"eval_accuracy": evals[j]["eval_accuracy"], "eval_loss": evals[j]["eval_loss"],
               "final_train_loss": float(final["loss"][j]), "steps": int(config.num_steps),
               "num_skipped": int(final["skipped"][j]), "resumed_from_step": tally.start, "steps_this_run": ran,
               "checkpoint_fallbacks": fallbacks, "train_time_s": tally.train_time,
               "steps_per_s": ran / tally.train_time if tally.train_time > 0 else 0.0, **times,
               "num_params": state_lib.num_params(layout.one(state, j).params), "num_devices": num_devices,
               "devices": devices_lib.for_config(config, num_devices), "device": jax.devices()[0].device_kind, "jax_version": jax.__version__}
    if layout.vmapped:
      summary.update(vmapped_seeds=layout.S, scan_steps=layout.K)
    if j in tally.diverged:
      summary.update(status="diverged", nonfinite_step=tally.diverged[j], eval_accuracy=None, eval_loss=None,
                     final_train_loss=float("nan"))
    if main and workdir is not None:
      write_json_atomic(workdir_lib.summary_path(workdir), summary)
    summaries.append(summary)
  shown = {k: summaries[0][k] for k in ("eval_accuracy", "eval_loss", "final_train_loss", "steps", "steps_per_s",
                                        "compile_time_s", "wall_time_s")}
  log.info("done%s: %s", f" ({layout.S} seeds, first shown)" if layout.vmapped else "", fmt(shown))
  if any(not math.isfinite(s["final_train_loss"]) for s in summaries) and config.nan_policy == "skip":
    log.warning("a final train loss is not finite (%s updates were skipped)", [s["num_skipped"] for s in summaries])
  return summaries
