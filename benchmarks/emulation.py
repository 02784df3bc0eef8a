"""The Group Norm sweep's slowest cell on its three paths, timed as whole training runs.

The cell is configs/sweeps/batch_size.py's BN cell at per-device batch_size 2 (8 devices, local BN, global
batch 16), cut to `steps` steps. Each path trains it with `train_and_evaluate`, and its speed is the run's own
`steps_per_s` (summary.json: training steps over training time, compilation excluded):
  emulated  one device runs the 8 devices' step (devices='emulated': what a CPU-only sweep runs);
  ghost     one device, ghost BN over groups of 2 inside the batch of 16: the same math as one norm, the
            yardstick the emulation is held to (target: emulated >= 0.8x ghost);
  real      8 forced host devices under shard_map (devices='real'), in a subprocess, since the host device
            count is fixed when jax starts.
Emulated and ghost alternate in one process, `rounds` times each; the table reports each path's median.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

SWEEP = "configs/sweeps/batch_size.py:cpu"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cell_config(path: str, steps: int):
  """The BN b=2 cell's train config, cut to `steps` steps, on `path` ('emulated', 'ghost' or 'real')."""
  from normlab.sweep import grid
  cell = next(c for c in grid.expand(grid.load_config_file(SWEEP))
              if c.params.get("variant") == "BN" and c.params.get("batch_size") == 2)
  config = cell.config
  config.num_steps, config.warmup_steps = steps, max(1, steps // 20)
  config.log_every = config.eval_every = config.checkpoint_every = steps
  if path == "ghost":
    config.norm, config.norm_options = "ghost_batch", {"virtual_batch_size": 2}
    config.num_devices, config.devices = 1, "real"
  else:
    config.devices = path
  return config


def steps_per_s(path: str, steps: int) -> float:
  from normlab.train import train_and_evaluate
  with tempfile.TemporaryDirectory() as workdir:
    return float(train_and_evaluate(cell_config(path, steps), workdir)["steps_per_s"])


def _real_in_subprocess(steps: int) -> float | None:
  """The real path's steps/s, or None if the subprocess failed (XLA:CPU's in-process all-reduce can wait past
  its rendezvous deadline and abort the process, as it did on a 2-core VM idle or loaded: one reason the
  emulation exists)."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PYTHONPATH": REPO_ROOT}
  code = f"from benchmarks.emulation import steps_per_s; print(steps_per_s('real', {steps}))"
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
  return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def run_emulation(steps: int = 1000, rounds: int = 3, real: bool = True) -> dict:
  """{'steps', 'rounds', 'steps_per_s': {path: [per round]}, 'median': {path: x}, 'emulated_over_ghost', 'real'
  ('ran', 'failed ...' or 'not run') and, when the real path ran, 'emulated_over_real'}."""
  import logging
  logging.getLogger("normlab").setLevel(logging.WARNING)
  runs = {"emulated": [], "ghost": []}
  for _ in range(rounds):
    for path in runs:
      runs[path].append(steps_per_s(path, steps))
  real_speed = _real_in_subprocess(steps) if real else None
  if real_speed is not None:
    runs["real"] = [real_speed]
  median = {p: statistics.median(v) for p, v in runs.items()}
  out = {"steps": steps, "rounds": rounds, "steps_per_s": runs, "median": median,
         "emulated_over_ghost": median["emulated"] / median["ghost"], "real": "ran" if real_speed is not None else
         ("failed (the 8-host-device process aborted)" if real else "not run")}
  if real_speed is not None:
    out["emulated_over_real"] = median["emulated"] / median["real"]
  return out


def format_emulation(result: dict) -> str:
  lines = [f"batch_size sweep, BN b=2 cell (global batch 16), {result['steps']} steps per run, median of "
           f"{result['rounds']} alternating runs (real: 1 run in a subprocess)",
           "path      steps/s  (per run)"]
  for path, values in result["steps_per_s"].items():
    lines.append(f"{path:<9} {result['median'][path]:7.1f}  ({', '.join(f'{v:.1f}' for v in values)})")
  lines.append(f"emulated / ghost: {result['emulated_over_ghost']:.2f}x (target >= 0.8x)")
  if "emulated_over_real" in result:
    lines.append(f"emulated / real 8 host devices: {result['emulated_over_real']:.2f}x")
  else:
    lines.append(f"real 8 host devices: {result['real']}")
  return "\n".join(lines)


if __name__ == "__main__":
  result = run_emulation(*(int(a) for a in sys.argv[1:3]))
  print(format_emulation(result))
  print(json.dumps(result))
