"""The rules of rnn_norms, train_eval_gap, placement and seed_claims on synthetic numbers: convergence of an
in-memory curve, mean ± s.e., the pooled paired tests and the verdicts that follow them; the exact parts of
seed_claims (IN vs BN at batch 1, the weight-gradient identities); the MLP's init_scale."""
import numpy as np
import pytest

import experiments
from experiments import _training


def _curve(losses):
  return [{"step": i, "train_loss": v, "train_accuracy": 0.5} for i, v in enumerate(losses)]


def test_curve_convergence_follows_the_sweep_studies_rule():
  flat = _curve([2.0] * 80 + [1.0] * 20)
  assert _training.curve_change(flat) == pytest.approx(0.0)
  assert _training.curve_converged({"curve": flat, "diverged_at": None})
  assert not _training.curve_converged({"curve": flat, "diverged_at": 50})
  falling = _curve(list(np.linspace(2.0, 1.0, 100)))
  assert _training.curve_change(falling) > _training.study.CONVERGENCE_TOL
  assert not _training.curve_converged({"curve": falling, "diverged_at": None})


def test_noise_aware_rule_passes_a_noisy_plateau_the_strict_rule_fails():
  rng = np.random.default_rng(0)
  noisy = _curve(list(0.05 * np.exp(rng.normal(0.0, 1.0, size=400))))  # flat, heavy per-step noise
  assert not _training.curve_converged({"curve": noisy, "diverged_at": None}, strict=True)
  assert _training.curve_converged({"curve": noisy, "diverged_at": None})
  rec = _training.record_convergence({"curve": noisy, "diverged_at": None})
  assert rec["converged"] and not rec["converged_strict"]

  def build():
    return [{"claim": "c", "paper": "p", "ours": "o", "verdict": "reproduced" if _training.converged(rec) else
             "inconclusive"}]
  (row,) = _training.both_rules(build)
  assert row["verdict"] == "reproduced" and "strict 2% convergence rule, committed first: inconclusive" in row["ours"]
  assert _training.converged(rec)  # the rule in force is restored


def test_stat_is_mean_and_standard_error():
  s = _training.stat([1.0, 2.0, 3.0, float("nan")], converged=False)
  assert s.n == 3 and s.mean == pytest.approx(2.0) and s.se == pytest.approx(1.0 / np.sqrt(3))
  assert not s.converged and str(s).endswith("*")
  assert _training.se_str([1.0, 3.0], 2) == "2.00 ± 1.00"


def test_provenance_names_the_commit_and_the_wall_time():
  p = _training.Provenance().finish()
  assert p["trained_at"].startswith("commit ") and "started" in p["trained_at"] and p["wall_s"] >= 0
  assert "wall time" in _training.Provenance.note(p) and "not recorded" in _training.Provenance.note(None)


def _pl_rec(seed, acc, converged=True):
  return {"seed": seed, "final_test_acc": acc, "final_train_acc": 1.0, "final_train_loss": 0.01, "diverged_at": None,
          "converged": converged, "loss_change": 0.0, "test_curve": []}


def test_placement_pooled_paired_test(tmp_path):
  from experiments import placement
  c = experiments.load_config("placement", "smoke")
  before = [0.90, 0.91, 0.92]
  res = {"mnist1d": {n: {"before_activation": [_pl_rec(s, a) for s, a in enumerate(before)],
                         "after_activation": [_pl_rec(s, a + 0.02 + 0.001 * s) for s, a in enumerate(before)]}
                     for n in ("batch", "group")}}
  pool = placement.pooled(res)
  assert pool.n == 6 and pool.mean == pytest.approx(2.1) and pool.converged
  text = open(placement.write(c, res, str(tmp_path))).read()
  assert "**reproduced**" in text and "wall time" not in text  # no provenance given: 'not recorded'
  csv_lines = open(tmp_path / "results.csv").read().splitlines()
  assert len(csv_lines) == 1 + 12 and csv_lines[0].startswith("run,norm,placement,seed,final_test_acc")
  res["mnist1d"]["group"]["after_activation"][0]["converged"] = False
  assert placement.pooled(res).converged is False
  text = open(placement.write(c, res, str(tmp_path / "b"))).read()
  assert text.count("**inconclusive**") == 2  # the claim (a run did not converge) and the context row


def _gap_rec(seed, acc, loss_gap, converged=True):
  return {"seed": seed, "final_train_acc": 1.0, "final_train_loss": 0.01, "diverged_at": None, "loss_change": 0.0,
          "converged": converged, "train_mode": {"accuracy": acc, "loss": 0.1 + loss_gap},
          "eval_mode": {"accuracy": acc, "loss": 0.1}, "acc_gap": 0.0, "loss_gap": loss_gap,
          "max_abs_logit_diff": 0.5 if loss_gap else 0.0, "examples": 96}


def test_train_eval_gap_verdicts_on_synthetic_runs(tmp_path):
  from experiments import train_eval_gap
  c = experiments.load_config("train_eval_gap", "smoke")  # batch sizes (4, 16), seeds (0, 1)
  seeds = (0, 1, 2)
  res = {"batch": {"4": [_gap_rec(s, 0.80 + 0.001 * s, 0.30 + 0.01 * s) for s in seeds],
                   "16": [_gap_rec(s, 0.95, 0.05) for s in seeds]},
         "group": {"4": [_gap_rec(s, 0.94 + 0.001 * s, 0.0) for s in seeds],
                   "16": [_gap_rec(s, 0.95, 0.0) for s in seeds]}}
  text = open(train_eval_gap.write(c, res, str(tmp_path))).read()
  rows = [line for line in text.splitlines() if line.endswith("** |")]
  assert ["**reproduced**" in r for r in rows] == [True] * 4, rows
  res["batch"]["4"] = [_gap_rec(s, 0.94 + 0.001 * s, 0.05, converged=s != 0) for s in seeds]
  text = open(train_eval_gap.write(c, res, str(tmp_path / "b"))).read()
  assert text.count("**inconclusive**") == 2  # both claims that use the unconverged cell


def _rnn_run(acc, long_acc, converged=True):
  return {"final_train_acc": 0.9, "final_train_loss": 0.3, "test_acc": acc, "long_test_acc": long_acc,
          "long_test_loss": 1.0, "loss_change": 0.0, "converged": converged, "diverged_at": None, "steps": 10,
          "curve": [], "test_curve": []}


def test_rnn_norms_verdicts_on_synthetic_runs(tmp_path):
  from experiments import rnn_norms
  c = experiments.load_config("rnn_norms", "smoke")
  c.unlock()
  c.rnn_norms = ("none", "layer", "batch")
  c.seeds = (0, 1, 2)

  def cell(acc, long_acc, conv=True):
    runs = [_rnn_run(acc + 0.002 * s, long_acc + 0.002 * s, conv) for s in range(3)]
    return {"lr_grid": {"0.003": runs[0]}, "lr": 0.003, "runs": runs}
  res = {"4": {"none": cell(0.80, 0.70), "layer": cell(0.85, 0.80), "batch": cell(0.70, 0.50)},
         "16": {"none": cell(0.80, 0.70), "layer": cell(0.86, 0.81), "batch": cell(0.84, 0.70)}}
  text = open(rnn_norms.write(c, res, str(tmp_path))).read()
  rows = [line for line in text.splitlines() if line.endswith("** |")]
  assert len(rows) == 3 and all("**reproduced**" in r for r in rows), rows
  res["4"]["batch"] = cell(0.70, 0.50, conv=False)
  text = open(rnn_norms.write(c, res, str(tmp_path / "b"))).read()
  assert text.count("**inconclusive**") == 2 and text.count("**reproduced**") == 1


def _sc_rec(seed, acc, converged=True, diverged_at=None, train_acc=1.0):
  return {"seed": seed, "test_acc": acc, "final_train_acc": train_acc, "final_train_loss": 0.1, "converged": converged,
          "diverged_at": diverged_at, "loss_change": 0.0, "steps": 10}


def test_seed_claims_rules_on_synthetic_runs():
  from experiments import seed_claims as sc
  c = experiments.load_config("seed_claims", "smoke")  # batch sizes (16, 64), virtual (8, 32), group sizes (2, 16)
  res = {"16": [_sc_rec(s, 0.70 + 0.001 * s) for s in range(3)], "64": [_sc_rec(s, 0.65) for s in range(3)]}
  assert sc.rows_batch_gen(c, res)[0]["verdict"] == "reproduced"
  res["64"] = [_sc_rec(s, 0.70 + 0.001 * s) for s in range(3)]
  assert sc.rows_batch_gen(c, res)[0]["verdict"] == "not reproduced"
  # init_scale: the plain net diverges at x4 (an outcome, counted as chance), BN barely moves
  init = {"none": {"0.25": [_sc_rec(s, 0.5) for s in range(3)], "1.0": [_sc_rec(s, 0.7 + 0.01 * s) for s in range(3)],
                   "4.0": [_sc_rec(s, 0.1, converged=False, diverged_at=3) for s in range(3)]},
          "batch": {k: [dict(_sc_rec(s, 0.72 - 0.001 * s), gamma_over_sigma={"block0": [0.5, 0.8, 1.5]})
                        for s in range(3)] for k in ("0.25", "1.0", "4.0")}}
  assert sc.rows_init_scale(c, init)[0]["verdict"] == "reproduced"
  g = sc.rows_gamma_sigma(c, init)[0]
  assert g["verdict"] == "partly" and "67%" in g["ours"]  # 2 of 3 channels <= 1 in each network
  init["none"]["0.25"][0]["converged"] = False  # a slow run that neither converged nor diverged
  assert sc.rows_init_scale(c, init)[0]["verdict"] == "inconclusive"
  gn = {"2": [_sc_rec(s, 0.5 + 0.001 * s) for s in range(3)], "16": [_sc_rec(s, 0.7) for s in range(3)],
        "0": [_sc_rec(s, 0.6) for s in range(3)]}
  assert sc.rows_gn_groups(c, gn)[0]["verdict"] == "reproduced"
  ghost = {"8": [_sc_rec(s, 0.702 + 0.001 * s) for s in range(3)], "32": [_sc_rec(s, 0.70) for s in range(3)]}
  assert sc.rows_ghost(c, ghost)[0]["verdict"] == "partly"  # > 2 s.e. but under the 0.5-point floor
  grads = {"none": {"0.5": [{"seed": s, "log10_first": -3.0 + 0.01 * s, "log10_last": -2.0} for s in range(3)],
                    "2.0": [{"seed": s, "log10_first": 3.0, "log10_last": 4.0} for s in range(3)]},
           "batch": {"0.5": [{"seed": s, "log10_first": 0.3, "log10_last": 0.0} for s in range(3)],
                     "2.0": [{"seed": s, "log10_first": -0.3, "log10_last": 0.0} for s in range(3)]}}
  assert sc.rows_grad_scale(c, grads)[0]["verdict"] == "reproduced"


def test_in_and_bn_agree_in_train_mode_at_batch_one_and_differ_in_eval_mode():
  from experiments import seed_claims as sc
  c = experiments.load_config("seed_claims", "smoke")
  r = sc.in_vs_bn(c)
  assert r["train_max_diff"] < 1e-5 and r["eval_max_diff"] > sc.IN_TOL and r["mlp_batch1_max_abs"] == 0.0
  assert sc.rows_in_vs_bn(c, r)[0]["verdict"] == "partly"


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_weight_gradient_identities_against_autodiff():
  from experiments import seed_claims as sc
  c = experiments.load_config("seed_claims", "smoke")
  r = sc.weight_grad(c)
  assert r["instances"] == c.weight_grad.trials and r["random_x_exceeding"] == 0
  assert r["max_rel_err_sup"] < 1e-9 and r["max_rel_err_closed_xhat"] < 1e-9
  assert r["max_rel_err_closed_raw_x"] > 1e-3  # the raw input in place of x_hat is not the identity
  assert sc.rows_weight_grad(c, r)[0]["verdict"] == "reproduced"


def test_mlp_init_scale_multiplies_the_initial_kernels():
  import jax
  import jax.numpy as jnp

  from normlab import models
  x = jnp.ones((4, 40, 1))
  v1 = models.get_model("mlp", num_classes=10, norm="none", widths=(8,)).init(jax.random.key(0), x, train=False)
  v3 = models.get_model("mlp", num_classes=10, norm="none", widths=(8,), init_scale=3.0).init(
      jax.random.key(0), x, train=False)
  for layer in ("dense0", "head"):
    np.testing.assert_allclose(v3["params"][layer]["kernel"], 3.0 * v1["params"][layer]["kernel"], rtol=1e-6)
  with pytest.raises(ValueError, match="init_scale"):
    models.get_model("mlp", num_classes=10, norm="none", widths=(8,), init_scale=-1.0).init(
        jax.random.key(0), x, train=False)
