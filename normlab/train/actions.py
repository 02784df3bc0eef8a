"""The loop's own periodic actions: evaluate, log, checkpoint. They are hooks (normlab.train.hooks), called
after the study hooks at the steps they are due at, in that order:

    Evaluate    every eval_every steps and after the last: the test split's loss and accuracy
    Log         every log_every steps, where Evaluate ran, and after the last: one metrics.jsonl row per
                run (means of the finite per-step values since the previous row) and a console line
    Checkpoint  every checkpoint_every steps and after the last

They are due after the steps whose count `step + 1` is a multiple of their period. They read the state
after the step only (`uses_before = False`), so the loop may donate the state to the step. What they share
with the loop (the host metric rows, the runs frozen by divergence, the time spent training) is a `Tally`.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

log = logging.getLogger("normlab.train")

LOG_KEYS = ("train_loss", "train_accuracy", "grad_norm", "param_norm", "update_norm")
SHOWN_KEYS = ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy", "steps_per_s")


@dataclasses.dataclass
class Tally:
  """What the loop and its actions share."""
  start: int                                               # the step count the run started or resumed at
  rows: list[dict] = dataclasses.field(default_factory=list)  # host metrics per step since the last log row
  diverged: dict[int, int] = dataclasses.field(default_factory=dict)  # run -> first non-finite step (vmapped)
  train_time: float = 0.0                                  # seconds in training steps (actions excluded)

  def steps_per_s(self, count: int) -> float:
    return (count - self.start) / max(self.train_time, 1e-9)


def fmt(metrics: dict) -> str:
  return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def progress_bar(start: int, total: int, enabled: bool) -> tqdm:
  """A tqdm bar on stderr (disabled: no output). shutil's size falls back to 80x24 where a terminal
  reports a 0 size (tqdm would then draw nothing)."""
  size = shutil.get_terminal_size()
  return tqdm(total=total, initial=start, unit="step", ncols=size.columns, nrows=size.lines, file=sys.stderr,
              disable=not enabled)


def say(bar: tqdm, text: str) -> None:
  """A console line: above the bar, or a log line where there is no bar."""
  if bar.disable:
    log.info(text)
  else:
    bar.write(text, file=sys.stderr)


@dataclasses.dataclass
class Periodic:
  """Due after the steps whose count (`step + 1`) is a multiple of `every`, and after the last step."""
  every: int
  uses_before = False

  def due(self, step: int, num_steps: int) -> bool:
    return (step + 1) % self.every == 0 or step + 1 == num_steps


@dataclasses.dataclass
class Evaluate(Periodic):
  evaluator: Callable[[Any], list[dict]] = None
  latest: list[dict] | None = None  # the newest evaluation, one dict per run
  at: int = -1                      # its step count

  def __call__(self, step, before, batch, after, metrics) -> None:
    self.latest, self.at = self.evaluator(after), step + 1


@dataclasses.dataclass
class Log(Periodic):
  evaluate: Evaluate = None
  tally: Tally = None
  writers: list = dataclasses.field(default_factory=list)  # one MetricsWriter per run (process 0 only)
  bar: tqdm = None
  num_steps: int = 0
  seeds: list[int] | None = None    # vmapped runs: one console line for all seeds

  def due(self, step: int, num_steps: int) -> bool:
    return super().due(step, num_steps) or self.evaluate.due(step, num_steps)

  def __call__(self, step, before, batch, after, metrics) -> None:
    count, rows = step + 1, self.tally.rows
    evals = self.evaluate.latest if self.evaluate.at == count else None
    shown = []
    for j in range(len(rows[-1]["train_loss"])):
      if j in self.tally.diverged:
        continue
      row = {key: _finite_mean([r[key][j] for r in rows]) for key in LOG_KEYS}  # skipped steps left out
      row.update(learning_rate=float(rows[-1]["learning_rate"][j]), num_skipped=int(rows[-1]["num_skipped"][j]),
                 steps_per_s=self.tally.steps_per_s(count), **(evals[j] if evals is not None else {}))
      if self.writers:
        self.writers[j].write(count, row)
      shown.append(row)
    rows.clear()
    self._show(count, shown, evals)

  def _show(self, count: int, shown: list[dict], evals) -> None:
    total = self.num_steps
    if self.seeds is not None:
      accuracies = [None if m["eval_accuracy"] is None else round(m["eval_accuracy"], 4) for m in evals or []]
      log.info("step %d/%d (%d seeds): eval_accuracy %s", count, total, len(self.seeds), accuracies or "-")
      return
    first = {k: v for k, v in shown[0].items() if k in SHOWN_KEYS}
    if self.bar.disable:
      log.info(f"step {count}/{total}: {fmt(first)}")
      return
    self.bar.set_postfix({k: f"{v:.3g}" for k, v in first.items() if v is not None}, refresh=False)
    if evals is not None:
      say(self.bar, f"step {count}: {fmt(evals[0])}")


def _finite_mean(values) -> float:
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if finite.size else float("nan")


@dataclasses.dataclass
class Checkpoint(Periodic):
  checkpointers: list = dataclasses.field(default_factory=list)  # one per run
  one: Callable[[Any, int], Any] = None  # (state, run index) -> that run's state
  tally: Tally = None

  def __call__(self, step, before, batch, after, metrics) -> None:
    self.save(step + 1, after)

  def save(self, count: int, state) -> None:
    for j, ck in enumerate(self.checkpointers):
      if j not in self.tally.diverged:
        ck.save(count, self.one(state, j))
