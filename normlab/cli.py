"""Entry-point wrapper for scripts/: user mistakes become one `error: ...` line and exit status 2."""
from __future__ import annotations

import sys
from typing import Callable

from absl import app


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


def run(main: Callable) -> None:
  """absl.app.run(main), printing user errors as one line on stderr and exiting 2."""
  def wrapped(argv):
    try:
      return main(argv)
    except user_error_types() as e:  # noqa: B030 (a tuple computed at call time)
      print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
      sys.exit(2)
  app.run(wrapped)
