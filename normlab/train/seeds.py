"""`train_and_evaluate_seeds(configs, workdirs)`: S seeds of one config trained in one compiled program.

The S runs differ only in `seed` (model init, data order, per-step noise); everything else must be
equal (else they run one after the other with `train_and_evaluate`). This module only decides that
and prepares the workdirs: the training is the one loop's (`normlab.train.loop.train_runs` with
vmapped=True): the TrainStates are stacked on a leading seed axis and the step is
`jax.vmap(step.train_step)` over (state, batch, seed), inside the same `shard_map` over the 'data'
mesh as a single run, so bn_mode sync/local mean the same.
Metrics stay on the device until a log/eval/checkpoint step (no per-step sync). With `scan_steps=K > 1`,
K steps run per call in a `lax.scan` (steps past a boundary are masked off, so one program serves every
segment length); the default K=1 is one dispatch per step, because on CPU XLA runs the convs of a scan
body several times slower than straight-line code (ResNet-1D, batch 64: 195 vs 22 ms/step).

Each seed's workdir gets exactly what a single run writes (config.json, metrics.jsonl, tb/,
checkpoints/<step>, summary.json), with the same log/eval/checkpoint steps, and resumes the same way
(all seeds from a common checkpoint step; otherwise the unfinished seeds resume one by one). A seed
whose loss goes non-finite under nan_policy='stop' is frozen at its last finite state (the step's own
select); the other seeds go on, and its summary.json records status 'diverged' and the step (no eval
numbers), so a sweep records the failure instead of stopping.

Results equal S separate `train_and_evaluate` runs up to floating-point reassociation: vmapped convs
and reductions are batched differently by XLA, so on CPU the params agree to ~1e-5 relative after
tens of steps (tests/test_sweep_train.py), and the difference grows with training like any
perturbation of SGD. Data batches and init are bit-identical; the per-step noise/dropout bits (noisy
norms, dropout) are not: XLA's 'rbg' PRNG (normlab's default) draws other bits under vmap.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import ml_collections as mlc

from normlab.train import workdir as workdir_lib
from normlab.train.errors import ConfigError
from normlab.train.build import resolved_config
from normlab.train.loop import MixedResume, train_and_evaluate, train_runs
from normlab.train.metrics_io import read_json
from normlab.train.validate import HARMLESS_KEYS, validate

log = logging.getLogger("normlab.train")

DEFAULT_SCAN_STEPS = 1  # XLA:CPU runs convs ~2-9x slower inside a scan (while loop) than unrolled


def _without_seed(config: mlc.ConfigDict) -> dict:
  d = config.to_dict()
  for key in ("seed", *HARMLESS_KEYS):
    d.pop(key, None)
  return workdir_lib.normalize(d)


def _sequential(configs, workdirs, reason: str) -> list[dict[str, Any]]:
  log.info("training %d runs one after the other (%s)", len(configs), reason)
  return [train_and_evaluate(c, w) for c, w in zip(configs, workdirs)]


def train_and_evaluate_seeds(configs: list[mlc.ConfigDict], workdirs: list[str], *,
                             scan_steps: int | None = None) -> list[dict[str, Any]]:
  """Trains the runs `configs[i]` -> `workdirs[i]` (same config up to `seed`) together; returns summaries.

  `scan_steps`: steps per compiled call (default 1); > 1 scans over that many steps per call.
  """
  import jax
  if len(configs) != len(workdirs):
    raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  if not configs:
    return []
  if len(configs) == 1 and (scan_steps or DEFAULT_SCAN_STEPS) == 1:
    return [train_and_evaluate(configs[0], workdirs[0])]
  ref = _without_seed(configs[0])
  if any(_without_seed(c) != ref for c in configs[1:]):
    return _sequential(configs, workdirs, "configs differ in more than the seed")
  seeds = [int(c.seed) for c in configs]
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f"config.seed: the runs trained together need distinct seeds, got {seeds}")
  if jax.process_count() > 1:
    return _sequential(configs, workdirs, "multi-process run")
  t_start = time.perf_counter()
  num_devices = validate(configs[0])
  for c in configs[1:]:
    validate(c)
  workdirs = [os.path.abspath(os.path.expanduser(w)) for w in workdirs]
  summaries: dict[int, dict] = {}
  todo = []
  for i, (c, w) in enumerate(zip(configs, workdirs)):
    status = workdir_lib.prepare(w, resolved_config(c, num_devices), log=log.info)
    if status == workdir_lib.DONE:
      summaries[i] = read_json(workdir_lib.summary_path(w))
    else:
      todo.append(i)
  if todo:
    try:
      done = train_runs(configs[todo[0]], num_devices, [seeds[i] for i in todo], [workdirs[i] for i in todo],
                        vmapped=True, scan_steps=int(scan_steps or DEFAULT_SCAN_STEPS), t_start=t_start)
    except MixedResume:  # checkpoints at different steps: the unfinished seeds resume one by one
      done = [train_and_evaluate(configs[i], workdirs[i]) for i in todo]
    summaries.update(zip(todo, done))
    log.info("done: %d seeds: eval_accuracy %s", len(todo), [summaries[i].get("eval_accuracy") for i in todo])
  return [summaries[i] for i in range(len(configs))]
