"""Sweeps: a grid over a base experiment config, one training run per cell, a results table and plots.

    cells = expand(sweep_config)            # list of Cell(id, params, config)
    run_sweep(sweep_config, workdir)        # trains unfinished cells, writes results.csv/report.md/PNGs
"""
from normlab.sweep.grid import Cell, SweepError, expand, load_config_file
from normlab.sweep.report import collect_results, write_report
from normlab.sweep.runner import print_commands, run_cell, run_sweep

__all__ = ["Cell", "SweepError", "expand", "load_config_file", "collect_results", "write_report",
           "print_commands", "run_cell", "run_sweep"]
