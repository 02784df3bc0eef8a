"""Experiment configs: `get_config(preset)` per model family (see common.py); sweeps/ holds grids."""
