"""The README's table of claims, built from the committed reports (experiments/results/<study>/report.md).

`python -m experiments.summary` rewrites the block of README.md between BEGIN and END; `table()` returns it.
Per study: its report's title, how many claim rows end in each verdict, and the commits the report says its
cells were trained at. The numbers, rules and caveats stay in the reports; the README quotes nothing else.
"""
from __future__ import annotations

import os
import re

from experiments._study import REPO_ROOT, VERDICTS, read_claim_table

RESULTS = os.path.join(REPO_ROOT, "experiments", "results")
README = os.path.join(REPO_ROOT, "README.md")
BEGIN, END = "<!-- claims:begin (python -m experiments.summary) -->", "<!-- claims:end -->"
# "Trained at commit abc1234", "trained at abc1234", and older reports' "cells trained at\nsweep: commit abc1234".
TRAINED_AT = re.compile(r"(?:[Tt]rained at:?|sweep:) (?:commit )?([0-9a-f]{7,40})\b")


def _study_row(study: str) -> str | None:
  path = os.path.join(RESULTS, study, "report.md")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if "| Claim | Paper |" not in text:
    return None
  title = text.splitlines()[0].lstrip("# ").strip()
  verdicts = read_claim_table(path)
  counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if verdicts.count(v))
  commits = ", ".join(dict.fromkeys(TRAINED_AT.findall(text))) or "not recorded"
  return f"| [{study}](experiments/results/{study}/report.md) | {title} | {counts} | {commits} |"


def table() -> str:
  """The markdown table: one row per study whose report has a claim table."""
  rows = [r for s in sorted(os.listdir(RESULTS)) if os.path.isfile(os.path.join(RESULTS, s, "report.md"))
          for r in [_study_row(s)] if r]
  return "\n".join(["| study | claims (report title) | verdicts of its claim rows | trained at |",
                    "|---|---|---|---|", *rows])


def block(readme: str) -> tuple[int, int]:
  """The character span of README's block (after BEGIN, before END); ValueError if the markers are missing."""
  start, end = readme.find(BEGIN), readme.find(END)
  if start < 0 or end < start:
    raise ValueError(f"README.md has no block between {BEGIN!r} and {END!r}")
  return start + len(BEGIN), end


def main() -> None:
  with open(README, encoding="utf-8") as f:
    readme = f.read()
  start, end = block(readme)
  with open(README, "w", encoding="utf-8") as f:
    f.write(readme[:start] + "\n" + table() + "\n" + readme[end:])
  print(f"README.md: claims table rebuilt from {RESULTS}")


if __name__ == "__main__":
  main()
