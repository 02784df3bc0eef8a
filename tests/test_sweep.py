"""Sweep runner: grid expansion, resume/skip, cluster commands, report builder (training is faked here;
tests/test_sweep_train.py runs real cells)."""
import csv
import json
import os
import subprocess
import sys

import ml_collections as mlc
import pytest

from normlab import sweep

BASE = '''
import ml_collections as mlc
def get_config(arg=None):
  c = mlc.ConfigDict()
  c.norm = "batch"; c.batch_size = 8; c.seed = 0; c.learning_rate = 0.1; c.num_steps = 10; c.num_devices = 1
  c.eval_every = 5; c.checkpoint_every = 5
  c.norm_options = mlc.ConfigDict({"num_groups": 2})
  return c
'''


@pytest.fixture
def base_path(tmp_path):
  p = tmp_path / "base.py"
  p.write_text(BASE)
  return str(p)


def make_sweep(base_path, **kw):
  s = mlc.ConfigDict()
  s.base = base_path
  s.grid = mlc.ConfigDict({"norm": ("batch", "group"), "batch_size": (4, 16), "seed": (0, 1)})
  s.overrides = mlc.ConfigDict({"num_steps": 3})
  s.lr_scaling = "none"
  s.reference_global_batch = 8
  for k, v in kw.items():
    s[k] = v
  return s


def fake_train(calls):
  """Writes a summary whose accuracy is a known function of the config."""
  def train(config, workdir):
    calls.append(workdir)
    acc = 0.5 + 0.01 * config.batch_size + (0.1 if config.norm == "group" else 0.0) + 0.001 * config.seed
    summary = {"eval_accuracy": acc, "eval_loss": 1 - acc, "final_train_loss": 2 - acc,
               "steps": config.num_steps, "wall_time_s": 1.0}
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f)
    return summary
  return train


def test_expand_grid_product_order_and_overrides(base_path):
  cells = sweep.expand(make_sweep(base_path))
  assert len(cells) == 8
  assert [c.params for c in cells[:2]] == [{"norm": "batch", "batch_size": 4, "seed": 0},
                                           {"norm": "batch", "batch_size": 4, "seed": 1}]
  assert len({c.id for c in cells}) == 8
  assert all(c.config.num_steps == 3 for c in cells)
  assert cells[-1].config.norm == "group" and cells[-1].config.batch_size == 16


def test_expand_nested_keys_and_linear_lr_and_budget(base_path):
  s = make_sweep(base_path, lr_scaling="linear", budget_examples=64)
  s.grid = mlc.ConfigDict({"batch_size": (4, 16), "norm_options": {"num_groups": (1, 4)}})
  cells = sweep.expand(s)
  assert {c.params["norm_options.num_groups"] for c in cells} == {1, 4}
  c = next(c for c in cells if c.params["batch_size"] == 16)
  assert c.config.learning_rate == pytest.approx(0.1 * 16 / 8)
  assert c.config.num_steps == 4 and c.config.eval_every == 4 and c.config.checkpoint_every == 1


def test_batch_size_is_per_device_and_global_batch_is_num_devices_times_it(base_path, tmp_path):
  """One unit: the sweep's batch_size (grid, cell id, results.csv, report) is per device; the cell's train
  config gets the global batch num_devices x b, which the lr scaling and the step budget use."""
  s = make_sweep(base_path, lr_scaling="linear", budget_examples=256)
  s.overrides.num_devices = 8
  s.grid = mlc.ConfigDict({"batch_size": (2, 4), "seed": (0,)})
  cells = sweep.expand(s)
  assert [c.id for c in cells] == ["batch-size=2__seed=0", "batch-size=4__seed=0"]
  assert [c.config.batch_size for c in cells] == [16, 32]
  assert cells[0].config.learning_rate == pytest.approx(0.1 * 16 / 8) and cells[0].config.num_steps == 256 // 16
  wd = str(tmp_path / "wd")
  sweep.run_sweep(s, wd, train_fn=fake_train([]), log=lambda *_: None)
  with open(os.path.join(wd, "results.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [(r["batch_size"], r["global_batch"], r["num_devices"]) for r in rows] == [("2", "16", "8"), ("4", "32", "8")]
  report = open(os.path.join(wd, "report.md")).read()
  assert "batch_size=2 | batch_size=4" in report and "global_batch = num_devices x batch_size" in report
  s.overrides.num_devices = 0
  with pytest.raises(sweep.SweepError, match=r"batch_size=2 \(per device\) but num_devices is 0"):
    sweep.expand(s)
  s.overrides.num_devices = 8
  s.reference_batch_size = 8
  with pytest.raises(sweep.SweepError, match="now reference_global_batch"):
    sweep.expand(s)


def test_one_seed_report_says_not_findings_and_no_spread(base_path, tmp_path):
  s = make_sweep(base_path)
  s.grid.seed = (0,)
  wd = str(tmp_path / "wd")
  sweep.run_sweep(s, wd, train_fn=fake_train([]), log=lambda *_: None)
  lines = open(os.path.join(wd, "report.md")).read().splitlines()
  table = next(i for i, line in enumerate(lines) if line.startswith("| norm |"))
  assert lines[table - 2].startswith("Smoke numbers are not findings")
  assert "| batch | 46.00 ± n/a (1 seed) |" in lines[table + 2] and "± 0.00" not in "\n".join(lines)
  with open(os.path.join(wd, "results.csv")) as f:
    assert {r["devices"] for r in csv.DictReader(f)} == {""}  # the fake summaries name no path
  s.grid.seed = (0, 1)
  sweep.write_report(s, sweep.expand(s), wd)  # two seeds (one pending): a spread where n=2, none where n=1
  assert "not findings" in open(os.path.join(wd, "report.md")).read()


@pytest.mark.parametrize("grid,match", [({}, "grid is empty"), ({"norm": ()}, "grid is empty at norm"),
                                        ({"bogus": (1,)}, "'bogus' is not in the base config")])
def test_bad_grids_give_one_line_errors(base_path, grid, match):
  s = make_sweep(base_path)
  s.grid = mlc.ConfigDict(grid)
  with pytest.raises(sweep.SweepError, match=match) as e:
    sweep.expand(s)
  assert "\n" not in str(e.value)


def test_run_skips_finished_cells_and_writes_report(base_path, tmp_path):
  calls = []
  wd = str(tmp_path / "wd")
  s = make_sweep(base_path)
  sweep.run_sweep(s, wd, train_fn=fake_train(calls), log=lambda *_: None)
  assert len(calls) == 8
  sweep.run_sweep(s, wd, train_fn=fake_train(calls), log=lambda *_: None)
  assert len(calls) == 8  # nothing re-run
  with open(os.path.join(wd, "results.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 8 and {"norm", "batch_size", "seed", "eval_accuracy", "eval_error"} <= set(rows[0])
  r = next(r for r in rows if r["norm"] == "group" and r["batch_size"] == "16" and r["seed"] == "1")
  assert float(r["eval_accuracy"]) == pytest.approx(0.5 + 0.16 + 0.1 + 0.001)
  report = open(os.path.join(wd, "report.md")).read()
  # mean over the two seeds of error = 1 - (0.5 + 0.04 + 0.0005) for batch/4
  assert "| batch | 45.95 ± 0.07 (n=2)" in report
  assert os.path.isfile(os.path.join(wd, "error_vs_batch_size.png"))


def test_single_cell_and_print_commands(base_path, tmp_path, capsys):
  calls = []
  wd = str(tmp_path / "wd")
  s = make_sweep(base_path)
  sweep.run_sweep(s, wd, cell_index=3, train_fn=fake_train(calls), log=lambda *_: None)
  assert len(calls) == 1 and calls[0].endswith(sweep.expand(s)[3].id)
  n = sweep.print_commands("x.py:smoke", s, wd)
  out = capsys.readouterr().out.strip().splitlines()
  assert n == 7 and len(out) == 7 and all("--cell=" in line for line in out)
  assert not any(line.endswith("--cell=3") for line in out)
  with pytest.raises(sweep.SweepError, match="out of range"):
    sweep.run_sweep(s, wd, cell_index=99, train_fn=fake_train(calls))


def test_report_only_marks_pending(base_path, tmp_path):
  wd = str(tmp_path / "wd")
  sweep.run_sweep(make_sweep(base_path), wd, report_only=True, log=lambda *_: None)
  with open(os.path.join(wd, "results.csv")) as f:
    assert {r["status"] for r in csv.DictReader(f)} == {"pending"}


def test_cli_user_errors_are_one_line(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  bad = tmp_path / "bad_sweep.py"
  bad.write_text("import ml_collections as mlc\ndef get_config(arg=None):\n  c = mlc.ConfigDict()\n"
                 "  c.base = 'configs/does_not_exist.py:smoke'\n  c.grid = mlc.ConfigDict({'seed': (0,)})\n"
                 "  return c\n")
  r = subprocess.run([sys.executable, os.path.join(root, "scripts", "sweep.py"), f"--config={bad}",
                      f"--workdir={tmp_path / 'wd'}"], capture_output=True, text=True, timeout=120)
  assert r.returncode == 2
  assert r.stderr.strip().startswith("error: config file 'configs/does_not_exist.py' not found")
  assert "Traceback" not in r.stderr


def test_variants_set_several_keys_and_open_options(base_path):
  s = make_sweep(base_path)
  s.variants = mlc.ConfigDict({"bn": {"norm": "batch"},
                               "gn": {"norm": "group", "norm_options": {"num_groups": 4, "epsilon": 1e-3}},
                               "bn8": {"norm": "batch", "batch_size": 8}})
  s.grid = mlc.ConfigDict({"variant": ("bn", "gn", "bn8"), "seed": (0,)})
  cells = sweep.expand(s)
  assert [c.params["variant"] for c in cells] == ["bn", "gn", "bn8"]
  gn = cells[1].config
  assert gn.norm == "group" and gn.norm_options.num_groups == 4 and gn.norm_options.epsilon == 1e-3
  assert cells[0].config.norm_options.to_dict() == {"num_groups": 2}  # the base's, untouched
  assert cells[2].config.batch_size == 8 and "variant=bn8" in cells[2].id
  s.grid = mlc.ConfigDict({"variant": ("bn", "ln")})
  with pytest.raises(sweep.SweepError, match="'ln' are not in sweep.variants; valid variants: bn"):
    sweep.expand(s)
  s.grid = mlc.ConfigDict({"variant": ("bn",)})
  s.variants.bn = {"nrom": "batch"}
  with pytest.raises(sweep.SweepError, match="'nrom' is not in the base config"):
    sweep.expand(s)


def test_diverged_cells_are_recorded_not_fatal_and_extra_columns(base_path, tmp_path):
  from normlab.train.errors import TrainingDivergedError
  calls = []
  ok = fake_train(calls)

  def train(config, workdir):
    if config.norm == "group" and config.batch_size == 16:
      raise TrainingDivergedError(3, "non-finite loss at step 3")
    return ok(config, workdir)

  wd = str(tmp_path / "wd")
  s = make_sweep(base_path, extra_columns=("learning_rate",))
  sweep.run_sweep(s, wd, train_fn=train, log=lambda *_: None)
  with open(os.path.join(wd, "results.csv")) as f:
    rows = list(csv.DictReader(f))
  bad = [r for r in rows if r["status"] == "diverged"]
  assert len(bad) == 2 and all(r["eval_error"] == "" for r in bad)
  assert all(r["learning_rate"] == "0.1" for r in rows)
  n = len(calls)
  sweep.run_sweep(s, wd, train_fn=train, log=lambda *_: None)
  assert len(calls) == n  # diverged cells count as finished
