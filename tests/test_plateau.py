"""normlab.analysis.plateau.SubsetLoss: the fixed-subset training loss at the end of every tenth of training, the
measurement the studies' convergence rule judges (experiments/_study.py)."""
import jax
import jax.numpy as jnp
import pytest

from normlab.analysis.plateau import SubsetLoss, tenth_ends


def test_tenth_ends():
  assert tenth_ends(100) == {9, 19, 29, 39, 49, 59, 69, 79, 89, 99}
  assert tenth_ends(5) == {0, 1, 2, 3, 4} and tenth_ends(1) == {0}
  with pytest.raises(ValueError, match="examples"):
    SubsetLoss(0)


@pytest.mark.slow  # trains a tiny run (a few seconds of CPU)
def test_subset_loss_is_the_deterministic_train_mode_loss_of_the_first_batches():
  from configs.experiments._common import train_defaults
  from normlab.analysis import training
  written = []
  hook = SubsetLoss(examples=40, on_row=written.append)
  c = train_defaults(model_options={"widths": (16,)}, batch_size=16, num_steps=20, norm="batch")
  hist, run = training.train(c, log=lambda *_: None, subset_examples=0)
  from normlab.train.loop import train_and_evaluate
  train_and_evaluate(c, None, hooks=[hook], progress=False)
  assert [r["done"] for r in hook.rows] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20] and written == hook.rows
  assert len(hook._batches) == 3  # ceil(40 / 16) training batches
  final = hook.value(run.state)  # the same config and seed: the same final parameters
  assert final == pytest.approx(hook.rows[-1]["subset_loss"], rel=1e-5)
  assert hook.value(run.state) == final  # deterministic
  loss = training.batch_loss(run, 0)
  by_hand = [float(loss(run.state.params, run.state.batch_stats, jnp.asarray(b["x"]), jnp.asarray(b["y"])))
             for b in (run.batch(k) for k in range(3))]
  assert final == pytest.approx(sum(by_hand) / 3, rel=1e-5)
  assert hist["subset_loss"] == [] and jax.device_get(run.state.step) == 20


@pytest.mark.slow
def test_training_records_the_subset_losses_and_the_convergence_fields():
  from configs.experiments._common import train_defaults
  from experiments import _study as S
  c = train_defaults(model_options={"widths": (16,)}, batch_size=16, num_steps=30, seed=0)
  rec, _, hist = S.train_record(c, log=lambda *_: None)
  assert len(rec["subset_loss"]) == 10 and rec["subset_loss"] == [r["subset_loss"] for r in hist["subset_loss"]]
  before, last = rec["subset_loss"][-1 - S.PLATEAU_SPAN], rec["subset_loss"][-1]
  assert rec["loss_change"] == pytest.approx(before / last - 1)
  assert rec["converged"] == (abs(before / last - 1) < S.PLATEAU_TOL or abs(before - last) < S.PLATEAU_ABS)


@pytest.mark.parametrize("devices,bn_mode", [(8, "local"), (8, "sync"), (1, "sync")])
def test_subset_loss_splits_the_batch_over_the_devices_as_the_step_does(devices, bn_mode):
  """8 emulated devices: local BN normalizes each device's rows with their own statistics, sync BN all rows
  (its axis name bound by the split, as in the step); the value is the mean of the devices' losses. One device
  with sync BN (a one-device sweep's default): its axis name is bound too."""
  from configs.experiments._common import train_defaults
  from normlab.analysis import training
  from normlab.train.loop import train_and_evaluate
  hook = SubsetLoss(examples=32)
  c = train_defaults(model_options={"widths": (16,)}, batch_size=32, num_steps=2, norm="batch")
  c.num_devices, c.devices, c.bn_mode = devices, "emulated" if devices > 1 else "auto", bn_mode
  train_and_evaluate(c, None, hooks=[hook], progress=False)
  c1 = train_defaults(model_options={"widths": (16,)}, batch_size=32, num_steps=2, norm="batch")
  _, run = training.train(c1, log=lambda *_: None, subset_examples=0)
  b = hook._batches[0]
  loss = training.batch_loss(run, 0)
  p, s = run.state.params, run.state.batch_stats
  if bn_mode == "local":
    want = sum(float(loss(p, s, b["x"][4 * d:4 * d + 4], b["y"][4 * d:4 * d + 4])) for d in range(8)) / 8
  else:
    want = float(loss(p, s, b["x"], b["y"]))
  assert hook._loss(p, s, b["x"], b["y"]) == pytest.approx(want, rel=1e-5)
