"""The re-scaling invariance table of seed 000 (and Ba et al. 2016, Layer Normalization, Table 1), measured.

    python -m experiments.invariance --preset=smoke|cpu|gpu --workdir=DIR

For each norm (batch, layer, instance, group, weight) and each small project model (a VGG conv net and
an MLP, from normlab.models, on a batch of 8x8 digits), the first normalized block's output (its sown
`block0_normed`, train mode: batch statistics) is computed before and after re-scaling by phi:
  weight vector   one output unit's weights (kernel column `unit`, and its bias) x phi
  data            every input x phi
  weight matrix   the whole first-layer kernel (and bias) x phi
  single example  one example's input x phi (Ba et al.'s 'single training case re-scaling'; extra)
and the relative change ||y' - y|| / ||y|| is reported. An entry is 'invariant' when the change is
below `invariant_below` for every phi (float32 and the layers' default eps put invariant entries at
~1e-6: x / sqrt(var + eps) is only approximately scale-free), 'not invariant' when above
`changed_above`; in between it is 'unclear'. As in the seed's derivation (a_i = W_i . X, the bias
folded into W), the first layer's bias is zero (it is at init), so data re-scaling is linear.
Weight norm ('weight') normalizes the kernels (w = g v / ||v||) and has no activation norm: its
'weight' is v. Instance norm needs a spatial axis: MLP entries are n/a.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _study as S

TITLE = "Re-scaling invariance of BN / LN / IN / GN / WN, measured (seed 000; Ba et al. 2016, Table 1)"
RESCALINGS = ("weight_vector", "data", "weight_matrix", "single_example")
HEADERS = {"weight_vector": "weight vector", "data": "data", "weight_matrix": "weight matrix",
           "single_example": "single example"}
# The seed's table (weight vector, data, weight matrix); WN from Ba et al. 2016 Table 1; the single-example column
# from Ba et al. 2016 (BN/WN: no, LN: yes) and, for IN/GN, per-example statistics (yes).
EXPECTED = {"batch": (True, True, True, False), "layer": (False, True, True, True),
            "instance": (True, True, True, True), "group": (False, True, True, True),
            "weight": (True, False, True, False)}
NAMES = {"batch": "BN", "layer": "LN", "instance": "IN", "group": "GN", "weight": "WN"}


def _first_kernel(params) -> str:
  for k in ("conv0", "dense0"):
    if k in params:
      return k
  raise ValueError(f"no first kernel module in {list(params)}")


def rescale(variables, x, kind: str, phi: float, unit: int):
  """(variables, x) after re-scaling `kind` by `phi` (see the module docstring)."""
  params = jax.tree.map(lambda a: a, variables["params"])  # a copy of the dict structure
  first = _first_kernel(params)
  layer = dict(params[first])
  if kind == "weight_vector":
    layer["kernel"] = layer["kernel"].at[..., unit].multiply(phi)
    if "bias" in layer:
      layer["bias"] = layer["bias"].at[unit].multiply(phi)
  elif kind == "weight_matrix":
    layer["kernel"] = layer["kernel"] * phi
    if "bias" in layer:
      layer["bias"] = layer["bias"] * phi
  elif kind == "data":
    x = x * phi
  elif kind == "single_example":
    x = x.at[0].multiply(phi)
  else:
    raise ValueError(f"unknown re-scaling {kind!r}; valid: {', '.join(RESCALINGS)}")
  params = dict(params)
  params[first] = layer
  return dict(variables, params=params), x


def build(model_name: str, model_options: dict, norm: str, norm_options: dict, x, seed: int):
  from normlab.models import get_model
  from normlab.registry import make_norm
  model = get_model(model_name, num_classes=10, norm=make_norm(norm, **norm_options), **model_options)
  variables = model.init({"params": jax.random.key(seed)}, x, train=False)
  variables = jax.tree_util.tree_map_with_path(  # zero biases of kernel layers (they are zero at init)
      lambda p, a: jnp.zeros_like(a) if getattr(p[-1], "key", None) == "bias" and p[0].key == "params"
      and any(getattr(q, "key", "").startswith(("conv", "dense")) for q in p) else a, variables)
  return model, dict(variables)


def normed_output(model, variables, x):
  from normlab.models.common import flatten_intermediates
  _, state = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"])
  return flatten_intermediates(state["intermediates"])["block0_normed"]


def measure(config) -> dict:
  from normlab.data import load
  from normlab.data.batching import get_batch
  ds = load("digits", "train")
  x = jnp.asarray(get_batch(ds, np.arange(int(config.batch_size)), normalize_inputs=True)["x"])
  out = {}
  for model_name, spec in config.models.items():
    out[model_name] = {}
    for norm in config.norms:
      if norm == "instance" and spec.model == "mlp":
        out[model_name][norm] = None
        continue
      opts = dict(config.norm_options[norm].to_dict()) if norm in config.norm_options else {}
      res = {}
      for seed in config.seeds:
        model, variables = build(spec.model, spec.options.to_dict(), norm, opts, x, int(seed))
        f = jax.jit(lambda v, xx, model=model: normed_output(model, v, xx))
        y0 = np.asarray(f(variables, x), np.float64)
        for kind in RESCALINGS:
          for phi in config.phis:
            v1, x1 = rescale(variables, x, kind, float(phi), int(config.unit))
            y1 = np.asarray(f(v1, x1), np.float64)
            rel = float(np.linalg.norm(y1 - y0) / max(np.linalg.norm(y0), 1e-30))
            key = (kind, float(phi))
            res[key] = max(res.get(key, 0.0), rel)
      out[model_name][norm] = {kind: {str(phi): res[(kind, float(phi))] for phi in config.phis}
                               for kind in RESCALINGS}
  return out


def classify(entry: dict, lo: float, hi: float) -> str:
  worst = max(entry.values())
  if worst < lo:
    return "invariant"
  if min(entry.values()) > hi:
    return "not invariant"
  return "unclear"


def run(config, workdir, log=print) -> dict:
  prov = S.Provenance()
  log("measuring re-scalings")
  results = measure(config)
  lo, hi = float(config.invariant_below), float(config.changed_above)
  classified = {m: {n: {k: classify(e[k], lo, hi) for k in RESCALINGS} for n, e in by.items() if e is not None}
                for m, by in results.items()}
  return {"relative_change": results, "classified": classified, "config": config.to_dict(),
          "expected": {k: dict(zip(RESCALINGS, v)) for k, v in EXPECTED.items()}, "provenance": prov.finish()}


def claims(data, key="converged") -> list[S.Claim]:
  out = []
  mark = {"invariant": "✓", "not invariant": "✗"}
  for norm in data["config"]["norms"]:
    exp = dict(zip(RESCALINGS, EXPECTED[norm]))
    got = {m: by[norm] for m, by in data["classified"].items() if norm in by}
    ok = all(cls[k] == ("invariant" if exp[k] else "not invariant") for cls in got.values() for k in RESCALINGS)
    ours = "; ".join(f"{m}: " + ", ".join(f"{HEADERS[k]} {mark.get(cls[k], '?')} "
                                          f"({S.fmt(max(data['relative_change'][m][norm][k].values()))})"
                                          for k in RESCALINGS) for m, cls in got.items())
    src = "Ba et al. 2016 Table 1" if norm == "weight" else "seed 000 table"
    out.append(S.Claim(f"{NAMES[norm]} re-scaling invariances", f"{src}: " + ", ".join(
        f"{HEADERS[k]} {'✓' if exp[k] else '✗'}" for k in RESCALINGS), ours + " (max relative change of the first "
        "normed block's output over phi)", "reproduced" if ok else "not reproduced"))
  return out


def report(data, workdir) -> str:
  cfg, rc = data["config"], data["relative_change"]
  png = S.errorbar_plot(workdir, "invariance.png", [
      {"title": f"{m}: max relative change (log)", "logy": True, "ylabel": "||y' - y|| / ||y||",
       "series": {NAMES[n]: (list(RESCALINGS), [S.stat([max(max(e[k].values()), 1e-12)]) for k in RESCALINGS])
                  for n, e in by.items() if e is not None}} for m, by in rc.items()])
  cell = lambda e, k: "n/a" if e is None else " / ".join(S.fmt(v) for v in e[k].values())  # noqa: E731
  lines = [f"| {m} | {NAMES[n]} | " + " | ".join(cell(e, k) for k in RESCALINGS) + " |"
           for m, by in rc.items() for n, e in by.items()]
  notes = f"""Preset `{cfg['preset']}`. Models {cfg['models']} at init (seeds {cfg['seeds']}; the max over seeds), a
batch of {cfg['batch_size']} normalized 8x8 digits, norm options {cfg['norm_options']}, float32, the layers' default
eps. Re-scaled unit: {cfg['unit']}. 'Invariant' = relative change < {cfg['invariant_below']:g} for every phi,
'not invariant' = > {cfg['changed_above']:g} for every phi. The seed's table has no single-example column; it is
Ba et al.'s 'single training case re-scaling' (BN ✗, LN ✓, WN ✗), with IN/GN following from their per-example
statistics. LN here is the project's layer norm over the channel axis at each position, which has the same pattern
as LN over all units. No training: convergence does not apply. tests/test_invariance.py checks the table exactly
in float64.
{S.provenance_note(data)}

Relative change ||y' - y|| / ||y|| of the first normed block's output, phi = {' / '.join(str(p) for p in cfg['phis'])}:

| model | norm | {' | '.join(HEADERS[k] for k in RESCALINGS)} |
|---|---|{'---|' * len(RESCALINGS)}
{chr(10).join(lines)}"""
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
