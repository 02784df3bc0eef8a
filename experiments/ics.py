"""Internal covariate shift with and without BN (Santurkar et al. 2018, section 2.2, Definition 2.1, Figure 5).

    python -m experiments.ics --preset=smoke|cpu|gpu --workdir=DIR [--report_only]

Two stages (configs/experiments/ics.py):
  * paper_dln: the paper's own DLN as the paper trains it (normlab.analysis.paper_dln: squared loss, full-batch GD,
    float64) over an lr grid. Its comparisons and rules are normlab.analysis.paper_dln_claims' (same lr at each of
    the section's `lrs`, own best lr, matched training loss; forms l2, normalized, cos); results.json keeps each
    comparison (mean, s.e., seeds, lrs) and whether each cell trained, and the rules judge them again from there.
  * runs: our controlled variants on normlab.train's loop, each run at every lr of `lr_grid[run]`, with each norm
    and seed. At measured steps the exact per-layer ICS of that step (normlab.analysis.ics): ||G - G'|| ('l2'),
    cos(G, G') ('cos'), ||G - G'|| / ||dW_(<i)|| ('normalized': per unit of the earlier layers' step) and
    ||G - G'|| / ||G|| ('rel'). Layer order is the forward call order; layer 1 has no earlier layer (its ICS is
    0) and is left out of every mean.

Claims and rules of the controlled runs (committed before any result they judge):
  * A cell is (run, norm, lr) over the seeds. The gate ("trains", as in paper_dln_claims): no seed diverged and
    every seed's train loss over the last tenth of the steps is <= (1 - TRAINS_DROP) x its initial loss (the first
    1% of steps). The claims are about ICS along the trajectory at a fixed lr and about loss at equal steps, not
    about an end point, so the plateau rule (experiments/_study.py) is reported per run and in each row's note
    and does not gate. A row's two cells must both train, else it is inconclusive.
  * Best lr of a net (`best_lr`): the lr with the lowest mean over seeds of the log final fixed-subset training
    loss (normlab.analysis.plateau), among the lrs where no seed diverged: paper_dln_claims.best_lr's rule. The
    plain net's instability edge (`edge`): the smallest lr of the grid above its best lr whose cell does not train
    (a seed diverged or stayed above the "trains" line); None when every such cell trains.
  * Per seed d = the mean over the measured steps both runs reached of [mean over layers 2..k of log X(BN)] -
    [the same for plain], X = l2, normalized or rel; for cos the layer mean itself. The number is the mean of d
    over seeds ± s.e. over seeds.
  * Regimes: "same lr" = both nets at the plain net's best lr (the paper's comparison: one lr, the one that trained
    best); "own best lr" = each net at its own best lr; "matched training loss" = each at its own best lr, per
    seed the ICS at the first measured step where the net's train loss (the mean over the `measure_every` steps up
    to that step) is <= the level both pass (paper_dln_claims.matched_steps, q = 0.5); a seed with no such level
    gives no d.
  * "BN does not reduce ICS" (l2, normalized): paper_dln_claims.not_lower_verdict: reproduced unless d < -2 s.e.;
    "cos(G, G') with BN not higher": not_higher_verdict: reproduced unless d > 2 s.e.; both inconclusive with
    fewer than 2 seeds.
  * "BN trains faster" at the same lr: per seed r = 1 - tail loss(BN) / tail loss(plain); effect(FASTER_FLOOR).
  * Seed 000 "ICS is common in deeper nets": plain VGG-11 vs the plain 4-conv VGG at the lr of both grids that is
    the plain VGG-11's best among them: d = log rel(deep) - log rel(shallow), effect(0); and, per seed, the slope of
    the step-mean log rel against the layer index (layers 2..k) of the plain VGG-11 there, effect(0).
Results from before the lr axis (no 'layout': one lr per run, full histories) are judged as they were then
(`legacy_claims`): per run at its lr the l2, rel and cos rows and 'faster', then the two depth rows; gate "trains".
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _study as S
from experiments._teacher import GaussianTeacher
from normlab.analysis import paper_dln_claims as PC
from normlab.analysis import training
from normlab.analysis.ics import internal_covariate_shift
from normlab.analysis.probes import cfg_copy
from normlab.errors import UserError

TITLE = "Santurkar et al. 2018, section 2.2: internal covariate shift with and without BN"
LAYOUT = "lr_axis"     # data['layout'] of results with the lr axis (older results have none)
TRAINS_DROP = 0.25     # a net "trains": tail loss <= (1 - TRAINS_DROP) x initial loss
FASTER_FLOOR = 0.05    # "BN trains faster": BN's tail loss at least 5% below the plain net's
TINY = 1e-30
FORMS = ("l2", "normalized", "cos")            # the claim rows' forms
LOG_FORMS = ("l2", "normalized", "rel")        # averaged in log
MEASURED = ("l2", "normalized", "cos", "rel")  # kept per run
REGIMES = ("same lr", "own best lr", "matched training loss")
CURVE_POINTS = 100     # curves over training are thinned to about this many points in results.json
CLAIM = {"l2": "BN does not reduce ICS (||G - G'|| with BN not significantly lower)",
         "normalized": "BN does not reduce ICS per unit step (||G - G'|| / ||dW_(<i)|| with BN not significantly "
                       "lower)",
         "rel": "the same on the relative form ||G - G'|| / ||G||", "cos": "cos(G, G') with BN not higher"}
PAPER = {"l2": "Fig. 5: ICS (l2) with BN similar or larger (VGG, DLN)",
         "normalized": "(not in the paper: ICS per unit of the earlier layers' step)",
         "rel": "(not in the paper: our normalization by ||G||)", "cos": "Fig. 5: cos with BN similar or lower"}
DIFF = {"l2": "log(BN/plain)", "normalized": "log(BN/plain)", "rel": "log(BN/plain)", "cos": "cos(BN) - cos(plain)"}
GATE = (f"a cell trains when no seed diverged and every seed's train loss over the last tenth of the steps is <= "
        f"{1 - TRAINS_DROP:g} x its initial loss (first 1% of steps); a row whose cells do not all train (marked *) is "
        f"inconclusive. The plateau rule ({S.PLATEAU_RULE}) is reported per run and does not gate")


# ----------------------------------------------------------------------------- measuring

def make_measure(run):
  loss = training.batch_loss(run)
  order = training.call_order(run)

  @jax.jit
  def ics(params, new_params, batch_stats, x, y):
    return internal_covariate_shift(lambda p: loss(p, batch_stats, x, y), params, new_params, order)

  def measure(run, step, state, batch, new_state):
    r = jax.device_get(ics(state.params, new_state.params, state.batch_stats, jnp.asarray(batch["x"]),
                           jnp.asarray(batch["y"])))
    return {"layers": list(r.names), "l2": np.asarray(r.l2).tolist(), "cos": np.asarray(r.cos).tolist(),
            "rel": np.asarray(r.relative).tolist(), "normalized": np.asarray(r.normalized).tolist(),
            "update_norm": np.asarray(r.update_norm).tolist(), "grad_norm": np.asarray(r.grad_norm).tolist()}
  return measure


def layer_mean(values, form: str) -> float:
  """Mean over layers 2..k of `values` (of their log for LOG_FORMS)."""
  v = np.asarray(values[1:], np.float64)
  return float(np.mean(np.log(np.maximum(v, TINY)))) if form in LOG_FORMS else float(np.mean(v))


def _ics_record(measured: list, curve: list) -> dict:
  """The part of a run record the claims read: losses, measured steps, per-step layer means, per-layer log means."""
  forms = [f for f in MEASURED if measured and f in measured[0]]
  return {"initial": S.tail_mean(curve[: max(1, len(curve) // 100)], "train_loss", 1.0),
          "tail": S.tail_mean(curve, "train_loss"), "measured_steps": [int(r["step"]) for r in measured],
          "series": {f: [layer_mean(r[f], f) for r in measured] for f in forms},
          "per_layer_log": {f: np.mean(np.log(np.maximum(np.asarray([r[f] for r in measured], np.float64), TINY)),
                                       0).tolist() for f in forms if f in LOG_FORMS}}


def slim(hist: dict, measure_every: int, plot_layers) -> dict:
  """A run's record for results.json: `_ics_record`, the convergence fields, the final subset loss, the train
  loss before each measured step (mean over the `measure_every` steps up to it), per-layer means over the measured
  steps, the values at `plot_layers` (clipped to the depth) per measured step, and the thinned loss curve."""
  m, curve = hist["measured"], hist["curve"]
  loss = np.asarray([r["train_loss"] for r in curve], np.float64)
  names = list(m[0]["layers"]) if m else []
  at = sorted({min(max(int(j), 1), len(names)) for j in plot_layers}) if names else []
  thin = max(1, len(curve) // CURVE_POINTS)
  sub = [r["subset_loss"] for r in hist["subset_loss"]]
  return {**_ics_record(m, curve), **S.convergence(hist), "diverged_at": hist["diverged_at"], "steps": len(curve),
          "final_loss": sub[-1] if sub else float("nan"), "subset_loss": sub, "layers": names,
          "window_loss": [float(np.mean(loss[max(0, r["step"] - measure_every + 1): r["step"] + 1])) for r in m],
          "per_layer": {f: np.mean(np.asarray([r[f] for r in m], np.float64), 0).tolist() for f in MEASURED} if m
          else {}, "at_layers": {str(j): {f: [r[f][j - 1] for r in m] for f in FORMS} for j in at},
          "curve": loss[::thin].tolist(), "curve_every": thin}


# ----------------------------------------------------------------------------- running

def stages(config) -> list[str]:
  """The stages to run: 'paper_dln' and run names (config.only, or all)."""
  valid = ["paper_dln", *config.runs]
  unknown = [n for n in config.only if n not in valid]
  if unknown:
    raise UserError(f"config.only: unknown runs {unknown}; valid runs: {', '.join(valid)}")
  for key in ("lr_grid", "run_norms", "plot_layers"):
    bad = [n for n in config[key] if n not in config.runs]
    if bad:
      raise UserError(f"config.{key}: unknown runs {bad}; valid runs: {', '.join(config.runs)}")
  for name, lrs in config.lr_grid.items():
    if not lrs or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in lrs):
      raise UserError(f"config.lr_grid.{name}: learning rates must be positive numbers, got {list(lrs)}")
  for name, norms in config.run_norms.items():
    if not set(norms) <= set(config.norms):
      raise UserError(f"config.run_norms.{name}: {list(norms)} must be among config.norms {list(config.norms)}")
  return [n for n in valid if not config.only or n in config.only]


def preflight(config, names) -> None:
  """Loads every real dataset's train split first: a missing TFDS dataset fails in a second with the
  data module's one-line build message, before anything trains."""
  from normlab.data import load
  for name in names:
    if name in config.runs and name not in config.synthetic_runs:
      c = config.runs[name]
      load(c.dataset, "train", data_dir=c.data_dir or None)


def paper_dln_data(section) -> dict:
  """The paper DLN stage: paper_dln.run_config(section), kept slim (module docstring): the regime rows, the
  same-lr comparison at every lr, paper_dln_claims.summary, which cells trained, each net's instability edge and
  best lr, the per-layer curves at the section's `lrs` and `plot_layers` and the loss curves (about CURVE_POINTS
  points each)."""
  from normlab.analysis import paper_dln as P
  grid = P.run_config(section)
  lrs, nets = [float(v) for v in grid["lrs"]], ("batch", "none")
  regimes = [{"name": f"same lr {lr:g}", "kind": "same_lr", "lr": float(lr)} for lr in section.lrs]
  regimes += [r for r in PC.REGIMES if r["kind"] != "same_lr"]
  every = max(1, len(grid["measured_steps"]) // CURVE_POINTS)
  thin = max(1, grid["steps"] // CURVE_POINTS)
  curves = {n: {str(float(lr)): {f: {str(j): a[:, ::every].tolist()
                                     for j, a in PC.layer_curves(grid, n, lr, f, section.plot_layers).items()}
                                 for f in FORMS} for lr in section.lrs} for n in nets}
  return {"lrs": lrs, "seeds": list(grid["seeds"]), "depth": grid["depth"], "steps": grid["steps"],
          "dtype": grid["dtype"], "plot_lrs": [float(v) for v in section.lrs], "rows": PC.regime_rows(grid, regimes),
          "same_lr": [{"lr": lr, **{f: PC.compare_same_lr(grid, lr, f)._asdict() for f in FORMS}} for lr in lrs],
          "summary": PC.summary(grid, section.plot_layers),
          "trained": {n: [PC.trained(grid, n, lr) for lr in lrs] for n in nets},
          "edge": {n: P.instability_edge(grid, n) for n in nets}, "best_lr": {n: PC.best_lr(grid, n) for n in nets},
          "curve_steps": grid["measured_steps"][::every].tolist(), "curves": curves, "loss_every": thin,
          "loss": {n: grid["nets"][n]["loss"][:, :, ::thin].tolist() for n in nets}}


def run(config, workdir, log=print) -> dict:
  """{'results': {run: {norm: [record per lr and seed]}}, 'paper_dln': paper_dln_data, ...}; the synthetic runs
  train on the Gaussian teacher's batches."""
  names = stages(config)
  preflight(config, names)
  prov = S.Provenance()
  paper = None
  if "paper_dln" in names:
    log(f"paper_dln: lrs {sorted({*config.paper_dln.lrs, *config.paper_dln.lr_grid})}, {config.paper_dln.steps} steps")
    paper = paper_dln_data(config.paper_dln)
  teacher = GaussianTeacher(**config.teacher.to_dict())
  out = {}
  for name in (n for n in names if n in config.runs):
    for lr in config.lr_grid.get(name, (config.runs[name].learning_rate,)):
      for norm in config.run_norms.get(name, config.norms):
        for seed in config.seeds:
          c = cfg_copy(config.runs[name], norm=norm, seed=int(seed), learning_rate=float(lr))
          batches = teacher.batches(int(seed), int(c.batch_size)) if name in config.synthetic_runs else None
          log(f"{name} norm={norm} seed={seed}: {c.model} lr={c.learning_rate}, {c.num_steps} steps")
          h, _ = training.train(c, training.lazy_measure(make_measure), measure_every=int(config.measure_every),
                                log=log, batches=batches)
          rec = slim(h, int(config.measure_every), config.plot_layers.get(name, ()))
          out.setdefault(name, {}).setdefault(norm, []).append({"lr": float(lr), "seed": int(seed), **rec})
  return S.in_memory_data(config, out, prov, bayes_loss=teacher.bayes_loss(), paper_dln=paper, layout=LAYOUT,
                          gate=GATE)


# ----------------------------------------------------------------------------- the controlled runs' rules

def cells(records: list) -> dict:
  """{lr: {seed: record}} of one net's records."""
  out: dict = {}
  for r in records:
    out.setdefault(float(r["lr"]), {})[int(r["seed"])] = r
  return out


def trains(cell: dict) -> bool:
  """Every seed's tail loss is <= (1 - TRAINS_DROP) x its initial loss, and no seed diverged."""
  return bool(cell) and all(r["diverged_at"] is None and r["tail"] <= (1 - TRAINS_DROP) * r["initial"]
                            for r in cell.values())


def best_lr(by_lr: dict) -> float | None:
  """The lr with the lowest mean over seeds of log final subset loss, among lrs where no seed diverged."""
  best, best_v = None, math.inf
  for lr in sorted(by_lr):
    fin = [r["final_loss"] for r in by_lr[lr].values()]
    if all(r["diverged_at"] is None for r in by_lr[lr].values()) and all(math.isfinite(v) and v > 0 for v in fin):
      v = float(np.mean(np.log(fin)))
      if v < best_v:
        best, best_v = lr, v
  return best


def edge(by_lr: dict) -> float | None:
  """The smallest lr above the best lr whose cell does not train; None if every such cell trains."""
  best = best_lr(by_lr)
  return next((lr for lr in sorted(by_lr) if (best is None or lr > best) and not trains(by_lr[lr])), None)


def _seed_d(a: dict, b: dict, form: str, matched: bool) -> float | None:
  if matched:
    n = min(len(a["window_loss"]), len(b["window_loss"]))
    m = PC.matched_steps(a["window_loss"][:n], b["window_loss"][:n], np.arange(n))
    return None if m is None else a["series"][form][m[0]] - b["series"][form][m[1]]
  sa, sb = dict(zip(a["measured_steps"], a["series"][form])), dict(zip(b["measured_steps"], b["series"][form]))
  common = sorted(set(sa) & set(sb))
  return float(np.mean([sa[s] - sb[s] for s in common])) if common else None


def compare(a: dict, b: dict, form: str, matched: bool = False) -> S.Stat:
  """Cells {seed: record} a (BN) and b (plain): the Stat over seeds of d (module docstring); its two cells
  count as converged when they train."""
  s = S.stat([_seed_d(a[k], b[k], form, matched) for k in sorted(set(a) & set(b))])
  return S.Stat(s.mean, s.se, s.n, int(trains(a)) + int(trains(b)), 2)


def not_lower(d: S.Stat) -> str:
  return PC.not_lower_verdict(PC.Comparison(d.mean, d.se, d.n, None, None), True)


def not_higher(d: S.Stat) -> str:
  return PC.not_higher_verdict(PC.Comparison(d.mean, d.se, d.n, None, None), True)


RULES = {"l2": not_lower, "normalized": not_lower, "rel": not_lower, "cos": not_higher}


def faster(a: dict, b: dict) -> S.Stat:
  """Per seed r = 1 - tail loss(BN) / tail loss(plain)."""
  s = S.stat([1 - a[k]["tail"] / b[k]["tail"] for k in sorted(set(a) & set(b))])
  return S.Stat(s.mean, s.se, s.n, int(trains(a)) + int(trains(b)), 2)


def layer_slope(cell: dict, form: str = "rel") -> S.Stat:
  """Per seed: the slope of the step-mean log `form` against the layer index (layers 2..k)."""
  slopes = [float(np.polyfit(np.arange(2, len(v) + 1), v[1:], 1)[0])
            for v in (r["per_layer_log"].get(form, []) for r in cell.values()) if len(v) >= 3]
  s = S.stat(slopes)
  return S.Stat(s.mean, s.se, s.n, int(trains(cell)), 1)


def _plateau(*cells_: dict) -> str:
  runs = [r for c in cells_ for r in c.values()]
  return f"plateau rule: {sum(bool(r.get('converged')) for r in runs)}/{len(runs)} runs"


def regime_cells(bn: dict, plain: dict) -> dict:
  """{regime: (lr BN, lr plain, matched)} (module docstring)."""
  lb, lp = best_lr(bn), best_lr(plain)
  return {"same lr": (lp, lp, False), "own best lr": (lb, lp, False), "matched training loss": (lb, lp, True)}


def run_claims(name: str, bn: dict, plain: dict) -> list[S.Claim]:
  """The regime rows and 'faster' of one controlled run ({lr: {seed: record}} per net)."""
  out = []
  for regime, (lb, lp, matched) in regime_cells(bn, plain).items():
    a, b = bn.get(lb, {}), plain.get(lp, {})
    out += [S.Claim(f"{name}, {regime}: {CLAIM[f]}", PAPER[f], compare(a, b, f, matched), RULES[f],
                    note=f"{DIFF[f]}; lr BN {lb}, plain {lp}; {_plateau(a, b)}") for f in FORMS]
  lp = regime_cells(bn, plain)["same lr"][1]
  return out + [faster_claim(name, bn.get(lp, {}), plain.get(lp, {}), f"the same lr ({lp})")]


def faster_claim(name: str, a: dict, b: dict, where: str) -> S.Claim:
  return S.Claim(f"{name}: BN trains faster (lower train loss at equal steps, {where})",
                 "Fig. 5: BN nets reach lower loss", faster(a, b), S.effect(FASTER_FLOOR),
                 note=f"1 - loss(BN)/loss(plain), last tenth; plain net trains: {'yes' if trains(b) else 'no'}")


def depth_claims(deep: dict, shallow: dict) -> list[S.Claim]:
  """Seed 000's two rows (plain VGG-11 vs plain 4-conv VGG, {lr: {seed: record}} each)."""
  lr = best_lr({k: v for k, v in deep.items() if k in shallow})
  a, b = deep.get(lr, {}), shallow.get(lr, {})
  return [S.Claim("seed 000: ICS is common in deeper nets (plain VGG, 8 vs 4 convs, relative ICS)",
                  "(seed claim; not in Santurkar et al.)", compare(a, b, "rel"), S.effect(0.0),
                  note=f"log(deep/shallow), lr {lr}"),
          S.Claim("seed 000, within a net: later layers (more layers before them) have larger ICS", "(seed claim)",
                  layer_slope(a), S.effect(0.0), note=f"slope of log rel. ICS per layer, plain VGG-11, lr {lr}")]


def paper_claims(p: dict) -> list[S.Claim]:
  """The paper DLN's rows: its stored comparisons judged again by paper_dln_claims' rules."""
  trained = {n: dict(zip(p["lrs"], t)) for n, t in p["trained"].items()}
  out = []
  for r in p["rows"]:
    ok = [bool(trained["batch"].get(r["lr_bn"])), bool(trained["none"].get(r["lr_plain"]))]
    s = S.Stat(float(r["mean"]), float(r["se"]), int(r["n"]), sum(ok), 2)
    out.append(S.Claim(f"paper DLN ({p['dtype']}), {r['regime']}: {CLAIM[r['form']]}",
                       PC.PAPER if r["form"] != "normalized" else PAPER["normalized"], s, RULES[r["form"]],
                       note=f"{DIFF[r['form']]}; lr BN {r['lr_bn']}, plain {r['lr_plain']}"))
  return out


def claims(data, key="converged") -> list[S.Claim]:
  """The claim rows (the module docstring); `key` is unused: the gate is "trains"."""
  if data.get("layout") != LAYOUT:
    return legacy_claims(data)
  res = data["results"]
  out = paper_claims(data["paper_dln"]) if data.get("paper_dln") else []
  for name in (n for n in res if "batch" in res[n] and "none" in res[n]):
    out += run_claims(name, cells(res[name]["batch"]), cells(res[name]["none"]))
  if "none" in res.get("vgg", {}) and "none" in res.get("vgg_shallow", {}):
    out += depth_claims(cells(res["vgg"]["none"]), cells(res["vgg_shallow"]["none"]))
  return out


def _legacy_record(h: dict) -> dict:
  """A record of an old full history; its 'final_loss' (only for `best_lr`'s pick of the one lr) is the tail loss."""
  rec = {**_ics_record(h["measured"], h["curve"]), "diverged_at": h["diverged_at"]}
  return {**rec, "final_loss": rec["tail"]}


def legacy_claims(data) -> list[S.Claim]:
  """Results from before the lr axis ({run: {norm: {seed: full history}}}, one lr per run): per run the l2, rel
  and cos rows and 'faster' at its lr, then the depth rows; gate "trains" (the rules they were judged by)."""
  lrs = {n: float(c["learning_rate"]) for n, c in data["config"]["runs"].items()}
  conv = {n: {norm: {lrs[n]: {int(s): _legacy_record(h) for s, h in by.items()}} for norm, by in v.items()}
          for n, v in data["results"].items()}
  out = []
  for name, v in conv.items():
    if "batch" in v and "none" in v:
      a, b = v["batch"][lrs[name]], v["none"][lrs[name]]
      out += [S.Claim(f"{name}: {CLAIM[f]}", PAPER[f], compare(a, b, f), RULES[f], note=DIFF[f])
              for f in ("l2", "rel", "cos")]
      out.append(faster_claim(name, a, b, f"lr {lrs[name]}"))
  if "vgg" in conv and "vgg_shallow" in conv:
    out += depth_claims(conv["vgg"]["none"], conv["vgg_shallow"]["none"])
  return out


# ----------------------------------------------------------------------------- the report

def _finite(values) -> S.Stat:
  """The Stat of the finite values; the non-finite ones count as diverged."""
  v = [float(x) for x in values]
  return S.stat([x for x in v if math.isfinite(x)], diverged=sum(not math.isfinite(x) for x in v))


def _judged(d: S.Stat, form: str) -> str:
  return f"{d.text()} ({S.verdict(S.Claim('', '', d, RULES[form]))})"


def _yes(ok) -> str:
  return "yes" if ok else "no"


def paper_lr_table(p: dict) -> str:
  """ICS against lr on the paper's DLN: per net the final loss and the mean over layers 2..k and measured steps of
  each form (paper_dln_claims.summary), and the same-lr comparison with its rule's reading."""
  lines = ["| lr | final loss BN | final loss plain | trained BN / plain | l2 BN | l2 plain | "
           "normalized BN | normalized plain | cos BN | cos plain | log(BN/plain) l2 | log(BN/plain) normalized | "
           "cos(BN) - cos(plain) |", "|" + "---|" * 13]
  for i, lr in enumerate(p["lrs"]):
    seeds = {n: p["summary"][n][i]["seeds"] for n in ("batch", "none")}
    ok = [p["trained"][n][i] for n in ("batch", "none")]
    col = [_finite([r[k] for r in seeds[n]]).text() for k in ("final_loss", *FORMS) for n in ("batch", "none")]
    ds = [_judged(S.Stat(p["same_lr"][i][f]["mean"], p["same_lr"][i][f]["se"], p["same_lr"][i][f]["n"], sum(ok), 2),
                  f) for f in FORMS]
    lines.append(f"| {lr:g} | {col[0]} | {col[1]} | {_yes(ok[0])} / {_yes(ok[1])} | " + " | ".join(col[2:] + ds) + " |")
  return "\n".join(lines)


def run_lr_table(res: dict) -> str:
  """ICS against lr on the controlled runs: per lr the final subset losses, whether the cells train, and the
  comparisons at that lr with their rules' reading."""
  lines = ["| run | lr | final loss BN | final loss plain | trains BN / plain | log(BN/plain) l2 | "
           "log(BN/plain) normalized | cos(BN) - cos(plain) |", "|" + "---|" * 8]
  for name in (n for n in res if "batch" in res[n] and "none" in res[n]):
    bn, plain = cells(res[name]["batch"]), cells(res[name]["none"])
    for lr in sorted(set(bn) | set(plain)):
      a, b = bn.get(lr, {}), plain.get(lr, {})
      loss = [_finite([r["final_loss"] for r in c.values()]).text() for c in (a, b)]
      ds = [_judged(compare(a, b, f), f) for f in FORMS]
      lines.append(f"| {name} | {lr:g} | {loss[0]} | {loss[1]} | {_yes(trains(a))} / {_yes(trains(b))} | "
                   + " | ".join(ds) + " |")
  return "\n".join(lines)


def _lr_panels(title: str, lrs: list, d: dict, loss: dict, edge) -> list[dict]:
  """d: {form: [Stat per lr]}; loss: {label: [Stat per lr]}."""
  return [{"title": f"{title}: log(BN/plain) against lr", "xlabel": "lr", "logx": 10,
           "series": {f: (lrs, d[f]) for f in ("l2", "normalized")}},
          {"title": f"{title}: cos(BN) - cos(plain) against lr", "xlabel": "lr", "logx": 10,
           "series": {"cos": (lrs, d["cos"])}},
          {"title": f"{title}: final training loss (plain net's edge: {edge})", "xlabel": "lr", "logx": 10,
           "logy": True, "series": {k: (lrs, v) for k, v in loss.items()}}]


def _curve_panel(title: str, steps: list, per_label: dict, logy: bool) -> dict:
  """per_label: {label: [per-seed list over `steps`]} -> one panel of the mean ± s.e. over seeds per step."""
  series = {}
  for label, runs in per_label.items():
    n = min((len(r) for r in runs), default=0)
    series[label] = (list(steps[:n]), [_finite([r[i] for r in runs]) for i in range(n)])
  return {"title": title, "xlabel": "step", "logy": logy, "series": series}


def paper_figures(p: dict) -> tuple[list, list]:
  """(ICS-against-lr panels, per-layer curve panels) of the paper's DLN."""
  ok = [sum(p["trained"][n][i] for n in ("batch", "none")) for i in range(len(p["lrs"]))]
  d = {f: [S.Stat(r[f]["mean"], r[f]["se"], r[f]["n"], k, 2) for r, k in zip(p["same_lr"], ok)] for f in FORMS}
  loss = {lab: [_finite([s["final_loss"] for s in row["seeds"]]) for row in p["summary"][n]]
          for lab, n in (("BN", "batch"), ("plain", "none"))}
  curves = []
  loss_steps = list(range(0, p["steps"], p["loss_every"]))
  for lr in p["plot_lrs"]:
    i = p["lrs"].index(lr)
    curves.append(_curve_panel(f"paper DLN, lr {lr:g}: training loss", loss_steps,
                               {lab: p["loss"][n][i] for lab, n in (("BN", "batch"), ("plain", "none"))}, True))
    for j in p["curves"]["batch"][str(lr)]["l2"]:
      for f, logy in (("l2", True), ("cos", False)):
        curves.append(_curve_panel(f"paper DLN, lr {lr:g}, layer {j}: {f}", p["curve_steps"],
                                   {lab: p["curves"][n][str(lr)][f][j] for lab, n in (("BN", "batch"),
                                                                                     ("plain", "none"))}, logy))
  return _lr_panels("paper DLN", p["lrs"], d, loss, p["edge"]["none"]), curves


def run_figures(name: str, bn: dict, plain: dict) -> tuple[list, list]:
  """(ICS-against-lr panels, per-layer curve panels at the same-lr regime's lr) of one controlled run."""
  lrs = sorted(set(bn) | set(plain))
  d = {f: [compare(bn.get(lr, {}), plain.get(lr, {}), f) for lr in lrs] for f in FORMS}
  loss = {lab: [_finite([r["final_loss"] for r in c.get(lr, {}).values()]) for lr in lrs]
          for lab, c in (("BN", bn), ("plain", plain))}
  lr = best_lr(plain)
  a, b = bn.get(lr, {}), plain.get(lr, {})
  curves = []
  first = next(iter(a.values()), None)
  for j in (first or {}).get("at_layers", {}):
    for f, logy in (("l2", True), ("cos", False)):
      curves.append(_curve_panel(f"{name}, lr {lr} (same lr), layer {j}: {f}", first["measured_steps"],
                                 {lab: [r["at_layers"][j][f] for r in c.values()] for lab, c in (("BN", a),
                                                                                                 ("plain", b))}, logy))
  return _lr_panels(name, lrs, d, loss, edge(plain)), curves


def runs_table(res: dict) -> str:
  lines = ["| run | norm | lr | seed | initial loss | final loss (last tenth) | trains | final subset loss | "
           "plateau change | plateau converged | diverged at |", "|" + "---|" * 11]
  for name, by in res.items():
    for norm, recs in by.items():
      for r in recs:
        lines.append(f"| {name} | {norm} | {r['lr']:g} | {r['seed']} | {S.fmt(r['initial'])} | {S.fmt(r['tail'])} | "
                     f"{_yes(trains({0: r}))} | {S.fmt(r['final_loss'])} | {S.fmt(r['loss_change'] or math.nan)} | "
                     f"{_yes(r['converged'])} | {r['diverged_at'] if r['diverged_at'] is not None else '-'} |")
  return "\n".join(lines)


def _paper_note(p: dict) -> str:
  return f"""## The paper's DLN (normlab.analysis.paper_dln)

{p['depth']} square layers, ||W_k...W_1 x - A x||^2 summed over the examples, full-batch GD for {p['steps']} steps,
BN (affine) after every layer but the last vs none, data draws {p['seeds']}, {p['dtype']}; lrs {p['lrs']}. The plain
net's instability edge (the smallest lr where a seed's loss is non-finite or ends above its start): {p['edge']['none']}
(BN net: {p['edge']['batch']}). Best lr (lowest mean log final loss): BN {p['best_lr']['batch']}, plain
{p['best_lr']['none']}. ICS against lr (mean over layers 2..k and measured steps, ± s.e. over data draws; the
differences are paper_dln_claims' same-lr comparisons, with the rule's reading at that lr):

{paper_lr_table(p)}
"""


def _runs_note(data: dict) -> str:
  res, cfg = data["results"], data["config"]
  lines = []
  for name, c in cfg["runs"].items():
    if name not in res:
      continue
    on = "a Gaussian teacher's data" if name in cfg["synthetic_runs"] else c["dataset"]
    lines.append(f"- **{name}**: `{c['model']}` {c['model_options']} on {on}, {c['optimizer']}, lrs "
                 f"{cfg['lr_grid'].get(name, [c['learning_rate']])} ({c['schedule']}), batch {c['batch_size']}, "
                 f"{c['num_steps']} steps, norms {sorted(res[name])}")
    if "batch" in res[name] and "none" in res[name]:
      bn, plain = cells(res[name]["batch"]), cells(res[name]["none"])
      lines.append(f"  best lr: BN {best_lr(bn)}, plain {best_lr(plain)}; the plain net's instability edge (the "
                   f"smallest lr above its best whose cell does not train): {edge(plain)}")
  t = cfg["teacher"]
  return f"""## Our controlled runs

Seeds {cfg['seeds']}; ICS every {cfg['measure_every']} steps and at the last step:
{chr(10).join(lines)}

The DLN's data: x ~ N(0, I_{t['dim']}), label ~ softmax(x A), A fixed Gaussian (entries N(0, {t['scale']}^2/{t['dim']})),
a fresh batch each step; the Bayes loss is {S.fmt(data.get('bayes_loss', math.nan))}. ICS against lr (final loss: the
fixed-subset training loss at the end; differences as in the claims, with the rule's reading at that lr):

{run_lr_table(res)}
"""


def report(data, workdir) -> str:
  if data.get("layout") != LAYOUT:
    notes = (f"Results from before the lr axis (one lr per run), judged by the rules they were judged by "
             f"(`legacy_claims`; gate: {GATE.split('; a row')[0]}).\n\n{S.provenance_note(data)}")
    return S.write_report(workdir, TITLE, lambda key: legacy_claims(data), notes, (), data)
  res, p = data["results"], data.get("paper_dln")
  lr_panels, curve_panels, parts = [], [], []
  if p:
    a, b = paper_figures(p)
    lr_panels, curve_panels, parts = lr_panels + a, curve_panels + b, [_paper_note(p)]
  for name in (n for n in res if "batch" in res[n] and "none" in res[n]):
    a, b = run_figures(name, cells(res[name]["batch"]), cells(res[name]["none"]))
    lr_panels, curve_panels = lr_panels + a, curve_panels + b
  if res:
    parts += [_runs_note(data), "Every run:\n", runs_table(res)]
  figures = [S.errorbar_plot(workdir, n, panels, ncols=ncols) for n, panels, ncols in
             (("ics_lr.png", lr_panels, 3), ("ics_layers.png", curve_panels, 4)) if panels]
  notes = (f"Preset `{data['config']['preset']}`. Definition 2.1: G = the gradient of layer i's kernel at the step's "
           "parameters, G' = the same after layers 1..i-1 (everything the forward pass calls before layer i, norms "
           "included) took that step's update; same batch, exact. Forms: ||G - G'|| (l2), ||G - G'|| / ||dW_(<i)|| "
           "(normalized: per unit of the earlier layers' step), cos(G, G'). The rules are in experiments/ics.py's "
           f"docstring (paper DLN: normlab/analysis/paper_dln_claims.py). Gate: {GATE}.\n\n"
           + "\n".join(parts) + "\n" + S.provenance_note(data))
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, figures, data)


if __name__ == "__main__":
  S.main(__spec__.name)
