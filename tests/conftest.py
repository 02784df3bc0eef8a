"""Test setup: the tests' data dir, two compile-time savers, the `float64` fixture and the `devices(n)` marker.

The only global settings are for speed (classic threefry, a session compilation cache; below). float64
is on only in the tests that use the `float64` fixture (modules that compare against the float64
references in tests/references.py mark themselves with `pytestmark = pytest.mark.usefixtures("float64")`).
A test marked `@pytest.mark.devices(n)` runs in a subprocess with n fake CPU devices, together with its
module's other devices(n) tests (XLA reads the device count once, before jax first touches a device, so it
cannot be changed inside this process); its outcome is reported here.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

# Subprocesses (scripts/*.py, `python -c`) run this checkout's normlab whether or not it is pip-installed.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("NORMLAB_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "tfds"))
# Threefry's "partitionable" mode (jax's default) costs ~1-2 s of XLA:CPU compile per shape drawn, against
# ~0.3 s in the classic mode, and model inits in the tests draw hundreds of shapes. The classic mode draws
# other bits but with the same guarantees (deterministic, and independent of sharding); nothing here
# depends on particular bits. Subprocesses inherit it.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
# One persistent compilation cache for this session: its xdist workers and every subprocess they start
# (scripts, devices(n) runs) share the compiles that take over jax's default threshold of 1 s (train
# steps, models), which the tests build again and again in new jit wrappers. An entry is used only when the
# HLO, compile options, backend and jax version all match. A new directory per session, removed at its end.
_OWN_CACHE = None  # the directory this process made (the xdist controller's, or a lone pytest's)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE = tempfile.mkdtemp(prefix="normlab-test-jax-cache-")
_CHILD = "NORMLAB_TEST_DEVICES"  # set in the subprocess of a `devices(n)` test: run it here


def pytest_configure(config):
  config.addinivalue_line("markers", "devices(n): runs in a subprocess with n fake CPU devices")


def pytest_unconfigure(config):
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


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


_RESULTS: dict = {}  # node id -> (failed, output, seconds) of the devices(n) tests already run in a subprocess


def _junit_key(nodeid: str) -> tuple[str, str]:
  """(classname, name) that --junitxml gives the test `nodeid`."""
  parts = nodeid.split("::")
  return ".".join([parts[0][:-len(".py")].replace("/", "."), *parts[1:-1]]), parts[-1]


def _run_module_devices_tests(item, n: int) -> None:
  """Runs, in one `python -m pytest` with n fake devices, every devices(n) test of item's module that this
  session collected and has not run yet (one process start instead of one per test); fills _RESULTS."""
  import xml.etree.ElementTree as ET
  module = item.nodeid.split("::")[0]
  ids = [i.nodeid for i in item.session.items if i.nodeid.split("::")[0] == module and i.nodeid not in _RESULTS
         and i.get_closest_marker("devices") is not None and int(i.get_closest_marker("devices").args[0]) == n]
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}",
             **{_CHILD: str(n)})
  with tempfile.TemporaryDirectory() as tmp:
    xml = os.path.join(tmp, "results.xml")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-W", "ignore::DeprecationWarning", f"--junitxml={xml}", *ids],
                          cwd=str(item.config.rootpath), env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    cases = {}
    if os.path.isfile(xml):
      for case in ET.parse(xml).iter("testcase"):
        bad = [c for c in case if c.tag in ("failure", "error")]
        cases[(case.get("classname"), case.get("name"))] = (
            bool(bad), "\n".join((c.get("message") or "") + "\n" + (c.text or "") for c in bad),
            float(case.get("time") or 0.0))
  output = (proc.stdout + proc.stderr)[-6000:]
  for nodeid in ids:  # a test missing from the report (a crash, a collection error) fails with the process output
    _RESULTS[nodeid] = cases.get(_junit_key(nodeid), (True, output, took))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
  """A `devices(n)` test: run in `python -m pytest` with n fake devices, together with its module's other
  devices(n) tests; report its own result."""
  marker = item.get_closest_marker("devices")
  if marker is None or os.environ.get(_CHILD):
    return None
  n = int(marker.args[0])
  item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
  if item.nodeid not in _RESULTS:
    _run_module_devices_tests(item, n)
  failed, output, took = _RESULTS[item.nodeid]
  for when in ("setup", "call", "teardown"):
    bad = failed and when == "call"
    rep = _report(item, when, "failed" if bad else "passed",
                  f"in a subprocess with {n} devices:\n{output[-6000:]}" if bad else None,
                  took if when == "call" else 0.0)
    item.ihook.pytest_runtest_logreport(report=rep)
  # The normal protocol would tear down here what `nextitem` does not share (an earlier test's module
  # fixtures); skipping it leaves them set up and breaks the next module's setup.
  item.session._setupstate.teardown_exact(nextitem)
  item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
  return True
