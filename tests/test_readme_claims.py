"""README.md's claims table is the one experiments.summary builds from the committed reports (rebuild it with
`python -m experiments.summary` after a report changes), and it counts every claim row of every report."""
import os

from experiments import _study as S
from experiments import summary


def test_readme_claims_table_is_built_from_the_current_reports():
  with open(summary.README, encoding="utf-8") as f:
    readme = f.read()
  start, end = summary.block(readme)
  assert readme[start:end].strip() == summary.table(), "README.md's claims table is stale: python -m experiments.summary"


def test_each_study_row_counts_its_reports_verdicts():
  rows = {line.split("]")[0].lstrip("| ["): line for line in summary.table().splitlines()[2:]}
  for study, line in rows.items():
    verdicts = S.read_claim_table(os.path.join(summary.RESULTS, study, "report.md"))
    counted = sum(int(part.split()[0]) for part in line.split(" | ")[2].split(", "))
    assert counted == len(verdicts) > 0, study
