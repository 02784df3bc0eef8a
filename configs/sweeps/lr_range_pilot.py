"""The budget pilot of the lr_range study (experiments/pilot.py with configs/experiments/lr_range_pilot.py): the
study's BN cells (every lr of the grid, 3 seeds) on its protocol, the cells its "BN still trains well at a large lr"
claim compares. The pilot runs this sweep at each candidate budget, overriding `budget_examples`.
"""
from configs.sweeps import lr_range

TRAIN_EXAMPLES = lr_range.TRAIN_EXAMPLES


def get_config(arg: str = "smoke"):
  c = lr_range.get_config(arg)
  c.title = "budget pilot: the BN cells of the lr_range study"
  c.grid.variant = ("BN",)
  return c
