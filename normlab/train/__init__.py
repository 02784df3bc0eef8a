"""Config-driven, jit-compiled, data-parallel, resumable training.

    summary = train_and_evaluate(config, workdir)   # config from configs/NAME.py:get_config(preset)

Modules: validate (ConfigError before anything compiles), optim (optax optimizers/schedules),
state (TrainState), step (pure train/eval steps + shard_map data parallelism), checkpoint (orbax,
fallback on corrupt), metrics_io (metrics.jsonl, TensorBoard, JSON), workdir (new/resume/done,
refuse another run), distributed (mesh, multi-process), loop (train_and_evaluate).
"""
from normlab.train.errors import ConfigError, TrainingDivergedError, UserError, WorkdirError
from normlab.train.loop import train_and_evaluate
from normlab.train.seeds import train_and_evaluate_seeds  # vmapped over seeds
from normlab.train.validate import validate

__all__ = ["ConfigError", "TrainingDivergedError", "UserError", "WorkdirError", "train_and_evaluate",
           "train_and_evaluate_seeds", "validate"]
