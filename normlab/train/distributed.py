"""Devices, the 1-D 'data' mesh, multi-process start-up and feeding each process its slice of a batch.

Multi-host: `maybe_initialize()` calls `jax.distributed.initialize()` when asked (`--multihost`) or
when the environment names a coordinator (JAX_COORDINATOR_ADDRESS with JAX_NUM_PROCESSES and
JAX_PROCESS_ID; or NORMLAB_MULTIHOST=1 on a cluster JAX auto-detects, such as SLURM or Cloud TPU).
With JAX_PLATFORMS=cpu it selects gloo CPU collectives (tests run 2 processes on one machine).
Every process computes the same global batch indices from (seed, step) and feeds only its contiguous
slice of rows (`jax.make_array_from_process_local_data`); the mesh orders devices by process so those
rows land on that process's devices. Process 0 alone writes metrics, summary and config.json.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh

from normlab.train.step import DATA_AXIS

_initialized = False
HEARTBEAT_TIMEOUT_S = 60  # jax's default is 100 s; override with NORMLAB_HEARTBEAT_TIMEOUT_S


def wants_multihost(flag: bool = False) -> bool:
  return bool(flag or os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("NORMLAB_MULTIHOST") == "1")


def maybe_initialize(multihost: bool = False) -> None:
  """jax.distributed.initialize() once, if this is a multi-process run (must precede any jax use)."""
  global _initialized
  if _initialized or not wants_multihost(multihost):
    return
  if os.environ.get("JAX_PLATFORMS", "") == "cpu":  # CPU-only processes need CPU collectives
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # If a peer process dies, the coordination service notices the missing heartbeats and aborts the
  # survivors after this many seconds, instead of leaving them blocked in a collective forever.
  timeouts = {"heartbeat_timeout_seconds": int(os.environ.get("NORMLAB_HEARTBEAT_TIMEOUT_S", HEARTBEAT_TIMEOUT_S))}
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address:
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]) if "JAX_NUM_PROCESSES" in os.environ else None,
        process_id=int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ else None, **timeouts)
  else:
    jax.distributed.initialize(**timeouts)  # cluster auto-detection (SLURM, TPU pods, ...)
  _initialized = True


def make_mesh(num_devices: int = 0) -> Mesh:
  """1-D mesh ('data',) over the first `num_devices` devices (0 = all), ordered by process."""
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  if num_devices > len(devices):
    raise ValueError(f"num_devices={num_devices} but only {len(devices)} devices exist (emulate them: "
                     f"normlab.train.devices)")
  if num_devices:
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ValueError("num_devices must be 0 (all devices) in a multi-process run")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def global_batch(batch: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
  """Host arrays of the whole global batch -> global jax Arrays sharded on 'data'.

  Each process contributes only its slice of the rows (all processes hold the same global batch).
  """
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  n, p, i = len(next(iter(batch.values()))), jax.process_count(), jax.process_index()
  rows = slice(i * n // p, (i + 1) * n // p)
  return {k: jax.make_array_from_process_local_data(sharding, v[rows], v.shape) for k, v in batch.items()}


def replicate(tree, sharding: jax.sharding.NamedSharding):
  """Put a pytree (the same values on every process) on all devices of `sharding`'s mesh."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  host = jax.device_get(tree)
  return jax.tree.map(
      lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda idx: np.asarray(a)[idx]), host)


def barrier(name: str) -> None:
  """Wait for every process (no-op in a single-process run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def all_processes_agree(flag: bool) -> bool:
  """True on every process iff `flag` is True on every process (no-op in a single-process run)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.int32(bool(flag)))))


def is_main_process() -> bool:
  return jax.process_index() == 0
