"""Argument checks shared by every norm: one-line `ValueError`s that name the bad value and what is allowed."""
from __future__ import annotations

import math
from typing import Sequence

Axes = int | Sequence[int]


def canonical_axes(axes: Axes, ndim: int, *, fn: str, what: str = "axes") -> tuple[int, ...]:
  """Returns `axes` as sorted non-negative ints; raises on out-of-range or repeated axes."""
  axes_t = (axes,) if isinstance(axes, int) else tuple(axes)
  out = []
  for a in axes_t:
    if not isinstance(a, int) or not -ndim <= a < ndim:
      raise ValueError(f"{fn}: {what} {axes!r} out of range for an input of rank {ndim}; "
                       f"valid axes are {-ndim}..{ndim - 1}")
    out.append(a % ndim)
  if len(set(out)) != len(out):
    raise ValueError(f"{fn}: {what} {axes!r} repeats an axis")
  return tuple(sorted(out))


def check_eps(eps: float, *, fn: str) -> float:
  if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
    raise ValueError(f"{fn}: eps must be a finite number > 0, got {eps!r}")
  return float(eps)


def check_min_rank(ndim: int, min_rank: int, *, fn: str, layout: str) -> None:
  if ndim < min_rank:
    raise ValueError(f"{fn}: expected an input of rank >= {min_rank} ({layout}), got rank {ndim}")


def check_nonempty(axes: tuple[int, ...], *, fn: str, why: str) -> None:
  if not axes:
    raise ValueError(f"{fn}: the reduction set is empty ({why})")


def check_mask(mask_shape: tuple[int, ...], x_shape: tuple[int, ...], *, fn: str) -> None:
  """A mask must broadcast to x's shape (e.g. (N, 1) or (N, T, 1) for (N, T, C) inputs)."""
  ok = len(mask_shape) <= len(x_shape) and all(
      m in (1, s) for m, s in zip(mask_shape[::-1], x_shape[::-1]))
  if not ok:
    raise ValueError(f"{fn}: mask of shape {tuple(mask_shape)} does not broadcast to the input "
                     f"shape {tuple(x_shape)}; use the input's shape with 1 on feature axes")


def check_groups(channels: int, num_groups: int | None, group_size: int | None, *, fn: str) -> int:
  """Returns the number of groups; exactly one of num_groups/group_size must be given and divide C."""
  if (num_groups is None) == (group_size is None):
    raise ValueError(f"{fn}: give exactly one of num_groups or group_size "
                     f"(got num_groups={num_groups!r}, group_size={group_size!r})")
  divisors = [d for d in range(1, channels + 1) if channels % d == 0]
  if group_size is not None:
    if not isinstance(group_size, int) or group_size <= 0 or channels % group_size:
      raise ValueError(f"{fn}: group_size={group_size!r} does not divide the {channels} channels "
                       f"into groups; valid group sizes: {divisors}")
    return channels // group_size
  if not isinstance(num_groups, int) or num_groups <= 0 or channels % num_groups:
    raise ValueError(f"{fn}: {channels} channels cannot be split into num_groups={num_groups!r} "
                     f"equal groups; valid group counts: {divisors}")
  return num_groups


def check_choice(value, choices: Sequence, *, fn: str, what: str):
  if value not in choices:
    raise ValueError(f"{fn}: unknown {what} {value!r}; valid choices: {', '.join(map(str, choices))}")
  return value


def check_positive(value, *, fn: str, what: str):
  if not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f"{fn}: {what} must be > 0, got {value!r}")
  return value
