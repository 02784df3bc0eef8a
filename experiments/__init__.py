"""Claim studies: one module per claim, each `python -m experiments.<study> --preset=smoke|cpu|gpu
--workdir=DIR` (or `--config=configs/experiments/<study>.py:PRESET`, with `--config.key=value`
overrides). Each writes DIR/report.md (claim | paper | ours | verdict), PNG plots and results.json.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

from configs.common import PRESET_NAMES as PRESETS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_path(study: str) -> str:
  return os.path.join(REPO_ROOT, "configs", "experiments", f"{study}.py")


def main_for(study: str, run: Callable) -> None:
  """The entry point of `experiments/<study>.py`: flags --config | --preset, --workdir; calls
  run(config, workdir) -> report path. User mistakes print one `error:` line (exit 2)."""
  from absl import flags
  from ml_collections import config_flags

  from normlab import cli
  from normlab.errors import UserError

  config_flags.DEFINE_config_file("config", None, f"configs/experiments/{study}.py:PRESET", lock_config=True)
  flags.DEFINE_enum("preset", None, PRESETS, f"shorthand for --config={config_path(study)}:PRESET")
  flags.DEFINE_string("workdir", None, "output directory (report.md, plots, results.json)")
  FLAGS = flags.FLAGS

  def main(argv):
    if len(argv) > 1:
      raise UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
      raise UserError("--workdir is required")
    if (FLAGS.config is None) == (FLAGS.preset is None):
      raise UserError("give exactly one of --config=configs/experiments/%s.py:PRESET and --preset" % study)
    config = FLAGS.config
    if config is None:
      config = load_config(study, FLAGS.preset)
    t0 = time.time()
    path = run(config, FLAGS.workdir)
    print(f"{study}: report in {path} ({time.time() - t0:.0f} s)")

  cli.run(main)


def load_config(study: str, preset: str):
  """get_config(preset) from configs/experiments/<study>.py, locked (an unknown preset: the config's
  one-line UserError)."""
  import importlib.util

  spec = importlib.util.spec_from_file_location(f"_experiment_config_{study}", config_path(study))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(preset)
  config.lock()
  return config


if __name__ == "__main__":  # pragma: no cover
  sys.exit("run a study: python -m experiments.<theory|ics|landscape> --preset=smoke --workdir=DIR")
