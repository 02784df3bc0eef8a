"""Hooks of the one training loop (normlab.train.hooks): what a hook sees, when, and in-memory runs."""
import os

import jax
import numpy as np
import pytest

from configs.experiments._common import train_defaults
from normlab.train.hooks import Periodic


def tiny(**overrides):
  return train_defaults(**{"model_options": {"widths": (8,)}, "batch_size": 16, "num_steps": 5, **overrides})


class Recorder:
  """Every step: the step number, the before/after step counters and params, the batch."""

  def __init__(self):
    self.calls, self.started, self.ended = [], None, None

  def start(self, run):
    self.started = run

  def end(self, run):
    self.ended = run

  def __call__(self, step, before, batch, after, metrics):
    self.calls.append((step, int(before.step), int(after.step), jax.device_get(before.params),
                       jax.device_get(after.params), batch, float(metrics["train_loss"])))


def test_a_hook_sees_each_step_before_and_after_with_its_batch(tmp_path):
  from normlab import data
  from normlab.train.loop import train_and_evaluate
  config = tiny()
  rec = Recorder()
  summary = train_and_evaluate(config, None, hooks=[rec], progress=False)
  assert [c[0] for c in rec.calls] == list(range(5))
  ds = data.load(config.dataset, "train")
  for i, (step, b_step, a_step, b_params, a_params, batch, _) in enumerate(rec.calls):
    assert (b_step, a_step) == (step, step + 1)
    if i:  # the state before a step is the state after the previous one
      prev_after = rec.calls[i - 1][4]
      assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(prev_after), jax.tree.leaves(b_params)))
    want = data.train_batch(ds, config.batch_size, config.seed, step, normalize_inputs=config.normalize_inputs)
    np.testing.assert_array_equal(batch["x"], want["x"])
  assert rec.started is rec.ended and int(rec.ended.state.step) == 5
  assert int(rec.ended.init_state.step) == 0
  assert summary["final_train_loss"] == pytest.approx(rec.calls[-1][6])
  assert summary["eval_accuracy"] is not None and not os.listdir(tmp_path)  # in memory: nothing written


def test_periodic_is_due_every_n_steps_and_at_the_last():
  p = Periodic(3, lambda *a: {"x": 1})
  assert [s for s in range(8) if p.due(s, 8)] == [0, 3, 6, 7]
  assert [s for s in range(8) if Periodic(3, None, at_last=False).due(s, 8)] == [0, 3, 6]


def test_hooks_change_nothing_in_the_training():
  from normlab.train.loop import train_and_evaluate
  plain = train_and_evaluate(tiny(), None, progress=False)
  hooked = train_and_evaluate(tiny(), None, hooks=[Recorder()], progress=False)
  assert hooked["final_train_loss"] == plain["final_train_loss"]
  assert hooked["eval_loss"] == plain["eval_loss"]


def test_a_diverging_run_stops_before_any_hook_sees_the_bad_step():
  from normlab.train.errors import TrainingDivergedError
  from normlab.train.loop import train_and_evaluate
  rec = Recorder()
  with pytest.raises(TrainingDivergedError) as e:
    train_and_evaluate(tiny(debug_nan_at_step=3), None, hooks=[rec], progress=False)
  assert e.value.step == 3 and [c[0] for c in rec.calls] == [0, 1]
