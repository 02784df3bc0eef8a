"""l_p batch norm (Santurkar et al. 2018, section 3.3): l1, l2 and l_inf batch norm train as well as (or better
than) standard BN, with a larger distributional shift than unnormalized networks.

    python -m experiments.lp_norms --preset=smoke|cpu|gpu --workdir=DIR

Each seed trains the same network (same init) with norm 'none', 'batch' and the l_p variants
(normlab.variants.lp_batch_norm: x - mu_B divided by the batch's mean |x - mu|, root mean square, or max |x - mu|)
on normlab.train's loop, on a task where the plain net lags BN. Every `measure_every` steps every norm layer's input
(config.probe_site = 'preact': where internal covariate shift lives; for the plain net the same pre-activations) is
probed on a fixed batch of training examples and its drift measured (normlab.analysis.probes.drift). At the end:
test accuracy (eval mode) and the shape of every norm layer's output (excess kurtosis, skewness).
Claims and rules (experiments/_study.py; per-seed differences are paired; a row over the variants combines them):
  * The premise, "the plain net lags BN": effect(PREMISE_FLOOR) on BN - plain.
  * "l_p BN does as well as BN" (test and train accuracy): no_worse(tol) on BN - l_p, tol = half of BN's lead where
    the premise is reproduced (else inconclusive).
  * "l_p BN beats the plain net": effect(PREMISE_FLOOR) on l_p - plain.
  * "larger distributional shift than the plain net" (location drift before the norm): effect(0) on ln(l_p / plain).
  * "non-Gaussian" (l1 and l_inf outputs): effect(NON_GAUSS) on mean |excess kurtosis|.
  * "similar speed": mean train loss over the first half of training, no_worse(tol) on l_p - BN, tol = half of
    plain - BN where that is beyond 2 s.e.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _study as S
from normlab.analysis.probes import Evaluator, drift, norm_outputs

TITLE = "Santurkar et al. 2018, section 3.3: l1 / l2 / l_inf batch norm"
PREMISE_FLOOR = 1.0  # pts: "the plain net lags BN" needs BN - plain >= this (and > 2 s.e.)
NON_GAUSS = 1.0      # "non-Gaussian": mean |excess kurtosis| over channels >= this
LABELS = {"batch": "BN", "l1_batch": "l1 BN", "l2_batch": "l2 BN", "linf_batch": "l_inf BN", "none": "no norm"}
OLD_RULE = "strict"


def shape_stats(act: np.ndarray) -> dict:
  """Per-channel (last axis) skewness and excess kurtosis of `act`, pooled over all other axes."""
  a = np.asarray(act, np.float64).reshape(-1, act.shape[-1])
  mu, sd = a.mean(0), a.std(0)
  ok = sd > 1e-8
  z = (a[:, ok] - mu[ok]) / sd[ok]
  skew = np.mean(z ** 3, 0)
  kurt = np.mean(z ** 4, 0) - 3.0
  return {"channels": int(ok.sum()), "dead": int((~ok).sum()), "mean_abs_excess_kurtosis": float(np.mean(np.abs(kurt))),
          "median_excess_kurtosis": float(np.median(kurt)), "mean_abs_skew": float(np.mean(np.abs(skew))),
          "frac_kurtosis_gt1": float(np.mean(np.abs(kurt) > 1.0)), "kurtosis": kurt.tolist()}


def run(config, workdir, log=print) -> dict:
  from normlab.data import load
  from normlab.data.batching import get_batch
  prov = S.Provenance()

  def finish(c, run_, hist, rec):
    ds = load(c.dataset, "train")
    x = get_batch(ds, np.arange(min(len(ds), int(config.probe_batch))), normalize_inputs=bool(c.normalize_inputs))["x"]
    st = run_.state
    post = jax.device_get(norm_outputs(run_.model)({"params": st.params, "batch_stats": st.batch_stats},
                                                   jnp.asarray(x), jax.random.key(0)))
    layers = [shape_stats(a) for a in post.values()]
    d = drift(hist["measured"]) if hist["measured"] else {}
    return {"test_acc": 100 * Evaluator(run_, "test")(st)["accuracy"], "train_acc": 100 * rec["final_train_acc"],
            "train_loss": rec["final_train_loss"],
            "pre_drift_location": float(np.mean([v["location"] for v in d.values()])) if d else float("nan"),
            **{k: float(np.mean([v[m] for v in layers])) for k, m in (("kurtosis", "mean_abs_excess_kurtosis"),
                                                                       ("skew", "mean_abs_skew"))}}
  return S.in_memory_data(config, None, prov, summary=S.train_each_norm(config, finish, log))


def claims(data, key="converged") -> list[S.Claim]:
  summ = data["summary"]
  lp = [n for n in ("l1_batch", "l2_batch", "linf_batch") if n in summ]
  pair = lambda a, b, k, fn=lambda x, y: x - y: S.paired(S.seeds_of(summ, a, k, key), S.seeds_of(summ, b, k, key), fn)  # noqa: E731
  out = []
  for k, what in (("test_acc", "test accuracy (eval mode, running statistics)"),
                  ("train_acc", "train accuracy (train mode, last 10% of steps)")):
    lead = pair("batch", "none", k)
    tol = lead.mean / 2 if S.verdict(S.Claim("", "", lead, S.effect(PREMISE_FLOOR))) == "reproduced" else float("nan")
    out += [S.Claim(f"The plain net lags BN here (the premise of the study): {what}", "standard VGG below BN on "
                    "CIFAR-10 (Fig. 2; Sec. 3.3 compares the l_p variants with both)", lead, S.effect(PREMISE_FLOOR),
                    unit=" pts", note="BN - plain, paired"),
            S.Claim(f"l_p batch norm does as well as BN: {what}", "l_p variants match or beat BN (Sec. 3.3, VGG on "
                    "CIFAR-10)", {f"BN - {LABELS[n]}": pair("batch", n, k) for n in lp}, S.no_worse(tol), unit=" pts",
                    note=f"tol = half of BN's lead over plain: {S.fmt(tol)} pts"),
            S.Claim(f"l_p batch norm beats the plain net: {what}", "l_p variants improve on the unnormalized network "
                    "(Sec. 3.3)", {f"{LABELS[n]} - plain": pair(n, "none", k) for n in lp}, S.effect(PREMISE_FLOOR),
                    unit=" pts")]
  log_ratio = lambda x, y: math.log(max(x, 1e-12) / max(y, 1e-12))  # noqa: E731
  lag = pair("none", "batch", "early_loss")
  tol = lag.mean / 2 if lag.mean > 2 * lag.se else float("nan")
  out += [S.Claim("l_p-normalized networks show a larger distributional shift than unnormalized ones (measured "
                  "before the norm), yet train better", "qualitatively larger distributional shift than vanilla "
                  "networks (Sec. 3.3)", {f"ln({LABELS[n]} / plain)": pair(n, "none", "pre_drift_location",
                                                                           log_ratio) for n in lp},
                  S.effect(0.0), note="location drift of the norm layers' inputs"),
          S.Claim("l_p-normalized activations are not Gaussian (so 'stable', Gaussian-like distributions are not why "
                  "normalization helps)", "the issue's reading of Sec. 3.3", {LABELS[n]: S.runs_stat(
                      summ[n], lambda r: r["kurtosis"], key) for n in ("l1_batch", "linf_batch") if n in summ},
                  S.effect(NON_GAUSS), note="mean |excess kurtosis| of the norm layers' outputs after training"),
          S.Claim("...with training speed similar to BN's", "l_p variants converge comparably to BN (Sec. 3.3)",
                  {f"{LABELS[n]} - BN": pair(n, "batch", "early_loss") for n in lp}, S.no_worse(tol),
                  note=f"mean train loss over the first half of training; tol = half of plain - BN: {S.fmt(tol)}")]
  return out


def report(data, workdir) -> str:
  data.setdefault("old_rule", OLD_RULE)
  summ, cfg = data["summary"], data["config"]
  norms = list(summ)
  st = lambda k: [S.runs_stat(summ[n], lambda r: r[k]) for n in norms]  # noqa: E731
  labels = [LABELS[n] for n in norms]
  panels = [{"title": "final accuracy (%)", "series": {k: (labels, st(k)) for k in ("test_acc", "train_acc")}},
            {"title": "location drift before the norm", "series": {"drift": (labels, st("pre_drift_location"))}}]
  if all(r.get("curve") for rs in summ.values() for r in rs):
    panels.append({"title": "train loss (thinned steps; ± s.e.)", "xlabel": "point", "logy": True,
                   "series": {LABELS[n]: S.curve_stats([r["curve"] for r in rs]) for n, rs in summ.items()}})
  png = S.errorbar_plot(workdir, "training.png", panels)
  cols = ("train_loss", "train_acc", "test_acc", "early_loss", "pre_drift_location", "kurtosis", "skew")
  lines = [f"| {LABELS[n]} | " + " | ".join(str(S.runs_stat(summ[n], lambda r, k=k: r[k])) for k in cols) + " |"
           for n in norms]
  S.write_csv(workdir, [{"norm": n, **{k: v for k, v in r.items() if k != "per_layer"}} for n in norms
                        for r in summ[n]])
  t = cfg["train"]
  notes = S.per_norm_notes(data, f"""Preset `{cfg['preset']}`: `{t['model']}` {t['model_options']} on `{t['dataset']}`, {t['optimizer']} lr
{t['learning_rate']} ({t['schedule']}), batch_size {t['batch_size']}, {t['num_steps']} steps, seeds {cfg['seeds']}, the
same init per seed for every norm. Paper: VGG on CIFAR-10 (the `gpu` preset). Drift, measured before the norm: every
{cfg['measure_every']} steps, every norm layer's input on the first {cfg['dist_batch']} training examples. Shape: every
norm layer's output on the first {cfg['probe_batch']} training examples after training, per channel, averaged over
channels and layers (excess kurtosis of a Gaussian: 0).""", cols, lines)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
