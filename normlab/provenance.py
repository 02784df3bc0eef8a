"""The git commit of the checkout normlab runs from, for reports and benchmarks to name."""
from __future__ import annotations

import os
import subprocess

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit(root: str = CHECKOUT) -> tuple[str, str] | None:
  """(short sha, the first changed tracked file's `git status` line or '' for a clean tree) of the checkout
  at `root`; None outside a git checkout or without git."""
  def git(*args):
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
  try:
    sha = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError):
    return None
  return (sha, dirty.splitlines()[0] if dirty else "") if sha else None
