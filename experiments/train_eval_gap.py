"""BN's problems 1 and 4 (seed 000): small batches, and batch statistics in training vs running statistics at
inference.

    python -m experiments.train_eval_gap --preset=smoke|cpu|gpu --workdir=DIR

For every training batch_size B and norm ('batch', 'group'), the same network trains on normlab.train's loop with
the same number of training examples at every B, a learning rate proportional to B (the GN paper's protocol),
warmup then cosine decay. The same test subset (the first `test_examples` test examples, a multiple of every batch
size) is then evaluated in train mode (consecutive batches of B, each normalized with its own statistics) and eval
mode (running statistics): the gap is train-mode minus eval-mode accuracy (and loss), plus the largest |logit
difference|. GN has no batch statistics, so its gap must be exactly 0. The BN model trained at `probe_batch_size`
is also evaluated in train mode at other test batch sizes.
Claims and rules (experiments/_study.py; paired over seeds: seed s of every cell shares init and data order):
  * BN's modes differ: max |logit train - eval mode| > MISMATCH at every B (exact, not gated).
  * ...most at small batch: per seed |loss gap| at the smallest B minus at the largest; effect(GROWS_LOSS).
  * GN's gap is exactly 0 (bitwise equal logits in both modes; exact, not gated).
  * Problem 1: per seed, (BN's eval-mode accuracy drop from the largest to the smallest B) - (GN's); effect(DROP_PTS).
"""
from __future__ import annotations

from experiments import _study as S
from normlab.analysis.probes import Evaluator, cfg_copy

TITLE = "BN's train / inference statistics gap and small batches, BN vs GN (seed 000, problems 1 and 4)"
MISMATCH = 1e-3    # "train and eval mode differ": max |logit diff| above this at every B
GROWS_LOSS = 0.01  # the |loss gap| at the smallest B must exceed the largest B's by >= this (and > 2 s.e.)
DROP_PTS = 1.0     # BN's accuracy drop (largest -> smallest B) minus GN's, >= this (pts)
OLD_RULE = "noise_aware"


def run_config(config, norm: str, bs: int, seed: int):
  """One run: equal examples at every B, linear lr, warmup_cosine."""
  c = cfg_copy(config.train, norm=norm, batch_size=int(bs), seed=int(seed), schedule="warmup_cosine",
               num_steps=max(2, int(config.examples_per_run) // int(bs)),
               learning_rate=float(config.train.learning_rate) * int(bs) / int(config.base_batch_size))
  c.warmup_steps = max(1, int(round(float(config.warmup_frac) * c.num_steps)))
  if norm in config.norm_options:
    c.norm_options = config.norm_options[norm].copy_and_resolve_references()
  return c


def run(config, workdir, log=print) -> dict:
  n = int(config.test_examples)
  for bad in [b for b in list(config.batch_sizes) + list(config.test_batch_sizes) if n % int(b)]:
    raise ValueError(f"test_examples={n} is not a multiple of batch size {bad}: every batch size must see the "
                     "same test subset")
  prov, out = S.Provenance(), {}
  for seed in config.seeds:
    for norm in config.norms:
      for bs in config.batch_sizes:
        c = run_config(config, norm, bs, seed)
        log(f"norm={norm} batch_size={bs} seed={seed}: {c.model} lr={c.learning_rate:g}, {c.num_steps} steps")
        rec, run_, _ = S.train_record(c, log)
        ev = Evaluator(run_, "test")
        rec.update(ev.both(run_.state, int(bs), seed=int(seed), examples=n))
        rec["acc_gap"] = rec["train_mode"]["accuracy"] - rec["eval_mode"]["accuracy"]
        rec["loss_gap"] = rec["train_mode"]["loss"] - rec["eval_mode"]["loss"]
        if norm == "batch" and int(bs) == int(config.probe_batch_size) and seed == config.seeds[0]:
          rec["test_batch_sweep"] = {str(tb): ev.both(run_.state, int(tb), seed=int(seed), examples=n)
                                     for tb in config.test_batch_sizes}
        out.setdefault(norm, {}).setdefault(str(int(bs)), []).append(rec)
  return S.in_memory_data(config, out, prov)


def _eval_acc(r):
  return 100.0 * r["eval_mode"]["accuracy"]


def claims(data, key="converged") -> list[S.Claim]:
  res, bss = data["results"], [str(int(b)) for b in data["config"]["batch_sizes"]]
  small, large = bss[0], bss[-1]
  out = []
  if "batch" in res:
    bn = res["batch"]
    diffs = {b: max(r["max_abs_logit_diff"] for r in bn[b]) for b in bss}
    gaps = {f"B={b}": S.runs_stat(bn[b], lambda r: 100.0 * r["acc_gap"], key) for b in bss}
    loss = lambda b: S.by_seed(bn[b], lambda r: abs(r["loss_gap"]), key)  # noqa: E731
    out += [S.Claim("BN computes different functions in training (batch statistics) and inference (running "
                    "statistics)", "train / inference statistics are inconsistent (seed 000, problem 4)", gaps,
                    "reproduced" if all(d > MISMATCH for d in diffs.values()) else "not reproduced", unit=" pts",
                    gate=False, note="test accuracy train - eval mode; max |dlogit| " +
                    ", ".join(f"B={b}: {S.fmt(d)}" for b, d in diffs.items()) + f" [rule: > {MISMATCH:g} at every B]"),
            S.Claim("...and the mismatch is worst at small batch sizes", "small batches give noisy batch statistics "
                    "(problems 1 and 4)", S.paired(loss(small), loss(large)), S.effect(GROWS_LOSS),
                    note=f"|loss gap| B={small} minus B={large}, paired over seeds")]
  if "group" in res:
    gn = [r for b in bss for r in res["group"][b]]
    exact = all(r["max_abs_logit_diff"] == 0.0 and r["acc_gap"] == 0.0 and r["loss_gap"] == 0.0 for r in gn)
    out.append(S.Claim("GN has no train / inference gap (no batch statistics)", "GN computes per-example "
                       "statistics: same function in both modes", f"max |logit train - eval mode| over all batch sizes "
                       f"and seeds: {max(r['max_abs_logit_diff'] for r in gn)!r}; gaps exactly 0: {exact}",
                       "reproduced" if exact else "not reproduced"))
  if "batch" in res and "group" in res:
    drop = {n: S.by_seed(res[n][large], _eval_acc, key) for n in ("batch", "group")}
    for n, d in drop.items():
      low = S.by_seed(res[n][small], _eval_acc, key)
      drop[n] = {s: (v - low[s][0], ok and low[s][1]) for s, (v, ok) in d.items() if s in low}
    out.append(S.Claim("At small batch sizes BN degrades, GN does not (problem 1)", "BN's error rises sharply below "
                       "batch ~8 (ImageNet ResNet-50, the GN paper's Fig. 1)", S.paired(drop["batch"], drop["group"]),
                       S.effect(DROP_PTS), unit=" pts", note=f"eval-mode accuracy drop B={large} -> B={small}, BN "
                       f"minus GN, paired over seeds"))
  return out


def report(data, workdir) -> str:
  data.setdefault("old_rule", OLD_RULE)
  res, cfg = data["results"], data["config"]
  bss = [str(int(b)) for b in cfg["batch_sizes"]]
  xs = [int(b) for b in bss]
  cell = lambda n, f: [S.runs_stat(res[n][b], f) for b in bss]  # noqa: E731
  png = S.errorbar_plot(workdir, "gap_vs_batch.png", [
      {"title": "test accuracy, eval mode", "xlabel": "batch_size (train = test)", "ylabel": "%", "logx": 2,
       "series": {n: (xs, cell(n, _eval_acc)) for n in res}},
      {"title": "|test loss: train mode - eval mode|", "xlabel": "batch_size", "logx": 2, "logy": True,
       "series": {n: (xs, cell(n, lambda r: abs(r["loss_gap"]) + 1e-12)) for n in res}}])
  fs = (lambda r: 100 * r["final_train_acc"], lambda r: 100 * r["train_mode"]["accuracy"], _eval_acc,
        lambda r: r["loss_gap"])
  lines = [f"| {n} | {b} | " + " | ".join(str(S.runs_stat(res[n][b], f)) for f in fs) +
           f" | {S.fmt(max(r['max_abs_logit_diff'] for r in res[n][b]))} |" for n in res for b in bss]
  sweep = next((r["test_batch_sweep"] for r in res.get("batch", {}).get(str(cfg["probe_batch_size"]), [])
                if r.get("test_batch_sweep")), {})
  S.write_csv(workdir, [{"norm": n, "batch_size": b, **r} for n, by in res.items() for b, rs in by.items()
                        for r in rs])
  notes = f"""Preset `{cfg['preset']}`: `{cfg['train']['model']}` on `{cfg['train']['dataset']}`, lr
{cfg['train']['learning_rate']} x B / {cfg['base_batch_size']}, warmup over {100 * cfg['warmup_frac']:.0f}% of the steps
then cosine, {cfg['examples_per_run']} training examples at every batch size, seeds {cfg['seeds']} (paired), norm
options {cfg['norm_options']}. Test subset: the first {cfg['test_examples']} test examples, in train mode as
consecutive batches of B and in eval mode. Mean ± s.e. over seeds; * marks a cell whose runs did not all converge.
{S.rule_note(data)}
{S.provenance_note(data)}

| norm | B | final train acc | test acc, train mode | test acc, eval mode | loss gap | max abs logit diff |
|---|---|---|---|---|---|---|
{chr(10).join(lines)}

BN trained at batch_size {cfg['probe_batch_size']} (seed {cfg['seeds'][0]}), test accuracy at other test batch sizes
(train mode / eval mode): {'; '.join(f"{t}: {v['train_mode']['accuracy']:.4f} / {v['eval_mode']['accuracy']:.4f}"
                                       for t, v in sweep.items())}"""
  return S.write_report(workdir, TITLE, lambda key: claims(data, key), notes, [png], data)


if __name__ == "__main__":
  S.main(__spec__.name)
