"""Trains one config: python scripts/train.py --config=configs/NAME.py[:PRESET] --workdir=DIR [--config.KEY=V]

Rerunning the same command resumes from the newest checkpoint in DIR (or says the run is finished);
--fresh moves an existing run in DIR aside to DIR.old-<timestamp> first. --multihost (or
JAX_COORDINATOR_ADDRESS in the environment) starts jax.distributed for a multi-process run.
Exit status: 0 done, 2 user error (bad config/flag/workdir, data not prepared: one `error:` line),
3 training diverged (non-finite loss under nan_policy='stop'), 130 / 143 stopped by SIGINT / SIGTERM
with a checkpoint at the step reached (normlab.train.interrupts; a second Ctrl-C exits at once).
"""
import sys

from absl import flags
from ml_collections import config_flags

from normlab import cli, cli_options
from normlab.train import interrupts

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config: configs/NAME.py[:PRESET].", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the summary.")
flags.DEFINE_bool("fresh", False, "Move an existing run in --workdir aside and start over.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (multi-process run).")


def parse_flags(argv):
  try:
    argv, options = cli_options.split_option_flags(argv)
  except ValueError as e:
    cli.fail(str(e))
  sys.argv[:] = argv  # config_flags reads its --config.KEY overrides from sys.argv
  rest = cli.parse_or_exit(argv)
  if not FLAGS.workdir:
    cli.fail("--workdir is required")
  try:
    cli_options.apply_options(FLAGS.config, options)
  except ValueError as e:
    cli.fail(str(e))
  return rest


def main(argv):
  del argv
  from normlab.train import TrainingDivergedError, distributed, train_and_evaluate
  distributed.maybe_initialize(FLAGS.multihost)
  cli.setup_logging()
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir, fresh=FLAGS.fresh)
  except TrainingDivergedError as e:
    cli.fail(str(e), code=3)


if __name__ == "__main__":
  with interrupts.handled():
    cli.run(main, flags_parser=parse_flags)
