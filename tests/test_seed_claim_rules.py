"""The claim rules of placement, train_eval_gap, rnn_norms and seed_claims on synthetic runs (no training): the
pooled paired tests, the verdicts that follow them and the reports they write; the exact parts of seed_claims (IN
vs BN at batch 1, the weight-gradient identities); the MLP's init_scale."""
import numpy as np
import pytest

from experiments import _study as S


def _data(study, results, **config):
  c = S.load_config(study, "smoke").to_dict()
  c.update(config)
  return {"results": results, "config": c}


def _verdicts(claims):
  return [S.verdict(c) for c in claims]


def _pl_rec(seed, acc, converged=True):
  return {"seed": seed, "final_test_acc": acc, "final_train_acc": 1.0, "final_train_loss": 0.01, "diverged_at": None,
          "converged": converged, "loss_change": 0.0, "test_curve": []}


def test_placement_pooled_paired_test(tmp_path):
  from experiments import placement
  before = [0.90, 0.91, 0.92]
  res = {"mnist1d": {n: {"before_activation": [_pl_rec(s, a) for s, a in enumerate(before)],
                         "after_activation": [_pl_rec(s, a + 0.02 + 0.001 * s) for s, a in enumerate(before)]}
                     for n in ("batch", "group")}}
  pool = placement.claims(_data("placement", res))[0].ours
  assert pool.n == 6 and pool.mean == pytest.approx(2.1) and pool.ok
  path = placement.report(_data("placement", res), str(tmp_path))
  assert S.read_claim_table(path) == ["reproduced"]  # per-cell differences are the claim's note, not a row
  assert "per cell: mnist1d/batch" in open(path).read()
  assert "not recorded" in open(path).read()  # no provenance given
  csv_lines = open(tmp_path / "results.csv").read().splitlines()
  assert len(csv_lines) == 1 + 12 and csv_lines[0].startswith("run_norm,placement,seed,final_test_acc")
  res["mnist1d"]["group"]["after_activation"][0]["converged"] = False
  assert _verdicts(placement.claims(_data("placement", res))) == ["inconclusive"]


def _gap_rec(seed, acc, loss_gap, converged=True):
  return {"seed": seed, "final_train_acc": 1.0, "final_train_loss": 0.01, "diverged_at": None, "loss_change": 0.0,
          "converged": converged, "train_mode": {"accuracy": acc, "loss": 0.1 + loss_gap},
          "eval_mode": {"accuracy": acc, "loss": 0.1}, "acc_gap": 0.0, "loss_gap": loss_gap,
          "max_abs_logit_diff": 0.5 if loss_gap else 0.0, "examples": 96}


def test_train_eval_gap_verdicts_on_synthetic_runs(tmp_path):
  from experiments import train_eval_gap  # smoke: batch sizes (4, 16)
  seeds = (0, 1, 2)
  res = {"batch": {"4": [_gap_rec(s, 0.80 + 0.001 * s, 0.30 + 0.01 * s) for s in seeds],
                   "16": [_gap_rec(s, 0.95, 0.05) for s in seeds]},
         "group": {"4": [_gap_rec(s, 0.94 + 0.001 * s, 0.0) for s in seeds],
                   "16": [_gap_rec(s, 0.95, 0.0) for s in seeds]}}
  path = train_eval_gap.report(_data("train_eval_gap", res), str(tmp_path))
  assert S.read_claim_table(path) == ["reproduced"] * 4
  res["batch"]["4"] = [_gap_rec(s, 0.94 + 0.001 * s, 0.05, converged=s != 0) for s in seeds]
  got = _verdicts(train_eval_gap.claims(_data("train_eval_gap", res)))
  assert got == ["reproduced", "inconclusive", "reproduced", "inconclusive"]  # the claims that use the cell


def _rnn_run(acc, long_acc, converged=True):
  return {"final_train_acc": 0.9, "final_train_loss": 0.3, "test_acc": acc, "long_test_acc": long_acc,
          "long_test_loss": 1.0, "loss_change": 0.0, "converged": converged, "diverged_at": None, "steps": 10,
          "curve": [], "test_curve": []}


def test_rnn_norms_verdicts_on_synthetic_runs(tmp_path):
  from experiments import rnn_norms
  data = lambda res: _data("rnn_norms", res, rnn_norms=["none", "layer", "batch"], seeds=[0, 1, 2])  # noqa: E731

  def cell(acc, long_acc, conv=True):
    runs = [_rnn_run(acc + 0.002 * s, long_acc + 0.002 * s, conv) for s in range(3)]
    return {"lr_grid": {"0.003": runs[0]}, "lr": 0.003, "runs": runs}
  res = {"4": {"none": cell(0.80, 0.70), "layer": cell(0.85, 0.80), "batch": cell(0.70, 0.50)},
         "16": {"none": cell(0.80, 0.70), "layer": cell(0.86, 0.81), "batch": cell(0.84, 0.70)}}
  assert S.read_claim_table(rnn_norms.report(data(res), str(tmp_path))) == ["reproduced"] * 3
  res["4"]["batch"] = cell(0.70, 0.50, conv=False)
  assert _verdicts(rnn_norms.claims(data(res))) == ["reproduced", "inconclusive", "inconclusive"]


def _sc_rec(seed, acc, converged=True, diverged_at=None, train_acc=1.0):
  return {"seed": seed, "test_acc": acc, "final_train_acc": train_acc, "final_train_loss": 0.1, "converged": converged,
          "diverged_at": diverged_at, "loss_change": 0.0, "steps": 10}


def test_seed_claims_rules_on_synthetic_runs():
  from experiments import seed_claims as sc  # smoke: batch sizes (16, 64), virtual (8, 32), group sizes (2, 16)

  def verdict(part, res, i=0):
    return S.verdict(sc.claims(_data("seed_claims", {part: res}))[i])
  res = {"16": [_sc_rec(s, 0.70 + 0.001 * s) for s in range(3)], "64": [_sc_rec(s, 0.65) for s in range(3)]}
  assert verdict("batch_gen", res) == "reproduced"
  res["64"] = [_sc_rec(s, 0.70 + 0.001 * s) for s in range(3)]
  assert verdict("batch_gen", res) == "not reproduced"
  # init_scale: the plain net diverges at x4 (an outcome, counted as chance), BN barely moves
  init = {"none": {"0.25": [_sc_rec(s, 0.5) for s in range(3)], "1.0": [_sc_rec(s, 0.7 + 0.01 * s) for s in range(3)],
                   "4.0": [_sc_rec(s, 0.1, converged=False, diverged_at=3) for s in range(3)]},
          "batch": {k: [dict(_sc_rec(s, 0.72 - 0.001 * s), gamma_over_sigma={"block0": [0.5, 0.8, 1.5]})
                        for s in range(3)] for k in ("0.25", "1.0", "4.0")}}
  assert verdict("init_scale", init) == "reproduced"
  g = sc.claims(_data("seed_claims", {"init_scale": init}))[1]
  assert S.verdict(g) == "partly" and g.ours.mean == pytest.approx(200 / 3)  # 2 of 3 channels <= 1 per network
  init["none"]["0.25"][0]["converged"] = False  # a slow run that neither converged nor diverged
  assert verdict("init_scale", init) == "inconclusive"
  gn = {"2": [_sc_rec(s, 0.5 + 0.001 * s) for s in range(3)], "16": [_sc_rec(s, 0.7) for s in range(3)],
        "0": [_sc_rec(s, 0.6) for s in range(3)]}
  assert verdict("gn_groups", gn) == "reproduced"
  ghost = {"8": [_sc_rec(s, 0.702 + 0.001 * s) for s in range(3)], "32": [_sc_rec(s, 0.70) for s in range(3)]}
  assert verdict("ghost", ghost) == "partly"  # > 2 s.e. but under the 0.5-point floor
  grads = {"none": {"0.5": [{"seed": s, "log10_first": -3.0 + 0.01 * s, "log10_last": -2.0} for s in range(3)],
                    "2.0": [{"seed": s, "log10_first": 3.0, "log10_last": 4.0} for s in range(3)]},
           "batch": {"0.5": [{"seed": s, "log10_first": 0.3, "log10_last": 0.0} for s in range(3)],
                     "2.0": [{"seed": s, "log10_first": -0.3, "log10_last": 0.0} for s in range(3)]}}
  assert verdict("grad_scale", grads) == "reproduced"


def test_in_and_bn_agree_in_train_mode_at_batch_one_and_differ_in_eval_mode():
  from experiments import seed_claims as sc
  r = sc.in_vs_bn(S.load_config("seed_claims", "smoke"))
  assert r["train_max_diff"] < 1e-5 and r["eval_max_diff"] > sc.IN_TOL and r["mlp_batch1_max_abs"] == 0.0
  assert _verdicts(sc.claims(_data("seed_claims", {"in_vs_bn": r}))) == ["partly"]


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_weight_gradient_identities_against_autodiff():
  from experiments import seed_claims as sc
  c = S.load_config("seed_claims", "smoke")
  r = sc.weight_grad(c)
  assert r["instances"] == c.weight_grad.trials and r["random_x_exceeding"] == 0
  assert r["max_rel_err_sup"] < 1e-9 and r["max_rel_err_closed_xhat"] < 1e-9
  assert r["max_rel_err_closed_raw_x"] > 1e-3  # the raw input in place of x_hat is not the identity
  assert _verdicts(sc.claims(_data("seed_claims", {"weight_grad": r}))) == ["reproduced"]


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
