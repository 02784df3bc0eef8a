"""Config-driven, jit-compiled, data-parallel, resumable training.

    summary = train_and_evaluate(config, workdir)   # config from configs/NAME.py:get_config(preset)

Modules, in the order of the loop's stages: base_config (the keys, defaults and types), validate
(ConfigError before anything compiles), workdir (new/resume/done, refuse another run), build (data,
model, optimizer, initial state, compiled steps; optim: optax optimizers/schedules, state: TrainState,
step: pure train/eval steps + shard_map data parallelism, layout: one run or S vmapped seeds),
checkpoint (orbax, fallback on corrupt), loop (train_and_evaluate: the one training loop), hooks and
actions (CLU-style periodic hooks: the studies' measurements, and the loop's own evaluate/log/checkpoint),
metrics_io (metrics.jsonl, TensorBoard, JSON), interrupts (SIGINT/SIGTERM: stop with a checkpoint),
distributed (mesh, multi-process), seeds (S seeds vmapped in one program: an option of the loop).
Attributes load lazily, so the errors import without jax (flag errors and the one-line exit are
`normlab.cli`).
"""
import importlib

from normlab.train.errors import ConfigError, TrainingDivergedError, UserError, WorkdirError

_LAZY = {
    "train_and_evaluate": "normlab.train.loop",
    "train_and_evaluate_seeds": "normlab.train.seeds",  # S seeds vmapped in one program
    "validate_config": "normlab.train.validate",
}

__all__ = ["ConfigError", "TrainingDivergedError", "UserError", "WorkdirError", *_LAZY]


def __getattr__(name):
  if name in _LAZY:
    module = importlib.import_module(_LAZY[name])
    return module.validate if name == "validate_config" else getattr(module, name)
  raise AttributeError(f"module 'normlab.train' has no attribute {name!r}")
