"""The build stage of the loop: data, model, optimizer and initial state (`build`), then the compiled steps
(`compile_steps`). User mistakes that only show here (a model that does not build on the data, a norm
that sees single values) are ConfigErrors, raised before any training step.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from normlab import data, registry
from normlab.checks import SingleValueError
from normlab.train import devices as devices_lib, distributed, optim, state as state_lib, step as step_lib
from normlab.train.errors import ConfigError
from normlab.train.layout import Single, Vmapped
from normlab.train.validate import check_batch_fits

EVAL_CACHE_BYTES = 256 << 20  # keep the eval split on device when it is this small


def build_model(config: mlc.ConfigDict, num_classes: int):
  from normlab import models
  norm = registry.make_norm(config.norm, **dict(config.norm_options))
  axis_name = step_lib.DATA_AXIS if config.bn_mode == "sync" else None
  options = config.model_options
  options = options.to_dict() if isinstance(options, mlc.ConfigDict) else dict(options)
  return models.get_model(config.model, num_classes=num_classes, norm=norm, placement=config.norm_placement,
                          axis_name=axis_name, **options)


def resolved_config(config: mlc.ConfigDict, num_devices: int) -> dict:
  """The config as recorded in config.json: num_devices resolved to the actual count."""
  d = config.to_dict()
  d["num_devices"] = num_devices
  return d


@dataclasses.dataclass
class Built:
  """What the loop trains: built from the config before any step."""
  layout: Any                       # layout.Single or layout.Vmapped
  info: data.DatasetInfo
  train_ds: Any
  test_ds: Any
  host_batch: Callable[[int, int], dict]  # (seed, step) -> the host batch the run trains on
  model: Any
  apply: Callable                   # model.apply, or its wrapper for {'x', 'mask'} inputs
  tx: Any
  schedule: Callable
  state: Any                        # the initial state (S stacked states when vmapped), on the devices


def build(config: mlc.ConfigDict, num_devices: int, seeds, *, vmapped: bool, scan_steps: int = 1,
          batches: Callable[[int], dict] | None = None) -> Built:
  """Data (shared by the runs; each seed has its own order), model, optimizer and initial state."""
  info = data.get_dataset_info(config.dataset)
  data_dir = config.data_dir or None
  train_ds = data.load(config.dataset, "train", data_dir=data_dir)
  test_ds = data.load(config.dataset, "test" if "test" in info.splits else info.splits[-1], data_dir=data_dir)
  check_batch_fits(config, len(train_ds))

  def host_batch(seed: int, step: int) -> dict:
    if batches is not None:
      return batches(step)
    return data.train_batch(train_ds, config.batch_size, seed, step, augment=config.augment,
                            normalize_inputs=config.normalize_inputs)

  mesh = devices_lib.make_mesh(config, num_devices)  # one device when the devices are emulated
  layout = Vmapped(seeds, mesh, scan_steps, config.num_steps) if vmapped else Single(seeds, mesh)
  tx, schedule = optim.make_optimizer(config), optim.make_schedule(config)
  rows = config.batch_size // num_devices
  try:
    model = build_model(config, info.num_classes)
    state = layout.init_state(model, tx, host_batch, rows)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config.model: {config.model!r} with {config.model_options.to_dict()} cannot be "
                      f"built for dataset {config.dataset!r}: {str(e).splitlines()[0]}") from e
  apply = state_lib.input_apply(model, jax.tree.map(lambda a: a[:rows], host_batch(layout.seeds[0], 0)["x"]))
  return Built(layout, info, train_ds, test_ds, host_batch, model, apply, tx, schedule, layout.place(state))


class Evaluator:
  """Test-split loss and accuracy of every run, with eval-mode norms: a list of {'eval_loss',
  'eval_accuracy'}, one per run. The split stays on the devices when it is small."""

  def __init__(self, config, built: Built, eval_fn, state):
    self.S = built.layout.S
    sharding = step_lib.batch_sharding(built.layout.mesh)
    self._put = lambda b: distributed.global_batch(b, sharding)
    self._batches = lambda: data.eval_batches(built.test_ds, config.eval_batch_size,
                                              normalize_inputs=config.normalize_inputs)
    self._compiled = eval_fn.lower(state, self._put(next(self._batches()))).compile()
    self._cache = None

  def keep_on_device(self) -> None:
    self._cache = [self._put(b) for b in self._batches()]

  def __call__(self, state) -> list[dict[str, float | None]]:
    total = None
    for b in self._cache if self._cache is not None else (self._put(b) for b in self._batches()):
      sums = self._compiled(state, b)
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = {k: np.reshape(np.asarray(v, np.float64), (self.S,)) for k, v in jax.device_get(total).items()}
    return [{"eval_loss": float(total["loss_sum"][j]) / float(total["count"][j]),
             "eval_accuracy": float(total["correct"][j]) / float(total["count"][j])} for j in range(self.S)]


def compile_steps(config, built: Built, state, start: int, *, donate: bool, test_eval: bool
                  ) -> tuple[Callable, Callable | None, float]:
  """(train step, evaluator, compile seconds) for `state` (the initial or restored one): the train step
  compiled for one call's input, donating its input state when `donate`; the evaluator (None without
  `test_eval`) over the test split."""
  layout = built.layout
  train_fn, eval_fn = layout.steps(config, apply=built.apply, tx=built.tx, schedule=built.schedule,
                                   num_classes=built.info.num_classes, donate=donate)
  t0 = time.perf_counter()
  try:
    arrays = layout.host_input(built.host_batch, start, layout.K)
    train = train_fn.lower(state, *layout.device_input(arrays, layout.K)).compile()
  except SingleValueError as e:
    raise ConfigError(str(e.with_hint(
        f"set --config.norm_options.allow_single_value=True (norm {config.norm!r}, batch_size "
        f"{config.batch_size} over {len(layout.mesh.devices.flat)} devices)"))) from None
  evaluator = Evaluator(config, built, eval_fn, state) if test_eval else None
  compile_time = time.perf_counter() - t0
  if evaluator is not None and len(built.test_ds) * int(np.prod(built.info.input_shape)) * 4 <= EVAL_CACHE_BYTES:
    evaluator.keep_on_device()
  return train, evaluator, compile_time
