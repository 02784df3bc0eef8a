"""Claim studies: one module per study, each a config (configs/experiments/<study>.py) and a table of claims.

    python -m experiments.<study> --preset=smoke|cpu|gpu --workdir=DIR

Each writes DIR/report.md (claim | paper | ours ± s.e. | converged cells | verdict), its plot and results.json;
the shared code (statistics, rules, convergence, provenance, report, plot, entry point) is experiments/_study.py.
"""
