"""experiments/: the shared plot, the configs, the CLI, and the theory study end to end on a trimmed smoke preset.

The verdicts are not asserted (they are what the run finds); the report's shape and the exact
numeric facts the machinery guarantees (identities, the seed's wrong sign) are.
"""
import json
import os
import subprocess
import sys

import pytest

from experiments import _study as S

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_errorbar_plot_and_fmt(tmp_path):
  ok, stuck = S.stat([1.0, 2.0]), S.stat([2.0, 3.0], converged=False)
  path = S.errorbar_plot(str(tmp_path / "new"), "a.png", [
      {"title": "t", "series": {"x": ([1, 2], [ok, stuck])}, "logx": 2, "band": ("b", ok)},
      {"series": {"y": (["u", "v"], [ok, None])}, "logy": True}])
  assert os.path.getsize(path) > 1000
  assert S.fmt(0.000123456) == "1.23e-04" and S.fmt(12.345) == "12.3" and S.fmt(0) == "0"


def test_configs_load_and_refuse_unknown_presets():
  for study in ("theory", "ics", "landscape"):
    for preset in S.PRESETS:
      c = S.load_config(study, preset)
      assert c.preset == preset
      with pytest.raises(AttributeError):
        c.not_a_key = 1  # locked
  with pytest.raises(ValueError, match="unknown preset"):
    S.load_config("ics", "huge")


@pytest.mark.slow  # a study smoke run (pytest.ini: slow)
def test_theory_study_trimmed_smoke(tmp_path):
  from experiments import theory
  c = S.load_config("theory", "smoke")
  c.unlock()
  c.survey.n = 6
  c.survey.kinds = ("isotropic", "network")
  c.bn_grad.trials = 2
  c.identity_trials = 20
  c.init.train.num_steps = 10
  c.init.train.model_options.widths = (16, 16)
  path = S.run_and_report(theory, c, str(tmp_path), log=lambda *a: None)
  assert len(S.read_claim_table(path)) >= 8
  assert os.path.getsize(tmp_path / "theory.png") > 1000
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
