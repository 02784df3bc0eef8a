"""Experiment configs: presets, docstrings, the schema, and one-line ConfigErrors for bad values."""
import glob
import importlib.util
import os
import subprocess
import sys

import ml_collections as mlc
import pytest

from configs import common
from normlab.train import ConfigError
from normlab.train.validate import SCHEMA, validate

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG_FILES = sorted(
    p for p in glob.glob(os.path.join(REPO_ROOT, "configs", "*.py"))
    if not os.path.basename(p).startswith(("_", "common")))
REQUIRED_PRESETS = ("smoke", "cpu", "gpu")


def load_module(path):
  spec = importlib.util.spec_from_file_location(f"cfg_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def config_ids():
  return [os.path.basename(p) for p in CONFIG_FILES]


def test_there_are_experiment_configs():
  names = {os.path.basename(p) for p in CONFIG_FILES}
  assert {"mlp.py", "resnet.py", "rnn.py", "vgg.py", "dln.py"} <= names


def test_base_config_matches_schema():
  assert set(common.get_base_config().keys()) == set(SCHEMA)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=config_ids())
def test_presets_exist_and_validate(path):
  module = load_module(path)
  for preset in REQUIRED_PRESETS:
    assert preset in module.PRESETS
  for preset in module.PRESETS:
    config = module.get_config(preset)
    assert validate(config) >= 1, (path, preset)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=config_ids())
def test_docstring_gives_command_metric_and_time(path):
  module = load_module(path)
  doc = module.__doc__
  assert f"scripts/train.py --config=configs/{os.path.basename(path)}" in doc
  assert "%" in doc and " s" in doc  # an expected accuracy and a time
  for preset in module.PRESETS:
    assert f"  {preset} " in doc, f"preset {preset!r} is not described in the docstring of {path}"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=config_ids())
def test_unknown_preset_is_one_line_listing_presets(path):
  module = load_module(path)
  with pytest.raises(ValueError) as e:
    module.get_config("nope")
  message = str(e.value)
  assert "\n" not in message and "'nope'" in message
  for preset in REQUIRED_PRESETS:
    assert preset in message


def test_default_preset_is_cpu():
  module = load_module(os.path.join(REPO_ROOT, "configs", "mlp.py"))
  assert module.get_config().to_dict() == module.get_config("cpu").to_dict()


def smoke(**overrides) -> mlc.ConfigDict:
  config = load_module(os.path.join(REPO_ROOT, "configs", "mlp.py")).get_config("smoke")
  for key, value in overrides.items():
    node = config
    *parents, last = key.split(".")
    for p in parents:
      node = node[p]
    with node.ignore_type():
      node[last] = value
  return config


BAD = [
    ({"norm": "btach"}, "config.norm", "'btach'", "group"),
    ({"model": "resnet2000"}, "config.model", "'resnet2000'", "resnet1d"),
    ({"dataset": "mnist3d"}, "config.dataset", "'mnist3d'", "mnist1d"),
    ({"optimizer": "lion"}, "config.optimizer", "'lion'", "adamw"),
    ({"schedule": "linear"}, "config.schedule", "'linear'", "warmup_cosine"),
    ({"norm_placement": "inside"}, "config.norm_placement", "'inside'", "after_activation"),
    ({"bn_mode": "global"}, "config.bn_mode", "'global'", "local"),
    ({"nan_policy": "ignore"}, "config.nan_policy", "'ignore'", "skip"),
    ({"num_steps": -5}, "config.num_steps", "-5", "> 0"),
    ({"batch_size": 0}, "config.batch_size", "0", "> 0"),
    ({"learning_rate": 0.0}, "config.learning_rate", "0.0", "> 0"),
    ({"batch_size": 60}, "config.batch_size", "60", "8 devices"),
    ({"eval_batch_size": 100}, "config.eval_batch_size", "100", "multiple of 8"),
    ({"num_devices": 64, "devices": "real"}, "config.num_devices", "64", "8 available"),
    ({"devices": "fake"}, "config.devices", "'fake'", "emulated"),
    ({"norm_options.num_groups": 4}, "config.norm_options.num_groups", "unknown batch norm option 'num_groups'", "momentum"),
    ({"norm_options.axis_name": "data"}, "config.norm_options.axis_name", "bn_mode", "sync"),
    ({"model_options.depth": 3}, "config.model_options.depth", "unknown mlp model option 'depth'", "widths"),
    ({"momentum": 1.5}, "config.momentum", "1.5", "[0, 1)"),
    ({"schedule": "warmup_cosine", "warmup_steps": 0}, "config.warmup_steps", "0", "warmup_cosine"),
    ({"batch_size": "64"}, "config.batch_size", "'64'", "int"),
    ({"colour": "blue"}, "config.colour", "unknown config key", "batch_size"),
]


@pytest.mark.parametrize("overrides,key,value,valid", BAD, ids=[next(iter(b[0])) for b in BAD])
def test_bad_config_is_one_line_config_error(overrides, key, value, valid):
  with pytest.raises(ConfigError) as e:
    validate(smoke(**overrides), num_available_devices=8)
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(key + ":"), message
  assert value in message and valid in message, message


def test_missing_key_is_config_error():
  config = smoke()
  del config["seed"]
  with pytest.raises(ConfigError, match="config.seed: missing"):
    validate(config)


def test_config_error_is_a_value_error_and_user_error():
  from normlab.errors import UserError
  assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, UserError)


def run_cli(*args, timeout=120):
  env = dict(os.environ)
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "train.py"), *args],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


@pytest.mark.parametrize("args,expected", [
    (["--config=configs/mlp.py:smoke", "--config.colour=blue"], "unknown config key 'colour'"),
    (["--config=configs/mlp.py:smoke", "--config.norm=btach"], "config.norm: unknown norm 'btach'"),
    (["--config=configs/mlp.py:huge"], "unknown preset 'huge'"),
    (["--config=configs/nofile.py"], "cannot load config file 'configs/nofile.py': no such file"),
    (["--config=configs/mlp.py:smoke", "--config.num_steps=abc"], "flag --config.num_steps=abc: invalid literal"),
    (["--config=configs/resnet.py:smoke", "--config.norm=group", "--config.norm_options.num_groups=7"],
     "num_groups=7 equal groups; valid group counts: [1, 2, 4, 8, 16, 32]"),
    (["--config=configs/resnet.py:smoke", "--config.norm_options.num_grups=4"],
     "config.norm_options.num_grups: unknown batch norm option 'num_grups'; valid choices: use_running_average, axis"),
    (["--config=configs/resnet.py:smoke", "--config.model_options.kernel_size=abc"],
     "config.model_options.kernel_size='abc'"),
], ids=["unknown-key", "bad-norm", "unknown-preset", "missing-file", "bad-value", "bad-num-groups",
        "bad-norm-option", "bad-model-option-type"])
def test_cli_user_errors_exit_2_with_one_line(tmp_path, args, expected):
  result = run_cli(f"--workdir={tmp_path / 'w'}", *args)
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  assert "Traceback" not in result.stderr + result.stdout
  assert not os.path.exists(tmp_path / "w")  # nothing was started


def test_norm_and_model_options_from_the_command_line_reach_a_valid_config():
  from normlab import cli_options
  argv = ["train.py", "--config=configs/resnet.py:smoke", "--config.norm=group", "--config.norm_options.num_groups=4",
          "--config.norm_options.epsilon=1e-3", "--config.model_options.width=0.5",
          "--config.norm_options.use_scale=false"]
  rest, options = cli_options.split_option_flags(argv)
  assert rest == argv[:3]
  assert options == {"norm_options": {"num_groups": 4, "epsilon": 1e-3, "use_scale": False},
                     "model_options": {"width": 0.5}}
  config = load_module(os.path.join(REPO_ROOT, "configs", "resnet.py")).get_config("smoke")
  config.lock()
  config.norm = "group"
  cli_options.apply_options(config, options)
  assert config.norm_options.num_groups == 4 and config.model_options.width == 0.5
  validate(config)
  with pytest.raises(ValueError, match="kernel_size='x'"):
    cli_options.apply_options(config, {"model_options": {"kernel_size": "x"}})


def test_unknown_override_message_names_key_and_valid_keys():
  from normlab import cli
  argv = ["train.py", "--config=configs/mlp.py:smoke", "--config.model_options.depth=3"]
  old = os.getcwd()
  os.chdir(REPO_ROOT)
  try:
    message = cli.unknown_override(argv)
  finally:
    os.chdir(old)
  assert "'model_options.depth'" in message and "widths" in message and "\n" not in message


def test_flag_errors_are_told_apart_by_their_chain_not_their_text():
  from normlab import cli
  try:  # as a config file's error reaches parse_or_exit: get_config -> config_flags -> absl
    try:
      try:
        raise ValueError("unknown preset 'x' for configs/mlp.py; valid presets: smoke, cpu, gpu")
      except ValueError:
        raise ValueError("Error whilst parsing config file:\n\nTraceback ...")
    except ValueError as e:
      raise RuntimeError("flag --config=configs/mlp.py:x: Error whilst parsing config file:") from e
  except RuntimeError as e:
    chained = e
  assert cli.flag_error_line(chained) == "unknown preset 'x' for configs/mlp.py; valid presets: smoke, cpu, gpu"
  try:  # a flag value its parser rejects: absl's own one line, naming the flag
    try:
      int("abc")
    except ValueError as e:
      raise RuntimeError("flag --config.num_steps=abc: invalid literal") from e
  except RuntimeError as e:
    assert cli.flag_error_line(e) == "flag --config.num_steps=abc: invalid literal"
