"""A compiled GPT-2 generation on the Verilog core: cycles vs the timing model, and RTL speed.

Runs the same case as tests/rtl/test_hw_program.py (a shipped model compiled for a preset;
prefill + decode on the emitted top in Verilator through cocotb, HBM and tokens checked bit for
bit against fpgpt.sim) and prints, per stream and unit, the last completion cycle on the RTL and
in the timing model, the stream totals, and the simulation speed (simulated cycles per wall
second, the Verilator build excluded).

    python bench/bench_rtl_program.py [--model micro] [--preset tiny] [--prompt def]
                                      [--tokens 3] [--pauses] [--json]

The HBM AxiRams serve a beat per cycle (an ideal memory) unless ``--pauses`` gives them the
benches' back-pressure; the top is built with its completion probes, so every instruction's
completion cycle is compared with the model's (the largest per-instruction differences are
printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RTL_TESTS = ROOT / "tests" / "rtl"
sys.path.insert(0, str(RTL_TESTS))

from program_case import compare, make_case, per_instruction, run_on_core  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="micro")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--prompt", default="def")
    ap.add_argument("--tokens", type=int, default=3)
    ap.add_argument("--pauses", action="store_true",
                    help="back-pressure and idle cycles on the HBM AxiRams (default: none)")
    ap.add_argument("--all", action="store_true",
                    help="list every instruction (start and duration, RTL vs model)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)

    from fpgpt.config import load_preset

    case = make_case(model=a.model, preset=a.preset, prompt=a.prompt, new_tokens=a.tokens)
    hw = load_preset(a.preset)
    d = ROOT / "build" / "rtl" / f"core_{hw.artifact_name}"     # the tests' build
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "stats.json"
        t0 = time.perf_counter()
        try:
            run_on_core(case, d, Path(tmp), pauses=a.pauses)
            failure = None
        except RuntimeError as e:       # still report what the run measured
            failure = str(e)
        total_s = time.perf_counter() - t0
        if not stats_file.is_file():
            print(f"error: the RTL run produced no statistics: {failure}", file=sys.stderr)
            return 1
        stats = json.loads(stats_file.read_text())
    rows = compare(case, stats)
    instrs = per_instruction(case, stats)
    cycles = sum(r["cycles"] for r in stats["runs"])
    wall = sum(r["wall_s"] for r in stats["runs"])
    out = {"model": a.model, "preset": a.preset, "prompt_tokens": len(case["prompt"]),
           "tokens": stats["tokens"], "hbm_bytes_differing": stats["differ"],
           "build_and_run_s": round(total_s, 1), "failure": failure,
           "run_wall_s": round(wall, 1), "rtl_cycles": cycles,
           "cycles_per_s": round(cycles / wall) if wall else None, "rows": rows,
           "instructions": instrs}
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{a.model} on {a.preset}: prompt {len(case['prompt'])} tokens, generated "
          f"{stats['tokens']} (simulator: {case['tokens']}); HBM bytes differing: {stats['differ']}")
    print(f"{'stream':8} {'unit':6} {'instr':>6} {'RTL cycle':>10} {'model':>10} {'diff':>8}")
    for r in rows:
        n = f"{r['count_rtl']}" if "count_rtl" in r else ""
        diff = f"{r['diff_pct']:+.1f}%" if "diff_pct" in r else ""
        model = f"{r['model']:.0f}" if r["model"] is not None else "-"
        print(f"{r['stream']:8} {r['what']:6} {n:>6} {r['rtl'] if r['rtl'] is not None else '-':>10} "
              f"{model:>10} {diff:>8}")
    steps = [r for r in instrs if r["step"] is not None]
    print("per instruction (completion, RTL - model; 'step' = what the instruction added):")
    for u in ("dma", "mpu", "vpu", "net"):
        us = [r for r in steps if r["unit"] == u]
        if us:
            print(f"  {u}: {len(us)} instructions, mean |step| "
                  f"{sum(abs(r['step']) for r in us) / len(us):.1f}, largest:")
            for r in sorted(us, key=lambda r: -abs(r["step"]))[:5]:
                print(f"    {r['stream']:8} #{r['index']:<3} {r['op']:9} model {r['model']:9.0f} "
                      f"RTL {r['rtl']:9} diff {r['diff']:+8.0f} step {r['step']:+7.0f}"
                      + _start_dur(r))
    if a.all:
        print("every instruction, in model start order:")
        for r in sorted(steps, key=lambda r: (r["stream"], r["model_start"] or 0)):
            print(f"  {r['stream']:8} {r['unit']:4} #{r['index']:<3} {r['op']:9} model "
                  f"{r['model_start'] or 0:8.0f}..{r['model']:8.0f} RTL "
                  f"{r['rtl_start'] if r['rtl_start'] is not None else '-':>8}..{r['rtl']:8}"
                  + _start_dur(r))
    print(f"emit + build + run {out['build_and_run_s']} s; the runs took "
          f"{out['run_wall_s']} s for {cycles} cycles: {out['cycles_per_s']} cycles/s")
    if failure:
        print(f"FAILED: {failure}")
    return 1 if failure else 0


def _start_dur(r: dict) -> str:
    if r.get("start_diff") is None:
        return ""
    return f"  (start {r['start_diff']:+6.0f}, duration {r['dur_diff']:+6.0f})"


if __name__ == "__main__":
    raise SystemExit(main())
