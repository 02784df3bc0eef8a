"""experiments/_study.py: statistics, verdict rules, the claim table, the convergence rules, and the claims of the
sweep studies (batch_size, group_count, remedies, sync_bn) on synthetic numbers."""
import json
import math

import pytest

from experiments import _study as S
from experiments import batch_size, group_count, remedies, sync_bn


def test_stat_mean_standard_error_and_text():
  s = S.stat([1.0, 2.0, 3.0, None, float("nan")])
  assert (s.mean, s.n, s.ok) == (2.0, 3, True) and s.se == pytest.approx(1.0 / math.sqrt(3))
  assert str(s) == "2 ± 0.577" and not S.stat([]).ok and not S.stat([1.0], converged=False).ok
  assert S.stat([4.0]).text(" pts") == "4 pts (n/a: 1 seed)"
  assert str(S.stat([4.0])) == "4 (n/a: 1 seed)" and str(S.stat([1.0, 2.0], converged=False)).endswith("*")
  d = S.diff(S.stat([1.0, 3.0]), S.stat([0.0, 0.0], converged=False))
  assert (d.mean, d.se, d.converged, d.cells) == (2.0, 1.0, 1, 2) and not d.ok


def test_paired_differences_are_per_seed():
  a = {0: (1.0, True), 1: (2.0, True), 2: (3.5, True)}
  b = {0: (0.0, True), 1: (1.0, False), 3: (9.0, True)}
  p = S.paired(a, b)
  assert p.n == 2 and p.mean == 1.0 and (p.converged, p.cells) == (2, 4) and not p.ok
  assert S.paired(a, a, lambda x, y: x / y).mean == 1.0


def test_verdict_rules():
  st = lambda m, se: S.Stat(m, se, 3)  # noqa: E731
  assert S.effect(1.0)(st(5.0, 1.0)) == "reproduced" and S.effect(1.0)(st(0.5, 0.1)) == "partly"
  assert S.effect(1.0)(st(1.5, 1.0)) == "not reproduced" and S.effect(1.0)(st(-5.0, 1.0)) == "not reproduced"
  assert S.no_worse(1.5)(st(0.5, 0.2)) == "reproduced" and S.no_worse(1.5)(st(3.0, 0.5)) == "not reproduced"
  assert S.no_worse(1.5)(st(1.4, 0.5)) == "inconclusive" and S.no_worse(float("nan"))(st(0.1, 0.1)) == "inconclusive"
  assert S.within(1.0)(st(-0.9, 0.1)) == "reproduced" and S.within(1.0)(st(-3.0, 0.1)) == "not reproduced"
  assert S.at_most()(st(0.1, 0.1)) == "reproduced" and S.at_most(1.0)(st(-3.0, 0.1)) == "reproduced"
  assert S.combine("reproduced", "partly") == "partly" and S.combine("reproduced", "inconclusive") == "inconclusive"
  assert S.combine("not reproduced", "not reproduced") == "not reproduced"


def test_claims_are_gated_by_convergence_and_missing_cells():
  ok, stuck = S.Stat(5.0, 1.0, 3), S.Stat(5.0, 1.0, 3, converged=0)
  assert S.verdict(S.Claim("c", "p", ok, S.effect(1.0))) == "reproduced"
  assert S.verdict(S.Claim("c", "p", stuck, S.effect(1.0))) == "inconclusive"
  assert S.verdict(S.Claim("c", "p", stuck, S.effect(1.0), gate=False)) == "reproduced"
  assert S.verdict(S.Claim("c", "p", {"a": ok, "b": None}, S.effect(1.0))) == "inconclusive"
  assert S.verdict(S.Claim("c", "p", "text", "partly")) == "partly"
  assert S.verdict(S.Claim("c", "p", {"a": ok, "b": S.Stat(0.1, 1.0, 3)}, S.effect(1.0))) == "partly"
  row = S.row(S.Claim("c", "p", {"a": ok, "b": stuck}, S.effect(1.0), unit=" pts", note="n"))
  assert row["converged"] == "1/2" and row["ours"] == "a: 5 ± 1 pts; b: 5 ± 1 pts * (n)"


def test_judge_keeps_the_old_verdict_beside_a_changed_one_and_the_table_round_trips(tmp_path):
  def build(key):
    return [S.Claim("c | d", "p", S.Stat(5.0, 1.0, 3, converged=int(key == "converged")), S.effect(1.0)),
            S.Claim("e", "p", S.Stat(0.0, 1.0, 3), S.effect(1.0))]
  a, b = S.judge(build, "converged_old", "the old rule")
  assert a["verdict"] == "reproduced" and a["ours"].endswith("[under the old convergence rule (the old rule): "
                                                             "inconclusive]")
  assert b["verdict"] == "not reproduced" and "old" not in b["ours"]
  path = S.write_report(str(tmp_path), "T", build, "notes", data={"x": 1.23456789, "convergence_rule": "r"})
  text = open(path).read()
  assert "| Claim | Paper | Ours ± s.e. | Converged cells | Verdict |" in text and "c \\| d" in text
  assert S.read_claim_table(path) == ["reproduced", "not reproduced"]
  assert json.load(open(tmp_path / "results.json"))["x"] == 1.23457
  with pytest.raises(ValueError, match="verdict 'passed'"):
    S.claim_table([{"claim": "c", "paper": "p", "ours": "o", "converged": "n/a", "verdict": "passed"}])


def test_plateau_rule_on_subset_losses():
  rows = lambda *v: [{"subset_loss": x} for x in v]  # noqa: E731
  # the span is the last two tenths: the loss two rows before the end against the last
  assert S.plateau_change(rows(3.0, 1.01, 1.005, 1.0)) == pytest.approx(0.01)
  assert S.plateau_converged(rows(3.0, 1.01, 1.005, 1.0), diverged=False)
  assert not S.plateau_converged(rows(3.0, 1.01, 1.005, 1.0), diverged=True)
  # one flat last tenth does not pass a run still falling over the two (cosine's frozen tail)
  assert not S.plateau_converged(rows(1.1, 1.0, 1.0), diverged=False)
  # the absolute floor: a loss near zero may change by 30% relative if that is < PLATEAU_ABS nats
  assert S.plateau_converged(rows(0.013, 0.011, 0.010), diverged=False)
  assert not S.plateau_converged(rows(0.13, 0.11, 0.10), diverged=False)
  assert S.plateau_change(rows(1.0)) is None and not S.plateau_converged(rows(1.0), False)
  assert S.plateau_change(rows(1.01, 1.0)) == pytest.approx(0.01)  # fewer rows than the span: from the first
  hist = {"subset_loss": rows(1.5, 1.0), "diverged_at": None,
          "curve": [{"step": i, "train_loss": 1.0} for i in range(50)]}
  c = S.convergence(hist)
  assert not c["converged"] and c["loss_change"] == pytest.approx(0.5) and c["converged_old"]


def test_old_window_rule_weights_each_logged_mean_by_its_steps():
  steps = [10 * i for i in range(1, 20)] + [192]
  losses = dict(zip(steps, [2.0] * 15 + [1.0] * 4 + [0.9]))
  late = (1.0 * 10 + 1.0 * 10 + 0.9 * 2) / 22  # (172.8, 192]: 180, 190 (10 steps each), 192 (2)
  assert S.window_change(losses) == pytest.approx(1.0 / late - 1)


def test_cell_convergence_reads_the_subset_losses_or_falls_back_to_the_old_rule(tmp_path):
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for i, loss in enumerate([2.0] * 16 + [1.2, 1.1, 1.0, 0.9], 1):
      f.write(json.dumps({"step": 10 * i, "train_loss": loss}) + "\n")
  old = S.cell_convergence(str(tmp_path), "done")
  assert old["rule"] == "sweep" and not old["converged"] and old["loss_change"] == pytest.approx(1.15 / 0.95 - 1)
  with open(tmp_path / "subset_loss.jsonl", "w") as f:
    for step, v in enumerate((1.5, 1.008, 1.005, 9.9, 1.0)):  # a resumed cell re-measures step 3
      f.write(json.dumps({"step": min(step, 3), "done": min(step, 3) + 1, "subset_loss": v}) + "\n")
  new = S.cell_convergence(str(tmp_path), "done")
  assert new["rule"] == "plateau" and new["converged"] and not new["converged_old"]
  assert not S.cell_convergence(str(tmp_path), "diverged")["converged"]


def _rows(variant, errors, b=32, converged=True, **extra):
  return [{"variant": variant, "batch_size": b, "eval_error": e / 100, "status": "done", "converged": converged,
           "seed": i, **extra} for i, e in enumerate(errors)]


def test_cells_are_eval_error_stats():
  t = S.cells(_rows("BN", [10.0, 12.0, 14.0]) + _rows("GN", [5.0, 5.0], converged=False), "variant")
  assert t["BN"].mean == pytest.approx(12.0) and t["BN"].se == pytest.approx(2.0 / math.sqrt(3))
  assert t["BN"].ok and not t["GN"].ok


def _paper_like(converged=True):
  """Rows shaped like the paper's Figure 1 (BN degrades at small b, GN flat), seed spread 0.2."""
  rows = []
  for norm, errs in (("BN", batch_size.PAPER_BN), ("GN", batch_size.PAPER_GN)):
    for b, m in errs.items():
      rows += _rows(norm, [m - 0.2, m, m + 0.2], b, converged)
  rows += _rows("LN", [25.1, 25.3, 25.5]) + _rows("IN", [28.2, 28.4, 28.6])
  return rows + _rows("ghostBN v=2", [29.8, 30.0, 30.2], converged=converged)


def test_batch_size_claims_on_the_papers_numbers():
  verdicts = [S.verdict(c) for c in batch_size.claims({"rows": _paper_like()})]
  assert verdicts == ["reproduced"] * 6
  assert {S.verdict(c) for c in batch_size.claims({"rows": _paper_like(False)})} == {"inconclusive"}


def test_batch_size_claims_when_nothing_differs():
  rows = [r for n in ("BN", "GN", "LN", "IN", "ghostBN v=2") for b in (2, 32) for r in _rows(n, [19.5, 20, 20.5], b)
          if not (n == "ghostBN v=2" and b == 2)]
  by = {c.claim[:3]: S.verdict(c) for c in batch_size.claims({"rows": rows})}
  assert set(by.values()) == {"not reproduced"} and len(by) == 6


def test_group_count_sync_bn_remedies_claims():
  g = lambda name, m, conv=True, **kw: _rows(name, [m - 0.3, m, m + 0.3], converged=conv, **kw)  # noqa: E731
  gc = group_count.claims({"rows": g("G=1", 25.3) + g("G=2", 24.0) + g("G=4", 24.5) + g("IN", 28.4) + g("BN", 23.6)})
  assert [S.verdict(c) for c in gc] == ["reproduced"] * 3
  sb = sync_bn.claims({"rows": g("BN sync", 24.0, b=2) + g("BN local", 34.7, b=2) + g("BN local", 24.8, b=8)
                       + g("GN", 24.1, b=2)})
  assert [S.verdict(c) for c in sb] == ["reproduced"] * 3
  rm = remedies.claims({"rows": g("BN/b=2", 34.7) + g("BRN/b=2", 30.0) + g("SyncBN/b=2", 23.8) + g("BN/b=32", 23.6)})
  assert [S.verdict(c) for c in rm] == ["reproduced", "not reproduced", "reproduced", "reproduced"]
  flat = remedies.claims({"rows": g("BN/b=2", 23.6) + g("BRN/b=2", 23.6) + g("SyncBN/b=2", 23.6) + g("BN/b=32", 23.6)})
  assert [S.verdict(c) for c in flat] == ["not reproduced", "inconclusive"] * 2
