"""Study configs: `get_config(preset)` per study in experiments/ (shared defaults in _common.py)."""
