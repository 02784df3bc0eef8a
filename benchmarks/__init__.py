"""Benchmarks of normlab's norms against `flax.linen` and `torch.nn.functional`.

    from benchmarks import BenchConfig, run_suite, format_table
    report = run_suite(BenchConfig.quick())
    print(format_table(report))

`scripts/bench.py` is the command-line entry point; `BENCH.md` holds the numbers of one full run.
The package is part of the checkout, not of the installed distribution (it needs torch, a test extra).
"""
from benchmarks.report import format_table, to_json, to_markdown
from benchmarks.suite import DEFAULT_SHAPES, NORMS, BenchConfig, BenchReport, Result, ratio_rows, run_suite

__all__ = ["DEFAULT_SHAPES", "NORMS", "BenchConfig", "BenchReport", "Result", "format_table",
           "ratio_rows", "run_suite", "to_json", "to_markdown"]
