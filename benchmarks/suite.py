"""The benchmark suite: every (norm, shape, dtype) case timed for normlab, its peers and `x * c`.

Per case, all implementations (both modes, plus the elementwise yardstick) are compiled, their
forward outputs checked against normlab's, then timed in interleaved rounds (`timing`); the
elementwise time of a (shape, dtype) is the best over all of its cases' rounds.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import env as env_lib
from benchmarks import impls
from benchmarks.timing import interleaved_best

NORMS = ("bn", "ln", "gn", "in", "rms")
NORM_TITLES = {"bn": "BatchNorm", "ln": "LayerNorm", "gn": f"GroupNorm({impls.NUM_GROUPS})",
               "in": "InstanceNorm", "rms": "RMSNorm"}
DEFAULT_SHAPES = ((64, 32, 32, 64), (256, 14, 14, 256), (8, 1024, 1024))
DTYPES = ("float32", "bfloat16")
PEERS = ("flax", "torch", "torch_cl")
MODES = ("fwd", "grad", "value_and_grad")
HEADLINE_MODE = "value_and_grad"  # what a training step runs; the targets are on it
NORMLAB = "normlab"
ELEMENTWISE = "elementwise"
# Forward outputs must agree with normlab's to this (they are ~N(0, 1)); a peer that does not is
# reported, not timed: a layout or option mistake would otherwise show up as a speed difference.
CHECK_ATOL = {"float32": 2e-3, "bfloat16": 8e-2}
# The fewest bytes a norm can move, in passes over the activation: fwd reads x and writes y;
# grad and value_and_grad (of sum(y * w)) read x and w and write dx (parameters are negligible).
# The elementwise yardstick moves 2 passes in both modes (x * c; and c * w for its gradient).
MIN_PASSES = {"fwd": 2, "grad": 3, "value_and_grad": 3}
ELEMENTWISE_PASSES = 2
# Peak memory bandwidth (GB/s) of accelerators by `device_kind` prefix, for the roofline column when
# `peak_gbps` is not given (vendor figures). Elsewhere the elementwise pass's measured bandwidth is used.
PEAK_GBPS = {"NVIDIA H100 80GB HBM3": 3350.0, "NVIDIA H100 PCIe": 2000.0, "NVIDIA H200": 4800.0,
             "NVIDIA A100-SXM4-80GB": 2039.0, "NVIDIA A100-SXM4-40GB": 1555.0}


SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def single_thread_xla() -> bool:
  flags = os.environ.get("XLA_FLAGS", "")
  return all(f in flags for f in SINGLE_THREAD_XLA_FLAGS.split())


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  norms: Sequence[str] = NORMS
  shapes: Sequence[tuple[int, ...]] = DEFAULT_SHAPES
  dtypes: Sequence[str] = DTYPES
  peers: Sequence[str] = PEERS
  repeats: int = 5
  warmup: int = 2
  seed: int = 0
  check: bool = True
  # One intra-op thread for XLA and torch, timed by process CPU time instead of wall-clock time:
  # the work each implementation does, robust to other processes on the cores (not the 2-core
  # wall-clock numbers). XLA's thread count is fixed when its CPU client starts, so the caller
  # sets SINGLE_THREAD_XLA_FLAGS in XLA_FLAGS before jax runs anything (scripts/bench.py does).
  single_thread: bool = False
  # Memory bandwidth for the roofline column, GB/s; None: PEAK_GBPS for a known accelerator, else the
  # bandwidth the elementwise pass achieves on this machine.
  peak_gbps: float | None = None

  @classmethod
  def quick(cls, **overrides) -> "BenchConfig":
    """One image shape, float32, 3 rounds: a ~half-minute smoke run."""
    kw = {"shapes": (DEFAULT_SHAPES[0],), "dtypes": ("float32",), "repeats": 3, "warmup": 1}
    kw.update(overrides)
    return cls(**kw)

  def validate(self) -> "BenchConfig":
    bad = [n for n in self.norms if n not in NORMS]
    if bad or not self.norms:
      raise ValueError(f"unknown norm(s) {bad or '(none)'}; valid norms: {', '.join(NORMS)}")
    bad = [d for d in self.dtypes if d not in DTYPES]
    if bad or not self.dtypes:
      raise ValueError(f"unknown dtype(s) {bad or '(none)'}; valid dtypes: {', '.join(DTYPES)}")
    bad = [p for p in self.peers if p not in PEERS]
    if bad:
      raise ValueError(f"unknown peer(s) {bad}; valid peers: {', '.join(PEERS)}")
    for s in self.shapes:
      if len(s) not in (3, 4) or any(d < 1 for d in s):
        raise ValueError(f"shape {tuple(s)}: want (N, H, W, C) images or (B, T, C) sequences")
      if "gn" in self.norms and s[-1] % impls.NUM_GROUPS:
        raise ValueError(f"shape {tuple(s)}: GroupNorm({impls.NUM_GROUPS}) needs channels divisible by "
                         f"{impls.NUM_GROUPS}")
    if self.single_thread and not single_thread_xla():
      raise ValueError(f"single_thread needs XLA_FLAGS to contain {SINGLE_THREAD_XLA_FLAGS!r} before jax "
                       "starts (scripts/bench.py --single_thread sets it)")
    if self.peak_gbps is not None and not self.peak_gbps > 0:
      raise ValueError(f"peak_gbps must be > 0, got {self.peak_gbps}")
    if self.repeats < 1 or self.warmup < 0:
      raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}")
    return self

  def as_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["shapes"] = [list(s) for s in self.shapes]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclasses.dataclass
class Result:
  norm: str  # a NORMS key, or ELEMENTWISE
  shape: tuple[int, ...]
  dtype: str
  mode: str  # one of MODES
  impl: str  # NORMLAB, a peer, or ELEMENTWISE
  seconds: float | None  # None: not run (see note)
  note: str = ""


@dataclasses.dataclass
class BenchReport:
  env: dict
  config: dict
  results: list[Result]
  runtime_s: float
  cpu_s: float | None = None  # process CPU time, all threads (the runtime a loaded machine stretches)
  train_step: dict | None = None
  norm_steps: list[dict] | None = None  # benchmarks.norm_steps.run_norm_steps rows
  seed_sweep: list[dict] | None = None  # benchmarks.seeds.run_seed_sweep rows

  def seconds(self, norm, shape, dtype, mode, impl) -> float | None:
    for r in self.results:
      if (r.norm, tuple(r.shape), r.dtype, r.mode, r.impl) == (norm, tuple(shape), dtype, mode, impl):
        return r.seconds
    return None


def _data(shape, dtype: str, seed: int):
  """x ~ 0.5 + 2 N(0, 1) (a nonzero mean, as activations have), cotangent w ~ N(0, 1)."""
  rng = np.random.default_rng(seed)
  x = (0.5 + 2.0 * rng.standard_normal(shape)).astype(np.float32)
  w = rng.standard_normal(shape).astype(np.float32)
  jdt = jnp.dtype(dtype)
  # The numpy copies are rounded to the dtype too, so every implementation sees the same numbers.
  xj, wj = jnp.asarray(x, jdt), jnp.asarray(w, jdt)
  return xj, wj, np.asarray(xj.astype(jnp.float32)), np.asarray(wj.astype(jnp.float32))


def _build_peers(cfg: BenchConfig, norm, shape, dtype, xj, wj, xn, wn, torch, tdevice):
  benches, notes = {}, {}
  for peer in cfg.peers:
    if peer == "flax":
      names_builders = [("flax", lambda: impls.flax_bench(norm, xj, wj))]
    else:
      if peer not in impls.torch_layouts(norm):
        continue
      if torch is None:
        notes[peer] = "torch not importable"
        continue
      if tdevice is None:
        notes[peer] = f"torch cannot run on {jax.default_backend()}"
        continue
      names_builders = [(peer, lambda peer=peer: impls.torch_bench(torch, norm, peer, xn, wn, dtype, tdevice))]
    for name, build in names_builders:
      try:
        benches[name] = build()
      except impls.Unavailable as e:
        notes[name] = f"unavailable: {e}"
  return benches, notes


def _check(reference: np.ndarray, benches: dict, notes: dict, dtype: str) -> None:
  """Drops (with a note) any bench whose forward output differs from normlab's."""
  for name in list(benches):
    out = benches[name].output()
    err = float(np.max(np.abs(out - reference))) if out.shape == reference.shape else math.inf
    if not err <= CHECK_ATOL[dtype]:
      notes[name] = f"output differs from normlab's (max |diff| {err:.3g}): not timed"
      del benches[name]


def run_suite(config: BenchConfig | None = None, *, log: Callable[[str], None] | None = None) -> BenchReport:
  """Runs every case of `config`; `log` (e.g. print) gets one line per case."""
  cfg = (config or BenchConfig()).validate()
  t_start, cpu_start = time.perf_counter(), time.process_time()
  torch = env_lib.torch_module() if any(p.startswith("torch") for p in cfg.peers) else None
  tdevice = env_lib.torch_device(torch) if torch is not None else None
  if torch is not None and tdevice == "cpu":
    env_lib.setup_torch_threads(torch, 1 if cfg.single_thread else None)
  clock = time.process_time if cfg.single_thread else time.perf_counter
  results: list[Result] = []
  for shape in cfg.shapes:
    shape = tuple(int(d) for d in shape)
    for dtype in cfg.dtypes:
      xj, wj, xn, wn = _data(shape, dtype, cfg.seed)
      ew = impls.elementwise_bench(xj, wj)
      ew_best = {m: math.inf for m in MODES}
      for norm in cfg.norms:
        t_case = time.perf_counter()
        benches = {NORMLAB: impls.normlab_bench(norm, xj, wj)}
        peers, notes = _build_peers(cfg, norm, shape, dtype, xj, wj, xn, wn, torch, tdevice)
        if cfg.check:
          _check(benches[NORMLAB].output(), peers, notes, dtype)
        benches.update(peers)
        fns, same = {}, {}
        for name, b in [*benches.items(), (ELEMENTWISE, ew)]:
          for m in MODES:
            fn = getattr(b, m)
            first = next((k for k, f in fns.items() if k[0] == name and f is fn), None)
            if first is None:
              fns[(name, m)] = fn
            else:  # one call serving two modes (torch) is timed once
              same[(name, m)] = first
          notes.setdefault(name, b.note)
        notes.pop(ELEMENTWISE, None)
        t_built = time.perf_counter()
        best = interleaved_best(fns, repeats=cfg.repeats, warmup=cfg.warmup, clock=clock)
        best.update({k: best[v] for k, v in same.items()})
        for m in MODES:
          ew_best[m] = min(ew_best[m], best.pop((ELEMENTWISE, m)))
        for (name, mode), sec in best.items():
          results.append(Result(norm, shape, dtype, mode, name, sec, notes.get(name, "")))
        for name, note in notes.items():
          if name not in benches:
            for mode in MODES:
              results.append(Result(norm, shape, dtype, mode, name, None, note))
        if log:
          nl = best[(NORMLAB, HEADLINE_MODE)]
          peers_fb = {n: best[(n, HEADLINE_MODE)] for n in benches if n != NORMLAB}
          peer_txt = " ".join(f"{n}={1e3 * s:.2f}" for n, s in peers_fb.items())
          log(f"{NORM_TITLES[norm]:14s} {str(shape):18s} {dtype:8s} {HEADLINE_MODE} ms: normlab={1e3 * nl:.2f} "
              f"{peer_txt} (build {t_built - t_case:.1f}s, timing {time.perf_counter() - t_built:.1f}s)")
        del benches, peers, fns
      for m in MODES:
        results.append(Result(ELEMENTWISE, shape, dtype, m, ELEMENTWISE, ew_best[m]))
  env = env_lib.environment(torch)
  env["torch_device"] = tdevice
  return BenchReport(env=env, config=cfg.as_dict(), results=results, runtime_s=time.perf_counter() - t_start,
                     cpu_s=time.process_time() - cpu_start)


def bandwidth_source(report: BenchReport) -> tuple[float | None, str]:
  """(bytes/s or None, where it comes from) for the roofline: `peak_gbps` if given, a known
  accelerator's peak, else None (each row then uses the elementwise pass's measured bandwidth)."""
  given = report.config.get("peak_gbps")
  if given:
    return given * 1e9, f"{given:g} GB/s (given)"
  kind = report.env.get("device_kind", "")
  for prefix, gbps in PEAK_GBPS.items():
    if kind.startswith(prefix):
      return gbps * 1e9, f"{gbps:g} GB/s ({prefix} peak)"
  return None, "the bandwidth the elementwise pass achieves (no peak known for this device)"


def ratio_rows(report: BenchReport) -> list[dict]:
  """One row per (norm, shape, dtype, mode): times (s), the best peer, normlab/best-peer,
  normlab/elementwise, and normlab/roofline (the fewest bytes the mode must move / bandwidth)."""
  cfg = report.config
  peers = list(cfg["peers"])
  peak, _ = bandwidth_source(report)
  rows = []
  for shape in cfg["shapes"]:
    shape = tuple(shape)
    for dtype in cfg["dtypes"]:
      size = math.prod(shape) * jnp.dtype(dtype).itemsize
      for norm in cfg["norms"]:
        for mode in MODES:
          nl = report.seconds(norm, shape, dtype, mode, NORMLAB)
          ew = report.seconds(ELEMENTWISE, shape, dtype, mode, ELEMENTWISE)
          times = {p: report.seconds(norm, shape, dtype, mode, p) for p in peers}
          ran = {p: t for p, t in times.items() if t is not None}
          best_peer = min(ran, key=ran.get) if ran else None
          bandwidth = peak or ((ELEMENTWISE_PASSES * size / ew) if ew else None)
          roofline = MIN_PASSES[mode] * size / bandwidth if bandwidth else None
          rows.append({
              "norm": norm, "shape": list(shape), "dtype": dtype, "mode": mode,
              "normlab_s": nl, "elementwise_s": ew, **{f"{p}_s": times[p] for p in peers},
              "best_peer": best_peer, "best_peer_s": ran.get(best_peer) if best_peer else None,
              "ratio_best_peer": (nl / ran[best_peer]) if (nl and best_peer) else None,
              "ratio_elementwise": (nl / ew) if (nl and ew) else None,
              "roofline_s": roofline, "ratio_roofline": (nl / roofline) if (nl and roofline) else None,
          })
  return rows
