"""Runs a sweep: python scripts/sweep.py --config=configs/sweeps/NAME.py[:PRESET] --workdir=DIR

--cell=K runs one cell; --print_commands prints one command per unfinished cell (--format=slurm: an
sbatch array script instead); --status prints what each cell is doing (read-only); --report_only
rebuilds results.csv, report.md and the plots from what exists. Any number of these processes may run
at once on one DIR: cells are claimed with lock files (see normlab/sweep/runner.py). --multihost (or
JAX_COORDINATOR_ADDRESS / NORMLAB_MULTIHOST=1) starts jax.distributed, so that one cell spans all the
processes, as scripts/train.py does. A cell's num_devices runs on that many real devices where they exist,
else emulated on one device as the same math (the train config's `devices`, normlab/train/devices.py): a
CPU-only machine needs no XLA_FLAGS. `batch_size` in a sweep is per device; `global_batch` = num_devices x it.
Exit status: 0 done, 2 user error (one `error:` line), 130 / 143 stopped by SIGINT / SIGTERM (the cell in
training checkpointed at the step reached; rerun to resume).
"""
import os
import sys

from absl import flags

from normlab import cli
from normlab.train import interrupts

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Sweep config: configs/sweeps/NAME.py[:PRESET].", required=True)
flags.DEFINE_string("workdir", None, "Directory for the sweep's cells and results.", required=True)
flags.DEFINE_integer("cell", None, "Run only cell K (0-based, grid order).")
flags.DEFINE_bool("print_commands", False, "Print the unfinished cells as commands and exit.")
flags.DEFINE_string("format", "shell", "With --print_commands: shell (one command per line) or slurm "
                    "(an sbatch array script).")
flags.DEFINE_string("sbatch_options", "", "With --format=slurm: extra #SBATCH options, e.g. "
                    "'--gres=gpu:1 --time=02:00:00 --partition=gpu'.")
flags.DEFINE_bool("status", False, "Print finished/running/stale/pending cells and an estimate; writes nothing.")
flags.DEFINE_bool("report_only", False, "Only rebuild results.csv, report.md and plots.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (one cell over several processes).")


def main(argv):
  del argv
  from normlab.sweep import grid
  spec = FLAGS.config
  config = grid.load_config_file(spec)
  if FLAGS.status:
    from normlab.sweep import status
    print(status.format_status(status.cell_states(grid.expand(config), FLAGS.workdir), FLAGS.workdir))
    return
  if FLAGS.print_commands:
    from normlab.sweep import runner
    n = runner.print_commands(spec, config, FLAGS.workdir, fmt=FLAGS.format, sbatch_options=FLAGS.sbatch_options)
    print(f"# {n} unfinished cells", file=sys.stderr)
    return
  from normlab.train import distributed
  distributed.maybe_initialize(FLAGS.multihost)
  cli.setup_logging()
  from normlab import sweep
  sweep.run_sweep(config, FLAGS.workdir, cell_index=FLAGS.cell, report_only=FLAGS.report_only, log=cli.log)
  if distributed.is_main_process():
    print(f"sweep: results in {os.path.join(FLAGS.workdir, 'results.csv')} and report.md")




if __name__ == "__main__":
  with interrupts.handled():  # SIGINT/SIGTERM: the cell in training stops with a checkpoint, exit 130/143
    cli.run(main)
