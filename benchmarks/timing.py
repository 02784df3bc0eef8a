"""Interleaved best-of-N wall-clock timing.

Every callable runs to completion (JAX results are blocked on by the caller's closure) before the
clock stops. Implementations are interleaved round by round, so a noisy neighbour or a frequency
change hits all of them alike, and the minimum over rounds is reported (the least-disturbed run).
"""
from __future__ import annotations

import time
from typing import Callable, Mapping


def interleaved_best(fns: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
  """Seconds per call of each zero-argument callable: the best of `repeats` interleaved rounds.

  Each callable is first called `warmup` times (compilation, allocator and cache warm-up).
  """
  if repeats < 1:
    raise ValueError(f"interleaved_best: repeats must be >= 1, got {repeats}")
  best = {name: float("inf") for name in fns}
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  order = list(fns)
  for r in range(repeats):
    # Rotate the starting point so no implementation always runs right after the same neighbour.
    k = r % len(order) if order else 0
    for name in order[k:] + order[:k]:
      t0 = clock()
      fns[name]()
      dt = clock() - t0
      if dt < best[name]:
        best[name] = dt
  return best
