"""The repo is a package: no import-path edits anywhere, pyproject's dependencies are the requirements
files, the README's set-up commands install it and .ci/run runs the README's test command."""
import fnmatch
import os
import re
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH_EDIT = "sys.path" + ".insert"  # spelled apart so this file is not a hit itself


def test_no_import_path_edits_remain():
  hits = []
  for top in ("configs", "scripts", "normlab", "experiments", "benchmarks", "tests"):
    for root, _, files in os.walk(os.path.join(REPO_ROOT, top)):
      for f in files:
        if f.endswith(".py"):
          path = os.path.join(root, f)
          with open(path, encoding="utf-8") as fh:
            if PATH_EDIT in fh.read():
              hits.append(os.path.relpath(path, REPO_ROOT))
  assert not hits, hits


def _read(*parts):
  with open(os.path.join(REPO_ROOT, *parts), encoding="utf-8") as f:
    return f.read()


def test_pyproject_takes_dependencies_from_the_requirements_files_and_ships_configs():
  import tomllib
  cfg = tomllib.loads(_read("pyproject.toml"))
  assert cfg["build-system"]["build-backend"] == "setuptools.build_meta"
  dyn = cfg["tool"]["setuptools"]["dynamic"]
  assert dyn["dependencies"]["file"] == ["requirements.txt"]
  assert dyn["optional-dependencies"]["test"]["file"] == ["requirements-test.txt"]
  include = cfg["tool"]["setuptools"]["packages"]["find"]["include"]
  assert {"normlab*", "configs*"} <= set(include)
  assert not any(fnmatch.fnmatch(name, p) for name in ("benchmarks", "tests") for p in include), include
  for d in ("configs", os.path.join("configs", "sweeps"), os.path.join("configs", "experiments")):
    assert os.path.exists(os.path.join(REPO_ROOT, d, "__init__.py")), d


def test_readme_commands_install_the_package_and_ci_runs_the_test_command():
  readme = _read("README.md")
  block = re.search(r"## Set up and run\n\n```bash\n(.*?)```", readme, re.S).group(1)
  commands = [ln for ln in block.splitlines() if ln and not ln.startswith("#")]
  assert len(commands) == 2 and "pip install -e ." in commands[0] and 'pip install -e ".[test]"' in commands[1]
  assert commands[1] in _read(".ci", "run").splitlines()


@pytest.mark.slow  # a throwaway venv and two installs (~1-2 min; the build backend may be fetched)
@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_install_then_import_from_another_directory(tmp_path, editable):
  import site
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  py = venv / "bin" / "python"
  pure = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  with open(os.path.join(pure, "deps.pth"), "w") as f:  # the dependencies: this interpreter's
    f.write("\n".join(site.getsitepackages()) + "\n")
  target = ["-e", REPO_ROOT] if editable else [REPO_ROOT]
  r = subprocess.run([str(py), "-m", "pip", "install", "-q", *target], capture_output=True, text=True,
                     cwd=tmp_path, timeout=600)
  assert r.returncode == 0, r.stdout + r.stderr
  code = "import sys, normlab, configs.common; print('flax' in sys.modules); import normlab.nnx"
  r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
  assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr
