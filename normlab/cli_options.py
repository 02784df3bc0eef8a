"""`--config.norm_options.KEY=V` / `--config.model_options.KEY=V` for any option of the chosen norm or model.

A locked config cannot gain keys, and a preset sets only some options, so these flags are taken out of
argv before config_flags parses it and set afterwards; `normlab.train.validate` then checks each key
against the chosen norm's / model's options and the values against the data (e.g. num_groups=7 on 32
channels names 7 and the valid counts), each as one line. Values are Python literals (`4`, `1e-3`,
`(32, 64)`, `True`/`true`), anything else a string (`inf`).
"""
from __future__ import annotations

import ast
from typing import Any, Sequence

import ml_collections as mlc

OPTION_GROUPS = ("norm_options", "model_options")


def parse_value(text: str) -> Any:
  if text in ("true", "false"):
    text = text.capitalize()
  try:
    return ast.literal_eval(text)
  except (SyntaxError, ValueError):
    return text


def split_option_flags(argv: Sequence[str], flag_name: str = "config") -> tuple[list[str], dict[str, dict]]:
  """argv without the `--config.<group>.KEY=V` flags, and {group: {KEY: value}} from them."""
  rest, options = [], {g: {} for g in OPTION_GROUPS}
  for arg in argv:
    head, eq, value = arg.partition("=")
    group, _, key = head[len(f"--{flag_name}."):].partition(".") if head.startswith(f"--{flag_name}.") else ("", "", "")
    if group in OPTION_GROUPS and key and eq:
      if "." in key:
        raise ValueError(f"{arg}: options are one level deep; use --{flag_name}.{group}.KEY=VALUE")
      options[group][key] = parse_value(value)
    else:
      rest.append(arg)
  return rest, options


def apply_options(config: mlc.ConfigDict, options: dict[str, dict]) -> None:
  """Sets the options on `config` (a locked config too); a value of the wrong type -> one-line error."""
  for group, values in options.items():
    node = config[group]
    for key, value in values.items():
      with config.unlocked():
        try:
          node[key] = value
        except TypeError as e:
          raise ValueError(f"config.{group}.{key}={value!r}: {str(e).splitlines()[0]}") from None
