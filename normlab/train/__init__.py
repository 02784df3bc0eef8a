"""Config-driven, jit-compiled, data-parallel, resumable training.

    summary = train_and_evaluate(config, workdir)   # config from configs/NAME.py:get_config(preset)

Modules: validate (ConfigError before anything compiles), optim (optax optimizers/schedules),
state (TrainState), step (pure train/eval steps + shard_map data parallelism), checkpoint (orbax,
fallback on corrupt), metrics_io (metrics.jsonl, TensorBoard, JSON), workdir (new/resume/done,
refuse another run), distributed (mesh, multi-process), loop (train_and_evaluate: the one training
loop), hooks (CLU-style periodic hooks of the loop: the studies' measurements), seeds (S seeds
vmapped in one program: an option of the loop), base_config (the keys, defaults and types). Attributes load lazily, so the errors import without jax (flag errors and
the one-line exit are `normlab.cli`).
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
