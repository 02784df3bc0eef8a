"""Noisy batch norm (Santurkar et al. 2018, section 2.1, Figure 2): BN with injected "internal covariate shift"
trains about as well as BN, although its activation distributions are far less stable.

    python -m experiments.noisy_bn --preset=smoke|cpu|gpu --workdir=DIR

Each seed trains the same network (same init) with norm 'none', 'batch' and 'noisy_batch' (BN, then i.i.d. noise on
every activation of every sample, its per-channel mean and variance redrawn every step:
normlab.variants.noisy_batch_norm) at two noise levels: the default (config.norm_options, mean ~ U(-1, 1), std ~
U(1, 2)) and a weaker one (config.weak_noise, arm 'noisy_batch_weak'), on normlab.train's loop. Every `measure_every` steps the norm layers' outputs
(train mode, that step's noise) are probed on a fixed batch of training examples (their drift over training:
normlab.analysis.probes.drift). At the end the test set is evaluated with clean running statistics (recollected
after training without noise, every norm the same way) and in train mode (batches of the training batch size, fresh
noise); the running statistics collected during training (noise on) are reported beside them, unjudged.
Claims and rules (experiments/_study.py; per-seed differences are paired):
  * The premise, "the plain net lags BN": effect(PREMISE_FLOOR) on BN - plain.
  * "noisy BN does as well as BN": no_worse(tol) on BN - noisy, tol = half of BN's lead over the plain net where the
    premise is reproduced (else inconclusive: nothing to keep).
  * "noisy BN beats the plain net": effect(PREMISE_FLOOR) on noisy - plain.
  * "far less stable distributions": noisy BN's drift / BN's - 1 (location and log-scale), effect(UNSTABLE_FACTOR - 1)
    for each, combined.
  * "BN and noisy BN train faster": mean train loss over the first half of training, plain - X, effect(0), combined.
  The weaker noise level has its own rows, the same rules (the premise and its tol are shared): "does as well as BN"
  and "beats the plain net" per accuracy, "far less stable", and "trains faster" (plain - weak noisy BN, effect(0)).
"""
from __future__ import annotations

import numpy as np

from experiments import _study as S
from normlab.analysis.probes import Evaluator, clean_batch_stats, drift

TITLE = "Santurkar et al. 2018, section 2.1: noisy batch norm (BN + injected covariate shift)"
PREMISE_FLOOR = 1.0    # pts: "the plain net lags BN" needs BN - plain >= this (and > 2 s.e.)
UNSTABLE_FACTOR = 5.0  # "far more distributional instability": drift(noisy) >= this x drift(BN)
LABELS = {"none": "no BN", "batch": "BN", "noisy_batch": "noisy BN", "noisy_batch_weak": "weak-noise BN"}
WEAK = "noisy_batch_weak"  # the arm of the weaker noise level (config.weak_noise)
ACCURACIES = (("test_clean", "test accuracy, clean recollected statistics (eval mode)"),
              ("test_train_mode", "test accuracy, train mode (batch statistics, noise on)"),
              ("train_acc", "train accuracy (train mode, last 10% of steps)"))
OLD_RULE = "strict"


def run(config, workdir, log=print) -> dict:
  prov = S.Provenance()

  def finish(c, run_, hist, rec):
    ev = Evaluator(run_, "test")
    clean = clean_batch_stats(run_, run_.state.params, int(config.recollect_batches))
    d = drift(hist["measured"]) if hist["measured"] else {}
    return {"test_clean": 100 * ev(run_.state.replace(batch_stats=clean))["accuracy"],
            "test_noisy_running": 100 * ev(run_.state)["accuracy"],
            "test_train_mode": 100 * ev.both(run_.state, int(c.batch_size), seed=int(c.seed))["train_mode"]["accuracy"],
            "train_acc": 100 * rec["final_train_acc"], "train_loss": rec["final_train_loss"],
            "drift_location": float(np.mean([v["location"] for v in d.values()])) if d else float("nan"),
            "drift_log_scale": float(np.mean([v["log_scale"] for v in d.values()])) if d else float("nan")}
  summ = S.train_each_norm(config, finish, log)
  if config.get("weak_noise"):
    weak = config.copy_and_resolve_references()
    weak.unlock()
    weak.norms = ("noisy_batch",)
    weak.norm_options = {"noisy_batch": config.weak_noise.to_dict()}
    summ[WEAK] = S.train_each_norm(weak, finish, log)["noisy_batch"]
  return S.in_memory_data(config, None, prov, summary=summ)


def _noisy_claims(pair, arm: str, what: str, tol: float) -> list[S.Claim]:
  """The rows of one noise level (arm 'noisy_batch' or WEAK) for one accuracy; pair(a, b) the paired a - b."""
  name = "Noisy BN" if arm == "noisy_batch" else "Weak-noise BN"
  return [S.Claim(f"{name} does as well as BN: {what}", "BN and noisy BN reach similar accuracy (Fig. 2)",
                  pair("batch", arm), S.no_worse(tol), unit=" pts",
                  note=f"BN - {LABELS[arm]}; tol = half of BN's lead over plain: {S.fmt(tol)} pts"),
          S.Claim(f"{name} beats the plain net: {what}", "noisy BN above standard (Fig. 2)",
                  pair(arm, "none"), S.effect(PREMISE_FLOOR), unit=" pts", note=f"{LABELS[arm]} - plain")]


def claims(data, key="converged") -> list[S.Claim]:
  summ, out = data["summary"], []
  pair = lambda a, b, k, fn=lambda x, y: x - y: S.paired(S.seeds_of(summ, a, k, key), S.seeds_of(summ, b, k, key), fn)  # noqa: E731
  weak = [WEAK] if WEAK in summ else []
  weak_rows = []
  for k, what in ACCURACIES:
    lead = pair("batch", "none", k)
    premise = S.verdict(S.Claim("", "", lead, S.effect(PREMISE_FLOOR)))
    tol = lead.mean / 2 if premise == "reproduced" else float("nan")
    out += [S.Claim(f"The plain net lags BN here (the premise of the study): {what}", "standard VGG below BN on "
                    "CIFAR-10 (Fig. 2)", lead, S.effect(PREMISE_FLOOR), unit=" pts", note="BN - plain, paired"),
            *_noisy_claims(lambda a, b, k=k: pair(a, b, k), "noisy_batch", what, tol)]
    weak_rows += [c for arm in weak for c in _noisy_claims(lambda a, b, k=k: pair(a, b, k), arm, what, tol)]
  for arm in ["noisy_batch"] + weak:
    name = "Noisy BN's" if arm == "noisy_batch" else "Weak-noise BN's"
    stable = S.Claim(f"{name} activations are far less stable over training than BN's", "noisy BN's layer outputs "
                     "move and spread over training far more than BN's (Fig. 2, right)",
                     {k: pair(arm, "batch", f"drift_{k}", lambda x, y: x / max(y, 1e-12) - 1)
                      for k in ("location", "log_scale")}, S.effect(UNSTABLE_FACTOR - 1),
                     note=f"drift ratio {LABELS[arm]} / BN - 1 [rule: ratio >= {UNSTABLE_FACTOR:g}, both]")
    (out if arm == "noisy_batch" else weak_rows).append(stable)
  out.append(S.Claim("BN and noisy BN train faster than the plain net", "standard VGG converges more slowly than BN "
                     "and noisy BN (Fig. 2)", {f"plain - {LABELS[n]}": pair("none", n, "early_loss")
                                               for n in ("batch", "noisy_batch")}, S.effect(0.0),
                     note="mean train loss over the first half of training"))
  weak_rows += [S.Claim("Weak-noise BN trains faster than the plain net", "standard VGG converges more slowly than "
                        "noisy BN (Fig. 2)", pair("none", arm, "early_loss"), S.effect(0.0),
                        note="plain - weak-noise BN, mean train loss over the first half of training") for arm in weak]
  return out + weak_rows


def report(data, workdir) -> str:
  data.setdefault("old_rule", OLD_RULE)
  summ, cfg = data["summary"], data["config"]
  keys = ("test_clean", "test_train_mode", "test_noisy_running")
  final = lambda rs: [S.runs_stat(rs, lambda r, k=k: r[k]) for k in keys]  # noqa: E731
  panels = [{"title": "final accuracy (%)", "series": {LABELS[n]: (list(keys), final(rs)) for n, rs in summ.items()}},
            {"title": "drift of the norm layers' outputs", "logy": True,
             "series": {LABELS[n]: (["location", "log_scale"], [S.runs_stat(rs, lambda r, k=k: r[f"drift_{k}"])
                                                                for k in ("location", "log_scale")])
                        for n, rs in summ.items()}}]
  if all(r.get("curve") for rs in summ.values() for r in rs):
    panels.append({"title": "train loss (thinned steps; ± s.e.)", "xlabel": "point", "logy": True,
                   "series": {LABELS[n]: S.curve_stats([r["curve"] for r in rs]) for n, rs in summ.items()}})
  png = S.errorbar_plot(workdir, "training.png", panels)
  cols = ("train_loss", "train_acc", "test_clean", "test_train_mode", "test_noisy_running", "early_loss",
          "drift_location", "drift_log_scale")
  lines = [f"| {LABELS[n]} | " + " | ".join(str(S.runs_stat(rs, lambda r, k=k: r[k])) for k in cols) + " |"
           for n, rs in summ.items()]
  S.write_csv(workdir, [{"norm": n, **{k: v for k, v in r.items() if k != "drift_per_layer"}}
                        for n, rs in summ.items() for r in rs])
  t = cfg["train"]
  notes = S.per_norm_notes(data, f"""Preset `{cfg['preset']}`: `{t['model']}` {t['model_options']} on `{t['dataset']}`, {t['optimizer']} lr
{t['learning_rate']} ({t['schedule']}), batch_size {t['batch_size']}, {t['num_steps']} steps, seeds {cfg['seeds']}, the
same init per seed for every arm. Noise options {cfg['norm_options'] or '(defaults)'}; the weaker level
{cfg.get('weak_noise') or '(not run)'} (arm "weak-noise BN"): per step and channel, noise
mean ~ U(-mean_range, mean_range) and std ~ U(1, std_range), one draw per activation and sample; the paper names only
"i.i.d. noise of non-zero mean and non-unit variance, redrawn every step". Paper: VGG on CIFAR-10 (the `gpu`
preset). Clean statistics are averaged over {cfg['recollect_batches']} training batches. Drift: every
{cfg['measure_every']} steps, each norm layer's output on the first {cfg['dist_batch']} training examples; location =
the std over checkpoints of a unit's mean over its average std, log-scale = the std of log(unit std), averaged over
units and layers.""", cols, lines)
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
