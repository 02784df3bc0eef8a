"""What every study shares: statistics, the convergence rule, the verdict rules, provenance, the report,
the error-bar plot, the sweep runner and the entry point.

A study module defines
    TITLE
    run(config, workdir, log) -> data     trains or measures; data is JSON-able (it becomes results.json)
    claims(data) -> [Claim]               the table of claims, read from data alone
    report(data, workdir) -> path         notes and figures; calls write_report(workdir, TITLE, claims(data), ...)
and ends with `if __name__ == "__main__": main(__spec__.name)`, which gives
    python -m experiments.NAME --preset=smoke|cpu|gpu --workdir=DIR [--report_only]
(or --config=configs/experiments/NAME.py:PRESET with --config.key=value overrides). --report_only rebuilds
report.md from DIR/results.json.

Statistics: a Stat is the mean ± s.e. (sample std / sqrt(n)) of per-seed numbers, and counts the cells
(one setting, all its seeds) behind it and how many of them converged. A difference of two Stats has the
root sum of squares of their s.e. A difference is a finding only beyond 2 s.e.

Convergence (committed before any result it judges): a run has converged when it did not diverge and its
training loss over a fixed training subset (normlab.analysis.plateau: up to SUBSET_EXAMPLES examples,
the parameters at the end of each tenth of training) changed by less than PLATEAU_TOL (relative), or by
less than PLATEAU_ABS nats, over the last PLATEAU_SPAN tenths (from the end of the eighth tenth to the end
of training). That loss is deterministic given the parameters, so the rule measures training, not
minibatch noise. The span is two tenths, not one: under a cosine schedule the last tenth runs at <= 2.5%
of the peak lr, so a one-tenth span passes a run that is still improving; the absolute floor keeps a loss
near zero from failing on a relative change of a negligible amount. A cell has converged when all its runs have; a claim
that uses a cell that did not converge is inconclusive (`Claim.gate`).
Results measured before that rule have no subset losses; their records keep the flag of the rule they
were judged by (`OLD_RULES`), and a new run records the old train-loss-window rule too (`converged_old`),
so a report shows the old verdict beside any new one it changes.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import time
from typing import Any, Callable, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("smoke", "cpu", "gpu")
VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive")
PLATEAU_TOL = 0.02       # relative change of the fixed-subset loss over the last PLATEAU_SPAN tenths
PLATEAU_ABS = 0.005      # ... or its absolute change, in nats
PLATEAU_SPAN = 2         # tenths: from the end of the eighth tenth to the end of training
SUBSET_EXAMPLES = 5000   # the fixed training subset (all of the training set when smaller)
OLD_RULES = {
    "converged": "the rule the results were judged by",
    "sweep": "train-loss windows: the mean logged train loss over the last tenth of the steps within 2% of the "
             "tenth before, each logged value weighted by the steps it averages",
    "strict": "train-loss windows on the per-step train loss: the last tenth's mean within 2% of the tenth before",
    "noise_aware": "train-loss windows, noise-aware: the last two tenths' mean per-step train losses within 2% or "
                   "within 2 s.e. of each other",
}


# ----------------------------------------------------------------------------- statistics

@dataclasses.dataclass(frozen=True)
class Stat:
  """Mean ± s.e. over n per-seed numbers; `converged` of the `cells` behind it passed the convergence rule."""
  mean: float
  se: float
  n: int
  converged: int = 1
  cells: int = 1
  diverged: int = 0

  @property
  def ok(self) -> bool:
    return self.n > 0 and self.converged == self.cells

  def text(self, unit: str = "") -> str:
    if self.n == 0:
      return "diverged" if self.diverged else "missing"
    txt = f"{fmt(self.mean)} ± {fmt(self.se)}{unit}" if self.n > 1 else f"{fmt(self.mean)}{unit} (n/a: 1 seed)"
    return txt + (f" ({self.diverged} diverged)" if self.diverged else "") + ("" if self.ok else " *")

  __str__ = text


def stat(values, converged: bool = True, diverged: int = 0) -> Stat:
  """The Stat of one cell's per-seed numbers (None and NaN count as missing)."""
  v = [float(x) for x in values if x is not None and x == x]
  m = sum(v) / len(v) if v else float("nan")
  sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
  return Stat(m, sd / math.sqrt(len(v)) if v else float("nan"), len(v), int(bool(converged)), 1, int(diverged))


def combine_cells(value: float, se: float, n: int, *stats: Stat) -> Stat:
  """A derived number over `stats`' cells (their convergence counts add up)."""
  return Stat(value, se, n, sum(s.converged for s in stats), sum(s.cells for s in stats))


def diff(a: Stat, b: Stat) -> Stat:
  """a - b, s.e. the root sum of squares."""
  return combine_cells(a.mean - b.mean, math.hypot(a.se, b.se), min(a.n, b.n), a, b)


def over_seeds(values: dict, per_seed: int = 1) -> Stat:
  """The Stat of {seed: (value, converged)}; each seed counts as `per_seed` cells."""
  s = stat([v for v, _ in values.values()])
  ok = sum(bool(c) for _, c in values.values())
  return dataclasses.replace(s, converged=per_seed * ok, cells=per_seed * len(values))


def paired(a: dict, b: dict, fn: Callable = lambda x, y: x - y) -> Stat:
  """Per-seed fn(a value, b value) over the seeds both {seed: (value, converged)} have; a seed's two runs
  count as two cells, converged when both are."""
  return over_seeds({k: (fn(a[k][0], b[k][0]), a[k][1] and b[k][1]) for k in sorted(set(a) & set(b))}, 2)


def runs_stat(runs: Sequence[dict], f: Callable[[dict], float], key: str = "converged") -> Stat:
  """The Stat of f(run record) over a cell's runs; converged when every run's `key` is true."""
  return stat([f(r) for r in runs], all(r.get(key) for r in runs), sum(r.get("diverged_at") is not None
                                                                        for r in runs))


def by_seed(runs: Sequence[dict], f: Callable[[dict], float], key: str = "converged") -> dict:
  """{seed: (f(run), converged)} for `paired`."""
  return {int(r["seed"]): (f(r), bool(r.get(key))) for r in runs}


# ----------------------------------------------------------------------------- verdict rules

def effect(floor: float) -> Callable[[Stat], str]:
  """A claimed positive effect d: reproduced if d > 2 s.e. and d >= floor, partly if d > 2 s.e. below the
  floor, not reproduced otherwise."""
  def rule(d: Stat) -> str:
    if d.mean > 2 * d.se:
      return "reproduced" if d.mean >= floor else "partly"
    return "not reproduced"
  return rule


def no_worse(tol: float) -> Callable[[Stat], str]:
  """'X does as well as Y', d = Y - X: reproduced if d + 2 s.e. <= tol, not reproduced if d - 2 s.e. > tol,
  else inconclusive (the seeds cannot tell); inconclusive without a positive tol."""
  def rule(d: Stat) -> str:
    if not tol > 0:
      return "inconclusive"
    if d.mean + 2 * d.se <= tol:
      return "reproduced"
    return "not reproduced" if d.mean - 2 * d.se > tol else "inconclusive"
  return rule


def within(tol: float) -> Callable[[Stat], str]:
  """'X is comparable to Y', d = X - Y: reproduced if |d| <= max(tol, 2 s.e.)."""
  return lambda d: "reproduced" if abs(d.mean) <= max(tol, 2 * d.se) else "not reproduced"


def at_most(tol: float = 0.0) -> Callable[[Stat], str]:
  """'X is not worse than Y (by more than tol)', d = X - Y: reproduced if d <= max(tol, 2 s.e.)."""
  return lambda d: "reproduced" if d.mean <= max(tol, 2 * d.se) else "not reproduced"


def combine(*verdicts: str) -> str:
  """Parts of one claim: reproduced if all are, inconclusive if any is, partly if any part holds."""
  if all(v == "reproduced" for v in verdicts):
    return "reproduced"
  if any(v == "inconclusive" for v in verdicts):
    return "inconclusive"
  return "partly" if any(v in ("reproduced", "partly") for v in verdicts) else "not reproduced"


# ----------------------------------------------------------------------------- claims, verdicts, the table

@dataclasses.dataclass
class Claim:
  """One row: the claim, the paper's figure, our measurement (a Stat, {part: Stat}, or text) and the rule
  (a function of the measurement, or a fixed verdict for exact checks). With `gate`, a measurement whose
  cells did not all converge is inconclusive."""
  claim: str
  paper: str
  ours: Any
  rule: Callable | str
  note: str = ""
  unit: str = ""
  gate: bool = True


def verdict(c: Claim) -> str:
  """The claim's verdict: inconclusive if a measurement is missing or (with `gate`) a cell did not converge,
  else the rule's (over every part of a {part: Stat} measurement, `combine`d)."""
  parts = list(c.ours.values()) if isinstance(c.ours, dict) else [c.ours] if not isinstance(c.ours, str) else []
  if any(s is None or s.n == 0 or s.mean != s.mean for s in parts) or (c.gate and not all(s.ok for s in parts)):
    return "inconclusive"
  return c.rule if isinstance(c.rule, str) else combine(*(c.rule(s) for s in parts))


def _converged_cells(ours) -> str:
  parts = [s for s in (ours.values() if isinstance(ours, dict) else [ours]) if isinstance(s, Stat)]
  return f"{sum(s.converged for s in parts)}/{sum(s.cells for s in parts)}" if parts else "n/a"


def row(c: Claim) -> dict:
  if isinstance(c.ours, dict):
    ours = "; ".join(f"{k}: {s.text(c.unit) if s is not None else 'missing'}" for k, s in c.ours.items())
  else:
    ours = c.ours.text(c.unit) if isinstance(c.ours, Stat) else str(c.ours)
  return {"claim": c.claim, "paper": c.paper, "ours": ours + (f" ({c.note})" if c.note else ""),
          "converged": _converged_cells(c.ours), "verdict": verdict(c)}


def judge(build: Callable[[str], list], old_key: str | None = None, old_rule: str = "") -> list[dict]:
  """The rows of `build("converged")`; with `old_key`, the verdict of `build(old_key)` (the same claims judged
  by the old convergence flag) is kept beside every verdict it differs from."""
  rows = [row(c) for c in build("converged")]
  if old_key:
    for r, c in zip(rows, build(old_key)):
      if verdict(c) != r["verdict"]:
        r["ours"] += f" [under the old convergence rule ({old_rule}): {verdict(c)}]"
  return rows


def _cell(value: Any) -> str:
  return str(value).replace("|", "\\|").replace("\n", " ")


def claim_table(rows: Sequence[dict]) -> str:
  lines = ["| Claim | Paper | Ours ± s.e. | Converged cells | Verdict |", "|---|---|---|---|---|"]
  for r in rows:
    if r["verdict"] not in VERDICTS:
      raise ValueError(f"verdict {r['verdict']!r} is not one of {', '.join(VERDICTS)}")
    lines.append(f"| {_cell(r['claim'])} | {_cell(r['paper'])} | {_cell(r['ours'])} | {r['converged']} | "
                 f"**{r['verdict']}** |")
  return "\n".join(lines)


def read_claim_table(path: str) -> list[str]:
  """The verdicts of a report.md's claim table, in order (either table layout)."""
  lines = open(path).read().splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("| Claim | Paper |"))
  out = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    out.append(line.rstrip().rstrip("|").rsplit("|", 1)[-1].strip().strip("*"))
  return out


# ----------------------------------------------------------------------------- convergence

def _plateau_ends(rows: Sequence[dict]) -> tuple[float, float] | None:
  """The fixed-subset losses PLATEAU_SPAN tenths before the end and at the end (SubsetLoss rows)."""
  if len(rows) < 2:
    return None
  before, last = rows[-1 - min(PLATEAU_SPAN, len(rows) - 1)]["subset_loss"], rows[-1]["subset_loss"]
  return (before, last) if last > 0 and math.isfinite(before) else None


def plateau_change(rows: Sequence[dict]) -> float | None:
  """(loss PLATEAU_SPAN tenths before the end) / (loss at the end) - 1 of SubsetLoss rows."""
  ends = _plateau_ends(rows)
  return ends[0] / ends[1] - 1.0 if ends else None


def plateau_converged(rows: Sequence[dict], diverged: bool) -> bool:
  """The plateau rule: not diverged, and the loss changed by < PLATEAU_TOL (relative) or < PLATEAU_ABS
  (nats) over the last PLATEAU_SPAN tenths."""
  ends = _plateau_ends(rows)
  if diverged or ends is None:
    return False
  return abs(ends[0] / ends[1] - 1.0) < PLATEAU_TOL or abs(ends[0] - ends[1]) < PLATEAU_ABS


def window_change(losses: dict) -> float | None:
  """The old rule's measure on {step (1-based): train loss averaged since the previous logged step}:
  mean over steps (0.8T, 0.9T] / mean over (0.9T, T] - 1, each value weighted by the steps it averages."""
  if not losses:
    return None
  total, weight, prev = max(losses), {}, 0
  for s in sorted(losses):
    weight[s], prev = max(s - prev, 1), s
  late = [s for s in losses if s > 0.9 * total]
  before = [s for s in losses if 0.8 * total < s <= 0.9 * total]
  if not late or not before:
    return None
  mean = lambda steps: sum(losses[s] * weight[s] for s in steps) / sum(weight[s] for s in steps)  # noqa: E731
  return mean(before) / mean(late) - 1.0 if mean(late) > 0 else None


def converged_by(change: float | None, diverged: bool) -> bool:
  return not diverged and change is not None and abs(change) < PLATEAU_TOL


def convergence(history: dict) -> dict:
  """A run's convergence fields: 'converged' by the plateau rule on its subset losses, 'converged_old' by the
  old train-loss-window rule on its per-step curve, and both changes."""
  div = history.get("diverged_at") is not None
  subset = history.get("subset_loss", [])
  old = window_change({int(r["step"]) + 1: float(r["train_loss"]) for r in history["curve"]})
  return {"loss_change": plateau_change(subset), "converged": plateau_converged(subset, div), "train_loss_change": old,
          "converged_old": converged_by(old, div)}


def rule_note(data: dict) -> str:
  """What judged the runs of `data`: the plateau rule, or (older results) the rule named in data."""
  rule = data.get("convergence_rule")
  if rule is None:
    return (f"Convergence: {OLD_RULES[data.get('old_rule', 'converged')]} (these results hold no fixed-subset losses, "
            "so the plateau rule could not judge them).")
  return (f"Convergence: {rule}; a claim whose cells (marked *) did not all converge is inconclusive, and the verdict "
          f"under the old rule ({OLD_RULES['strict']}) is kept beside any it changes.")


PLATEAU_RULE = (f"the fixed-subset training loss (up to {SUBSET_EXAMPLES} training examples) changed by less than "
                f"{PLATEAU_TOL:.0%} or {PLATEAU_ABS} nats over the last {PLATEAU_SPAN} tenths of training")


# ----------------------------------------------------------------------------- provenance

def commit_line(event: str) -> str:
  """'commit abc1234 (clean tree), started 2026-12-01 10:00 UTC'."""
  from normlab.provenance import git_commit
  sha, dirty = git_commit(REPO_ROOT) or ("unknown", "")
  when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  return f"commit {sha} ({'uncommitted changes: ' + dirty if dirty else 'clean tree'}), {event} {when}"


class Provenance:
  """Started when the study starts (the commit it trains at); `finish()` -> {'trained_at', 'wall_s'}."""

  def __init__(self):
    self.t0, self.trained_at = time.time(), commit_line("started")

  def finish(self) -> dict:
    return {"trained_at": self.trained_at, "wall_s": round(time.time() - self.t0, 1)}


def per_norm_notes(data: dict, text: str, cols: Sequence[str], lines: Sequence[str]) -> str:
  """A report's notes: `text`, the shared lines (mean ± s.e. over seeds, * = a cell not all converged, the
  convergence rule, provenance), then a table with one row per norm (`lines`) and columns `cols`."""
  return (f"{text.strip()} Mean ± s.e. over seeds; * marks a cell whose runs did not all converge. "
          f"{rule_note(data)}\n{provenance_note(data)}\n\n| norm | {' | '.join(cols)} |\n|---|{'---|' * len(cols)}\n"
          + "\n".join(lines))


def provenance_note(data: dict) -> str:
  p = data.get("provenance")
  trained = (f"Trained at {p['trained_at']}; wall time {p['wall_s']:.0f} s." if p else
             "Trained at: not recorded (results from before provenance was kept).")
  return f"{trained} Report written at {commit_line('written')}."


# ----------------------------------------------------------------------------- report, plot, tables

def fmt(x: float, digits: int = 3) -> str:
  """3 significant digits, scientific outside [1e-3, 1e4]."""
  x = float(x)
  if x != x or x == 0:
    return "nan" if x != x else "0"
  return f"{x:.{digits}g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.{max(digits - 1, 1)}e}"


def write_report(workdir: str, title: str, claims: Callable[[str], list], notes: str, figures=(),
                 data: dict | None = None) -> str:
  """workdir/report.md: the title, the claim table (`judge` of claims(convergence key); results judged by the
  plateau rule show the old rule's verdict beside any it changes), the notes and the figures; with `data`,
  workdir/results.json too. Returns the report's path."""
  os.makedirs(workdir, exist_ok=True)
  new = bool(data and data.get("convergence_rule"))
  rows = judge(claims, "converged_old" if new else None, OLD_RULES["strict"])
  smoke = (data or {}).get("preset", (data or {}).get("config", {}).get("preset")) == "smoke"
  parts = [f"# {title}", ""] + (["Smoke preset: a check that the study runs; its numbers are not findings.", ""]
                                if smoke else []) + [claim_table(rows), "", notes.strip(), ""]
  parts += [f"![{os.path.splitext(os.path.basename(f))[0]}]({os.path.relpath(f, workdir)})\n" for f in figures]
  if data is not None:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(_rounded(data), f, separators=(",", ":"), sort_keys=True, default=_jsonable)
    parts.append("Numbers: [results.json](results.json)\n")
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(parts))
  return path


def _rounded(x, digits: int = 6):
  if isinstance(x, float):
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x
  if isinstance(x, dict):
    return {str(k): _rounded(v, digits) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_rounded(v, digits) for v in x]
  return _rounded(x.tolist(), digits) if hasattr(x, "tolist") and not isinstance(x, str) else x


def _jsonable(x):
  return x.tolist() if hasattr(x, "tolist") else dataclasses.asdict(x) if dataclasses.is_dataclass(x) else str(x)


def errorbar_plot(workdir: str, name: str, panels: Sequence[dict], size=(4.4, 3.4), ncols: int = 4) -> str:
  """workdir/name: one axes per panel, each {'title', 'xlabel', 'ylabel', 'series': {label: (xs, [Stat])},
  optional 'logx' (base), 'logy', 'band': (label, Stat) drawn as mean ± s.e.}. String xs are categories.
  Points whose cells did not converge are drawn hollow. At most `ncols` panels a row."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cols, rows = min(ncols, len(panels)), -(-len(panels) // ncols)
  fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
  for ax in axes.ravel()[len(panels):]:
    ax.set_visible(False)
  for ax, p in zip(axes.ravel(), panels):
    for i, (label, (xs, stats)) in enumerate(p["series"].items()):
      pts = [(x, s) for x, s in zip(xs, stats) if s is not None and s.n]
      if not pts:
        continue
      cats = isinstance(pts[0][0], str)
      x = [xs.index(a) + 0.08 * i if cats else a for a, _ in pts]
      ax.errorbar(x, [s.mean for _, s in pts], yerr=[s.se for _, s in pts], color=f"C{i}", marker="o", capsize=3,
                  label=label, ls="none" if cats else "-")
      bad = [(xx, s) for xx, (_, s) in zip(x, pts) if not s.ok]
      ax.scatter([b[0] for b in bad], [b[1].mean for b in bad], s=60, facecolors="white", edgecolors=f"C{i}",
                 zorder=3, label="not converged" if bad and i == 0 else None)
      if cats:
        ax.set_xticks(range(len(xs)), xs, rotation=30, fontsize=7)
    if p.get("band") and p["band"][1] is not None and p["band"][1].n:
      b = p["band"][1]
      ax.axhspan(b.mean - b.se, b.mean + b.se, color="gray", alpha=0.3, label=p["band"][0])
    if p.get("logx"):
      ax.set_xscale("log", base=p["logx"])
    if p.get("logy"):
      ax.set_yscale("log")
    ax.set(title=p.get("title", ""), xlabel=p.get("xlabel", ""), ylabel=p.get("ylabel", ""))
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_csv(workdir: str, rows: Sequence[dict], first: Sequence[str] = ()) -> str:
  """workdir/results.csv, one row per run: the `first` columns, then the others in first-seen order; nested
  dicts one level flattened ('train_mode' -> 'train_mode_accuracy'), lists left to results.json."""
  import csv
  flat = []
  for r in rows:
    out = {}
    for k, v in r.items():
      if isinstance(v, dict):
        out.update({f"{k}_{kk}": vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
      elif not isinstance(v, list):
        out[k] = v
    flat.append(out)
  cols = list(dict.fromkeys(list(first) + [k for r in flat for k in r]))
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "results.csv")
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    w.writerows(flat)
  return path


# ----------------------------------------------------------------------------- the sweep studies' runs

SWEEP_COLUMNS = ("variant", "batch_size", "global_batch", "num_devices", "devices", "seed", "eval_error", "final_train_loss",
                 "converged", "loss_change", "steps", "learning_rate", "status")


def _jsonl(path: str) -> list[dict]:
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def cell_convergence(cell_dir: str, status: str | None) -> dict:
  """A sweep cell's convergence: the plateau rule on cell_dir/subset_loss.jsonl (SubsetLoss rows) where the
  sweep measured it, else the old rule on the train losses of metrics.jsonl ('rule': which)."""
  by_step = {int(r["step"]): r for r in _jsonl(os.path.join(cell_dir, "subset_loss.jsonl"))}  # a resume rewrites
  subset = [by_step[s] for s in sorted(by_step)]
  losses = {int(r["step"]): float(r["train_loss"]) for r in _jsonl(os.path.join(cell_dir, "metrics.jsonl"))
            if "train_loss" in r and "step" in r}
  old = window_change(losses)
  change = plateau_change(subset) if subset else old
  converged = plateau_converged(subset, status != "done") if subset else converged_by(old, status != "done")
  return {"loss_change": change, "converged": converged,
          "rule": "plateau" if subset else "sweep", "train_loss_change": old,
          "converged_old": converged_by(old, status != "done")}


def run_sweeps(config, workdir: str, log=print) -> dict:
  """Runs every sweep of config.sweeps ({subdir: configs/sweeps name}) at config.preset into workdir/<subdir>
  (resumable); returns data {'rows': one per run, 'sweeps': {subdir: name}, 'preset', 'provenance'}."""
  from normlab.sweep import load_config_file, run_sweep
  from normlab.sweep.report import collect_results
  quiet_logs()
  prov, rows, sweeps = Provenance(), [], config.sweeps.to_dict()
  for sub, name in sweeps.items():
    sweep = load_config_file(os.path.join(REPO_ROOT, "configs", "sweeps", f"{name}.py:{config.preset}"))
    if config.get("budget_scale", 1.0) != 1.0:
      sweep.budget_examples = int(sweep.budget_examples * config.budget_scale)
    cells = run_sweep(sweep, os.path.join(workdir, sub), log=log)
    extra = [k for k in sweep.get("extra_columns", ()) if k not in cells[0].params]
    for r, c in zip(collect_results(cells, os.path.join(workdir, sub), extra), cells):
      devices = int(c.config.num_devices) or 1
      r.update(sweep=sub, num_devices=devices, global_batch=int(c.config.batch_size),
               batch_size=int(c.config.batch_size) // devices, learning_rate=float(c.config.learning_rate),
               **cell_convergence(os.path.join(workdir, sub, "cells", c.id), r.get("status")))
      rows.append(r)
  rules = {r["rule"] for r in rows if "rule" in r}
  out = {"preset": config.preset, "sweeps": sweeps, "rows": rows, "provenance": prov.finish(),
         "budget_scale": config.get("budget_scale", 1.0)}
  out["convergence_rule"] = PLATEAU_RULE if rules == {"plateau"} else None
  if out["convergence_rule"] is None:
    out["old_rule"] = "sweep"
  return out


def cells(rows: Sequence[dict], *keys: str, conv_key: str = "converged") -> dict:
  """{key values (a tuple, or the value for one key): Stat of eval error (%) over the seeds}."""
  groups: dict = {}
  for r in rows:
    k = tuple(r.get(key) for key in keys)
    groups.setdefault(k if len(keys) > 1 else k[0], []).append(r)
  return {k: stat([100 * r["eval_error"] for r in rs if r.get("eval_error") is not None],
                  all(r.get(conv_key) for r in rs), sum(r.get("status") == "diverged" for r in rs))
          for k, rs in groups.items()}


def sweep_note(data: dict) -> str:
  data.setdefault("old_rule", "sweep")
  rows = data["rows"]
  done = [r for r in rows if r.get("status") in ("done", "diverged")]
  seeds = len({r.get("seed") for r in rows})
  scale = data.get("budget_scale", 1.0)
  return (f"Preset `{data['preset']}`" + (f" at {scale:g} x its budget" if scale != 1.0 else "")
          + f", sweeps {data.get('sweeps', 'of configs/sweeps/')}; {seeds} seed(s) per cell, "
          f"mean ± s.e. over seeds. {sum(bool(r.get('converged')) for r in done)}/{len(done)} finished runs converged"
          + (f"; {len(rows) - len(done)} had not finished (missing)" if len(done) < len(rows) else "") + ". "
          + rule_note(data) + "\n\n" + provenance_note(data))


def quiet_logs() -> None:
  import logging
  for name in ("absl", "orbax"):
    logging.getLogger(name).setLevel(logging.WARNING)


# ----------------------------------------------------------------------------- the in-memory studies' runs

def tail_mean(curve: Sequence[dict], key: str, frac: float = 0.1) -> float:
  """Mean of `key` over the last `frac` of a per-step curve (at least one step)."""
  k = max(1, int(round(len(curve) * frac)))
  return float(sum(c[key] for c in curve[-k:]) / k) if curve else float("nan")


def train_record(c, log=print, measure_every: int = 0, measure: Callable | None = None,
                 **kwargs) -> tuple[dict, Any, dict]:
  """Trains config `c` (normlab.analysis.training.train_with_eval when measure_every and no `measure`, else
  train, with `measure`) and returns
  (record, run, history): the record has seed, steps, diverged_at, test_acc (the last measurement),
  final_train_acc / final_train_loss (means over the last tenth of steps), early_loss (mean train loss over
  the first half), the convergence fields and the subset losses."""
  from normlab.analysis import training
  if measure_every and measure is None:
    hist, run = training.train_with_eval(c, measure_every=measure_every, log=log, **kwargs)
  else:
    hist, run = training.train(c, measure, measure_every=measure_every, log=log, **kwargs)
  curve, m = hist["curve"], hist["measured"]
  rec = {"seed": int(c.seed), "steps": len(curve), "diverged_at": hist["diverged_at"],
         "test_acc": m[-1]["test_accuracy"] if m and "test_accuracy" in m[-1] else float("nan"),
         "final_train_acc": tail_mean(curve, "train_accuracy"), "final_train_loss": tail_mean(curve, "train_loss"),
         "early_loss": tail_mean(curve[: max(1, len(curve) // 2)], "train_loss", 1.0), **convergence(hist),
         "subset_loss": [r["subset_loss"] for r in hist["subset_loss"]]}
  return rec, run, hist


def train_each_norm(config, finish: Callable, log=print) -> dict:
  """For every seed in config.seeds and norm in config.norms: config.train with that norm (and
  config.norm_options[norm]) and seed, measured every config.measure_every steps by
  normlab.analysis.probes.distribution_probe(config); `finish(c, run, hist, record)` adds to each record.
  Returns {norm: [record per seed]}, each record with its thinned per-step train loss ('curve')."""
  from normlab.analysis.probes import cfg_copy, distribution_probe
  out: dict = {}
  for seed in config.seeds:
    for norm in config.norms:
      c = cfg_copy(config.train, norm=norm, seed=int(seed))
      if norm in (config.get("norm_options") or {}):
        c.norm_options = config.norm_options[norm].copy_and_resolve_references()
      log(f"seed {seed} norm={norm}: {c.model} on {c.dataset}, lr={c.learning_rate}, {c.num_steps} steps")
      rec, run, hist = train_record(c, log, measure_every=int(config.measure_every), extra=distribution_probe(config))
      rec["curve"] = [r["train_loss"] for r in hist["curve"]][:: max(1, len(hist["curve"]) // 200)]
      rec.update(finish(c, run, hist, rec))
      out.setdefault(norm, []).append(rec)
  return out


def seeds_of(summary: dict, norm: str, key: str, conv_key: str = "converged") -> dict:
  """{seed: (value, converged)} of one norm's per-seed summary rows, for `paired`."""
  return by_seed(summary.get(norm, []), lambda r: r[key], conv_key)


def curve_stats(curves: Sequence[Sequence[float]]) -> tuple[list, list]:
  """(point index, [Stat over seeds]) of per-seed curves of equal thinning (cut to the shortest)."""
  n = min(len(c) for c in curves)
  return list(range(n)), [stat([c[i] for c in curves]) for i in range(n)]


def in_memory_data(config, results, prov: Provenance, **extra) -> dict:
  """The data of an in-memory study: its results, config, provenance and the plateau rule that judged them."""
  return {"results": results, "config": config.to_dict(), "provenance": prov.finish(),
          "convergence_rule": PLATEAU_RULE, **extra}


# ----------------------------------------------------------------------------- configs and the entry point

def config_path(study: str) -> str:
  return os.path.join(REPO_ROOT, "configs", "experiments", f"{study}.py")


def load_config(study: str, preset: str):
  """configs/experiments/<study>.py get_config(preset), locked (an unknown preset: its one-line error)."""
  spec = importlib.util.spec_from_file_location(f"_experiment_config_{study}", config_path(study))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(preset)
  config.lock()
  return config


def run_and_report(module, config, workdir: str, log=print, report_only: bool = False) -> str:
  """The study's run (or, with report_only, workdir/results.json) and then its report."""
  os.makedirs(workdir, exist_ok=True)
  if report_only:
    path = os.path.join(workdir, "results.json")
    if not os.path.isfile(path):
      from normlab.errors import UserError
      raise UserError(f"--report_only: no results.json in {workdir}")
    data = json.load(open(path))
  else:
    data = module.run(config, workdir, log)
  return module.report(data, workdir)


def main(module_name: str) -> None:
  """The entry point of `python -m experiments.NAME` (flags in the module docstring); user mistakes print
  one `error:` line (exit 2)."""
  study = module_name.rsplit(".", 1)[-1]
  from absl import flags
  from ml_collections import config_flags

  from normlab import cli
  from normlab.errors import UserError
  config_flags.DEFINE_config_file("config", None, f"configs/experiments/{study}.py:PRESET", lock_config=True)
  flags.DEFINE_string("preset", None, f"shorthand for --config={config_path(study)}:PRESET ({', '.join(PRESETS)})")
  flags.DEFINE_string("workdir", None, "output directory (report.md, plots, results.json)")
  flags.DEFINE_bool("report_only", False, "train nothing: rebuild report.md from the workdir's results.json")
  FLAGS = flags.FLAGS

  def run(argv):
    if len(argv) > 1:
      raise UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
      raise UserError("--workdir is required")
    if (FLAGS.config is None) == (FLAGS.preset is None) and not FLAGS.report_only:
      raise UserError(f"give exactly one of --config=configs/experiments/{study}.py:PRESET and --preset")
    if FLAGS.preset is not None:
      from configs.common import check_preset
      check_preset(FLAGS.preset, PRESETS, f"experiments.{study}")
    config = FLAGS.config if FLAGS.config is not None else load_config(study, FLAGS.preset or "smoke")
    cli.setup_logging()
    t0 = time.time()
    path = run_and_report(importlib.import_module(f"experiments.{study}"), config, FLAGS.workdir,
                          log=cli.log, report_only=FLAGS.report_only)
    print(f"{study}: report in {path} ({time.time() - t0:.0f} s)")

  cli.run(run, flags_parser=lambda argv: cli.parse_or_exit(argv, config_required=False))
