"""The base class of user mistakes: scripts print them as one line and exit 2, with no traceback."""


class UserError(ValueError):
  """A bad input from the user (config, flag, dataset name...): the message is one line."""
