"""Times normlab's norms against flax.linen and torch.nn.functional (and `x * c`) in one process.

    python scripts/bench.py                        # the BENCH.md tables: 3 shapes x f32/bf16 + per-norm train steps
    python scripts/bench.py --quick                # one shape, float32, no train steps
    python scripts/bench.py --json=bench.json --markdown=bench.md
    python scripts/bench.py --train_step           # + a ResNet-20 train step, normlab vs flax BatchNorm
    python scripts/bench.py --norms=bn,gn --shapes=64x32x32x64 --dtypes=float32 --repeats=9
    python scripts/bench.py --single_thread        # 1 thread each, CPU time: robust on a busy machine
    python scripts/bench.py --malloc_reuse         # glibc reuses freed memory: no page faults per call
    python scripts/bench.py --norms=bn --shapes=64x32x32x64 --seeds=2,4   # + vmapped seeds vs sequential runs
    python scripts/bench.py --quick --emulation=1000   # + the sweep's b=2 cell: emulated vs ghost BN vs 8 host devices

Prints a table: time per implementation in three modes (fwd; grad and value_and_grad of sum(y * w)
w.r.t. x and the affine parameters), normlab / best peer, normlab / elementwise and normlab / memory
roofline; a summary of normlab / best peer under value_and_grad (what a training step runs); and
per-norm training steps, normlab's layer vs flax's (benchmarks.norm_steps). Exit status 2 on a bad flag.
The logic lives in the checkout's benchmarks/ package (not installed with normlab: it needs torch), which this
script imports from beside itself; BENCH.md has the numbers of one full run.
"""
import importlib.util
import os
import sys

from absl import flags

FLAGS = flags.FLAGS
MALLOC_REUSE = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"
flags.DEFINE_bool("quick", False, "Small subset: the first shape, float32, 3 rounds.")
flags.DEFINE_list("norms", None, "Norms to time (bn, ln, gn, in, rms); default all.")
flags.DEFINE_list("shapes", None, "Shapes like 64x32x32x64,8x1024x1024 (channels last); default the 3 standard ones.")
flags.DEFINE_list("dtypes", None, "float32 and/or bfloat16; default both (--quick: float32).")
flags.DEFINE_list("peers", None, "Peers to time: flax, torch, torch_cl (channels-last torch); default all.")
flags.DEFINE_integer("repeats", None, "Interleaved timing rounds per case (best is reported); default 5 (--quick: 3).")
flags.DEFINE_integer("warmup", None, "Untimed calls per implementation before timing; default 2 (--quick: 1).")
flags.DEFINE_bool("check", True, "Check every peer's forward output against normlab's before timing it.")
flags.DEFINE_string("json", None, "Also write the results (all times, ratios, environment) as JSON here.")
flags.DEFINE_string("markdown", None, "Also write the table as Markdown here.")
flags.DEFINE_bool("norm_steps", None, "Time the per-norm training steps (conv net BN/GN/IN, MLP block LN/RMS, "
                  "LN-GRU), normlab vs flax; default on, off with --quick.")
flags.DEFINE_float("step_batch_scale", 1.0, "Scale the train steps' batch sizes (e.g. 0.25 for a quick look).")
flags.DEFINE_bool("train_step", False, "Also time a ResNet train step: normlab BatchNorm vs flax.linen.BatchNorm.")
flags.DEFINE_string("train_model", "resnet20", "Model for --train_step (a normlab.models name).")
flags.DEFINE_integer("train_batch", 64, "Batch size (32x32x3 images) for --train_step.")
flags.DEFINE_list("seeds", None, "Also time S seeds vmapped in one program vs S sequential runs of the "
                  "batch_size sweep's smoke cell, for each S listed (e.g. 2,4); ~1 min per S on 2 cores.")
flags.DEFINE_list("seed_batches", ["4"], "Per-device batch sizes for --seeds.")
flags.DEFINE_integer("emulation", 0, "Also time the batch_size sweep's BN b=2 cell for this many steps on its three "
                     "paths (emulated 8 devices, one-device ghost BN, 8 real host devices): benchmarks/emulation.py.")
flags.DEFINE_bool("single_thread", False, "One thread for XLA and torch, timed by process CPU time: the work per "
                  "implementation, robust to other load on the machine (not the multi-core wall-clock target).")
flags.DEFINE_bool("malloc_reuse", False, f"Re-run under GLIBC_TUNABLES={MALLOC_REUSE}: glibc then keeps "
                  "freed blocks of any size for reuse, so the fresh output and temporary buffers of every call "
                  "(JAX's and torch's alike) are not page-faulted in again; BENCH.md shows both settings.")
flags.DEFINE_float("peak_gbps", None, "Memory bandwidth (GB/s) for the nl/roof column; default: the peak of a "
                   "known GPU (benchmarks.suite.PEAK_GBPS), else the bandwidth the elementwise pass achieves.")
flags.DEFINE_bool("progress", True, "Print one line per case while running (on stderr).")


def _import_benchmarks() -> None:
  """Imports ../benchmarks (this checkout's package, not an installed one) as `benchmarks`."""
  if "benchmarks" not in sys.modules:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    spec = importlib.util.spec_from_file_location("benchmarks", os.path.join(path, "__init__.py"),
                                                  submodule_search_locations=[path])
    sys.modules["benchmarks"] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _shape(text: str) -> tuple[int, ...]:
  from normlab.errors import UserError
  try:
    return tuple(int(d) for d in text.lower().split("x"))
  except ValueError:
    raise UserError(f"--shapes: {text!r} is not like 64x32x32x64") from None


def _positive_ints(name: str, values) -> tuple[int, ...]:
  from normlab.errors import UserError
  try:
    out = tuple(int(v) for v in values)
  except ValueError:
    out = ()
  if len(out) != len(values) or any(v < 1 for v in out):
    raise UserError(f"--{name}: {','.join(values)!r} must be positive integers, like 2,4")
  return out


def _config():
  from benchmarks import BenchConfig
  from normlab.errors import UserError
  kw = {}
  if FLAGS.norms:
    kw["norms"] = tuple(FLAGS.norms)
  if FLAGS.shapes:
    kw["shapes"] = tuple(_shape(s) for s in FLAGS.shapes)
  if FLAGS.dtypes:
    kw["dtypes"] = tuple(FLAGS.dtypes)
  if FLAGS.peers is not None:
    kw["peers"] = tuple(p for p in FLAGS.peers if p)
  if FLAGS.repeats is not None:
    kw["repeats"] = FLAGS.repeats
  if FLAGS.warmup is not None:
    kw["warmup"] = FLAGS.warmup
  kw["check"] = FLAGS.check
  kw["single_thread"] = FLAGS.single_thread
  kw["peak_gbps"] = FLAGS.peak_gbps
  try:
    return (BenchConfig.quick(**kw) if FLAGS.quick else BenchConfig(**kw)).validate()
  except ValueError as e:
    raise UserError(str(e)) from None


def main(argv):
  from absl import logging as absl_logging
  from normlab.errors import UserError
  absl_logging.set_verbosity(absl_logging.WARNING)  # jax's backend-probing INFO lines off
  _import_benchmarks()
  if FLAGS.malloc_reuse and os.environ.get("GLIBC_TUNABLES") != MALLOC_REUSE:
    # glibc reads its tunables once, at process start: run this same command again with them set.
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": MALLOC_REUSE})
  if FLAGS.single_thread:  # before jax starts its CPU client (benchmarks imports nothing that runs jax)
    from benchmarks.suite import SINGLE_THREAD_XLA_FLAGS
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_XLA_FLAGS).strip()
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  cfg = _config()
  seeds, batches = _positive_ints("seeds", FLAGS.seeds or []), _positive_ints("seed_batches", FLAGS.seed_batches)
  from benchmarks import format_table, run_suite, to_json, to_markdown
  log = (lambda line: print(line, file=sys.stderr, flush=True)) if FLAGS.progress else None
  report = run_suite(cfg, log=log)
  if FLAGS.norm_steps if FLAGS.norm_steps is not None else not FLAGS.quick:
    import time
    from benchmarks.norm_steps import run_norm_steps
    if not FLAGS.step_batch_scale > 0:
      raise UserError(f"--step_batch_scale: {FLAGS.step_batch_scale} must be > 0")
    report.norm_steps = run_norm_steps(repeats=cfg.repeats, warmup=cfg.warmup, batch_scale=FLAGS.step_batch_scale,
                                       clock=time.process_time if cfg.single_thread else time.perf_counter, log=log)
  if FLAGS.train_step:
    from benchmarks.train_step import run_train_step
    if log:
      log(f"train step: {FLAGS.train_model}, batch {FLAGS.train_batch} (compiles two models first)")
    import time
    report.train_step = run_train_step(model=FLAGS.train_model, batch=FLAGS.train_batch,
                                       repeats=max(3, cfg.repeats),
                                       clock=time.process_time if cfg.single_thread else time.perf_counter)
  if FLAGS.seeds:
    from benchmarks.seeds import run_seed_sweep
    if log:
      log(f"seeds: {', '.join(FLAGS.seeds)} vmapped vs sequential (trains {2 * sum(seeds)} smoke runs)")
    report.seed_sweep = run_seed_sweep(seeds=seeds, batches=batches)
  print(format_table(report))
  if FLAGS.emulation:
    from benchmarks.emulation import format_emulation, run_emulation
    if log:
      log(f"emulation: the BN b=2 cell, {FLAGS.emulation} steps per run (emulated and ghost alternating, then real)")
    print(format_emulation(run_emulation(steps=FLAGS.emulation)))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      f.write(to_json(report))
  if FLAGS.markdown:
    with open(FLAGS.markdown, "w") as f:
      f.write(to_markdown(report))


if __name__ == "__main__":
  from normlab import cli
  cli.run(main)
