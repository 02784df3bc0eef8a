"""The one 'unknown X' message: the bad value, the close match (difflib, case, prefix, alias), the choices;
and the entry points print it as one `error:` line with exit 2."""
import os
import subprocess
import sys

import pytest

from normlab.errors import did_you_mean, unknown

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("value,choices,aliases,hint", [
    ("learning_rat", ["learning_rate", "num_steps"], None, "learning_rate"),
    ("smok", ["smoke", "cpu", "gpu"], None, "smoke"),
    ("Batch", ["batch", "group"], None, "batch"),
    ("bn", ["batch", "group"], {"bn": "batch"}, "batch"),
    ("zzz", ["batch", "group"], None, None),
])
def test_did_you_mean(value, choices, aliases, hint):
  got = did_you_mean(value, choices, aliases)
  assert got == (f" (did you mean {hint!r}?)" if hint else "")


def test_unknown_names_value_hint_and_choices_on_one_line():
  msg = unknown("preset", "smok", ("smoke", "cpu"), prefix="configs/x.py")
  assert msg == "configs/x.py: unknown preset 'smok' (did you mean 'smoke'?); valid choices: smoke, cpu"
  assert "\n" not in msg


def test_sweep_bad_preset_is_one_error_line_exit_2(tmp_path):
  done = subprocess.run([sys.executable, "scripts/sweep.py", "--config=configs/sweeps/batch_size.py:smok",
                         f"--workdir={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      "error: configs/sweeps/batch_size.py: unknown preset 'smok' (did you mean 'smoke'?); "
      "valid choices: smoke, cpu, gpu"]
