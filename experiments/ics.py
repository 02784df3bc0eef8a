"""Internal covariate shift with and without BN (Santurkar et al. 2018, section 2.2, Figure 5).

    python -m experiments.ics --preset=smoke|cpu|gpu --workdir=DIR

For every run, norm ('batch', 'none') and seed, training uses normlab.train's loop; at measured steps the exact
per-layer ICS of that step (normlab.analysis.ics): ||G - G'|| and cos(G, G'), G the layer's kernel gradient, G' the
same after the earlier layers took the step (same batch). Layer order is the forward call order. Layer 1 has no
earlier layer (its ICS is 0) and is left out of every mean.
Claims and rules (experiments/_study.py):
  * Pairing: the two nets of a comparison share the seed (init stream, batches) and the measured steps. Per seed,
    d = the mean over the steps both nets reached of [mean over layers 2..k of log X(net A)] - [the same for net B];
    the claim's number is the mean of d over seeds ± s.e. over seeds.
  * The gate of this study ("trains"): a run counts when it did not diverge and its train loss over the last tenth
    of the steps is <= (1 - TRAINS_DROP) x its initial loss (the first 1% of steps). The claims are about ICS along
    the trajectory at a fixed lr and about loss at equal steps, not about an end point, so the plateau rule is
    reported per run and does not gate.
  * (1) "BN does not reduce ICS" (absolute ||G - G'||): d = log ICS(BN) - log ICS(plain); reproduced if d >= -2 s.e.;
    the same on the relative form ||G - G'|| / ||G|| is a second row.
  * (2) cos(G, G') with BN not higher: d = cos(BN) - cos(plain); reproduced if d <= 2 s.e.
  * (3) "BN trains faster", only where the plain net trains: per seed r = 1 - loss(BN) / loss(plain) over the last
    tenth of the steps (equal steps and lr); effect(FASTER_FLOOR).
  * (4) Seed 000, "ICS is common in deeper nets": d = log rel. ICS(plain VGG-11) - log rel. ICS(plain 4-conv VGG);
    effect(0). Beside it, per seed the slope of the step-mean log relative ICS against the layer index (layers
    2..k) of the plain VGG-11: effect(0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _study as S
from experiments._teacher import GaussianTeacher
from normlab.analysis import training
from normlab.analysis.ics import internal_covariate_shift
from normlab.analysis.probes import cfg_copy
from normlab.errors import UserError

TITLE = "Santurkar et al. 2018, section 2.2: internal covariate shift with and without BN"
TRAINS_DROP = 0.25     # a net "trains": tail loss <= (1 - TRAINS_DROP) x initial loss
FASTER_FLOOR = 0.05    # "BN trains faster": BN's tail loss at least 5% below the plain net's
TINY = 1e-30


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
            "rel": np.asarray(r.relative).tolist(), "grad_norm": np.asarray(r.grad_norm).tolist()}
  return measure


def preflight(config) -> None:
  """Loads every real dataset's train split first: a missing TFDS dataset fails in a second with the
  data module's one-line build message, before anything trains."""
  from normlab.data import load
  for name, c in config.runs.items():
    if name not in config.synthetic_runs and (not config.only or name in config.only):
      load(c.dataset, "train", data_dir=c.data_dir or None)


def run(config, workdir, log=print) -> dict:
  """{'results': {run: {norm: {seed: history}}}}; the synthetic runs train on the Gaussian teacher's batches."""
  unknown = [n for n in config.only if n not in config.runs]
  if unknown:
    raise UserError(f"config.only: unknown runs {unknown}; valid runs: {', '.join(config.runs)}")
  preflight(config)
  teacher = GaussianTeacher(**config.teacher.to_dict())
  prov, out = S.Provenance(), {}
  for name in (n for n in config.runs if not config.only or n in config.only):
    for norm in config.norms:
      for seed in config.seeds:
        c = cfg_copy(config.runs[name], norm=norm, seed=int(seed))
        batches = teacher.batches(int(seed), int(c.batch_size)) if name in config.synthetic_runs else None
        log(f"{name} norm={norm} seed={seed}: {c.model} lr={c.learning_rate}, {c.num_steps} steps")
        h, _ = training.train(c, training.lazy_measure(make_measure), measure_every=int(config.measure_every),
                              log=log, batches=batches)
        h.update(S.convergence(h), curve=h["curve"][:: max(1, len(h["curve"]) // 200)],
                 tail=tail_loss(h), initial=initial_loss(h))
        out.setdefault(name, {}).setdefault(norm, {})[int(seed)] = h
  return S.in_memory_data(config, out, prov, bayes_loss=teacher.bayes_loss())


def _by_step(hist) -> dict:
  return {m["step"]: m for m in hist["measured"]}


def layer_mean(row: dict, key: str, log: bool) -> float:
  """Mean over layers 2..k of row[key] (of its log if `log`)."""
  v = np.asarray(row[key][1:], np.float64)
  return float(np.mean(np.log(np.maximum(v, TINY)))) if log else float(np.mean(v))


def paired_difference(a: dict, b: dict, key: str, log: bool = True) -> S.Stat:
  """{seed: history} x 2 -> the Stat over the common seeds of d (see the module docstring); converged = both nets
  train."""
  per_seed = {}
  for seed in sorted(set(a) & set(b)):
    ma, mb = _by_step(a[seed]), _by_step(b[seed])
    steps = sorted(set(ma) & set(mb))
    if steps:
      per_seed[seed] = (float(np.mean([layer_mean(ma[s], key, log) - layer_mean(mb[s], key, log) for s in steps])),
                        True)
  return _gated(S.over_seeds(per_seed), trains(a) and trains(b))


def _gated(s: S.Stat, ok: bool) -> S.Stat:
  return S.Stat(s.mean, s.se, s.n, int(ok), 1)


def layer_slope(runs: dict, key: str = "rel") -> S.Stat:
  """Per seed: the slope of the step-mean log `key` against the layer index (layers 2..k)."""
  slopes = []
  for hist in (h for h in runs.values() if h["measured"]):
    per_layer = np.mean([np.log(np.maximum(np.asarray(m[key][1:], np.float64), TINY)) for m in hist["measured"]], 0)
    if len(per_layer) >= 2:
      slopes.append(float(np.polyfit(np.arange(2, len(per_layer) + 2), per_layer, 1)[0]))
  return _gated(S.stat(slopes), trains(runs))


def tail_loss(hist, frac: float = 0.1) -> float:
  return hist["tail"] if "tail" in hist else S.tail_mean(hist["curve"], "train_loss", frac)


def initial_loss(hist) -> float:
  c = hist["curve"]
  return hist["initial"] if "initial" in hist else S.tail_mean(c[: max(1, len(c) // 100)], "train_loss", 1.0)


def trains(runs: dict) -> bool:
  """Every seed's tail loss is <= (1 - TRAINS_DROP) x its initial loss, and no seed diverged."""
  return bool(runs) and all(h["diverged_at"] is None and tail_loss(h) <= (1 - TRAINS_DROP) * initial_loss(h)
                            for h in runs.values())


def faster(bn: dict, plain: dict) -> S.Stat:
  """Per seed r = 1 - tail loss(BN) / tail loss(plain)."""
  r = S.stat([1 - tail_loss(bn[s]) / tail_loss(plain[s]) for s in sorted(set(bn) & set(plain))])
  return _gated(r, trains(bn) and trains(plain))


def not_lower(d: S.Stat) -> str:
  return "not reproduced" if d.mean < -2 * d.se else "reproduced"


def claims(data, key="converged") -> list[S.Claim]:
  res, out = data["results"], []
  for name in [n for n in res if "batch" in res[n] and "none" in res[n]]:
    bn, plain = res[name]["batch"], res[name]["none"]
    out += [S.Claim(f"{name}: BN does not reduce ICS: ||G - G'|| with BN not significantly lower",
                    "Fig. 5: ICS (l2) with BN similar or larger (VGG, DLN)", paired_difference(bn, plain, "l2"),
                    not_lower, note="log(BN/plain)"),
            S.Claim(f"{name}: the same on the relative form ||G - G'|| / ||G||", "(not in the paper: our normalization "
                    "by ||G||)", paired_difference(bn, plain, "rel"), not_lower, note="log(BN/plain)"),
            S.Claim(f"{name}: cos(G, G') with BN not higher", "Fig. 5: cos with BN similar or lower",
                    paired_difference(bn, plain, "cos", log=False), S.at_most(), note="cos(BN) - cos(plain)"),
            S.Claim(f"{name}: BN trains faster (lower train loss at equal steps and lr) where the plain net trains",
                    "Fig. 5: BN nets reach lower loss", faster(bn, plain),
                    S.effect(FASTER_FLOOR) if trains(plain) else "inconclusive",
                    note=f"1 - loss(BN)/loss(plain), last tenth; plain net trains: {'yes' if trains(plain) else 'no'}")]
  deep, shallow = res.get("vgg", {}).get("none"), res.get("vgg_shallow", {}).get("none")
  if deep and shallow:
    out += [S.Claim("seed 000: ICS is common in deeper nets (plain VGG, 8 vs 4 convs, relative ICS)",
                    "(seed claim; not in Santurkar et al.)", paired_difference(deep, shallow, "rel"), S.effect(0.0),
                    note="log(deep/shallow)"),
            S.Claim("seed 000, within a net: later layers (more layers before them) have larger ICS", "(seed claim)",
                    layer_slope(deep), S.effect(0.0), note="slope of log rel. ICS per layer, plain VGG-11")]
  return out


def per_layer(runs: dict, key: str) -> list[S.Stat]:
  """Per layer: the Stat over seeds of the step-mean `key`."""
  per_seed = np.array([np.mean([m[key] for m in h["measured"]], 0) for h in runs.values() if h["measured"]])
  return [S.stat(per_seed[:, i]) for i in range(per_seed.shape[1])]


def report(data, workdir) -> str:
  res, cfg = data["results"], data["config"]
  names = [n for n in res if "batch" in res[n] and "none" in res[n]]
  labels = {"batch": "BN", "none": "no BN"}
  panels = []
  for name in names:
    for key, title, logy in (("l2", "||G - G'|| per layer", True), ("cos", "cos(G, G') per layer", False)):
      stats = {labels[n]: per_layer(res[name][n], key) for n in ("batch", "none")}
      panels.append({"title": f"{name}: {title} (mean over steps)", "xlabel": "layer (forward order)", "logy": logy,
                     "series": {k: (list(range(1, len(v) + 1)), v) for k, v in stats.items()}})
    series = {}
    for n in ("batch", "none"):
      runs = [h for h in res[name][n].values() if h["measured"]]
      steps = sorted(set.intersection(*[{m["step"] for m in h["measured"]} for h in runs])) if runs else []
      series[labels[n]] = (steps, [S.stat([np.exp(layer_mean(_by_step(h)[s], "l2", True)) for h in runs])
                                   for s in steps])
    panels.append({"title": f"{name}: ||G - G'|| over training (geo. mean, layers 2..k)", "xlabel": "step",
                   "logy": True, "series": series})
  figures = [S.errorbar_plot(workdir, "ics.png", panels, ncols=3)] if panels else []
  lines = [f"| {name} | {n} | {seed} | {S.fmt(initial_loss(h))} | {S.fmt(tail_loss(h))} | "
           f"{'yes' if trains({seed: h}) else 'no'} | {S.fmt(h.get('loss_change') or float('nan'))} | "
           f"{h['diverged_at'] if h['diverged_at'] is not None else '-'} |"
           for name, by in res.items() for n, runs in by.items() for seed, h in runs.items()]
  data_of = lambda n, c: "a Gaussian teacher's data" if n in cfg["synthetic_runs"] else c["dataset"]  # noqa: E731
  runs = "\n".join(f"- **{n}**: `{c['model']}` {c['model_options']} on {data_of(n, c)}, {c['optimizer']} lr "
                   f"{c['learning_rate']} ({c['schedule']}), batch_size {c['batch_size']}, {c['num_steps']} steps"
                   for n, c in cfg["runs"].items() if not cfg["only"] or n in cfg["only"])
  notes = f"""Preset `{cfg['preset']}`, seeds {cfg['seeds']}; every run trained with norm = batch and none (same
seed: same init stream and batches); ICS every {cfg['measure_every']} steps and at the last step:
{runs}

The DLN's data: x ~ N(0, I_{cfg['teacher']['dim']}), label ~ softmax(x A), A fixed Gaussian (entries
N(0, {cfg['teacher']['scale']}^2/{cfg['teacher']['dim']})), a fresh batch each step; the Bayes loss is
{S.fmt(data.get('bayes_loss', float('nan')))}. ICS of layer i at step t (Definition 2.1): G = the gradient of layer i's
kernel at the step's parameters, G' = the same after layers 1..i-1 (everything the forward pass calls before layer i,
norms included) took step t's update; same batch, exact. The gate is this study's "trains" criterion (the
docstring); the plateau change is reported per run. Differences from the paper: VGG on CIFAR-10 is the `gpu`
preset; the `cpu` preset uses 1/8-width VGGs with 1-D convs on mnist1d_noisy; the DLN uses cross-entropy on a
softmax teacher, not the paper's squared loss. {S.rule_note(data)}
{S.provenance_note(data)}

| run | norm | seed | initial loss | final loss (last tenth) | trains | plateau change | diverged at |
|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}"""
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, figures, data)


if __name__ == "__main__":
  S.main(__spec__.name)
