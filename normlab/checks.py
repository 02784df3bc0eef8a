"""Argument checks shared by every norm: one-line `ValueError`s that name the bad value and what is allowed."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

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
  """The group-count rule of every grouped norm (flax's): exactly one of num_groups/group_size is given,
  and it divides the C channels. Returns the number of groups."""
  if (num_groups is None) == (group_size is None):
    raise ValueError(f"{fn}: give exactly one of num_groups or group_size (got num_groups={num_groups!r}, "
                     f"group_size={group_size!r}); pass num_groups=None to use group_size, as in flax")
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


# ----------------------------------------------------------------------------- arrays (trace time)
# These read only shapes and dtypes, so under jax.jit they run once, while tracing, and add nothing
# to the compiled program.

FLOAT_DTYPES = ("bfloat16", "float16", "float32", "float64")
_FLOAT_CAST = "cast it with .astype(jnp.float32)"


class SingleValueError(ValueError):
  """Training-mode batch statistics over one value per channel: every output would be its bias and
  every input gradient 0 (torch: "Expected more than 1 value per channel when training"). The message
  ends with how to allow it; layers and the training loop re-raise it `with_hint` of their own option."""

  def __init__(self, where: str, detail: str, how: str):
    self.where, self.detail, self.how = where, detail, how
    super().__init__(f"{where}: {detail}; use more than 1 value per channel (a larger batch), eval mode, "
                     f"or {how}")

  def with_hint(self, how: str, where: str | None = None) -> "SingleValueError":
    return SingleValueError(self.where if where is None else where, self.detail, how)


def _dtype_name(dtype) -> str:
  try:
    return np.dtype(dtype).name
  except TypeError:
    return str(dtype)


def check_x(x, *, fn: str, what: str = "x"):
  """`x` must be an array (jax or numpy) of a floating dtype: bfloat16, float16, float32 or float64."""
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    raise TypeError(f"{fn}: {what} must be an array (jax.Array or numpy.ndarray), got {type(x).__name__}; "
                    f"wrap it with jnp.asarray(..., jnp.float32)")
  name = _dtype_name(x.dtype)
  if name not in FLOAT_DTYPES:
    raise TypeError(f"{fn}: {what} has dtype {name}; allowed dtypes: {', '.join(FLOAT_DTYPES)} "
                    f"({_FLOAT_CAST})")
  return x


def _param_dtype(p, *, fn: str, what: str) -> None:
  """Parameters (scale, bias, running statistics...) are real: floating, integer or a Python number."""
  if isinstance(p, (bool, complex)) or not (hasattr(p, "dtype") or isinstance(p, (int, float, list, tuple))):
    raise TypeError(f"{fn}: {what} must be a float array or a number, got {type(p).__name__}")
  dtype = p.dtype if hasattr(p, "dtype") else np.asarray(p).dtype
  if not (_dtype_name(dtype) in FLOAT_DTYPES or np.issubdtype(dtype, np.integer)
          or np.issubdtype(dtype, np.floating)):
    raise TypeError(f"{fn}: {what} has dtype {_dtype_name(dtype)}; allowed: a real array "
                    f"({', '.join(FLOAT_DTYPES)})")


def _spell(axes: tuple[int, ...]) -> str:
  return str(axes[0]) if len(axes) == 1 else str(tuple(axes))


def param_shape(x_shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
  """The shape of a parameter over `axes` of x, with 1 elsewhere and leading 1s dropped."""
  if not axes:
    return ()
  return tuple(x_shape[a] if a in axes else 1 for a in range(min(axes), len(x_shape)))


def check_param(p, x_shape: tuple[int, ...], axes: tuple[int, ...], *, fn: str, what: str,
                axes_doc: str) -> None:
  """A scale/bias-like parameter: real, broadcastable to x, varying only along `axes` of x."""
  if p is None:
    return
  _param_dtype(p, fn=fn, what=what)
  shape = tuple(np.shape(p))
  ndim = len(x_shape)
  aligned = (1,) * (ndim - len(shape)) + shape
  ok = len(shape) <= ndim and all(d == 1 or (d == x_shape[a] and a in axes) for a, d in enumerate(aligned))
  if not ok:
    raise ValueError(f"{fn}: {what} has shape {shape}, which does not fit x of shape {tuple(x_shape)} "
                     f"({axes_doc}); allowed: shape {param_shape(x_shape, axes)} or one that broadcasts to it")


def check_running(running, x_shape: tuple[int, ...], feats: tuple[int, ...], *, fn: str,
                  axes_doc: str = "channels on the last axis",
                  names: tuple[str, str] = ("running.mean", "running.var")) -> None:
  """Running statistics (`Moments(mean, var)`) must have the feature shape of x (1s aside)."""
  if running is None:
    return
  if not isinstance(running, tuple) or len(running) != 2:
    raise TypeError(f"{fn}: running must be normlab.Moments(mean, var), got {type(running).__name__}")
  want = tuple(x_shape[a] for a in feats)
  for what, t in zip(names, running):
    _param_dtype(t, fn=fn, what=what)
    shape = tuple(np.shape(t))
    if tuple(d for d in shape if d != 1) != tuple(d for d in want if d != 1):
      raise ValueError(f"{fn}: {what} has shape {shape}, expected the feature shape {want} of x "
                       f"of shape {tuple(x_shape)} ({axes_doc})")


def check_mask_array(mask, x_shape: tuple[int, ...], *, fn: str) -> None:
  """A mask is bool (True = valid) or a real 0/1 array, broadcastable to x."""
  if mask is None:
    return
  if not hasattr(mask, "dtype"):
    raise TypeError(f"{fn}: mask must be an array (bool, True = a valid element), got {type(mask).__name__}")
  dtype = mask.dtype
  if not (dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
          or _dtype_name(dtype) in FLOAT_DTYPES):
    raise TypeError(f"{fn}: mask has dtype {_dtype_name(dtype)}; allowed: bool (True = a valid element) "
                    f"or a real 0/1 array")
  check_mask(tuple(mask.shape), tuple(x_shape), fn=fn)


def check_batch_values(x_shape: tuple[int, ...], axes: tuple[int, ...], num_devices: int, *, fn: str,
                       allow: bool) -> None:
  """Training-mode batch statistics need more than one value per channel (unless `allow`)."""
  n = math.prod(x_shape[a] for a in axes) * num_devices
  if n == 1 and not allow:
    on = "" if num_devices == 1 else f" on each of {num_devices} devices"
    raise SingleValueError(fn, f"training-mode batch statistics over 1 value per channel (x of shape "
                           f"{tuple(x_shape)}{on}, reduced over axes {_spell(axes)}) make every output "
                           f"equal its bias and every input gradient 0", "pass allow_single_value=True")
