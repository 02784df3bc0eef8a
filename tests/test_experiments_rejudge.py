"""Every committed experiments/results/<study>/results.json, judged again by the current code, gives the verdicts
in that study's report.md claim table, in order.

Results measured before the plateau rule (experiments/_study.py) have no fixed-subset losses, so the rule cannot be
applied to them: their run records keep the convergence flag of the rule they were judged by, and re-judging reads
that flag. The rule per study (experiments/_study.OLD_RULES): the sweep studies (batch_size, group_count, sync_bn,
remedies, lr_range): 'sweep'; noisy_bn, lp_norms, landscape: 'strict'; placement, rnn_norms, seed_claims,
train_eval_gap: 'noise_aware'; ics gates on its own 'trains' criterion; theory and invariance train nothing.
A results.json with a `convergence_rule` was judged by the plateau rule, and its records carry that flag.
"""
import importlib
import json
import os

import pytest

from experiments import _study as S

RESULTS = os.path.join(S.REPO_ROOT, "experiments", "results")
# the budget pilots (experiments/pilot.py): their result is a budget, not claim verdicts
PILOTS = sorted(d for d in os.listdir(RESULTS) if d == "pilot" or d.endswith("_pilot"))
STUDIES = sorted(d for d in os.listdir(RESULTS)
                 if os.path.isfile(os.path.join(RESULTS, d, "results.json")) and d not in PILOTS)


def test_every_study_with_results_is_rejudged():
  modules = {f[:-3] for f in os.listdir(os.path.join(S.REPO_ROOT, "experiments")) if not f.startswith("_")
             and f.endswith(".py")}
  assert set(STUDIES) <= modules and len(STUDIES) >= 14


@pytest.mark.parametrize("study", STUDIES)
def test_committed_results_give_the_reported_verdicts(study):
  module = importlib.import_module(f"experiments.{study}")
  with open(os.path.join(RESULTS, study, "results.json")) as f:
    data = json.load(f)
  got = [S.verdict(c) for c in module.claims(data)]
  assert got == S.read_claim_table(os.path.join(RESULTS, study, "report.md"))


@pytest.mark.parametrize("name", PILOTS)
def test_committed_pilot_gives_the_reported_budget(name):
  from experiments import pilot
  with open(os.path.join(RESULTS, name, "results.json")) as f:
    chosen = pilot.choose_epochs(json.load(f)["rows"])
  report = open(os.path.join(RESULTS, name, "report.md")).read()
  assert (f"**Chosen budget: {chosen} epochs**" if chosen is not None else "**No candidate budget passes**") in report
