"""Runs a sweep: python scripts/sweep.py --config=configs/sweeps/NAME.py[:PRESET] --workdir=DIR

--print_commands prints one command per unfinished cell (for Slurm arrays / k8s jobs), --cell=K runs
one cell, --report_only rebuilds results.csv, report.md and the plots from what exists.
"""
import os
import sys

from absl import app, flags

from normlab import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Sweep config: configs/sweeps/NAME.py[:PRESET].", required=True)
flags.DEFINE_string("workdir", None, "Directory for the sweep's cells and results.", required=True)
flags.DEFINE_integer("cell", None, "Run only cell K (0-based, grid order).")
flags.DEFINE_bool("print_commands", False, "Print one command per unfinished cell and exit.")
flags.DEFINE_bool("report_only", False, "Only rebuild results.csv, report.md and plots.")


def main(argv):
  del argv
  from normlab import sweep
  spec = FLAGS.config
  config = sweep.load_config_file(spec)
  if FLAGS.print_commands:
    n = sweep.print_commands(spec, config, FLAGS.workdir)
    print(f"# {n} unfinished cells", file=sys.stderr)
    return
  sweep.run_sweep(config, FLAGS.workdir, cell_index=FLAGS.cell, report_only=FLAGS.report_only)
  print(f"sweep: results in {os.path.join(FLAGS.workdir, 'results.csv')} and report.md")


if __name__ == "__main__":
  cli.run(main)
