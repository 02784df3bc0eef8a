"""Command-line helpers for scripts/ and experiments/: every user mistake becomes one line.

A user mistake (a `normlab.errors.UserError`, data not prepared, a bad config value, a bad flag)
prints `error: <one line>` on stderr and exits with status 2, without a traceback:

* `run(main)` wraps `absl.app.run`, turning the user errors that `main` raises into that line;
* `parse_or_exit(argv)` parses the flags of a `config_flags` entry point (scripts/train.py).
  Problems are told apart by their types, never by their text: absl's UnrecognizedFlagError (a
  flag that does not exist) and IllegalFlagValueError (a value its parser rejects; a config file's
  own error is the root of its exception chain), ml_collections' KeyError/AttributeError for an
  unknown `--config.KEY` (the key is then looked up in the config), and the OSError config_flags
  defers until the config is first read (the path is then checked).

Imports only absl here (the data and train packages load when an error is checked), so the
entry points start without jax.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags

from normlab.errors import unknown

USER_ERROR_EXIT = 2


LOG_FORMAT = "%(asctime)s %(message)s"  # every entry point's lines: `HH:MM:SS message`
LOG_DATE_FORMAT = "%H:%M:%S"


def setup_logging() -> None:
  """One log format for every entry point (train.py, sweep.py, the studies): normlab's lines (loggers
  under 'normlab': the loop, the sweep, the studies) as `HH:MM:SS message` on stderr, from process 0;
  library INFO chatter off (absl's prefix, orbax's steps, jax's probe for a TPU on machines without
  one). Idempotent."""
  import logging

  import jax
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)
  for noisy in ("jax._src.xla_bridge", "orbax", "absl"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  logger = logging.getLogger("normlab")
  if not any(getattr(h, "_normlab", False) for h in logger.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    handler._normlab = True
    logger.addHandler(handler)
  logger.setLevel(logging.INFO if jax.process_index() == 0 else logging.WARNING)
  logger.propagate = False


def log(message: str, name: str = "normlab") -> None:
  """One line in the entry points' format (see `setup_logging`)."""
  import logging
  logging.getLogger(name).info(message)


def fail(message: str, code: int = USER_ERROR_EXIT) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def first_line(error: BaseException) -> str:
  """The first line of an error's message (user errors are one line), or its type's name."""
  text = str(error)
  return text.splitlines()[0] if text else type(error).__name__


def root_cause(error: BaseException) -> BaseException:
  """The first exception of `error`'s chain (`__cause__`, else `__context__`)."""
  seen = {id(error)}
  while True:
    nxt = error.__cause__ or error.__context__
    if nxt is None or id(nxt) in seen:
      return error
    seen.add(id(nxt))
    error = nxt


def flag_error_line(error: BaseException) -> str:
  """One line for an error of parsing flags: a config file's own error (config_flags re-raises it,
  absl wraps that again: a chain of three) by its root's first line, others by their own."""
  cause = error.__cause__ or error.__context__
  if cause is not None and (cause.__cause__ or cause.__context__) is not None:
    return first_line(root_cause(error))
  return first_line(error)


def user_error_types() -> tuple[type[BaseException], ...]:
  """UserError plus the user-facing errors of the data and train packages."""
  from normlab.errors import UserError
  types: list[type[BaseException]] = [UserError]
  try:
    from normlab.data import DatasetNotPreparedError
    types.append(DatasetNotPreparedError)
  except ImportError:
    pass
  try:
    from normlab.train import ConfigError
    types.append(ConfigError)
  except ImportError:
    pass
  return tuple(types)


def run(main: Callable, **app_run_kwargs) -> None:
  """absl.app.run(main, ...), printing user errors as one line on stderr and exiting 2."""
  def wrapped(argv):
    try:
      return main(argv)
    except user_error_types() as e:  # noqa: B030 (a tuple computed at call time)
      fail(first_line(e))
  app.run(wrapped, **app_run_kwargs)


# ----------------------------------------------------------------------------- config_flags entry points

def _load_config(spec: str):
  path, _, preset = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_train_config_probe", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(preset) if preset else module.get_config()


def _has_key(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "keys") or part not in node.keys():
      return False
    node = node[part]
  return True


def _keys_here(config, dotted: str) -> list[str]:
  """The keys next to the missing one, for the message."""
  node = config
  for part in dotted.split(".")[:-1]:
    if not hasattr(node, "keys") or part not in node.keys():
      break
    node = node[part]
  return sorted(node.keys()) if hasattr(node, "keys") else []


def _flag_value(argv: Sequence[str], flag_name: str) -> str | None:
  return next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag_name}=")), None)


def unknown_override(argv: Sequence[str], flag_name: str = "config") -> str | None:
  """A message for the first `--config.KEY=...` whose KEY the (locked) config does not have."""
  spec = _flag_value(argv, flag_name)
  if spec is None or not os.path.isfile(spec.partition(":")[0]):
    return None
  try:
    config = _load_config(spec)
  except Exception:  # noqa: BLE001 (the config's own error is reported elsewhere)
    return None
  for arg in argv:
    if arg.startswith(f"--{flag_name}."):
      key = arg[len(flag_name) + 3:].split("=", 1)[0]
      if not _has_key(config, key):
        return unknown("config key", key, _keys_here(config, key), prefix=arg.split("=", 1)[0])
  return None


def _load_failure(argv: Sequence[str], flag_name: str, error: OSError) -> str:
  path = (_flag_value(argv, flag_name) or "?").partition(":")[0]
  if not os.path.isfile(path):
    return f"cannot load config file {path!r}: no such file"
  if not os.access(path, os.R_OK):
    return f"cannot load config file {path!r}: not readable"
  return f"cannot load config file {path!r}: {first_line(root_cause(error))}"


def parse_or_exit(argv: Sequence[str], flag_name: str = "config", config_required: bool = True) -> list[str]:
  """FLAGS(argv) with one-line errors; also forces loading the config so a bad path fails here."""
  FLAGS = flags.FLAGS
  try:
    rest = FLAGS(argv)
  except (KeyError, AttributeError) as e:  # ml_collections: an override of a key the config lacks
    fail(unknown_override(argv, flag_name) or f"unknown config key {first_line(root_cause(e))}")
  except (flags.Error, TypeError, ValueError) as e:
    fail(flag_error_line(e))
  except OSError as e:
    fail(_load_failure(argv, flag_name, e))
  config = getattr(FLAGS, flag_name)
  if config is None:
    if not config_required:
      return rest
    fail(f"--{flag_name} is required: --{flag_name}=configs/NAME.py[:PRESET]")
  try:
    config.keys()
  except OSError as e:  # config_flags defers a missing/unreadable file until first use
    fail(_load_failure(argv, flag_name, e))
  if len(rest) > 1:
    fail(f"unexpected arguments: {' '.join(rest[1:])}")
  return rest
