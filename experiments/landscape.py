"""Loss landscape along the gradient with and without BN (Santurkar et al. 2018, section 3.1, Fig. 4).

    python -m experiments.landscape --preset=smoke|cpu|gpu --workdir=DIR

For every run and norm ('batch', 'none'), training uses normlab.train's step; at measured steps, on
that step's batch, normlab.analysis.landscape moves along the gradient by eta = lr * m for m in
`step_multipliers` and records the loss range (loss variation), the range of ||grad L(theta - eta g)
- grad L(theta)|| (gradient predictiveness) and the effective beta-smoothness max ||grad diff|| /
||eta g||. Verdict rules are fixed below, before the numbers.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _report, main_for
from experiments._report import fmt
from normlab.analysis import training
from normlab.analysis.landscape import along_gradient

TITLE = "Santurkar et al. 2018, section 3.1: the loss landscape along the gradient, with and without BN"
METRICS = (("loss_variation", "loss variation (range of L(theta - eta g))", "Fig. 4a"),
           ("grad_variation", "gradient change along the gradient, i.e. improves gradient predictiveness (range of ||grad(theta - eta g) - grad(theta)||)", "Fig. 4b"),
           ("beta", "effective beta-smoothness (max ||grad diff|| / ||eta g||)", "Fig. 4c"))


def make_measure(config):
  mults = np.asarray(config.step_multipliers, dtype=np.float64)

  def factory(run):
    loss = training.batch_loss(run)
    etas = jnp.asarray(mults * float(run.config.learning_rate), jnp.float32)

    @jax.jit
    def landscape(params, batch_stats, x, y):
      r = along_gradient(lambda p: loss(p, batch_stats, x, y), params, etas)
      return r, r.loss_variation, r.grad_variation, r.beta

    def measure(run, step, state, batch, new_state):
      r, lv, gv, beta = jax.device_get(landscape(state.params, state.batch_stats, jnp.asarray(batch["x"]),
                                                 jnp.asarray(batch["y"])))
      return {"losses": np.asarray(r.losses).tolist(), "grad_diffs": np.asarray(r.grad_diffs).tolist(),
              "loss_variation": float(lv), "grad_variation": float(gv), "beta": float(beta),
              "grad_norm": float(r.grad_norm), "step_sizes": np.asarray(r.step_sizes).tolist()}
    return measure
  return factory


def summarize(hist) -> dict:
  m = hist["measured"]
  out = {k: float(np.median([h[k] for h in m])) for k, _, _ in METRICS}
  out.update({f"{k}_max": float(np.max([h[k] for h in m])) for k, _, _ in METRICS})
  curve = hist["curve"]
  tail = max(1, len(curve) // 10)
  out["final_loss"] = float(np.mean([c["train_loss"] for c in curve[-tail:]]))
  out["grad_norm"] = float(np.median([h["grad_norm"] for h in m]))
  return out


def _plot(results, workdir) -> str:
  names = list(results)
  fig, axes = _report.new_figure(ncols=3, nrows=len(names), size=(4.2, 3.0))
  axes = np.atleast_2d(axes)
  style = {"batch": dict(color="C0", label="BN"), "none": dict(color="C3", label="no BN")}
  for i, name in enumerate(names):
    for norm, hist in results[name].items():
      st = style.get(norm, dict(label=norm))
      m = hist["measured"]
      steps = [h["step"] for h in m]
      lo, hi = [min(h["losses"]) for h in m], [max(h["losses"]) for h in m]
      axes[i, 0].fill_between(steps, lo, hi, alpha=0.35, color=st.get("color"), label=st["label"])
      pos = [[d for d, e in zip(h["grad_diffs"], h["step_sizes"]) if e > 0] for h in m]  # eta > 0
      axes[i, 1].fill_between(steps, [min(p) for p in pos], [max(p) for p in pos], alpha=0.35,
                              color=st.get("color"), label=st["label"])
      axes[i, 2].plot(steps, [h["beta"] for h in m], marker="o", ms=3, **st)
    axes[i, 0].set_ylabel(f"{name}\nloss along gradient")
    axes[i, 0].set_yscale("log")
    axes[i, 1].set_ylabel("||grad diff||, range over eta > 0")
    axes[i, 1].set_yscale("log")
    axes[i, 2].set_ylabel("effective beta")
    axes[i, 2].set_yscale("log")
    for ax in axes[i]:
      ax.set_xlabel("step")
    axes[i, 0].legend(fontsize=7)
  axes[0, 0].set_title("(a) loss landscape")
  axes[0, 1].set_title("(b) gradient predictiveness")
  axes[0, 2].set_title("(c) effective beta-smoothness")
  return _report.save_figure(fig, workdir, "landscape.png")


def run(config, workdir: str, log=print) -> str:
  os.makedirs(workdir, exist_ok=True)
  results = training.train_grid(config, make_measure(config), log=log)
  return write(config, results, workdir)


def write(config, results: dict, workdir: str) -> str:
  """The report from `results` ({run: {norm: history}}), e.g. reloaded from results.json."""
  summ = {name: {norm: summarize(h) for norm, h in r.items()} for name, r in results.items()}
  have = [n for n in summ if "batch" in summ[n] and "none" in summ[n]]
  rows = []
  for key, label, fig in METRICS:
    flags = [summ[n]["batch"][key] < summ[n]["none"][key] for n in have]
    ours = "; ".join(f"{n}: BN {fmt(summ[n]['batch'][key])} vs plain {fmt(summ[n]['none'][key])}" for n in have)
    rows.append({"claim": f"BN lowers the {label}", "paper": f"lower with BN throughout training ({fig}, VGG on CIFAR-10)",
                 "ours": "median over measured steps: " + ours + " [rule: BN median < plain median]",
                 "verdict": _report.verdict_of(flags)})
  run_lines = "\n".join(
      f"- **{n}**: `{c.model}` {c.model_options.to_dict()} on `{c.dataset}`, {c.optimizer} lr {c.learning_rate}, "
      f"batch {c.batch_size}, {c.num_steps} steps; measured every {config.measure_every} steps"
      for n, c in config.runs.items())
  table = "\n".join(
      f"| {n} | {norm} | {fmt(s['loss_variation'])} | {fmt(s['grad_variation'])} | {fmt(s['beta'])} | "
      f"{fmt(s['beta_max'])} | {fmt(s['grad_norm'])} | {fmt(s['final_loss'])} |"
      for n in summ for norm, s in summ[n].items())
  notes = f"""Preset `{config.preset}`. Runs (each with norm = batch and none, same seed, optimizer and learning rate):
{run_lines}

At each measured step t, on step t's batch with train-mode norms: g = grad L(theta_t), and for eta = lr * m,
m in {tuple(config.step_multipliers)}: L(theta_t - eta g) and grad L(theta_t - eta g). Loss variation = max - min of
the losses, gradient predictiveness = max - min of ||grad L(theta_t - eta g) - grad L(theta_t)|| (0 at eta = 0), effective
beta = max over eta > 0 of that difference over ||eta g||. The same absolute step sizes are used with and without BN;
the two networks' gradient norms differ (column "median ||g||"), so the loss and gradient ranges partly reflect how far
each network moves; beta is normalized by the distance. Data: {", ".join(sorted({c.dataset for c in config.runs.values()}))}
(at the CPU presets, small stand-ins for the paper's VGG on CIFAR-10). One seed, one batch per measured step: the
curves are noisy (landscape.png); the verdicts compare medians over the measured steps.

| run | norm | median loss var. | median grad. var. | median beta | max beta | median ||g|| | final loss |
|---|---|---|---|---|---|---|---|
{table}
"""
  figure = _plot(results, workdir)
  return _report.write_report(workdir, TITLE, rows, notes, [figure],
                              data={"summary": summ, "results": results, "config": config.to_dict()})


if __name__ == "__main__":
  main_for("landscape", run)
