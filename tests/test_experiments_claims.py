"""The in-memory claim studies (noisy_bn, lp_norms, invariance, rnn_norms, train_eval_gap, placement, seed_claims):
their helpers, and (slow) each end to end on a trimmed smoke preset: report.md with the claim table, its plot and
results.json, and a report rebuilt from results.json with the same verdicts. The claims' outcomes are not asserted
(they are what the runs find); the facts the machinery guarantees are: group norm's train/eval gap is exactly 0,
and the measured invariance table has the seed's invariant / not-invariant pattern.
"""
import json
import os

import numpy as np
import pytest

from experiments import _study as S

STUDIES = ("noisy_bn", "lp_norms", "invariance", "rnn_norms", "train_eval_gap", "placement", "seed_claims")


def _smoke(study, **overrides):
  c = S.load_config(study, "smoke")
  c.unlock()
  for dotted, value in overrides.items():
    node = c
    *parents, last = dotted.split(".")
    for p in parents:
      node = node[p]
    node[last] = value
  return c


def _run(module, c, workdir):
  """Runs the study, checks its report, rebuilds the report from results.json and compares the verdicts."""
  path = S.run_and_report(module, c, str(workdir), log=lambda *a: None)
  text = open(path).read()
  assert "| Claim | Paper | Ours ± s.e. | Converged cells | Verdict |" in text
  verdicts = S.read_claim_table(path)
  assert verdicts and set(verdicts) <= set(S.VERDICTS)
  pngs = [f for f in os.listdir(workdir) if f.endswith(".png")]
  assert pngs and all(f"({p})" in text for p in pngs)
  assert "Trained at commit " in text
  again = S.run_and_report(module, c, str(workdir), report_only=True)
  assert S.read_claim_table(again) == verdicts  # results.json keeps 6 significant digits
  return text, json.load(open(os.path.join(workdir, "results.json")))


def test_configs_load_for_every_preset_and_are_locked():
  for study in STUDIES:
    for preset in S.PRESETS:
      c = S.load_config(study, preset)
      assert c.preset == preset
      with pytest.raises(AttributeError):
        c.not_a_key = 1
  with pytest.raises(ValueError, match="unknown preset"):
    S.load_config("placement", "huge")


# ----------------------------------------------------------------------------- helpers, no training

def test_tail_mean():
  curve = [{"a": float(i >= 5)} for i in range(20)]
  assert S.tail_mean(curve, "a", 0.1) == 1.0 and S.tail_mean(curve, "a", 1.0) == 0.75


def test_drift_is_zero_for_a_stationary_distribution_and_grows_with_shifts():
  from normlab.analysis.probes import drift
  still = [{"dist": {"l": {"mean": [0.0, 1.0], "std": [1.0, 2.0]}}} for _ in range(4)]
  assert drift(still)["l"] == {"location": 0.0, "log_scale": 0.0}
  moving = [{"dist": {"l": {"mean": [float(i), 1.0], "std": [1.0, 2.0 ** i]}}} for i in range(4)]
  d = drift(moving)["l"]
  assert d["location"] > 0.5 and d["log_scale"] > 0.3


def test_shape_stats_kurtosis_of_known_distributions():
  from experiments.lp_norms import shape_stats
  rng = np.random.default_rng(0)
  g = shape_stats(rng.normal(size=(200000, 2)))
  u = shape_stats(rng.uniform(-1, 1, size=(200000, 2)))
  lap = shape_stats(rng.laplace(size=(200000, 2)))
  assert g["mean_abs_excess_kurtosis"] < 0.05
  np.testing.assert_allclose(u["kurtosis"], -1.2, atol=0.05)
  np.testing.assert_allclose(lap["kurtosis"], 3.0, atol=0.3)
  dead = shape_stats(np.concatenate([rng.normal(size=(100, 1)), np.ones((100, 1))], 1))
  assert dead["dead"] == 1 and dead["channels"] == 1


def test_rnn_inputs_are_zero_padded_with_lengths_in_range():
  from experiments.rnn_norms import make_inputs
  x = np.ones((64, 40, 1), np.float32)
  for factor in (1, 3):
    inp = make_inputs(x, factor, np.random.default_rng(0))
    assert inp["x"].shape == (64, 40 * factor, 1) and inp["mask"].shape == (64, 40 * factor)
    lengths = inp["mask"].sum(1)
    assert lengths.min() >= 20 * factor and lengths.max() <= 40 * factor and np.all(lengths % factor == 0)
    assert np.all(inp["mask"][:, :20 * factor])  # masks are prefixes
    np.testing.assert_array_equal(inp["x"][..., 0], inp["mask"].astype(np.float32))


def test_invariance_rescale_operations():
  import jax.numpy as jnp
  from experiments.invariance import rescale
  v = {"params": {"conv0": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.ones((4,))}, "head": {"kernel": jnp.ones(2)}}}
  x = jnp.ones((2, 8, 8, 1))
  v1, x1 = rescale(v, x, "weight_vector", 3.0, 2)
  assert float(v1["params"]["conv0"]["kernel"][..., 2].min()) == 3.0
  assert float(v1["params"]["conv0"]["kernel"][..., 1].max()) == 1.0 and float(v1["params"]["conv0"]["bias"][2]) == 3.0
  assert float(v["params"]["conv0"]["kernel"].max()) == 1.0  # the input is not modified
  v2, _ = rescale(v, x, "weight_matrix", 0.5, 2)
  assert float(v2["params"]["conv0"]["kernel"].max()) == 0.5 and float(v2["params"]["head"]["kernel"][0]) == 1.0
  _, x3 = rescale(v, x, "single_example", 3.0, 2)
  assert float(x3[0].min()) == 3.0 and float(x3[1].max()) == 1.0


# ----------------------------------------------------------------------------- studies end to end

@pytest.mark.slow  # a study smoke run (pytest.ini: slow)
def test_invariance_study_measures_the_expected_pattern(tmp_path):
  from experiments import invariance
  c = _smoke("invariance")
  text, data = _run(invariance, c, tmp_path)
  for model, table in data["classified"].items():
    for norm, cls in table.items():
      exp = data["expected"][norm]
      assert cls == {k: "invariant" if exp[k] else "not invariant" for k in exp}, (model, norm, cls)
  assert "conv" in data["classified"] and "instance" in data["classified"]["conv"]
  assert "instance" not in data["classified"]["mlp"]  # IN needs a spatial axis: n/a for the MLP
  assert text.count("**reproduced**") == 5


@pytest.mark.slow  # a study smoke run (pytest.ini: slow)
def test_train_eval_gap_is_exactly_zero_for_group_norm(tmp_path):
  from experiments import train_eval_gap
  c = _smoke("train_eval_gap", batch_sizes=(4,), test_batch_sizes=(2, 4), probe_batch_size=4, seeds=(0,))
  c.examples_per_run = 20
  text, data = _run(train_eval_gap, c, tmp_path)
  for r in data["results"]["group"]["4"]:
    assert r["max_abs_logit_diff"] == 0.0 and r["acc_gap"] == 0.0 and r["loss_gap"] == 0.0
    assert r["train_mode"] == r["eval_mode"]
  bn = data["results"]["batch"]["4"][0]
  assert bn["max_abs_logit_diff"] > 0.0  # BN's modes differ
  assert bn["examples"] == c.test_examples and set(bn["test_batch_sweep"]) == {"2", "4"}
  assert all(v["examples"] == c.test_examples for v in bn["test_batch_sweep"].values())  # the same subset


@pytest.mark.slow  # a study smoke run (pytest.ini: slow)
def test_noisy_bn_study_smoke(tmp_path):
  from experiments import noisy_bn
  c = _smoke("noisy_bn", measure_every=4, dist_batch=32)
  c.train.num_steps = 8
  text, data = _run(noisy_bn, c, tmp_path)
  assert set(data["summary"]) == {"none", "batch", "noisy_batch", "noisy_batch_weak"} and text.count("**") == 2 * 19
  for rs in data["summary"].values():
    for r in rs:
      assert all(0.0 <= r[k] <= 100.0 for k in ("test_clean", "test_train_mode", "test_noisy_running"))
      assert len(r["subset_loss"]) == 8 and np.isfinite(r["drift_location"])
  assert os.path.isfile(tmp_path / "results.csv")


@pytest.mark.slow
def test_lp_norms_study_smoke(tmp_path):
  from experiments import lp_norms
  c = _smoke("lp_norms", norms=("none", "batch", "l1_batch"), measure_every=5, probe_batch=32,
             dist_batch=32)
  c.train.num_steps = 6
  _, data = _run(lp_norms, c, tmp_path)
  for norm in ("batch", "l1_batch"):
    r = data["summary"][norm][0]
    assert np.isfinite(r["kurtosis"]) and np.isfinite(r["pre_drift_location"])


@pytest.mark.slow
def test_rnn_norms_study_smoke(tmp_path):
  from experiments import rnn_norms
  c = _smoke("rnn_norms", batch_sizes=(4,), learning_rates=(3e-3, 1e-2), seeds=(0, 1), epochs=0.005)
  _, data = _run(rnn_norms, c, tmp_path)
  cells = data["results"]["4"]
  assert set(cells) == {"layer", "batch"}
  for cell in cells.values():
    assert set(cell["lr_grid"]) == {"0.003", "0.01"} and len(cell["runs"]) == 2
    assert cell["runs"][0] == cell["lr_grid"][str(cell["lr"])]  # seed 0 is the grid run at the kept rate
    assert all(np.isfinite(r["test_acc"]) and np.isfinite(r["long_test_acc"]) for r in cell["runs"])


@pytest.mark.slow
def test_placement_study_smoke(tmp_path):
  from experiments import placement
  c = _smoke("placement", norms=("batch",), measure_every=5)
  c.runs.mnist1d.num_steps = 5
  _, data = _run(placement, c, tmp_path)
  cell = data["results"]["mnist1d"]["batch"]
  assert len(cell["before_activation"]) == len(cell["after_activation"]) == 2
  assert placement.claims(data)[0].ours.n == 2


@pytest.mark.slow
def test_seed_claims_study_smoke(tmp_path):
  from experiments import seed_claims
  c = _smoke("seed_claims", seeds=(0, 1), parts=("batch_gen", "init_scale", "grad_scale", "in_vs_bn", "weight_grad"))
  c.batch_gen.epochs = 0.2
  c.init_scale.num_steps = 6
  _, data = _run(seed_claims, c, tmp_path)
  assert set(data["results"]["init_scale"]) == {"none", "batch"} and len(seed_claims.claims(data)) == 6
  assert all(r.get("gamma_over_sigma") for r in data["results"]["init_scale"]["batch"]["1.0"])


def test_studies_print_one_line_errors_for_user_mistakes():
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  p = subprocess.run([sys.executable, "-m", "experiments.placement", "--preset=smoke"], cwd=repo,
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 2 and "--workdir is required" in p.stderr
