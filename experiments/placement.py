"""Norm before vs after the activation (seed 000: "many studies show that after the activation is better").

    python -m experiments.placement --preset=smoke|cpu|gpu --workdir=DIR

For every run (model + dataset), norm ('batch', 'group') and placement ('before_activation': conv -> norm -> ReLU,
the original BN paper; 'after_activation': conv -> ReLU -> norm), several seeds train the same network on
normlab.train's loop (the same init per seed across placements, up to the conv bias that BN makes redundant before
the activation), warmup then cosine decay. Test accuracy is eval mode after the last step.
Claim and rule: ONE pooled paired test over every (run, norm, seed): d = test accuracy after - before (points),
effect(FLOOR_PTS) of experiments/_study.py; per-norm paired differences are context.
"""
from __future__ import annotations

from experiments import _study as S
from normlab.analysis.probes import cfg_copy

TITLE = "Normalization before vs after the activation (seed 000)"
PLACEMENTS = ("before_activation", "after_activation")
FLOOR_PTS = 0.5
OLD_RULE = "noise_aware"


def _acc(r) -> float:
  return 100.0 * r.get("final_test_acc", r.get("test_acc"))


def run(config, workdir, log=print) -> dict:
  prov, out = S.Provenance(), {}
  for name, spec in config.runs.items():
    for norm in config.norms:
      for placement in PLACEMENTS:
        for seed in config.seeds:
          c = cfg_copy(spec, norm=norm, norm_placement=placement, seed=int(seed))
          c.warmup_steps = max(1, int(round(float(config.warmup_frac) * c.num_steps)))
          if norm in config.norm_options:
            c.norm_options = config.norm_options[norm].copy_and_resolve_references()
          log(f"{name} norm={norm} {placement} seed={seed}: {c.model} on {c.dataset}, {c.num_steps} steps")
          rec, _, _ = S.train_record(c, log, measure_every=int(config.measure_every))
          out.setdefault(name, {}).setdefault(norm, {}).setdefault(placement, []).append(rec)
  return S.in_memory_data(config, out, prov)


def _pairs(data, key):
  for name, by_norm in data["results"].items():
    for norm, cells in by_norm.items():
      yield f"{name}/{norm}", S.by_seed(cells["after_activation"], _acc, key), \
          S.by_seed(cells["before_activation"], _acc, key)


def claims(data, key="converged") -> list[S.Claim]:
  after, before, per_cell = {}, {}, {}
  for label, a, b in _pairs(data, key):
    after.update({(label, s): v for s, v in a.items()})
    before.update({(label, s): v for s, v in b.items()})
    per_cell[label] = S.paired(a, b)
  return [S.Claim("Normalizing after the activation works better than before it",
                  "'many studies show after is better' (seed 000; no numbers given)", S.paired(after, before),
                  S.effect(FLOOR_PTS), unit=" pts", note="pooled paired after - before over every (norm, seed); per "
                  "cell: " + "; ".join(f"{k} {v.text(' pts')}" for k, v in per_cell.items()))]


def report(data, workdir) -> str:
  data.setdefault("old_rule", OLD_RULE)
  series = {}
  for name, by_norm in data["results"].items():
    for norm, cells in by_norm.items():
      series[f"{name}/{norm}"] = (list(PLACEMENTS), [S.runs_stat(cells[p], _acc) for p in PLACEMENTS])
  png = S.errorbar_plot(workdir, "placement.png", [{"title": "final test accuracy (eval mode)",
                                                     "ylabel": "test accuracy (%)", "series": series}])
  lines = [f"| {k} | {p} | {s} |" for k, (ps, stats) in series.items() for p, s in zip(ps, stats)]
  runs = "; ".join(f"{n}: `{c['model']}` {c['model_options']} on `{c['dataset']}`, lr {c['learning_rate']}, batch "
                   f"{c['batch_size']}, {c['num_steps']} steps" for n, c in data["config"]["runs"].items())
  S.write_csv(workdir, [{"run_norm": f"{k}/{n}", "placement": p, **r} for k, by in data["results"].items()
                        for n, cells in by.items() for p, rs in cells.items() for r in rs])
  notes = f"""Preset `{data['config']['preset']}`, seeds {data['config']['seeds']}, norm options
{data['config']['norm_options']}. Runs: {runs}. In 'after_activation' the conv keeps its bias. The learning rate is
the same for both placements (not tuned per placement). Test accuracy in %, mean ± s.e. over seeds; * marks a cell
whose runs did not all converge. {S.rule_note(data)}
{S.provenance_note(data)}

| run/norm | placement | test accuracy (%) |
|---|---|---|
{chr(10).join(lines)}"""
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
