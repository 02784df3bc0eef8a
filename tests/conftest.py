"""Test setup: the tests' data dir, the `float64` fixture and the `devices(n)` marker.

Nothing here is global: float64 is on only in the tests that use the `float64` fixture (modules that
compare against the float64 references in tests/references.py mark themselves with
`pytestmark = pytest.mark.usefixtures("float64")`), and a test marked `@pytest.mark.devices(n)` runs
in a subprocess of its own with n fake CPU devices (XLA reads the device count once, before jax
first touches a device, so it cannot be changed inside this process); its outcome is reported here.
"""
import os
import subprocess
import sys
import time

import pytest

# Subprocesses (scripts/*.py, `python -c`) run this checkout's normlab whether or not it is pip-installed.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("NORMLAB_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "tfds"))
_CHILD = "NORMLAB_TEST_DEVICES"  # set in the subprocess of a `devices(n)` test: run it here


def pytest_configure(config):
  config.addinivalue_line("markers", "devices(n): runs in a subprocess with n fake CPU devices")


@pytest.fixture
def float64():
  """jax_enable_x64 for the duration of a test."""
  import jax
  with jax.enable_x64(True):
    yield


def _report(item, when: str, outcome: str, longrepr, duration: float):
  from _pytest.reports import TestReport
  return TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, outcome, longrepr, when,
                    duration=duration)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
  """A `devices(n)` test: run its node id in `python -m pytest` with n fake devices; report the result."""
  marker = item.get_closest_marker("devices")
  if marker is None or os.environ.get(_CHILD):
    return None
  n = int(marker.args[0])
  item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}",
             **{_CHILD: str(n)})
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                         "-W", "ignore::DeprecationWarning", item.nodeid],
                        cwd=str(item.config.rootpath), env=env, capture_output=True, text=True)
  took = time.perf_counter() - t0
  failed = proc.returncode != 0
  output = (proc.stdout + proc.stderr)[-6000:]
  for when in ("setup", "call", "teardown"):
    bad = failed and when == "call"
    rep = _report(item, when, "failed" if bad else "passed",
                  f"in a subprocess with {n} devices (exit {proc.returncode}):\n{output}" if bad else None,
                  took if when == "call" else 0.0)
    item.ihook.pytest_runtest_logreport(report=rep)
  # The normal protocol would tear down here what `nextitem` does not share (an earlier test's module
  # fixtures); skipping it leaves them set up and breaks the next module's setup.
  item.session._setupstate.teardown_exact(nextitem)
  item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
  return True
