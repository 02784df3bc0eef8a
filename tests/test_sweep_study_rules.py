"""The sweep studies' rules (experiments/_sweep_study.py and the claims of batch_size, group_count, remedies,
sync_bn) on synthetic numbers: convergence, standard errors, and verdicts that follow them."""
import json
import math

import pytest

from experiments import _sweep_study as study
from experiments import batch_size, group_count, remedies, sync_bn


def _metrics(tmp_path, losses):
  path = tmp_path / "metrics.jsonl"
  with open(path, "w") as f:
    for i, loss in enumerate(losses, 1):
      f.write(json.dumps({"step": 10 * i, "train_loss": loss}) + "\n")
  return str(tmp_path)


def test_convergence_rule(tmp_path):
  flat = _metrics(tmp_path, [2.0] * 16 + [1.01, 1.0, 1.0, 1.0])
  assert study.train_loss_change(flat) == pytest.approx(0.005)
  assert study.is_converged(study.train_loss_change(flat), "done")
  assert not study.is_converged(study.train_loss_change(flat), "diverged")
  falling = _metrics(tmp_path, [2.0] * 16 + [1.2, 1.1, 1.0, 0.9])
  assert study.train_loss_change(falling) == pytest.approx(1.15 / 0.95 - 1)
  assert not study.is_converged(study.train_loss_change(falling), "done")
  assert study.train_loss_change(str(tmp_path / "missing")) is None


def test_convergence_windows_weight_each_logged_mean_by_its_steps(tmp_path):
  # Logged every 10 steps, then a last value over 2 steps (steps 191-192) that is far off by noise alone.
  path = tmp_path / "metrics.jsonl"
  steps = [10 * i for i in range(1, 20)] + [192]
  losses = [2.0] * 15 + [1.0] * 4 + [0.9]
  with open(path, "w") as f:
    for step, loss in zip(steps, losses):
      f.write(json.dumps({"step": step, "train_loss": loss}) + "\n")
  # (172.8, 192]: 180 (weight 10), 190 (10), 192 (2); (153.6, 172.8]: 160 (10), 170 (10).
  late = (1.0 * 10 + 1.0 * 10 + 0.9 * 2) / 22
  assert study.train_loss_change(str(tmp_path)) == pytest.approx(1.0 / late - 1)
  assert study.is_converged(study.train_loss_change(str(tmp_path)), "done")
  assert study.train_loss_change(str(tmp_path), weighted=False) == pytest.approx(1.0 / (2.9 / 3) - 1)
  assert not study.is_converged(study.train_loss_change(str(tmp_path), weighted=False), "done")
  # One value per step (the in-memory curves): weighting changes nothing, 0- or 1-based.
  for first in (0, 1):
    curve = {first + i: 1.0 / (1 + i) for i in range(50)}
    assert study.loss_change(curve) == study.loss_change(curve, weighted=False)


def test_both_computations_keeps_the_first_verdict_beside_a_changed_one():
  def build(key):
    return [{"claim": "c", "ours": "x", "verdict": "reproduced" if key == "converged" else "inconclusive"},
            {"claim": "d", "ours": "y", "verdict": "partly"}]
  a, b = study.both_computations(build)
  assert a["verdict"] == "reproduced" and a["ours"].endswith("first judged by: inconclusive]")
  assert b["ours"] == "y"


def _rows(name, errors, converged=True, **extra):
  return [{"variant": name, "eval_error": e / 100, "status": "done", "converged": converged, **extra} for e in errors]


def test_stats_standard_error_and_convergence():
  t = study.stats(_rows("BN", [10.0, 12.0, 14.0]) + _rows("GN", [5.0, 5.0], converged=False), "variant")
  assert t["BN"].mean == pytest.approx(12.0) and t["BN"].se == pytest.approx(2.0 / math.sqrt(3))
  assert t["BN"].converged and not t["GN"].converged and str(t["GN"]).endswith("*")


def test_effect_verdict():
  ok = study.Stat(10.0, 0.1, 3, 0, True)
  assert study.effect_verdict(5.0, 1.0, 1.0, ok, ok) == "reproduced"
  assert study.effect_verdict(0.5, 0.1, 1.0, ok, ok) == "partly"
  assert study.effect_verdict(1.5, 1.0, 1.0, ok, ok) == "not reproduced"  # under 2 s.e.: not a finding
  assert study.effect_verdict(-5.0, 1.0, 1.0, ok, ok) == "not reproduced"
  stuck = study.Stat(10.0, 0.1, 3, 0, False)
  assert study.effect_verdict(5.0, 1.0, 1.0, ok, stuck) == "inconclusive"  # cannot refute, cannot confirm


def _paper_like(converged=True):
  """Synthetic cells shaped like the paper's Figure 1 (BN degrades at small b, GN flat), s.e. 0.2."""
  s = lambda m: study.Stat(m, 0.2, 3, 0, converged)  # noqa: E731
  t = {("BN", b): s(m) for b, m in batch_size.PAPER_BN.items()}
  t.update({("GN", b): s(m) for b, m in batch_size.PAPER_GN.items()})
  t.update({("LN", 32): s(25.3), ("IN", 32): s(28.4)})
  g = {2: s(30.0), 32: t[("BN", 32)]}
  return t, g


def test_batch_size_claims_on_the_papers_numbers():
  t, g = _paper_like()
  verdicts = [row["verdict"] for row in batch_size.claims(t, g, [2, 4, 8, 16, 32])]
  assert verdicts == ["reproduced"] * 6
  t, g = _paper_like(converged=False)
  assert {row["verdict"] for row in batch_size.claims(t, g, [2, 4, 8, 16, 32])} == {"inconclusive"}


def test_batch_size_claims_when_nothing_differs():
  s = study.Stat(20.0, 0.5, 3, 0, True)
  t = {(n, b): s for n in ("BN", "GN", "LN", "IN") for b in (2, 32)}
  rows = batch_size.claims(t, {2: s, 32: s}, [2, 32])
  by = {r["claim"][:3]: r["verdict"] for r in rows}
  assert by["(a)"] == by["(d)"] == by["(e)"] == by["(f)"] == "not reproduced"
  assert by["(b)"] == "not reproduced"  # GN flat, but so is BN: nothing to contrast
  assert by["(c)"] == "not reproduced"  # only BN <= GN holds (within 2 s.e.); GN < LN < IN do not


def test_group_count_sync_bn_remedies_claims():
  s = lambda m, c=True: study.Stat(m, 0.2, 3, 0, c)  # noqa: E731
  gc = group_count.claims({"G=1": s(25.3), "G=2": s(24.0), "G=4": s(24.5), "IN": s(28.4), "BN": s(23.6)},
                          ["G=1", "G=2", "G=4", "IN", "BN"])
  assert [r["verdict"] for r in gc] == ["reproduced", "reproduced", "reproduced"]
  sb = sync_bn.claims({("BN sync", 2): s(24.0), ("BN local", 2): s(34.7), ("BN local", 8): s(24.8),
                       ("GN", 2): s(24.1)}, [2, 8])
  assert [r["verdict"] for r in sb] == ["reproduced", "reproduced", "reproduced"]
  rm = remedies.claims({"BN/b=2": s(34.7), "BRN/b=2": s(30.0), "SyncBN/b=2": s(23.8), "BN/b=32": s(23.6)}, [2])
  assert [r["verdict"] for r in rm] == ["reproduced", "not reproduced", "reproduced", "reproduced"]
  no_gap = remedies.claims({"BN/b=2": s(23.6), "BRN/b=2": s(23.6), "SyncBN/b=2": s(23.6), "BN/b=32": s(23.6)}, [2])
  assert [r["verdict"] for r in no_gap] == ["not reproduced", "inconclusive"] * 2
