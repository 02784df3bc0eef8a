"""Which path runs a config's `num_devices` D: D real devices, or D devices emulated on one.

`config.devices`:
  'real'      shard_map over D devices (normlab.train.step.make_data_parallel); fewer than D is an error.
  'emulated'  one device runs the D devices' math (normlab.train.step.train_step with emulated_devices=D):
              the global batch's rows [d*b, (d+1)*b) are device d's shard, as the real sharding has it.
  'auto'      real if D devices exist, else emulated (the default: a CPU-only machine runs an 8-device
              sweep cell without XLA_FLAGS).
The emulated step is the same math as the real one up to float reduction order
(tests/test_emulated_devices.py): local BN's statistics over each device's b examples (ghost BN with D
groups), sync BN's over the whole batch, running statistics averaged over the devices, gradients over
D*b; the norms in PER_EXAMPLE_NORMS (no batch statistics) run the global batch as it is, in one step.
Per-step randomness: the real path folds the device index into each device's key; the emulated path does
too (the D shards run under vmap), except for PER_EXAMPLE_NORMS, whose one step draws with the key of a
single device. With the 'rbg' PRNG (normlab's default) the vmapped draws are other bits than the real
devices' (XLA draws other bits under vmap); with 'threefry2x32' they are the same bits (noisy BN, 3 steps,
8 devices: 0.19 apart in loss with rbg, 2e-7 with threefry). So the noise of noisy norms (and dropout) is
equal in distribution, not bit-equal, between the paths. No sweep config (configs/sweeps) uses either.
Emulation runs in a single process only (a multi-process run spans real devices).
"""
from __future__ import annotations

from normlab.train.errors import ConfigError

DEVICE_MODES = ("auto", "real", "emulated")
# Norms without batch statistics (each example normalized on its own, no running statistics updated
# from the batch): D devices' step on the global batch is the one-device step on it.
PER_EXAMPLE_NORMS = ("none", "layer", "group", "instance", "rms", "frn", "evonorm_s0", "local_response",
                     "frozen_batch", "weight", "weight_std")
REAL, EMULATED = "real", "emulated"


def choose(mode: str, num_devices: int, available: int, process_count: int = 1) -> str:
  """REAL or EMULATED for `num_devices` (0: all `available`) under `mode`; raises ConfigError (one line)."""
  if mode not in DEVICE_MODES:
    raise ConfigError(f"config.devices: unknown devices mode {mode!r}; valid choices: {', '.join(DEVICE_MODES)}")
  n = num_devices or available
  if n <= 1 or mode == REAL or (mode == "auto" and n <= available):
    if n > available:
      raise ConfigError(f"config.num_devices: {n} is more than the {available} available devices; set "
                        f"devices='auto' or 'emulated' to run {n} devices' math on one device")
    return REAL
  if process_count > 1:
    raise ConfigError(f"config.devices: {mode!r} would emulate {n} devices, which needs a single process "
                      f"(this run has {process_count}); use devices='real' with enough devices")
  return EMULATED


def for_config(config, num_devices: int) -> str:
  """The path `config` runs on this machine (after validate: `num_devices` is its resolved count)."""
  import jax
  return choose(config.devices, num_devices, jax.device_count(), jax.process_count())


def make_mesh(config, num_devices: int):
  """The 'data' mesh the loop shards over: `num_devices` real devices, or one device when emulated."""
  from normlab.train import distributed
  return distributed.make_mesh(1 if for_config(config, num_devices) == EMULATED else num_devices)


def emulated_devices(config, num_devices: int | None = None) -> int:
  """train_step's `emulated_devices`: on the emulated path D (1 for PER_EXAMPLE_NORMS: the global batch as
  one device's), on the real one 0 (`num_devices`: the resolved count; None: config.num_devices, 0 meaning
  all devices)."""
  import jax
  n = int(config.num_devices if num_devices is None else num_devices) or jax.device_count()
  if for_config(config, n) != EMULATED:
    return 0
  return 1 if config.norm in PER_EXAMPLE_NORMS else n
