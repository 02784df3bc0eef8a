"""Text table, Markdown and JSON renderings of a `BenchReport`."""
from __future__ import annotations

import dataclasses
import json

from benchmarks.suite import (HEADLINE_MODE, MIN_PASSES, NORM_TITLES, BenchReport, bandwidth_source,
                              ratio_rows)


def _ms(s) -> str:
  return "n/a" if s is None else f"{1e3 * s:.2f}"


def _x(r) -> str:
  return "n/a" if r is None else f"{r:.2f}x"


def _header_lines(report: BenchReport) -> list[str]:
  e = report.env
  torch = f"torch {e['torch']} ({e.get('torch_device')}, {e['torch_threads']} threads)" if e.get("torch") else "torch: n/a"
  lines = [
      f"device: {e['device']} (backend {e['backend']}, {e['device_count']} device(s)); "
      f"CPU: {e['cpu_model']}, {e['cpu_cores']} cores",
      f"jax {e['jax']} / jaxlib {e['jaxlib']}, flax {e['flax']}, {torch}, numpy {e['numpy']}, "
      f"python {e['python']}" + (f"; normlab at commit {e['commit']}" if e.get("commit") else ""),
      f"best of {report.config['repeats']} interleaved rounds after {report.config['warmup']} warm-up "
      f"call(s); times in ms"
      + (" of process CPU time, 1 thread each (XLA and torch)" if report.config.get("single_thread")
         else " (wall clock)")
      + f"; runtime {report.runtime_s:.0f} s"
      + (f" ({report.cpu_s:.0f} s of CPU time)" if report.cpu_s is not None else ""),
  ]
  if e.get("load_average"):
    lines.append(f"load average at the end (1/5/15 min): {', '.join(map(str, e['load_average']))} "
                 f"on {e['cpu_cores']} cores")
  passes = ", ".join(f"{m} {p}" for m, p in MIN_PASSES.items())
  lines.append(f"nl/roof: normlab / (fewest bytes: {passes} passes over the activation) / "
               f"{bandwidth_source(report)[1]}")
  if e.get("xla_flags"):
    lines.append(f"XLA_FLAGS={e['xla_flags']}")
  if e.get("glibc_tunables"):
    lines.append(f"GLIBC_TUNABLES={e['glibc_tunables']}")
  return lines


def _table(report: BenchReport):
  peers = list(report.config["peers"])
  head = ["norm", "shape", "dtype", "mode", "normlab", *peers, "elementwise", "best peer", "nl/best", "nl/ew",
          "nl/roof"]
  body = []
  for r in ratio_rows(report):
    body.append([NORM_TITLES[r["norm"]], "x".join(map(str, r["shape"])), r["dtype"], r["mode"],
                 _ms(r["normlab_s"]), *[_ms(r[f"{p}_s"]) for p in peers], _ms(r["elementwise_s"]),
                 r["best_peer"] or "n/a", _x(r["ratio_best_peer"]), _x(r["ratio_elementwise"]),
                 _x(r["ratio_roofline"])])
  return head, body


def _notes(report: BenchReport) -> list[str]:
  seen = {}
  for r in report.results:
    if r.note:
      seen.setdefault((r.impl, r.note), []).append(f"{NORM_TITLES.get(r.norm, r.norm)} {'x'.join(map(str, r.shape))} {r.dtype}")
  return [f"{impl}: {note} [{', '.join(dict.fromkeys(where))}]" for (impl, note), where in seen.items()]


def _summary(report: BenchReport):
  """normlab / best peer under value_and_grad: one row per norm, one column per (shape, dtype)."""
  rows = [r for r in ratio_rows(report) if r["mode"] == HEADLINE_MODE]
  cols = list(dict.fromkeys(("x".join(map(str, r["shape"])), r["dtype"]) for r in rows))
  head = [f"{HEADLINE_MODE}: normlab / best peer"] + [f"{s} {d}" for s, d in cols]
  body = []
  for norm in dict.fromkeys(r["norm"] for r in rows):
    cell = {("x".join(map(str, r["shape"])), r["dtype"]): r for r in rows if r["norm"] == norm}
    body.append([NORM_TITLES[norm]] + [f"{_x(cell[c]['ratio_best_peer'])} ({cell[c]['best_peer'] or 'n/a'})"
                                       for c in cols])
  return head, body


def _steps(report: BenchReport):
  head = ["train step", "norm", "input", "normlab ms", "flax ms", "normlab / flax"]
  body = [[r["model"], NORM_TITLES[r["norm"]], "x".join(map(str, r["input"])), _ms(r["normlab_s"]),
           _ms(r["flax_s"]), _x(r["ratio"])] for r in report.norm_steps or []]
  return head, body


def _train_lines(report: BenchReport) -> list[str]:
  t = report.train_step
  if not t:
    return []
  if t.get("skipped"):
    return [f"train step: skipped ({t['skipped']})"]
  return [f"train step ({t['model']}, batch {t['batch']}x{'x'.join(map(str, t['image']))}, {t['dtype']}): "
          f"normlab BatchNorm {_ms(t['normlab_s'])} ms, flax.linen.BatchNorm {_ms(t['flax_s'])} ms, "
          f"ratio {_x(t['ratio'])}"]


def _seed_lines(report: BenchReport) -> list[str]:
  rows = report.seed_sweep or []
  return [f"seeds vmapped vs sequential ({r['model']}, batch {r['batch']}, {r['steps']} steps): S={r['seeds']}: "
          f"{r['sequential_s']:.1f} s sequential, {r['vmapped_s']:.1f} s vmapped, speed-up {_x(r['speedup'])} "
          f"(compile {r['sequential_compile_s']:.1f} / {r['vmapped_compile_s']:.1f} s, train "
          f"{r['sequential_train_s']:.2f} / {r['vmapped_train_s']:.2f} s; final losses agree to "
          f"{r['max_rel_diff_final_loss']:.1e} rel.)" for r in rows]


def _extra_lines(report: BenchReport) -> list[str]:
  return _train_lines(report) + _seed_lines(report)


def _text(head, body, left: int) -> list[str]:
  widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
  fmt = lambda row: "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(row, widths)))
  return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in body]


def _md(head, body, left: int) -> list[str]:
  return (["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < left else "---:" for i in range(len(head))) + "|"]
          + ["| " + " | ".join(map(str, row)) + " |" for row in body])


def _sections(report: BenchReport, table, item: str, notes_head: list[str], note_item: str) -> list[str]:
  """Header, case table, value_and_grad summary, train steps, notes and extra lines; `table(head, body, left)`
  renders a table, `item` starts a header or extra line, `note_item` a note."""
  out = [item + line for line in _header_lines(report)] + [""] + table(*_table(report), 4)
  if report.results:
    out += [""] + table(*_summary(report), 1)
  if report.norm_steps:
    out += [""] + table(*_steps(report), 3)
  notes = _notes(report)
  if notes:
    out += ["", *notes_head] + [note_item + n for n in notes]
  extra = _extra_lines(report)
  if extra:
    out += [""] + [item + line for line in extra]
  return out


def format_table(report: BenchReport) -> str:
  return "\n".join(_sections(report, _text, "", ["notes:"], "  "))


def to_markdown(report: BenchReport) -> str:
  return "\n".join(_sections(report, _md, "- ", ["Notes:", ""], "- ")) + "\n"


def to_json(report: BenchReport) -> str:
  return json.dumps({
      "env": report.env,
      "config": report.config,
      "runtime_s": report.runtime_s,
      "cpu_s": report.cpu_s,
      "results": [dataclasses.asdict(r) | {"shape": list(r.shape)} for r in report.results],
      "ratios": ratio_rows(report),
      "train_step": report.train_step,
      "norm_steps": report.norm_steps,
      "seed_sweep": report.seed_sweep,
  }, indent=1)
