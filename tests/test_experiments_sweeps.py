"""The Group Norm sweep studies (experiments/batch_size.py, group_count.py, remedies.py, sync_bn.py) run end to
end on their smoke presets: the sweep trains every cell with the real loop, and report.md carries the claim
table (claim | paper | ours ± s.e. | converged cells | verdict), its linked PNG, results.csv (one row per run) and
results.json.
The claims' outcomes are not asserted (smoke runs are far too short to mean anything).
All are marked slow (study smoke runs, about a minute each on 2 CPU cores); the rules are tested fast in
tests/test_sweep_study_rules.py.
"""
import csv
import importlib
import json
import os
import time

import pytest

from experiments import _study as S


def _check(workdir, report_path, n_runs):
  assert report_path == os.path.join(workdir, "report.md")
  text = open(report_path).read()
  assert "| Claim | Paper | Ours ± s.e. | Converged cells | Verdict |" in text
  assert set(S.read_claim_table(report_path)) <= set(S.VERDICTS)
  pngs = [f for f in os.listdir(workdir) if f.endswith(".png")]
  assert pngs and all(f"({p})" in text for p in pngs)
  with open(os.path.join(workdir, "results.csv")) as f:
    runs = list(csv.DictReader(f))
  assert len(runs) == n_runs and all(r["status"] == "done" and r["eval_accuracy"] for r in runs)
  assert list(runs[0])[:8] == list(S.SWEEP_COLUMNS[:8])
  assert {r["num_devices"] for r in runs} == {"8"} and all(r["converged"] in ("True", "False") for r in runs)
  assert all(int(r["global_batch"]) == 8 * int(r["batch_size"]) for r in runs)
  assert "Trained at commit " in text and "Report written at commit " in text
  json.load(open(os.path.join(workdir, "results.json")))
  return text


def _run(study, tmp_path, n_runs, log=lambda *_: None):
  module = importlib.import_module(f"experiments.{study}")
  wd = str(tmp_path / study)
  text = _check(wd, S.run_and_report(module, S.load_config(study, "smoke"), wd, log=log), n_runs)
  return module, wd, text


@pytest.mark.slow  # a study smoke run (pytest.ini: slow)
@pytest.mark.devices(8)  # the studies' protocol: 8 devices
def test_group_count_smoke_and_rerun_skips(tmp_path):
  module, wd, text = _run("group_count", tmp_path, 3)
  assert "G=1" in text and "IN" in text
  t0 = time.perf_counter()
  logs = []
  _run("group_count", tmp_path, 3, log=logs.append)
  assert time.perf_counter() - t0 < 15
  assert any("3/3 cells already finished" in line for line in logs)


@pytest.mark.slow
@pytest.mark.devices(8)
def test_batch_size_smoke(tmp_path):
  _, _, text = _run("batch_size", tmp_path, 5)
  assert "(a) BN's error rises" in text and "(f) controlled" in text and "error_vs_batch.png" in text


@pytest.mark.slow
@pytest.mark.devices(8)
def test_remedies_smoke(tmp_path):
  _, _, text = _run("remedies", tmp_path, 4)
  assert "BRN beats BN" in text and "SyncBN beats BN" in text


@pytest.mark.slow
@pytest.mark.devices(8)
def test_sync_bn_smoke(tmp_path):
  _, wd, text = _run("sync_bn", tmp_path, 2)
  assert "SyncBN" in text
  with open(os.path.join(wd, "results.csv")) as f:
    assert {r["bn_mode"] for r in csv.DictReader(f)} == {"sync", "local"}


@pytest.mark.slow
@pytest.mark.devices(8)
def test_budget_scale_halves_every_cells_steps(tmp_path):
  module = importlib.import_module("experiments.sync_bn")
  config = S.load_config("sync_bn", "smoke")
  config.budget_scale = 0.5
  wd = str(tmp_path / "half")
  text = _check(wd, S.run_and_report(module, config, wd, log=lambda *_: None), 2)
  with open(os.path.join(wd, "results.csv")) as f:
    steps = {int(r["steps"]) for r in csv.DictReader(f)}
  from configs.sweeps import sync_bn
  half = sync_bn.get_config("smoke").budget_examples // 2
  assert steps == {half // (8 * 2)} and "at 0.5 x its budget" in text  # smoke: b=2 on 8 devices
