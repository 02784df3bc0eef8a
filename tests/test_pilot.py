"""The budget pilot's choice rule (experiments/pilot.py): the smallest candidate budget at which every pilot
run passes the plateau rule with half its tolerances."""
from experiments import _study as S
from experiments import pilot


def _run(epochs, *losses, status="done"):
  return {"epochs": epochs, "status": status, "subset_loss": [{"step": i, "subset_loss": v} for i, v in enumerate(losses)]}


def test_passes_with_margin_uses_half_the_plateau_tolerances():
  assert pilot.passes_with_margin(_run(10, 2.0, 1.009, 1.005, 1.0))        # 0.9% < 1%
  assert not pilot.passes_with_margin(_run(10, 2.0, 1.015, 1.01, 1.0))    # 1.5%: passes the rule, not the margin
  assert S.plateau_converged(_run(10, 2.0, 1.015, 1.01, 1.0)["subset_loss"], diverged=False)
  assert pilot.passes_with_margin(_run(10, 0.02, 0.0110, 0.0105, 0.0100))  # 0.001 nats < 0.0025
  assert not pilot.passes_with_margin(_run(10, 2.0, 1.0, 1.0, 1.0, status="diverged"))


def test_choose_epochs_is_the_smallest_budget_where_every_run_passes():
  rows = [_run(10, 2.0, 1.2, 1.1, 1.0), _run(10, 2.0, 1.0, 1.0, 1.0),
          _run(20, 2.0, 1.005, 1.002, 1.0), _run(20, 2.0, 1.001, 1.0, 1.0),
          _run(40, 2.0, 1.0, 1.0, 1.0), _run(40, 2.0, 1.0, 1.0, 1.0)]
  assert pilot.choose_epochs(rows) == 20
  assert pilot.choose_epochs([r for r in rows if r["epochs"] == 10]) is None
