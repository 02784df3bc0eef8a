"""README.md's SyncBN example (the python block marked `<!-- example:syncbn -->`) runs as written: in a
fresh process with no XLA_FLAGS of ours, so the block's own request for 8 host devices is what counts."""
import os
import re
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "<!-- example:syncbn -->"


def test_readme_syncbn_example_runs_as_written():
  with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
    m = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", f.read(), re.S)
  assert m, f"README.md has no python block marked {MARKER}"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
  done = subprocess.run([sys.executable, "-c", m.group(1)], env=env, cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
