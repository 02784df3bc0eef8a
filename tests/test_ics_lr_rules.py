"""The rules of experiments/ics.py and experiments/lr_range.py on synthetic numbers (fast), the Gaussian teacher
of the DLN, and the two studies' smoke runs (slow)."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import _study as S
from experiments import ics, lr_range
from experiments._teacher import GaussianTeacher

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hist(l2, cos=None, steps=(0, 100, 200), loss=(2.3, 1.0), n=200, diverged=None):
  """A history with layer values `l2` (list over layers; layer 1 first) at every measured step, and a train
  loss curve falling linearly from loss[0] to loss[1] over n steps, then flat for n steps."""
  l2 = np.asarray(l2, float)
  cos = np.ones_like(l2) * 0.5 if cos is None else np.asarray(cos, float)
  measured = [{"step": s, "layers": [f"l{i}" for i in range(len(l2))], "l2": l2.tolist(), "cos": cos.tolist(),
               "rel": (l2 / 10).tolist(), "grad_norm": [10.0] * len(l2)} for s in steps]
  curve = [{"step": i, "train_loss": float(np.interp(i, [0, n], loss)), "train_accuracy": 0.5} for i in range(2 * n)]
  return {"measured": measured, "curve": curve, "diverged_at": diverged}


def test_paired_difference_is_the_mean_log_ratio_over_layers_2_to_k_with_seed_se():
  plain = {s: _hist([0.0, 1.0, 2.0]) for s in range(3)}
  bn = {s: _hist([0.0, 0.5 * f, 1.0 * f]) for s, f in enumerate((1.0, 1.1, 0.9))}
  d = ics.paired_difference(bn, plain, "l2")
  per_seed = [math.log(0.5 * f) for f in (1.0, 1.1, 0.9)]
  assert d.n == 3 and d.mean == pytest.approx(np.mean(per_seed)) and d.ok
  assert d.se == pytest.approx(np.std(per_seed, ddof=1) / math.sqrt(3))
  d_cos = ics.paired_difference({0: _hist([0, 1, 1], cos=[1, 0.9, 0.7])},
                                {0: _hist([0, 1, 1], cos=[1, 0.5, 0.5])}, "cos", log=False)
  assert d_cos.mean == pytest.approx(0.3)


def test_paired_difference_pairs_only_steps_both_runs_reached():
  a = {0: _hist([0, 2.0], steps=(0, 100, 200))}
  b = {0: _hist([0, 1.0], steps=(0, 100))}
  b[0]["measured"].append({**b[0]["measured"][0], "step": 300, "l2": [0, 1000.0]})
  assert ics.paired_difference(a, b, "l2").mean == pytest.approx(math.log(2.0))


def test_ics_verdicts():
  # BN's ICS is 0.8x the plain net's in every seed: lower, so "BN does not reduce ICS" is not reproduced.
  plain = {s: _hist([0, 1.0, 1.0]) for s in range(3)}
  bn = {s: _hist([0, 0.8 * f, 0.8 * f]) for s, f in enumerate((1.0, 1.01, 0.99))}
  verdicts = [S.verdict(c) for c in ics.claims({"results": {"dln": {"batch": bn, "none": plain}}})]
  assert verdicts == ["not reproduced", "not reproduced", "reproduced", "not reproduced"]
  stuck = {s: _hist([0, 1.0, 1.0], loss=(2.3, 2.2)) for s in range(3)}
  verdicts = [S.verdict(c) for c in ics.claims({"results": {"dln": {"batch": bn, "none": stuck}}})]
  assert verdicts == ["inconclusive"] * 4  # the plain net does not train
  assert ics.not_lower(S.Stat(-0.1, 0.2, 3)) == "reproduced"


def test_faster_needs_a_plain_net_that_trains():
  bn = {s: _hist([0, 1], loss=(2.3, 0.5)) for s in range(3)}
  plain = {s: _hist([0, 1], loss=(2.3, 1.0 + 0.01 * s)) for s in range(3)}
  r = ics.faster(bn, plain)
  assert r.n == 3 and r.mean == pytest.approx(np.mean([1 - 0.5 / (1.0 + 0.01 * s) for s in range(3)]))
  assert ics.trains(plain) and S.effect(ics.FASTER_FLOOR)(r) == "reproduced" and r.ok
  stuck = {s: _hist([0, 1], loss=(2.3, 2.2)) for s in range(3)}
  assert not ics.trains(stuck) and not ics.faster(bn, stuck).ok
  assert not ics.trains({0: _hist([0, 1], diverged=5)})


def test_layer_slope_and_depth_claim():
  rising = {s: _hist([0, 1.0, math.e, math.e ** 2]) for s in range(3)}
  s = ics.layer_slope({k: {**h, "measured": [{**m, "rel": m["l2"]} for m in h["measured"]]}
                       for k, h in rising.items()})
  assert s.n == 3 and s.mean == pytest.approx(1.0)


def test_gaussian_teacher_is_deterministic_learnable_and_checks_inputs():
  t = GaussianTeacher(dim=8, num_classes=4, scale=3.0, seed=1)
  b1, b2 = t.batches(0, 16)(5), t.batches(0, 16)(5)
  assert b1["x"].shape == (16, 8, 1) and b1["y"].dtype == np.int32
  np.testing.assert_array_equal(b1["x"], b2["x"])
  assert not np.array_equal(t.batches(1, 16)(5)["x"], b1["x"])
  assert 0 < t.bayes_loss(n=5000) < math.log(4)
  with pytest.raises(ValueError, match="num_classes"):
    GaussianTeacher(num_classes=1)


def _row(variant, lr, seed, err, loss=0.5, status="done", converged=True):
  return {"variant": variant, "learning_rate": lr, "seed": seed, "eval_error": err, "final_train_loss": loss,
          "status": status, "converged": converged}


def test_lr_range_stability_counts_diverged_runs():
  assert lr_range.run_stable(_row("BN", 1.0, 0, 0.1))
  assert not lr_range.run_stable(_row("BN", 1.0, 0, 0.9, loss=2.2))   # did not learn
  assert not lr_range.run_stable(_row("BN", 1.0, 0, None, loss=None, status="diverged"))
  rows = [_row("none", 1.0, s, 0.2) for s in range(2)] + [_row("none", 1.0, 2, None, None, "diverged")]
  stab = lr_range.stability(rows)
  assert stab[("none", 1.0)] == (2, 3, 1) and lr_range.largest_stable(stab, "none", [1.0], 3) == 0.0


def _grid(errors: dict, diverge=(), stuck=()):
  rows = []
  for (v, lr), e in errors.items():
    for s in range(3):
      if (v, lr) in diverge:
        rows.append(_row(v, lr, s, None, None, "diverged", False))
      else:
        rows.append(_row(v, lr, s, (e + 0.2 * s) / 100, loss=2.2 if (v, lr) in stuck else 0.5))
  return rows


def test_lr_range_claims_on_synthetic_grids():
  lrs = [0.01, 0.1, 1.0]
  errs = {(v, lr): 20.0 for v in ("BN", "none") for lr in lrs}
  verdicts = lambda rows: [S.verdict(c) for c in lr_range.claims({"rows": rows})]  # noqa: E731
  assert verdicts(_grid(errs, diverge={("none", 1.0)})) == ["reproduced"] * 3
  # the plain net is as stable as BN: (a) not reproduced; BN much worse at lr 1: (b) not reproduced
  errs[("BN", 1.0)] = 40.0
  assert verdicts(_grid(errs)) == ["not reproduced"] * 3
  # a plain net that does not learn at lr 1 (no NaN) is unstable too
  rows = _grid({**errs, ("BN", 1.0): 20.0}, stuck={("none", 1.0)})
  assert lr_range.largest_stable(lr_range.stability(rows), "none", lrs, 3) == 0.1
  assert verdicts(rows)[0] == "reproduced"


@pytest.mark.slow
@pytest.mark.parametrize("module", ["ics", "lr_range"])
def test_smoke_presets_run(tmp_path, module):
  r = subprocess.run([sys.executable, "-m", f"experiments.{module}", "--preset=smoke", f"--workdir={tmp_path}"],
                     cwd=REPO, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-2000:]
  text = open(tmp_path / "report.md").read()
  assert "commit" in text and any(f.endswith(".png") for f in os.listdir(tmp_path))


def test_ics_only_refuses_unknown_runs_before_training():
  from normlab.errors import UserError
  config = S.load_config("ics", "smoke")
  config.unlock()
  config.only = ("vgg", "resnet")
  with pytest.raises(UserError, match="unknown runs \\['resnet'\\]; valid runs"):
    ics.run(config, "unused", log=lambda *a: None)
