"""Grid expansion: base config + grid of values -> cells with stable ids.

A sweep config has `base` ("configs/NAME.py:PRESET", relative to the repo root or absolute), `grid`
(a ConfigDict whose leaves are tuples of values; nested dicts give dotted keys such as
`norm_options.num_groups`), `overrides` (fixed values for every cell), and `lr_scaling`
("none" or "linear": lr = base lr * global_batch / reference_global_batch), and optionally
`budget_examples`: a fixed number of training examples per cell (num_steps = budget // global_batch), so
that every batch size sees the same number of epochs, as in the Group Norm paper (then each cell
evaluates at its end and checkpoints `checkpoints_per_cell` times, default 4, and logs its train loss
`log_points` times if set), and `warmup_fraction`: warmup_steps as a fraction of each cell's steps.
`vmap_seeds=True` trains the cells that differ only in `seed` together (normlab.train.train_and_evaluate_seeds),
up to `vmap_seeds_max_batch` examples per device (0: no limit); larger batches run one seed at a time.
`subset_loss_examples=N` (N > 0) measures the training loss over a fixed subset of N training examples at the
end of every tenth of each cell (normlab.analysis.plateau.SubsetLoss, into cells/<id>/subset_loss.jsonl: what
the studies' convergence rule reads); the cells then train one seed at a time.

One unit for the batch: in a sweep (grid, overrides, variants, cell ids, results.csv, report, plots)
`batch_size` is the batch per device b and `global_batch` is num_devices x b. A cell whose sweep sets
batch_size trains with the train config's (global) batch_size = num_devices x b; num_devices must then be
set (not 0). A sweep that does not set it keeps the base config's global batch.

Keys under an `*_options` dict of the base (`norm_options.num_groups`, `model_options.widths`) may be
new: those dicts are open (the train config's validation checks them against the norm/model).

Named variants set several keys together (a norm with its options, a remedy with its settings):

    c.variants = {"bn": {"norm": "batch"}, "gn": {"norm": "group", "norm_options": {"num_groups": 8}}}
    c.grid.variant = ("bn", "gn")

`variant` is then a grid axis like any other (it shows in cell ids, results.csv and as a line key);
each cell applies base <- overrides <- its variant's keys <- the other grid values.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import re
from typing import Any

import ml_collections as mlc

from normlab.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LR_SCALINGS = ("none", "linear")


class SweepError(UserError):
  """A user mistake in a sweep config: one line naming the bad value and the valid choices."""


@dataclasses.dataclass(frozen=True)
class Cell:
  id: str
  params: dict          # dotted grid key -> value, in grid order
  config: mlc.ConfigDict


def load_config_file(spec: str) -> mlc.ConfigDict:
  """Loads "path/to/config.py[:PRESET]" by calling its get_config(PRESET)."""
  path, _, preset = spec.partition(":")
  full = path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)
  if not os.path.isfile(full):
    raise SweepError(f"config file {path!r} not found (looked at {full})")
  module_spec = importlib.util.spec_from_file_location(f"_cfg_{abs(hash(full))}", full)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(preset) if preset else module.get_config()


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  """Nested ConfigDict/dict -> {dotted.key: leaf}."""
  items = d.items() if hasattr(d, "items") else []
  out = {}
  for k, v in items:
    key = f"{prefix}{k}"
    if isinstance(v, (mlc.ConfigDict, dict)):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


VARIANT_KEY = "variant"


def _has_key(config: mlc.ConfigDict, dotted: str) -> bool:
  """True if `dotted` is in the config, or is a new key directly under an existing `*_options` dict."""
  node = config
  parts = dotted.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, (mlc.ConfigDict, dict)):
      return False
    if part not in node:
      return i == len(parts) - 1 and i > 0 and parts[i - 1].endswith("_options")
    node = node[part]
  return True


def _set(config: mlc.ConfigDict, dotted: str, value) -> None:
  *parents, last = dotted.split(".")
  node = config
  for part in parents:
    node = node[part]
  if isinstance(node, mlc.ConfigDict):
    with node.ignore_type():
      node[last] = value
  else:
    node[last] = value


def _slug(value) -> str:
  return re.sub(r"[^A-Za-z0-9.+-]", "-", str(value))


def cell_id(params: dict) -> str:
  return "__".join(f"{_slug(k)}={_slug(v)}" for k, v in params.items())


def _variants(sweep: mlc.ConfigDict, grid: dict) -> dict[str, dict]:
  """{variant name: {dotted key: value}} for the names the grid's `variant` axis uses."""
  defined = sweep.get("variants", None) or {}
  if VARIANT_KEY not in grid:
    return {}
  names = tuple(grid[VARIANT_KEY])
  unknown = [n for n in names if n not in defined]
  if unknown:
    raise SweepError(f"grid.variant names {', '.join(map(repr, unknown))} are not in sweep.variants; "
                     f"valid variants: {', '.join(defined) or '(none defined)'}")
  return {n: flatten(defined[n]) for n in names}


def global_batch(config: mlc.ConfigDict, per_device: int) -> int:
  """num_devices x the sweep's per-device `batch_size` (the train config's batch_size is global)."""
  devices = int(config.get("num_devices", 0) or 0)
  if not devices:
    raise SweepError(f"the sweep sets batch_size={per_device!r} (per device) but num_devices is 0 (all devices): "
                     f"set overrides.num_devices so that the global batch num_devices x batch_size is known")
  return devices * int(per_device)


def _reference_global_batch(sweep: mlc.ConfigDict) -> int:
  if "reference_batch_size" in sweep:
    raise SweepError("sweep.reference_batch_size is now reference_global_batch (lr = base lr * global_batch / "
                     "reference_global_batch)")
  if "reference_global_batch" not in sweep:
    raise SweepError("lr_scaling 'linear' needs sweep.reference_global_batch (the global batch of the base lr)")
  return int(sweep.reference_global_batch)


def expand(sweep: mlc.ConfigDict) -> list[Cell]:
  """All cells of the sweep, in grid order; validates the grid against the base config."""
  base = load_config_file(sweep.base)
  grid = flatten(sweep.get("grid", {}))
  if not grid or any(len(tuple(v)) == 0 for v in grid.values()):
    empty = [k for k, v in grid.items() if len(tuple(v)) == 0]
    raise SweepError(f"the sweep grid is empty{' at ' + ', '.join(empty) if empty else ''}: give at "
                     f"least one key with at least one value")
  overrides = flatten(sweep.get("overrides", {}))
  variants = _variants(sweep, grid)
  variant_keys = [k for v in variants.values() for k in v]
  for key in [k for k in grid if k != VARIANT_KEY] + list(overrides) + variant_keys:
    if not _has_key(base, key):
      raise SweepError(f"grid/override/variant key {key!r} is not in the base config {sweep.base!r}; "
                       f"valid keys: {', '.join(sorted(flatten(base)))}")
  scaling = sweep.get("lr_scaling", "none")
  if scaling not in LR_SCALINGS:
    raise SweepError(f"lr_scaling {scaling!r} is not valid; valid choices: {', '.join(LR_SCALINGS)}")
  cells = []
  for combo in itertools.product(*(tuple(v) for v in grid.values())):
    params = dict(zip(grid, combo))
    config = mlc.ConfigDict(base.to_dict())
    variant = variants.get(params.get(VARIANT_KEY), {})
    values = {**overrides, **variant, **{k: v for k, v in params.items() if k != VARIANT_KEY}}
    for key, value in values.items():
      _set(config, key, value)
    if "batch_size" in values:  # per device in the sweep, global in the train config
      config.batch_size = global_batch(config, values["batch_size"])
    if scaling == "linear":
      config.learning_rate = float(config.learning_rate) * config.batch_size / _reference_global_batch(sweep)
    budget = sweep.get("budget_examples", None)
    if budget:
      config.num_steps = max(1, int(budget) // int(config.batch_size))
      per_cell = int(sweep.get("checkpoints_per_cell", 4))
      for key, every in (("eval_every", config.num_steps),
                         ("checkpoint_every", max(1, config.num_steps // max(1, per_cell)))):
        if key in config:
          config[key] = every
      if sweep.get("log_points", None):  # train-loss windows of num_steps / log_points (convergence checks)
        config.log_every = max(1, config.num_steps // int(sweep.log_points))
    if sweep.get("warmup_fraction", None):  # the same warmup, as a fraction of each cell's steps
      config.warmup_steps = max(1, round(float(sweep.warmup_fraction) * config.num_steps))
    cells.append(Cell(cell_id(params), params, config))
  return cells
