"""What a benchmark ran on: device, CPU model, thread counts, library versions."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import jax

from normlab import provenance


def cpu_model() -> str:
  """The CPU's marketing name from /proc/cpuinfo (Linux), else platform.processor()."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def cpu_count() -> int:
  """Cores this process may run on (the affinity mask, not the machine's total)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def _version(dist: str) -> str | None:
  try:
    return metadata.version(dist)
  except metadata.PackageNotFoundError:
    return None


def torch_module():
  """`torch` if importable, else None (the torch peers are then skipped)."""
  try:
    import torch
  except ImportError:
    return None
  return torch


def torch_device(torch) -> str | None:
  """Where torch runs to be comparable with JAX: CPU with CPU, CUDA with a GPU; None if impossible."""
  backend = jax.default_backend()
  if backend == "cpu":
    return "cpu"
  if backend == "gpu" and torch.cuda.is_available():
    return "cuda"
  return None


def setup_torch_threads(torch, n: int | None = None) -> int:
  """Gives torch `n` intra-op threads, by default as many as XLA's CPU client uses (one per core
  this process may run on)."""
  n = n or cpu_count()
  torch.set_num_threads(n)
  return n


def _load_average() -> list[float] | None:
  """1/5/15-minute load averages: other processes on the cores make every number noisier."""
  try:
    return [round(v, 2) for v in os.getloadavg()]
  except (AttributeError, OSError):
    return None


def _commit() -> str | None:
  """'abc1234 (clean tree)' of the checkout normlab runs from, or None outside a git checkout."""
  found = provenance.git_commit()
  return f"{found[0]} ({'uncommitted changes' if found[1] else 'clean tree'})" if found else None


def environment(torch=None) -> dict:
  dev = jax.devices()[0]
  env = {
      "backend": jax.default_backend(),
      "device": f"{dev.platform}:{getattr(dev, 'device_kind', '') or dev.platform}",
      "device_kind": getattr(dev, "device_kind", "") or "",
      "device_count": jax.device_count(),
      "cpu_model": cpu_model(),
      "cpu_cores": cpu_count(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": _version("jaxlib"),
      "flax": _version("flax"),
      "numpy": _version("numpy"),
      "torch": getattr(torch, "__version__", None) if torch is not None else None,
      "torch_threads": torch.get_num_threads() if torch is not None else None,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
      "load_average": _load_average(),
      "platform": f"{platform.system()} {platform.release()}",
      "argv": " ".join(sys.argv),
      "commit": _commit(),
  }
  return env
