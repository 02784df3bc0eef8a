"""S seeds vmapped in one program vs S sequential runs: the sweep runner's speed-up.

Both sides train the same sweep cells end to end (data, compilation, training, evaluation, metrics
files) with the project's own entry points: `train_and_evaluate` once per seed, and
`train_and_evaluate_seeds` for all seeds in one vmapped program. The final train losses of the two
must agree to float32 reassociation; the largest relative difference is reported with the times.
"""
from __future__ import annotations

import os
import tempfile
import time

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SWEEP = os.path.join(_REPO, "configs", "sweeps", "batch_size.py") + ":smoke"


def _cells(sweep_config: str, batch: int, seeds: int, variant: str):
  from normlab import sweep
  s = sweep.load_config_file(sweep_config)
  s.grid.variant = (variant,)
  s.grid.batch_size = (batch,)  # per device (normlab.sweep.grid)
  s.grid.seed = tuple(range(seeds))
  return [c.config for c in sweep.expand(s)]


def run_seed_sweep(*, seeds: tuple[int, ...] = (2, 4), batches: tuple[int, ...] = (4,),
                   sweep_config: str = DEFAULT_SWEEP, variant: str = "BN", num_steps: int | None = None) -> list[dict]:
  """One row per (batch, S): wall seconds of S sequential runs and of one vmapped run, and their ratio.

  `sweep_config` is a sweep config file (with `grid.variant`, `grid.batch_size`, `grid.seed`);
  `num_steps` shortens every run (for tests).
  """
  from normlab.train import train_and_evaluate, train_and_evaluate_seeds
  rows = []
  with tempfile.TemporaryDirectory(prefix="normlab_bench_seeds_") as root:
    for batch in batches:
      for s in seeds:
        configs = _cells(sweep_config, batch, s, variant)
        if num_steps is not None:
          for c in configs:  # the warmup shrinks with the run (it must stay inside it)
            c.warmup_steps = max(1, min(int(c.warmup_steps), num_steps - 1))
            c.num_steps = num_steps
        t = time.perf_counter()
        seq = [train_and_evaluate(c, f"{root}/seq_{batch}_{s}_{i}") for i, c in enumerate(configs)]
        seq_s = time.perf_counter() - t
        t = time.perf_counter()
        vm = train_and_evaluate_seeds(configs, [f"{root}/vm_{batch}_{s}_{i}" for i in range(s)])
        vm_s = time.perf_counter() - t
        rows.append({
            "batch": batch, "seeds": s, "steps": configs[0].num_steps, "model": configs[0].model,
            "sequential_s": seq_s, "vmapped_s": vm_s, "speedup": seq_s / vm_s,
            "sequential_compile_s": sum(r["compile_time_s"] for r in seq),
            "vmapped_compile_s": vm[0]["compile_time_s"],
            "sequential_train_s": sum(r["train_time_s"] for r in seq),
            "vmapped_train_s": vm[0]["train_time_s"],
            "max_rel_diff_final_loss": max(abs(a["final_train_loss"] - b["final_train_loss"])
                                           / max(abs(a["final_train_loss"]), 1e-30) for a, b in zip(seq, vm)),
        })
  return rows
