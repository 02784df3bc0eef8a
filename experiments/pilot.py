"""A budget pilot: the epochs at which a study's slowest cells plateau (the Group Norm studies' by default).

    python -m experiments.pilot --preset=smoke|cpu|gpu --workdir=DIR
    python -m experiments.pilot --config=configs/experiments/lr_range_pilot.py:cpu --workdir=DIR

Runs the config's sweep (`sweep`: configs/sweeps/pilot.py, GN, LN, IN at per-device batch_size 32 and BN at 8,
3 seeds, on the Group Norm studies' protocol; or lr_range_pilot.py) once per candidate budget in the config's
`epochs` (epochs of the sweep module's TRAIN_EXAMPLES); each run measures its fixed-subset training
loss at the end of every tenth (the studies' plateau rule, experiments/_study.py).
Choice rule (committed before the pilot ran): the budget is the smallest candidate at which every pilot run
passes the plateau rule with margin -- its loss changed over the last PLATEAU_SPAN tenths by less than half
of PLATEAU_TOL (relative) or less than half of PLATEAU_ABS (nats) -- and none diverged. The schedule is
warmup + cosine over each run's own steps, so each budget is a separate run, not a prefix of a longer one.
"""
from __future__ import annotations

import os

from experiments import _study as S

MARGIN = 0.5  # a pilot run passes with margin at half the plateau rule's tolerances


def passes_with_margin(run: dict) -> bool:
  ends = S._plateau_ends(run.get("subset_loss", []))
  if run.get("status") != "done" or ends is None:
    return False
  before, last = ends
  return abs(before / last - 1) < MARGIN * S.PLATEAU_TOL or abs(before - last) < MARGIN * S.PLATEAU_ABS


def choose_epochs(rows: list[dict]):
  """The smallest candidate budget at which every run passes with margin, else None."""
  for epochs in sorted({r["epochs"] for r in rows}):
    runs = [r for r in rows if r["epochs"] == epochs]
    if runs and all(passes_with_margin(r) for r in runs):
      return epochs
  return None


def run(config, workdir, log=print):
  import importlib
  from normlab.sweep import load_config_file, run_sweep
  from normlab.sweep.report import collect_results
  S.quiet_logs()
  prov, rows = S.Provenance(), []
  for epochs in config.epochs:
    sweep = load_config_file(os.path.join(S.REPO_ROOT, "configs", "sweeps", f"{config.sweep}.py:{config.preset}"))
    epoch = importlib.import_module(f"configs.sweeps.{config.sweep}").TRAIN_EXAMPLES[config.preset]
    sweep.budget_examples = int(epoch * epochs)
    sub = os.path.join(workdir, f"epochs={epochs}")
    cells = run_sweep(sweep, sub, log=log)
    for r, c in zip(collect_results(cells, sub, []), cells):
      cell_dir = os.path.join(sub, "cells", c.id)
      by_step = {int(x["step"]): x for x in S._jsonl(os.path.join(cell_dir, "subset_loss.jsonl"))}
      cell = " ".join([str(c.params.get("variant", ""))] + [f"{k}={v}" for k, v in c.params.items()
                                                             if k not in ("seed", "variant")]).strip()
      r.update(epochs=epochs, cell=cell, steps=int(c.config.num_steps), subset_loss=[by_step[s] for s in sorted(by_step)],
               **S.cell_convergence(cell_dir, r.get("status")))
      rows.append(r)
  return {"preset": config.preset, "title": config.title, "epochs": list(config.epochs), "rows": rows,
          "provenance": prov.finish(),
          "convergence_rule": S.PLATEAU_RULE}


def report(data, workdir) -> str:
  import json
  rows, chosen = data["rows"], choose_epochs(data["rows"])
  for r in rows:
    r.setdefault("cell", r["variant"])  # results written before cells had labels
  variants = list(dict.fromkeys(r["cell"] for r in rows))
  table = ["| epochs | cell | steps | loss change over the last 2 tenths (%, per seed) | passes with margin | "
           "eval error (%) |", "|---|---|---|---|---|---|"]
  panels = []
  for e in data["epochs"]:
    for v in variants:
      rs = [r for r in rows if r["epochs"] == e and r["cell"] == v]
      changes = ", ".join("n/a" if r.get("loss_change") is None else f"{100 * r['loss_change']:+.2f}" for r in rs)
      err = S.stat([100 * r["eval_error"] for r in rs if r.get("eval_error") is not None])
      table.append(f"| {e} | {v} | {rs[0]['steps'] if rs else '-'} | {changes} | "
                   f"{sum(map(passes_with_margin, rs))}/{len(rs)} | {err} |")
  for v in variants:
    series = {}
    for e in data["epochs"]:
      rs = [r for r in rows if r["epochs"] == e and r["cell"] == v and r["subset_loss"]]
      if rs:
        tenths = [f"{k + 1}" for k in range(len(rs[0]["subset_loss"]))]
        series[f"{e} epochs"] = (list(range(1, len(tenths) + 1)), [
            S.stat([r["subset_loss"][k]["subset_loss"] for r in rs if len(r["subset_loss"]) > k],
                   all(passes_with_margin(r) for r in rs)) for k in range(len(tenths))])
    panels.append({"title": f"{v}: fixed-subset training loss", "xlabel": "end of tenth of training",
                   "ylabel": "loss (mean ± s.e. over seeds)", "series": series})
  png = S.errorbar_plot(workdir, "pilot_curves.png", panels)
  smoke = ["Smoke preset: a check that the pilot runs; its numbers are not findings.", ""] \
      if data["preset"] == "smoke" else []
  lines = [f"# {data.get('title', 'Budget pilot')}", ""] + smoke + [
      f"**Chosen budget: {chosen} epochs** (the smallest candidate at which all {sum(r['epochs'] == chosen for r in rows)}"
      " pilot runs pass with margin)." if chosen is not None else
      f"**No candidate budget passes**: every one of {data['epochs']} epochs has a run that fails the margin.", "",
      "Rule (committed before the pilot ran): a run passes with margin when its fixed-subset training loss (up to "
      f"{S.SUBSET_EXAMPLES} training examples) changed over the last {S.PLATEAU_SPAN} tenths of training by less than "
      f"{MARGIN * 100 * S.PLATEAU_TOL:.0f}% or {MARGIN * S.PLATEAU_ABS} nats (half of the plateau rule's tolerances)"
      " and it did not diverge; the budget is the smallest candidate at which every run passes. Open markers in the"
      " plot: a budget at which some seed of the cell fails the margin.", "", "\n".join(table), "",
      S.provenance_note(data), "", f"![pilot_curves]({os.path.basename(png)})", "", "Numbers: [results.json](results.json)", ""]
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(S._rounded(data), f, separators=(",", ":"), sort_keys=True, default=S._jsonable)
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path


if __name__ == "__main__":
  S.main(__spec__.name)
