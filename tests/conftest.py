"""Test setup: 8 fake CPU devices for the SyncBN tests (set before jax is imported), float64 on."""
import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
# Subprocesses (scripts/*.py, `python -c`) run this checkout's normlab whether or not it is pip-installed.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("NORMLAB_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "tfds"))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
