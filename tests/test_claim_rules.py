"""The claim rules of noisy_bn, lp_norms and landscape on synthetic per-seed summaries (no training)."""
from __future__ import annotations

from experiments import _study as S


def _rows(values, converged=True, **extra):
  """Per-seed summary rows from {key: [value per seed]}."""
  n = len(next(iter(values.values())))
  return [{"seed": i, "converged": converged, "diverged_at": None,
           **{k: v[i] for k, v in values.items()}, **extra} for i in range(n)]


def _verdicts(claims, prefix):
  return [S.verdict(c) for c in claims if c.claim.startswith(prefix)]


def _noisy_summary(noisy_acc, converged=True):
  base = {"early_loss": [1.0, 1.1, 1.05], "drift_location": [0.02, 0.03, 0.025], "drift_log_scale": [0.01, 0.012, 0.011]}
  acc = lambda m: {k: [m + d for d in (0.0, 0.3, -0.2)] for k in ("test_clean", "test_train_mode", "train_acc")}  # noqa: E731
  return {"none": _rows({**acc(75.0), **base}),
          "batch": _rows({**acc(80.0), **base, "early_loss": [0.8, 0.85, 0.82]}),
          "noisy_batch": _rows({**acc(noisy_acc), **base, "early_loss": [0.9, 0.95, 0.93],
                                "drift_location": [0.3, 0.35, 0.32], "drift_log_scale": [0.2, 0.22, 0.21]},
                               converged=converged)}


def test_noisy_bn_rules():
  from experiments.noisy_bn import claims
  claim_rows = lambda summ: claims({"summary": summ})  # noqa: E731
  rows = claim_rows(_noisy_summary(79.5))
  assert set(_verdicts(rows, "The plain net lags BN")) == {"reproduced"}
  assert set(_verdicts(rows, "Noisy BN does as well as BN")) == {"reproduced"}  # 0.5 pts short, tol 2.5
  assert set(_verdicts(rows, "Noisy BN beats the plain net")) == {"reproduced"}
  assert _verdicts(rows, "Noisy BN's activations") == ["reproduced"]           # x12, x19
  assert _verdicts(rows, "BN and noisy BN train faster") == ["reproduced"]
  rows = claim_rows(_noisy_summary(76.0))                                      # 4 pts short of BN: > tol
  assert set(_verdicts(rows, "Noisy BN does as well as BN")) == {"not reproduced"}
  rows = claim_rows(_noisy_summary(79.5, converged=False))
  assert set(_verdicts(rows, "Noisy BN does as well as BN")) == {"inconclusive"}
  assert _verdicts(rows, "Noisy BN's activations") == ["inconclusive"]


def test_noisy_bn_weak_noise_level_has_its_own_rows():
  from experiments.noisy_bn import claims
  summ = _noisy_summary(79.5)
  n_strong = len(claims({"summary": summ}))
  base = {"early_loss": [0.85, 0.9, 0.88], "drift_location": [0.05, 0.06, 0.055], "drift_log_scale": [0.02, 0.03, 0.025]}
  summ["noisy_batch_weak"] = _rows({**{k: [70.0, 70.5, 69.5] for k in ("test_clean", "test_train_mode", "train_acc")},
                                    **base})
  rows = claims({"summary": summ})
  assert len(rows) == n_strong + 8 and [S.verdict(c) for c in rows[:n_strong]] == [
      S.verdict(c) for c in claims({"summary": _noisy_summary(79.5)})]      # the strong level's rows unchanged
  assert set(_verdicts(rows, "Weak-noise BN does as well as BN")) == {"not reproduced"}  # 10 pts short, tol 2.5
  assert set(_verdicts(rows, "Weak-noise BN beats the plain net")) == {"not reproduced"}  # 5 pts below plain
  assert _verdicts(rows, "Weak-noise BN's activations") == ["partly"]                    # x2: > 2 s.e., below x5
  assert _verdicts(rows, "Weak-noise BN trains faster") == ["reproduced"]                # 1.05 vs 0.88
  summ["noisy_batch_weak"] = _rows({**{k: [79.8, 80.1, 79.6] for k in ("test_clean", "test_train_mode", "train_acc")},
                                    **base}, converged=False)
  rows = claims({"summary": summ})
  assert set(_verdicts(rows, "Weak-noise BN")) == {"inconclusive"}
  assert set(_verdicts(rows, "Noisy BN does as well as BN")) == {"reproduced"}  # the strong level's cells converged


def test_noisy_bn_without_a_lead_is_inconclusive():
  from experiments.noisy_bn import claims
  claim_rows = lambda summ: claims({"summary": summ})  # noqa: E731
  summ = _noisy_summary(80.0)
  summ["none"] = summ["batch"]  # plain == BN: nothing for noisy BN to keep
  rows = claim_rows(summ)
  assert set(_verdicts(rows, "The plain net lags BN")) == {"not reproduced"}
  assert set(_verdicts(rows, "Noisy BN does as well as BN")) == {"inconclusive"}


def test_lp_norms_rules():
  from experiments.lp_norms import claims
  claim_rows = lambda summ: claims({"summary": summ})  # noqa: E731
  acc = lambda m: {k: [m + d for d in (0.0, 0.3, -0.2)] for k in ("test_acc", "train_acc")}  # noqa: E731
  shape = {"kurtosis": [2.0, 2.2, 2.1], "pre_drift_location": [0.1, 0.11, 0.12]}
  summ = {"none": _rows({**acc(75.0), **shape, "early_loss": [1.0, 1.1, 1.05], "kurtosis": [0.1, 0.1, 0.1]}),
          "batch": _rows({**acc(80.0), **shape, "early_loss": [0.8, 0.85, 0.82], "pre_drift_location": [0.3, 0.3, 0.3]}),
          "l1_batch": _rows({**acc(79.8), **shape, "early_loss": [0.81, 0.86, 0.83],
                             "pre_drift_location": [0.4, 0.42, 0.41]}),
          "linf_batch": _rows({**acc(70.0), **shape, "early_loss": [1.2, 1.25, 1.22],
                               "pre_drift_location": [0.05, 0.05, 0.06]})}
  rows = claim_rows(summ)
  assert set(_verdicts(rows, "The plain net lags BN")) == {"reproduced"}
  assert set(_verdicts(rows, "l_p batch norm does as well as BN")) == {"partly"}  # l1 yes, l_inf no
  assert set(_verdicts(rows, "l_p batch norm beats the plain net")) == {"partly"}
  assert _verdicts(rows, "l_p-normalized networks show a larger") == ["partly"]
  assert _verdicts(rows, "l_p-normalized activations are not Gaussian") == ["reproduced"]
  assert _verdicts(rows, "...with training speed") == ["partly"]


def _landscape_summary(early_ratio, late_ratio, rises=1.0, converged=True):
  """BN's metrics 1.0 (early) / 0.5 (late) with seed jitter; the plain net's `ratio` x BN's."""
  jit = (1.0, 1.05, 0.95)
  def rows(re, rl, conv):
    vals = {}
    for w, base, ratio in (("early", 1.0, re), ("late", 0.5, rl)):
      for k in ("loss_variation", "grad_variation", "beta", "grad_norm"):
        vals[f"{k}_{w}"] = [base * ratio * j for j in jit]
      vals[f"rises_{w}"] = [rises] * 3
    return _rows(vals, converged=conv)
  return {"batch": rows(1.0, 1.0, True), "none": rows(early_ratio, late_ratio, converged)}


def test_landscape_rules():
  from experiments import landscape
  claim_rows = lambda summ: landscape.claims({"summary": summ})  # noqa: E731
  rows = claim_rows(_landscape_summary(4.0, 2.0))
  assert set(_verdicts(rows, "BN lowers")) == {"reproduced"}
  assert _verdicts(rows, "BN's smoothing (plain/BN ratio) is larger especially early") == ["reproduced"]
  assert _verdicts(rows, "BN's smoothing (plain/BN ratio) is larger more at the end") == ["not reproduced"]
  rows = claim_rows(_landscape_summary(1.2, 3.0))
  early = [S.verdict(c) for c in rows if c.claim.startswith("BN lowers") and c.claim.endswith("early in training")]
  assert early == ["partly"] * 3  # x1.2 < 1.5
  assert _verdicts(rows, "BN's smoothing (plain/BN ratio) is larger more at the end") == ["reproduced"]
  rows = claim_rows(_landscape_summary(4.0, 2.0, rises=0.5))  # grid too short
  assert {S.verdict(c) for c in rows} == {"inconclusive"}
  rows = claim_rows(_landscape_summary(4.0, 2.0, converged=False))
  assert {S.verdict(c) for c in rows} == {"inconclusive"}


def test_landscape_windows():
  from experiments.landscape import in_window
  rows = [{"step": s} for s in range(0, 100, 10)]
  assert [r["step"] for r in in_window(rows, "early", 100, 0.2)] == [0, 10]
  assert [r["step"] for r in in_window(rows, "late", 100, 0.2)] == [80, 90]
