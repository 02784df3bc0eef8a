"""User mistakes: one line that names the bad value, the close match and the valid choices.

Scripts print a `UserError` as `error: <one line>` and exit 2, with no traceback (normlab.cli).
"""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping


class UserError(ValueError):
  """A bad input from the user (config, flag, dataset name...): the message is one line."""


def did_you_mean(value, choices: Iterable, aliases: Mapping[str, str] | None = None) -> str:
  """' (did you mean 'x'?)' for the closest of `choices` to `value`: an alias ('bn' -> 'batch'), a
  difflib match, a case slip or a prefix; else ''."""
  if aliases and str(value).lower() in aliases:
    return f" (did you mean {aliases[str(value).lower()]!r}?)"
  names = [str(c) for c in choices]
  close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
  if not close:  # a case slip or an abbreviation ('bn' for 'batch'): a prefix or lower-case match
    low = str(value).lower()
    close = [n for n in names if n.lower() == low] or [n for n in names if low and n.lower().startswith(low)][:1]
  return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(what: str, value, choices: Iterable, prefix: str = "", aliases: Mapping[str, str] | None = None) -> str:
  """The one message for a value outside its choices:
  "[prefix: ]unknown WHAT 'v' (did you mean 'w'?); valid choices: a, b, c"."""
  choices = list(choices)
  head = f"{prefix}: " if prefix else ""
  listed = ", ".join(map(str, choices)) or "(none)"
  return f"{head}unknown {what} {value!r}{did_you_mean(value, choices, aliases)}; valid choices: {listed}"
