"""The shared report writer of the claim studies: one table (claim | paper | ours | verdict), notes, plots.

    write_report(workdir, "Santurkar et al. 2018: theory", rows=[
        {"claim": "Thm 4.1 bound holds", "paper": "always", "ours": "800/800 instances", "verdict": "reproduced"}],
        notes="...", figures=[path_to_png])
    fig, ax = new_figure(); ax.plot(...); save_figure(fig, workdir, "ics.png")

Verdicts: reproduced / partly / not reproduced / inconclusive. Be honest: the verdict says what the
numbers show at the preset that was run, which the report states.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive")
_COLUMNS = ("claim", "paper", "ours", "verdict")


def _cell(value: Any) -> str:
  return str(value).replace("|", "\\|").replace("\n", " ")


def verdict_of(holds) -> str:
  """'reproduced' if every check in `holds` holds, 'partly' if some do, else 'not reproduced'."""
  holds = [bool(h) for h in holds]
  if all(holds):
    return "reproduced"
  return "partly" if any(holds) else "not reproduced"


def format_table(rows: Sequence[dict]) -> str:
  """A markdown table of `rows` (dicts with keys claim, paper, ours, verdict; extra keys are refused)."""
  lines = ["| Claim | Paper | Ours | Verdict |", "|---|---|---|---|"]
  for i, row in enumerate(rows):
    missing = [k for k in _COLUMNS if k not in row]
    extra = [k for k in row if k not in _COLUMNS]
    if missing or extra:
      raise ValueError(f"report row {i}: needs exactly the keys {_COLUMNS}; missing {missing}, unknown {extra}")
    if row["verdict"] not in VERDICTS:
      raise ValueError(f"report row {i}: verdict {row['verdict']!r} is not one of {', '.join(VERDICTS)}")
    verdict = f"**{row['verdict']}**"
    lines.append(f"| {_cell(row['claim'])} | {_cell(row['paper'])} | {_cell(row['ours'])} | {verdict} |")
  return "\n".join(lines)


def write_report(workdir: str, title: str, rows: Sequence[dict], notes: str = "",
                 figures: Sequence[str] = (), *, data: dict | None = None) -> str:
  """Writes `workdir/report.md` (title, the claim table, notes, the figures) and returns its path.

  Figures are linked relative to `workdir` (they should live inside it). With `data`, also writes
  `workdir/results.json` (the numbers behind the table) and links it.
  """
  os.makedirs(workdir, exist_ok=True)
  parts = [f"# {title}", "", format_table(rows), ""]
  if notes:
    parts += [notes.strip(), ""]
  for fig in figures:
    rel = os.path.relpath(fig, workdir)
    if not os.path.isfile(fig):
      raise FileNotFoundError(f"write_report: figure {fig!r} does not exist")
    parts += [f"![{os.path.splitext(os.path.basename(fig))[0]}]({rel})", ""]
  if data is not None:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(_rounded(data), f, separators=(",", ":"), sort_keys=True, default=_jsonable)
    parts += ["Numbers: [results.json](results.json)", ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(parts))
  return path


def _rounded(x, digits: int = 6):
  """Floats to `digits` significant digits (results.json stays small and diffable)."""
  if isinstance(x, float):
    return float(f"{x:.{digits}g}") if x == x and abs(x) != float("inf") else x
  if isinstance(x, dict):
    return {k: _rounded(v, digits) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_rounded(v, digits) for v in x]
  if hasattr(x, "tolist") and not isinstance(x, str):
    return _rounded(x.tolist(), digits)
  return x


def _jsonable(x):
  try:
    import numpy as np
    if isinstance(x, np.ndarray):
      return x.tolist()
    if isinstance(x, np.generic):
      return x.item()
  except ImportError:  # pragma: no cover
    pass
  if hasattr(x, "tolist"):
    return x.tolist()
  return str(x)


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 3.6)):
  """(fig, axes) on the Agg backend; axes is a single Axes when ncols = nrows = 1."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=True)
  return fig, axes


def label_axes(ax, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
               legend: float | None = 8) -> None:
  """Axis labels, title, a light grid and (unless `legend` is None) a legend in that font size."""
  if xlabel:
    ax.set_xlabel(xlabel)
  if ylabel:
    ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  if legend is not None:
    ax.legend(fontsize=legend)


def save_figure(fig, workdir: str, name: str) -> str:
  import matplotlib.pyplot as plt
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def fmt(x: float, digits: int = 3) -> str:
  """Compact number: 3 significant digits, scientific outside [1e-3, 1e4]."""
  x = float(x)
  if x != x:
    return "nan"
  if x == 0:
    return "0"
  if 1e-3 <= abs(x) < 1e4:
    return f"{x:.{digits}g}"
  return f"{x:.{max(digits - 1, 1)}e}"
