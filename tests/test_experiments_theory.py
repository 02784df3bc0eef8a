"""experiments/: the shared report writer, the CLI, and the theory study end to end on a trimmed smoke preset.

The verdicts are not asserted (they are what the run finds); the report's shape and the exact
numeric facts the machinery guarantees (identities, the seed's wrong sign) are.
"""
import json
import os
import subprocess
import sys

import pytest

import experiments
from experiments import _report

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_write_report_table_figures_and_validation(tmp_path):
  fig, ax = _report.new_figure()
  ax.plot([0, 1], [1, 0])
  png = _report.save_figure(fig, str(tmp_path), "a.png")
  rows = [{"claim": "x | y", "paper": "1", "ours": "2", "verdict": "partly"}]
  path = _report.write_report(str(tmp_path), "T", rows, "some notes", [png], data={"a": 1})
  text = open(path).read()
  assert text.startswith("# T\n")
  assert "| Claim | Paper | Ours | Verdict |" in text and "x \\| y" in text and "**partly**" in text
  assert "![a](a.png)" in text and "some notes" in text
  assert json.load(open(tmp_path / "results.json")) == {"a": 1}
  with pytest.raises(ValueError, match="verdict"):
    _report.write_report(str(tmp_path), "T", [dict(rows[0], verdict="passed")])
  with pytest.raises(ValueError, match="missing"):
    _report.write_report(str(tmp_path), "T", [{"claim": "c"}])
  with pytest.raises(FileNotFoundError):
    _report.write_report(str(tmp_path), "T", rows, figures=[str(tmp_path / "nope.png")])
  assert _report.fmt(0.000123456) == "1.23e-04" and _report.fmt(12.345) == "12.3" and _report.fmt(0) == "0"


def test_configs_load_and_refuse_unknown_presets():
  for study in ("theory", "ics", "landscape"):
    for preset in experiments.PRESETS:
      c = experiments.load_config(study, preset)
      assert c.preset == preset
      with pytest.raises(AttributeError):
        c.not_a_key = 1  # locked
  with pytest.raises(ValueError, match="unknown preset"):
    experiments.load_config("ics", "huge")


@pytest.mark.slow  # a study smoke run (pytest.ini: slow)
def test_theory_study_trimmed_smoke(tmp_path):
  from experiments import theory
  c = experiments.load_config("theory", "smoke")
  c.unlock()
  c.survey.n = 6
  c.survey.kinds = ("isotropic", "network")
  c.bn_grad.trials = 2
  c.identity_trials = 20
  c.init.train.num_steps = 10
  c.init.train.model_options.widths = (16, 16)
  path = theory.run(c, str(tmp_path), log=lambda *a: None)
  text = open(path).read()
  assert text.count("\n| ") >= 8  # the claim table (+ the survey table)
  for png in ("theorem42.png", "init_distance.png"):
    assert os.path.getsize(tmp_path / png) > 1000
  data = json.load(open(tmp_path / "results.json"))
  g = data["bn_gradient"]
  assert g["ours"] < 1e-10 * g["scale"] and g["seed"] > 1e-2 * g["scale"]
  for r in data["survey"]:
    assert r["t41_holds"] == 1.0 and r["a_holds"] == 1.0
    b = r["b_holds_given_relnorm"]
    assert b != b or b == 1.0  # nan (condition never met) or always
  assert data["identity"]["err_closed"] < 1e-12
  assert all(r["same_init"] for r in data["init"])  # BN and plain nets start from the same kernels


def test_cli_refuses_both_config_and_preset(tmp_path):
  cmd = [sys.executable, "-m", "experiments.theory", "--preset=smoke",
         "--config=configs/experiments/theory.py:smoke", f"--workdir={tmp_path}"]
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2 and "error: give exactly one of" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("study", ["theory", "ics", "landscape"])
def test_smoke_presets_run_from_the_command_line(tmp_path, study):
  cmd = [sys.executable, "-m", f"experiments.{study}", "--preset=smoke", f"--workdir={tmp_path}"]
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert os.path.isfile(tmp_path / "report.md") and any(f.endswith(".png") for f in os.listdir(tmp_path))
