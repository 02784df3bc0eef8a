"""The seed claims no other study covers (seeds 000 and 002), each a small measurement on MNIST-1D MLPs.

    python -m experiments.seed_claims --preset=smoke|cpu|gpu --workdir=DIR

Parts (configs/experiments/seed_claims.py), every training run on normlab.train's loop with warmup then cosine
decay:
  batch_gen    seed 000: "small batches generalize better": a plain MLP (no norm), batch_size small and
               large, the same epochs and learning rate; test accuracy paired over seeds.
  init_scale   seed 000: "BN frees training from careful initialization": MLPs whose kernels start at
               init_scale x LeCun normal, with and without BN; the drop from the standard init's accuracy.
  gamma_sigma  seed 002 §2.5.2: "gamma/sigma <= 1 is not hard to reach": |gamma| / sqrt(running var + eps)
               of every BN channel of the trained init_scale BN networks.
  ghost        seed 000: "BN's noise acts as a regularizer": the same batch (B) and steps, batch statistics
               over virtual batches of `virtual` examples (ghost BN: noisier statistics) vs all B.
  gn_groups    seed 000: "GN in an MLP or RNN is weak when a group holds few neurons": an MLP with GN of
               2, 8 and all (= LN) neurons per group, and no norm.
  grad_scale   seed 000: "re-scaling invariance mitigates exploding / vanishing gradients": a deep MLP at
               init, kernels x s; the spread over s of log10 ||dL/dW|| of its first layer, per norm.
  in_vs_bn     seed 000: "IN and BN differ even at batch 1": a conv activation of one example through both,
               train mode (batch statistics) and eval mode (BN's running statistics from other examples).
  weight_grad  seed 002 §2.5.3: the weight-gradient bound g_hat = max_{||X|| <= lambda} ||dL_hat/dW||^2 =
               lambda^2 ||dL_hat/dy||^2 and the seed's closed form, against autodiff (float64).

Claims and rules (experiments/_study.py: effect(floor) and the convergence gate; paired differences are over seeds,
seed s sharing init and data order):
  batch_gen    d = test acc(small B) - test acc(large B), floor BATCH_PTS.
  init_scale   per norm and seed, drop = acc(init_scale 1) - min over the other scales (a diverged run
               counts as chance, 10%); d = drop(none) - drop(BN), floor INIT_PTS. A diverged run is an outcome
               here, not a failure to converge.
  gamma_sigma  share of channels with gamma/sigma <= 1 in the converged init_scale-1 BN networks: >= 90% in
               every network 'reproduced', >= 50% pooled 'partly', else 'not reproduced'.
  ghost        d = test acc(virtual batch small) - test acc(virtual batch = B), floor GHOST_PTS.
  gn_groups    d = test acc(all neurons in one group) - test acc(2 neurons per group), floor GN_PTS.
  grad_scale   d = spread(none) - spread(BN) in decades, floor GRAD_DECADES (measured at init: no training).
  in_vs_bn     'reproduced' if the two differ in train mode (max |diff| > IN_TOL); 'partly' if they agree in
               train mode but differ in eval mode; 'not reproduced' if they agree in both.
  weight_grad  'reproduced' if the supremum identity and the seed's closed form (read with x = the
               normalized input, as its derivation defines it) agree with autodiff to WEIGHT_TOL on every
               instance; 'partly' if only the supremum identity does; else 'not reproduced'.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _study as S
from normlab.analysis.probes import cfg_copy

TITLE = "The seed claims no other study covers (seeds 000 and 002), measured"
BATCH_PTS = 1.0      # small batches generalize better: >= this many points
INIT_PTS = 2.0       # BN's drop away from the standard init is smaller than the plain net's by >= this
GHOST_PTS = 0.5      # ghost BN (noisier statistics) beats full-batch BN by >= this
GN_PTS = 1.0         # GN with all neurons in a group beats GN with 2 per group by >= this
GRAD_DECADES = 1.0   # the plain net's spread of log10 ||dL/dW1|| over init scales exceeds BN's by >= this
IN_TOL = 1e-4        # max |IN - BN| above this (relative to the output scale): they differ
WEIGHT_TOL = 1e-6    # relative agreement with autodiff (float64)
CHANCE = 0.1         # the accuracy a diverged run counts as (10 classes)
PARTS = ("batch_gen", "init_scale", "ghost", "gn_groups", "grad_scale", "in_vs_bn", "weight_grad")
OLD_RULE = "noise_aware"


def settings(config) -> dict:
  """{training part: {setting: config overrides}} (init_scale: {norm: {scale: overrides}})."""
  steps = lambda e, b: max(2, int(round(float(e) * int(config.train_examples) / int(b))))  # noqa: E731
  bg, gh, gn, ins = config.batch_gen, config.ghost, config.gn_groups, config.init_scale
  width = int(gn.widths[0])
  return {
      "batch_gen": {str(int(b)): dict(norm="none", batch_size=int(b), learning_rate=float(bg.learning_rate),
                                      num_steps=steps(bg.epochs, b)) for b in bg.batch_sizes},
      "init_scale": {n: {str(float(s)): dict(norm=n, num_steps=int(ins.num_steps), widths=tuple(ins.widths),
                                              init_scale=float(s)) for s in ins.scales} for n in ins.norms},
      "ghost": {str(int(v)): dict(norm="batch", batch_size=int(gh.batch_size), num_steps=int(gh.num_steps))
                if int(v) == int(gh.batch_size) else
                dict(norm="ghost_batch", norm_options={"virtual_batch_size": int(v)}, batch_size=int(gh.batch_size),
                     num_steps=int(gh.num_steps)) for v in gh.virtual},
      "gn_groups": {str(int(s)): dict(norm="group" if s else "none", norm_options={"num_groups": width // int(s)}
                                      if s else {}, widths=tuple(gn.widths), num_steps=int(gn.num_steps))
                    for s in list(gn.group_sizes) + [0]}}


def _train(config, overrides: dict, seed: int, log) -> dict:
  import ml_collections as mlc
  o = dict(overrides)
  c = cfg_copy(config.train, seed=int(seed), schedule="warmup_cosine", norm_options=mlc.ConfigDict(o.pop(
      "norm_options", {})))
  for k in ("widths", "init_scale"):
    if k in o:
      c.model_options[k] = o.pop(k)
  c.update(o)
  c.warmup_steps = max(1, int(round(float(config.warmup_frac) * c.num_steps)))
  log(f"{c.model} norm={c.norm} batch_size {c.batch_size} lr {c.learning_rate:g} seed {seed}, {c.num_steps} steps")
  rec, run_, _ = S.train_record(c, log, measure_every=max(1, c.num_steps // 4))
  if rec["diverged_at"] is not None:
    rec["test_acc"] = CHANCE
  elif c.norm == "batch" and "init_scale" in overrides:
    st = jax.device_get(run_.state)
    rec["gamma_over_sigma"] = gamma_over_sigma(st.params, st.batch_stats)
  return rec


def gamma_over_sigma(params, batch_stats, eps: float = 1e-5) -> dict[str, list[float]]:
  """{BN layer: |gamma| / sqrt(running var + eps) per channel} for every layer with 'scale' and 'var'."""
  out = {}
  for name, sub in params.items():
    stats = batch_stats.get(name, {}) if hasattr(batch_stats, "get") else {}
    if isinstance(sub, dict) and "scale" in sub and "var" in stats:
      g, v = np.abs(np.asarray(sub["scale"], np.float64)), np.asarray(stats["var"], np.float64)
      out[name] = (g / np.sqrt(v + eps)).tolist()
  return out


def _mnist1d_batch(n: int):
  from normlab.data import load
  from normlab.data.batching import get_batch
  ds = load("mnist1d", "train")
  b = get_batch(ds, np.arange(n), normalize_inputs=False)
  return jnp.asarray(b["x"]), jnp.asarray(b["y"])


def grad_scale(config, log) -> dict:
  """{norm: {scale: [log10 ||dL/dW|| of the first and of the last hidden kernel, per seed]}} at init."""
  from normlab import models
  from normlab.train.step import cross_entropy
  p = config.grad_scale
  x, y = _mnist1d_batch(int(p.batch))
  out = {}
  for norm in p.norms:
    for scale in p.scales:
      model = models.get_model("mlp", num_classes=10, norm=norm, widths=(int(p.width),) * int(p.depth),
                               init_scale=float(scale))

      def loss(params, batch_stats, model=model):
        logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                mutable=["batch_stats"])
        return jnp.mean(cross_entropy(logits, y, 10))
      grad = jax.jit(jax.grad(loss))
      rows = []
      for s in config.seeds:
        v = model.init(jax.random.key(int(s)), x, train=False)
        g = grad(v["params"], v.get("batch_stats", {}))
        first, last = g["dense0"]["kernel"], g[f"dense{int(p.depth) - 1}"]["kernel"]
        rows.append({"seed": int(s), "log10_first": float(jnp.log10(jnp.linalg.norm(first))),
                     "log10_last": float(jnp.log10(jnp.linalg.norm(last)))})
      log(f"grad at init: norm={norm} scale={scale}: {rows}")
      out.setdefault(norm, {})[str(float(scale))] = rows
  return out


def in_vs_bn(config) -> dict:
  """One example (1, L, C) of conv activations through BN and IN: train mode (BN's batch = the example)
  and eval mode (BN's running statistics = the moments of `others` other examples)."""
  from normlab import norms
  from normlab.core import Moments
  p = config.in_vs_bn
  rng = np.random.default_rng(int(config.seeds[0]))
  shape = (1, int(p.length), int(p.channels))
  acts = rng.normal(size=(int(p.others) + 1,) + shape[1:]) * rng.uniform(0.5, 2.0, size=shape[2]) + rng.normal(
      size=shape[2])
  x, others = jnp.asarray(acts[:1], jnp.float32), jnp.asarray(acts[1:], jnp.float32)
  bn_train = norms.batch_norm(x, None, None)
  inn = norms.instance_norm(x, None, None)
  bn_eval = norms.batch_norm(x, None, None, running=Moments(jnp.mean(others, (0, 1)), jnp.var(others, (0, 1))))
  # an MLP layer at batch 1
  mlp = norms.batch_norm(jnp.asarray(acts[:1, 0, :], jnp.float32), None, None, allow_single_value=True)
  scale = float(jnp.max(jnp.abs(inn)))
  return {"train_max_diff": float(jnp.max(jnp.abs(bn_train - inn))) / scale,
          "eval_max_diff": float(jnp.max(jnp.abs(bn_eval - inn))) / scale,
          "mlp_batch1_max_abs": float(jnp.max(jnp.abs(mlp)))}


def weight_grad(config) -> dict:
  """Seed 002 §2.5.3 on random instances (normlab.analysis.theory's), float64.

  y = X w (m examples, one BN channel); dL_hat/dW = X^T dL_hat/dy, so max over ||X||_2 <= lambda of
  ||dL_hat/dW||^2 is lambda^2 ||dL_hat/dy||^2 (checked: random X of spectral norm lambda never exceed it, a
  rank-one X along dL_hat/dy attains it). The seed's closed form g_hat = (gamma/sigma)^2 (g - lambda^2/m
  <1, dL/dz>^2 - lambda^2/m <x, dL/dz>^2), g = lambda^2 ||dL/dz||^2, is compared with autodiff's
  lambda^2 ||dL_hat/dy||^2, reading x as the normalized input (its derivation's x_hat) and as the raw y."""
  from normlab.analysis import theory as T
  p = config.weight_grad
  rng = np.random.default_rng(int(config.seeds[0]) + 7)
  err_sup = err_hat = err_raw = 0.0
  exceeded, below, n = 0, 0, 0
  with jax.enable_x64(True):
    for i in range(int(p.trials)):
      kind = T.KINDS[i % len(T.KINDS)]
      inst = T.random_instance(rng, int(p.m), kind, tuple(p.ratio_range))
      y, gamma = jnp.asarray(inst["y"]), jnp.asarray(inst["gamma"])
      loss_z = T.downstream(kind, {k: jnp.asarray(v) for k, v in inst.items()})
      lam = float(np.exp(rng.uniform(-1.0, 1.0)))
      g_hat_y = jax.grad(lambda y: loss_z(T.bn(y, gamma)))(y)  # dL_hat/dy
      z = T.bn(y, gamma)
      g_z = jax.grad(loss_z)(z)                                 # dL/dz (the seed's nabla L)
      mu, sigma = T.batch_moments(y)
      yh = (y - mu) / sigma
      m = y.shape[0]
      auto = lam ** 2 * jnp.sum(g_hat_y ** 2)
      g = lam ** 2 * jnp.sum(g_z ** 2)
      r2 = (gamma / sigma[0]) ** 2
      closed_hat = r2 * (g - lam ** 2 / m * jnp.sum(g_z) ** 2 - lam ** 2 / m * jnp.dot(yh, g_z) ** 2)
      closed_raw = r2 * (g - lam ** 2 / m * jnp.sum(g_z) ** 2 - lam ** 2 / m * jnp.dot(y, g_z) ** 2)
      err_hat = max(err_hat, float(jnp.abs(closed_hat - auto) / jnp.maximum(auto, 1e-300)))
      err_raw = max(err_raw, float(jnp.abs(closed_raw - auto) / jnp.maximum(auto, 1e-300)))
      d = int(p.dim)  # X is (m, d): the weight-gradient's sup over ||X||_2 <= lambda
      u = g_hat_y / jnp.linalg.norm(g_hat_y)
      v = jnp.asarray(rng.normal(size=d))
      x_best = lam * jnp.outer(u, v / jnp.linalg.norm(v))
      err_sup = max(err_sup, float(jnp.abs(jnp.sum((x_best.T @ g_hat_y) ** 2) - auto) / auto))
      for _ in range(int(p.random_x)):
        xr = jnp.asarray(rng.normal(size=(m, d)))
        xr = lam * xr / jnp.linalg.norm(xr, 2)
        exceeded += int(float(jnp.sum((xr.T @ g_hat_y) ** 2)) > float(auto) * (1 + 1e-9))
      below += int(float(auto) <= float(g) * (1 + 1e-12))
      n += 1
  return {"instances": n, "max_rel_err_sup": err_sup, "max_rel_err_closed_xhat": err_hat,
          "max_rel_err_closed_raw_x": err_raw, "random_x_exceeding": exceeded, "random_x": n * int(p.random_x),
          "share_g_hat_le_g": below / max(n, 1), "ratio_range": list(p.ratio_range)}


def run(config, workdir, log=print) -> dict:
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"unknown parts {unknown}; valid parts: {', '.join(PARTS)}")
  prov, res, table = S.Provenance(), {}, settings(config)
  for part in config.parts:
    if part in table:
      nested = part == "init_scale"
      grid = table[part] if nested else {"": table[part]}
      out = {n: {k: [_train(config, o, s, log) for s in config.seeds] for k, o in by.items()} for n, by in grid.items()}
      res[part] = out if nested else out[""]
    else:
      res[part] = globals()[part](config) if part != "grad_scale" else grad_scale(config, log)
  return S.in_memory_data(config, res, prov)


def _acc(r):
  return 100.0 * r["test_acc"]


def claims(data, key="converged") -> list[S.Claim]:
  res, cfg, out = data["results"], data["config"], []
  pair = lambda a, b, ok=key: S.paired(S.by_seed(a, _acc, ok), S.by_seed(b, _acc, ok))  # noqa: E731
  cell = lambda rs: S.runs_stat(rs, _acc, key)  # noqa: E731
  if "batch_gen" in res:
    b = res["batch_gen"]
    small, large = (str(int(x)) for x in (cfg["batch_gen"]["batch_sizes"][0], cfg["batch_gen"]["batch_sizes"][-1]))
    out.append(S.Claim("Small batches generalize better than large ones", "'a model trained with a small batch "
                       "generalizes better; a too large batch often does not work' (seed 000; no numbers)",
                       pair(b[small], b[large]), S.effect(BATCH_PTS), unit=" pts",
                       note=f"test accuracy B={small} {cell(b[small])} minus B={large} {cell(b[large])}, paired"))
  if "init_scale" in res and {"none", "batch"} <= set(res["init_scale"]):
    def drops(by):  # {seed: (acc at scale 1 - the worst other scale, every run converged or diverged)}
      runs = {s: [r for rs in by.values() for r in rs if r["seed"] == s] for s in (r["seed"] for r in by["1.0"])}
      worst = {s: min(_acc(r) for k, rs in by.items() if k != "1.0" for r in rs if r["seed"] == s) for s in runs}
      return {s: (_acc(next(r for r in by["1.0"] if r["seed"] == s)) - worst[s],
                  all(r.get(key) or r["diverged_at"] is not None for r in rs)) for s, rs in runs.items()}
    out.append(S.Claim("BN frees training from careful initialization", "'no longer depends on a careful "
                       "initialization' (seed 000); seed 002 §2.5.5", S.paired(drops(res["init_scale"]["none"]),
                                                                                drops(res["init_scale"]["batch"])),
                       S.effect(INIT_PTS), unit=" pts", note="drop from the standard init to the worst other scale, "
                       f"none minus BN; a diverged run counts as {100 * CHANCE:.0f}%"))
    recs = res["init_scale"]["batch"].get("1.0", [])
    shares = [float(np.mean(np.asarray([x for v in r.get("gamma_over_sigma", {}).values() for x in v]) <= 1.0))
              for r in recs]
    pooled = float(np.mean([x <= 1.0 for r in recs for v in r.get("gamma_over_sigma", {}).values() for x in v]))
    out.append(S.Claim("gamma/sigma <= 1 'is not hard to reach' in trained BN networks", "seed 002 §2.5.2: gamma is "
                       "learned small and sigma is usually large", S.stat([100 * s for s in shares], all(
                           r.get(key) for r in recs)), "reproduced" if all(s >= 0.9 for s in shares) else "partly"
                       if pooled >= 0.5 else "not reproduced", unit="%",
                       note=f"share of BN channels with |gamma|/sigma <= 1 per network, pooled {100 * pooled:.0f}% "
                       "[rule: >= 90% in every network reproduced, >= 50% pooled partly]"))
  for part, claim, paper, floor, what, a, b in (
      ("ghost", "BN's batch noise acts as a regularizer", "'the random noise it introduces regularizes the parameters "
       "and helps generalization' (seed 000)", GHOST_PTS, "virtual batch", *cfg["ghost"]["virtual"]),
      ("gn_groups", "GN in an MLP is weak when a group holds few neurons", "'in MLPs and RNNs a group holds too few "
       "neurons: statistically weak, probably poor' (seed 000, a guess)", GN_PTS, "neurons per group",
       cfg["gn_groups"]["group_sizes"][-1], cfg["gn_groups"]["group_sizes"][0])):
    if part in res:
      a, b = str(int(a)), str(int(b))
      out.append(S.Claim(claim, paper, pair(res[part][a], res[part][b]), S.effect(floor), unit=" pts",
                         note=f"test accuracy, {what} {a} {cell(res[part][a])} minus {b} {cell(res[part][b])}"))
  if "grad_scale" in res and {"none", "batch"} <= set(res["grad_scale"]):
    spread = lambda by: {r["seed"]: max(x["log10_first"] for rs in by.values() for x in rs if x["seed"] == r["seed"])  # noqa: E731
                         - min(x["log10_first"] for rs in by.values() for x in rs if x["seed"] == r["seed"])
                         for r in next(iter(by.values()))}
    sn, sb = spread(res["grad_scale"]["none"]), spread(res["grad_scale"]["batch"])
    out.append(S.Claim("Re-scaling invariance mitigates exploding / vanishing gradients", "'parameter values too "
                       "large or too small hardly affect the outputs' (seed 000, a conjecture)",
                       S.stat([sn[s] - sb[s] for s in sn if s in sb]), S.effect(GRAD_DECADES), unit=" decades",
                       note="spread over init scales of log10 ||dL/dW1|| at init, none minus BN"))
  if "in_vs_bn" in res:
    r = res["in_vs_bn"]
    out.append(S.Claim("IN and BN differ even at batch size 1", "'BN at batch 1 looks like IN, but they differ' "
                       "(seed 000)", f"one conv example: max |BN - IN| train mode {r['train_max_diff']:.1e}, eval mode "
                       f"{r['eval_max_diff']:.2f} (relative); an MLP layer at batch 1: max |y| "
                       f"{r['mlp_batch1_max_abs']:.1e}",
                       "reproduced" if r["train_max_diff"] > IN_TOL else "partly" if r["eval_max_diff"] > IN_TOL
                       else "not reproduced"))
  if "weight_grad" in res:
    r = res["weight_grad"]
    sup_ok = r["max_rel_err_sup"] < WEIGHT_TOL and r["random_x_exceeding"] == 0
    out.append(S.Claim("Seed 002 §2.5.3: weight-gradient bound g_hat = (gamma/sigma)^2 (g - lambda^2/m <1, dL>^2 - "
                       "lambda^2/m <x, dL>^2) <= g", "seed 002; 'g_hat <= g in most cases'",
                       f"{r['instances']} instances, float64: sup identity max rel. error {r['max_rel_err_sup']:.1e} "
                       f"({r['random_x_exceeding']}/{r['random_x']} random X above it); closed form, x read as x_hat: "
                       f"{r['max_rel_err_closed_xhat']:.1e}, as the raw input: {r['max_rel_err_closed_raw_x']:.1e}; "
                       f"g_hat <= g on {100 * r['share_g_hat_le_g']:.0f}%",
                       "reproduced" if sup_ok and r["max_rel_err_closed_xhat"] < WEIGHT_TOL else "partly" if sup_ok
                       else "not reproduced"))
  return out


def report(data, workdir) -> str:
  data.setdefault("old_rule", OLD_RULE)
  res, cfg = data["results"], data["config"]
  panels = []
  for part, ylabel, f in (("init_scale", "test accuracy (%)", _acc),
                          ("grad_scale", "log10 ||dL/dW1|| at init", lambda r: r["log10_first"])):
    if part in res:
      panels.append({"title": part, "xlabel": "init scale", "ylabel": ylabel, "logx": 2, "series": {
          n: ([float(k) for k in by], [S.runs_stat(rs, f) for rs in by.values()]) for n, by in res[part].items()}})
  flat = [(f"{p} {k}", rs) for p in ("batch_gen", "ghost", "gn_groups") if p in res for k, rs in res[p].items()]
  panels.append({"title": "batch_gen (B), ghost (virtual batch), gn_groups (neurons per group; 0: no norm)",
                 "ylabel": "test accuracy (%)", "series": {"test": ([k for k, _ in flat],
                                                                    [S.runs_stat(rs, _acc) for _, rs in flat])}})
  png = S.errorbar_plot(workdir, "seed_claims.png", panels)
  S.write_csv(workdir, [{"part": p, "setting": k, **r} for p, by in res.items() if p in ("batch_gen", "ghost",
                                                                                      "gn_groups")
                        for k, rs in by.items() for r in rs])
  lines = [f"| {k} | {S.runs_stat(rs, _acc)} | {S.runs_stat(rs, lambda r: 100 * r['final_train_acc'])} |"
           for k, rs in flat]
  lines += [f"| init_scale {n} x{k} | {S.runs_stat(rs, _acc)} | {S.runs_stat(rs, lambda r: 100 * r['final_train_acc'])}"
            f" |" for n, by in res.get("init_scale", {}).items() for k, rs in by.items()]
  notes = f"""Preset `{cfg['preset']}`, seeds {cfg['seeds']}: `{cfg['train']['model']}` on `{cfg['train']['dataset']}`
({cfg['train_examples']} training examples), {cfg['train']['optimizer']}, warmup over the first
{100 * cfg['warmup_frac']:.0f}% of steps then cosine decay; the parts' settings are in results.json's config.
Accuracies in %, mean ± s.e. over seeds; * marks a cell whose runs did not all converge. Seed 000 states these claims
without experiments; the models, data and budgets are ours. gamma/sigma uses BN's running variance as sigma^2.
{S.rule_note(data)}
{S.provenance_note(data)}

| setting | test acc | final train acc |
|---|---|---|
{chr(10).join(lines)}"""
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
