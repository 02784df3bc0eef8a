"""Sweep configs (grids over configs/*.py presets) for scripts/sweep.py and the sweep studies."""
