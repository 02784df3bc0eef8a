"""The rules of experiments/ics.py and experiments/lr_range.py on synthetic numbers (fast), the Gaussian teacher
of the DLN, and the two studies' smoke runs (slow)."""
import json
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
  """An old-layout history with layer values `l2` (list over layers; layer 1 first) at every measured step, and a
  train loss curve falling linearly from loss[0] to loss[1] over n steps, then flat for n steps."""
  l2 = np.asarray(l2, float)
  cos = np.ones_like(l2) * 0.5 if cos is None else np.asarray(cos, float)
  measured = [{"step": s, "layers": [f"l{i}" for i in range(len(l2))], "l2": l2.tolist(), "cos": cos.tolist(),
               "rel": (l2 / 10).tolist(), "grad_norm": [10.0] * len(l2)} for s in steps]
  curve = [{"step": i, "train_loss": float(np.interp(i, [0, n], loss)), "train_accuracy": 0.5} for i in range(2 * n)]
  return {"measured": measured, "curve": curve, "diverged_at": diverged}


def _rec(l2, cos=None, lr=0.1, seed=0, loss=(2.3, 1.0), steps=(0, 100, 200), diverged=None, final=None, n=200,
         every=100):
  """A new-layout run record: slim() of a history with the layer values `l2` (normalized = l2 / 2) at every step."""
  h = _hist(l2, cos, steps, loss, n, diverged)
  for m in h["measured"]:
    m["normalized"] = [v / 2 for v in m["l2"]]
  fin = loss[1] if final is None else final
  h["subset_loss"] = [{"step": i, "subset_loss": float(v)} for i, v in enumerate(np.linspace(loss[0], fin, 10))]
  return {"lr": lr, "seed": seed, **ics.slim(h, every, (2, 99))}


def _cell(recs):
  return {r["seed"]: r for r in recs}


def test_compare_is_the_mean_log_ratio_over_layers_2_to_k_with_seed_se():
  plain = _cell([_rec([0.0, 1.0, 2.0], seed=s) for s in range(3)])
  bn = _cell([_rec([0.0, 0.5 * f, 1.0 * f], seed=s) for s, f in enumerate((1.0, 1.1, 0.9))])
  d = ics.compare(bn, plain, "l2")
  per_seed = [math.log(0.5 * f) for f in (1.0, 1.1, 0.9)]
  assert d.n == 3 and d.mean == pytest.approx(np.mean(per_seed)) and d.ok and (d.converged, d.cells) == (2, 2)
  assert d.se == pytest.approx(np.std(per_seed, ddof=1) / math.sqrt(3))
  assert ics.compare(bn, plain, "normalized").mean == pytest.approx(np.mean(per_seed))  # both halved
  d_cos = ics.compare(_cell([_rec([0, 1, 1], cos=[1, 0.9, 0.7])]), _cell([_rec([0, 1, 1], cos=[1, 0.5, 0.5])]),
                      "cos")
  assert d_cos.mean == pytest.approx(0.3)


def test_compare_pairs_only_steps_both_runs_reached():
  a = _cell([_rec([0, 2.0], steps=(0, 100, 200))])
  b = _hist([0, 1.0], steps=(0, 100))
  b["measured"].append({**b["measured"][0], "step": 300, "l2": [0, 1000.0]})
  b = {0: {**ics._ics_record(b["measured"], b["curve"]), "diverged_at": None}}
  assert ics.compare(a, b, "l2").mean == pytest.approx(math.log(2.0))


def test_slim_keeps_window_losses_clipped_plot_layers_and_thinned_curves():
  r = _rec([0, 1.0, 3.0], steps=(0, 100, 200), loss=(2.0, 1.0), n=200)
  assert r["measured_steps"] == [0, 100, 200] and sorted(r["at_layers"]) == ["2", "3"]  # 99 -> the last layer
  assert r["at_layers"]["3"]["l2"] == [3.0] * 3 and r["series"]["l2"] == [pytest.approx(math.log(3.0) / 2)] * 3
  # the loss before step 100: the mean over steps 1..100 of the linear fall from 2.0 (step 0) to 1.0 (step 200)
  assert r["window_loss"][0] == 2.0 and r["window_loss"][1] == pytest.approx(2.0 - 50.5 / 200)
  assert len(r["curve"]) <= ics.CURVE_POINTS and r["final_loss"] == 1.0 and r["initial"] == pytest.approx(2.0, 0.01)
  assert r["per_layer"]["l2"] == [0, 1.0, 3.0] and r["per_layer_log"]["rel"][2] == pytest.approx(math.log(0.3))


def _ics_grid(ratio_by_lr, plain_final, bn_final, stuck=(), seeds=3):
  """{lr: cell} per net: BN's l2 = ratio x plain's at every layer; final subset losses as given."""
  bn, plain = {}, {}
  for lr, ratio in ratio_by_lr.items():
    tail = (2.3, 2.29) if lr in stuck else (2.3, 1.0)
    plain[lr] = _cell([_rec([0, 1.0, 1.0], lr=lr, seed=s, loss=tail, final=plain_final[lr] + 0.01 * s)
                       for s in range(seeds)])
    bn[lr] = _cell([_rec([0, ratio * f, ratio * f], lr=lr, seed=s, final=bn_final[lr] + 0.01 * s)
                    for s, f in enumerate((1.0, 1.02, 0.98)[:seeds])])
  return bn, plain


def test_best_lr_and_edge():
  bn, plain = _ics_grid({0.01: 1.0, 0.1: 1.0, 1.0: 1.0}, {0.01: 1.0, 0.1: 0.5, 1.0: 0.8}, {0.01: 0.9, 0.1: 0.4, 1.0: 0.3},
                    stuck=(1.0,))
  assert ics.best_lr(plain) == 0.1 and ics.best_lr(bn) == 1.0 and ics.edge(plain) == 1.0 and ics.edge(bn) is None
  plain[0.1][1]["diverged_at"] = 5  # a diverged seed takes its lr out of the running
  assert ics.best_lr(plain) == 1.0
  assert ics.edge(_ics_grid({0.01: 1.0}, {0.01: 1.0}, {0.01: 1.0}, stuck=(0.01,))[1]) is None  # below the best: no edge


def test_regime_rows_use_the_plain_best_lr_each_best_lr_and_matched_loss():
  # plain best at 0.1 (BN's ICS 0.5x there: not reproduced), BN best at 1.0 (BN's ICS 2x: reproduced)
  bn, plain = _ics_grid({0.1: 0.5, 1.0: 2.0}, {0.1: 0.5, 1.0: 0.8}, {0.1: 0.6, 1.0: 0.3})
  rows = ics.run_claims("dln", bn, plain)
  assert [c.claim.split(":")[0] for c in rows[:9:3]] == [f"dln, {r}" for r in ics.REGIMES]
  verdicts = [S.verdict(c) for c in rows]
  assert verdicts[:3] == ["not reproduced", "not reproduced", "reproduced"]  # same lr 0.1: l2, normalized, cos
  assert rows[3].note.startswith("log(BN/plain); lr BN 1.0, plain 0.1")
  assert rows[3].ours.mean == pytest.approx(math.log(2.0), abs=0.02) and verdicts[3:5] == ["reproduced"] * 2
  assert verdicts[6:8] == ["reproduced"] * 2  # matched loss at the own best lrs: the same curves
  assert len(rows) == 10 and rows[-1].claim.startswith("dln: BN trains faster")
  stuck = _ics_grid({0.1: 0.5, 1.0: 2.0}, {0.1: 0.5, 1.0: 0.8}, {0.1: 0.6, 1.0: 0.3}, stuck=(0.1, 1.0))
  assert [S.verdict(c) for c in ics.run_claims("dln", *stuck)] == ["inconclusive"] * 10  # the plain net never trains
  two = ics.run_claims("dln", *_ics_grid({0.1: 0.5}, {0.1: 0.5}, {0.1: 0.6}, seeds=1))
  assert S.verdict(two[0]) == "inconclusive"  # one seed: no s.e.


def test_matched_loss_takes_the_first_step_below_the_common_level():
  # BN falls fast, plain slowly: each net's ICS at its own first step below the common level
  a = _rec([0, 1.0, 1.0], loss=(2.0, 0.5), n=100, steps=(0, 60, 120, 180))
  b = _rec([0, 1.0, 1.0], loss=(2.0, 0.5), n=400, steps=(0, 60, 120, 180))
  a["series"]["l2"] = [0.0, 1.0, 5.0, 5.0]
  b["series"]["l2"] = [0.0, 3.0, 2.0, 7.0]
  lo, hi = max(min(a["window_loss"]), min(b["window_loss"])), 2.0
  level = math.exp((math.log(hi) + math.log(lo)) / 2)
  ia = next(i for i, v in enumerate(a["window_loss"]) if v <= level)
  ib = next(i for i, v in enumerate(b["window_loss"]) if v <= level)
  assert ia < ib
  assert ics.compare({0: a}, {0: b}, "l2", matched=True).mean == a["series"]["l2"][ia] - b["series"]["l2"][ib]


def test_faster_and_trains():
  bn = _cell([_rec([0, 1], loss=(2.3, 0.5), seed=s) for s in range(3)])
  plain = _cell([_rec([0, 1], loss=(2.3, 1.0 + 0.01 * s), seed=s) for s in range(3)])
  r = ics.faster(bn, plain)
  assert r.n == 3 and r.mean == pytest.approx(np.mean([1 - 0.5 / (1.0 + 0.01 * s) for s in range(3)]), rel=0.01)
  assert ics.trains(plain) and S.effect(ics.FASTER_FLOOR)(r) == "reproduced" and r.ok
  stuck = _cell([_rec([0, 1], loss=(2.3, 2.2), seed=s) for s in range(3)])
  assert not ics.trains(stuck) and not ics.faster(bn, stuck).ok
  assert not ics.trains({0: _rec([0, 1], diverged=5)}) and not ics.trains({})


def test_layer_slope_and_depth_claims():
  rising = {s: _rec([0, 1.0, math.e, math.e ** 2], seed=s) for s in range(3)}
  for r in rising.values():
    r["per_layer_log"]["rel"] = [0.0, 1.0, 2.0, 3.0]
  s = ics.layer_slope(rising)
  assert s.n == 3 and s.mean == pytest.approx(1.0) and s.ok
  shallow = {0.1: {k: _rec([0, 1.0, 1.0], seed=k) for k in range(3)}}
  rows = ics.depth_claims({0.1: rising, 1.0: rising}, shallow)  # only the lr both have
  assert rows[0].note.endswith("lr 0.1") and [S.verdict(c) for c in rows] == ["reproduced"] * 2


def test_paper_rows_are_judged_again_from_the_stored_comparisons():
  p = {"lrs": [1e-7, 1e-6], "dtype": "float64", "trained": {"batch": [True, True], "none": [True, False]},
       "rows": [{"regime": "same lr 1e-07", "form": "l2", "mean": -0.5, "se": 0.1, "n": 3, "lr_bn": 1e-7,
                 "lr_plain": 1e-7},
                {"regime": "same lr 1e-07", "form": "cos", "mean": 0.5, "se": 0.1, "n": 3, "lr_bn": 1e-7,
                 "lr_plain": 1e-7},
                {"regime": "same lr 1e-06", "form": "normalized", "mean": 0.5, "se": 0.1, "n": 3, "lr_bn": 1e-6,
                 "lr_plain": 1e-6},
                {"regime": "own best lr", "form": "l2", "mean": 0.5, "se": float("nan"), "n": 1, "lr_bn": 1e-7,
                 "lr_plain": 1e-7}]}
  rows = ics.paper_claims(p)
  assert [S.verdict(c) for c in rows] == ["not reproduced", "not reproduced", "inconclusive", "inconclusive"]
  assert (rows[2].ours.converged, rows[2].ours.cells) == (1, 2)  # the plain net did not train at 1e-6


@pytest.mark.slow  # the paper DLN's smoke section (a 6-layer DLN, seconds of compute, a minute of compiles)
def test_paper_dln_stage_keeps_what_the_claims_and_report_need(tmp_path):
  c = S.load_config("ics", "smoke").paper_dln
  p = json.loads(json.dumps(ics.paper_dln_data(c)))
  assert [r["verdict"] for r in p["rows"]] == [S.verdict(x) for x in ics.paper_claims(p)]
  assert len(p["rows"]) == 3 * (len(c.lrs) + 2) and len(p["same_lr"]) == len(p["lrs"])
  assert sorted(p["curves"]["batch"][str(1e-6)]["l2"]) == [str(j) for j in c.plot_layers]
  assert len(p["loss"]["none"][0][0]) <= ics.CURVE_POINTS and p["edge"]["none"] in p["lrs"]
  path = ics.report({"layout": ics.LAYOUT, "results": {}, "paper_dln": p, "config": {"preset": "smoke"},
                     "convergence_rule": S.PLATEAU_RULE}, str(tmp_path))
  assert len(S.read_claim_table(path)) == len(p["rows"]) and os.path.getsize(tmp_path / "ics_layers.png") > 1000


def test_ics_verdicts_on_old_results_are_the_old_rules():
  # BN's ICS is 0.8x the plain net's in every seed: lower, so "BN does not reduce ICS" is not reproduced.
  plain = {s: _hist([0, 1.0, 1.0]) for s in range(3)}
  bn = {s: _hist([0, 0.8 * f, 0.8 * f]) for s, f in enumerate((1.0, 1.01, 0.99))}
  old = lambda b, p: {"config": {"runs": {"dln": {"learning_rate": 0.05}}},  # noqa: E731
                      "results": {"dln": {"batch": b, "none": p}}}
  verdicts = [S.verdict(c) for c in ics.claims(old(bn, plain))]
  assert verdicts == ["not reproduced", "not reproduced", "reproduced", "not reproduced"]
  stuck = {s: _hist([0, 1.0, 1.0], loss=(2.3, 2.2)) for s in range(3)}
  assert [S.verdict(c) for c in ics.claims(old(bn, stuck))] == ["inconclusive"] * 4  # the plain net does not train
  assert ics.not_lower(S.Stat(-0.1, 0.2, 3)) == "reproduced" and ics.not_higher(S.Stat(0.5, 0.2, 3)) == \
      "not reproduced"


def test_stages_refuse_bad_settings_in_one_line():
  from normlab.errors import UserError
  for key, value, match in (("only", ("vgg", "resnet"), "unknown runs \\['resnet'\\]; valid runs: paper_dln"),
                            ("lr_grid", {"vgg": (0.1, -1.0)}, "config.lr_grid.vgg: learning rates must be positive"),
                            ("lr_grid", {"resnet": (0.1,)}, "config.lr_grid: unknown runs \\['resnet'\\]"),
                            ("run_norms", {"vgg": ("layer",)}, "config.run_norms.vgg: \\['layer'\\] must be among")):
    config = S.load_config("ics", "smoke")
    config.unlock()
    config[key] = value
    with pytest.raises(UserError, match=match):
      ics.stages(config)
  config = S.load_config("ics", "smoke")
  config.unlock()
  config.only = ("paper_dln",)
  assert ics.stages(config) == ["paper_dln"]


def test_gpu_preset_is_the_papers_vgg_experiment():
  c = S.load_config("ics", "gpu")
  vgg = c.runs.vgg
  assert set(c.only) == {"paper_dln", "vgg"} and tuple(c.lr_grid.vgg) == (0.01, 0.1)
  assert (vgg.model, vgg.model_options.width, vgg.dataset, vgg.optimizer, vgg.batch_size, vgg.num_steps,
          vgg.schedule, vgg.weight_decay) == ("vgg11", 1.0, "cifar10", "sgd", 128, 15000, "constant", 0.0)
  assert tuple(c.plot_layers.vgg) == (5, 10) and tuple(c.norms) == ("batch", "none")
  cpu = S.load_config("ics", "cpu")
  assert cpu.paper_dln.dtype == "float64" and set(cpu.paper_dln.lrs) == {1e-6, 1e-7}
  assert max(cpu.lr_grid.dln) == 0.1 and max(cpu.lr_grid.vgg) == 0.1  # up to the plain nets' edges


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
