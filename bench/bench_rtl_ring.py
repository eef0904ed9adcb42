"""A compiled GPT-2 on a ring of Verilog cores: tokens, HBM, cycles per card vs the system model.

Runs the case of tests/rtl/test_hw_ring.py (a shipped model compiled for ``--devices`` cards with
fpgpt.compiler.compile_devices; prefill + decode on ``--devices`` copies of the emitted ``tiny``
core in Verilator, their ring ports joined by the link model of tests/rtl/cocotb_ring.py) and
prints, per card: the tokens, how many HBM bytes differ from fpgpt.sim.system's exact mode, each
stream's cycles on the RTL and in the system timing model (``simulate_system``), and the
instructions whose completion differs most (NET listed on its own).

    python bench/bench_rtl_ring.py [--model micro] [--devices 2] [--prompt de] [--tokens 3]
                                   [--net] [--json]

``--net`` runs the hand-assembled NET program (ring_case.net_case) instead of a model. The
``micro`` model has 2 heads, so it runs on at most 2 cards; ``--model tiny`` (4 heads) runs on
3 (or 4). The cards share the one-card Verilator build of the tests (build/rtl/core_<artifact>).
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

from ring_case import model_case, net_case, ring_report, run_cases  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="micro")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--prompt", default="de")
    ap.add_argument("--tokens", type=int, default=3)
    ap.add_argument("--net", action="store_true", help="the hand-assembled NET program")
    ap.add_argument("--top", type=int, default=6, help="instructions listed per card and unit")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)

    from fpgpt.config import load_preset

    hw = load_preset("tiny")
    t0 = time.perf_counter()
    if a.net:
        cases = net_case(a.devices)
    else:
        cases = model_case(model=a.model, preset="tiny", prompt=a.prompt, new_tokens=a.tokens,
                           devices=a.devices)
    case_s = time.perf_counter() - t0
    build_dir = ROOT / "build" / "rtl" / f"core_{hw.artifact_name}"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        failure = None
        try:
            stats, _ = run_cases(cases, Path(tmp) / "ring", build_dir)
        except RuntimeError as e:           # still report what the cards measured
            failure = str(e)
            stats = []
            for d in range(len(cases)):
                f = Path(tmp) / "ring" / f"stats{d}.json"
                if not f.is_file():
                    print(f"error: card {d} produced no statistics: {failure}", file=sys.stderr)
                    return 1
                stats.append(json.loads(f.read_text()))
        total_s = time.perf_counter() - t0
    if a.net:
        out = {"net": True, "devices": a.devices, "failure": failure, "total_s": round(total_s, 1),
               "cards": [{"card": s["card"], "differ": s["differ"], "runs": s["runs"],
                          "beats": s["beats"]} for s in stats]}
    else:
        out = ring_report(cases, stats)
        out.update({"model": a.model, "devices": a.devices, "prompt_tokens": len(cases[0]["prompt"]),
                    "tokens_model": cases[0]["tokens"], "failure": failure,
                    "case_s": round(case_s, 1), "total_s": round(total_s, 1)})
    for s, c in zip(stats, out["cards"]):
        cyc = sum(r["cycles"] for r in s["runs"])
        wall = sum(r["wall_s"] for r in s["runs"])
        c.update({"rtl_cycles": cyc, "run_wall_s": round(wall, 1),
                  "cycles_per_s": round(cyc / wall) if wall else None,
                  "sync_wait_s": round(s["sync_wait_s"], 1)})
    name = "net" if a.net else a.model
    report = ROOT / "build" / "rtl" / "core_reports" / f"ring_{name}_tiny_{a.devices}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(out, indent=1))
    if a.json:
        print(json.dumps(out, indent=1))
        return 1 if failure else 0
    if a.net:
        for c in out["cards"]:
            r = c["runs"][0]
            print(f"card {c['card']}: HBM bytes differing {c['differ']}, {r['cycles']} cycles; "
                  f"NET completions {r['stamps']['net']} (starts {r['starts']['net']})")
    else:
        print(f"{a.model} on {a.devices} tiny cores: prompt {out['prompt_tokens']} tokens, system "
              f"simulator's tokens {out['tokens_model']}")
        print(f"{'card':>4} {'stream':8} {'RTL cycles':>10} {'model':>10} {'diff':>8} "
              f"{'NET RTL':>8} {'NET model':>9} {'rest diff':>9}  tokens, HBM bytes differing")
        for c in out["cards"]:
            for r in c["streams"]:
                print(f"{c['card']:>4} {r['stream']:8} {r['rtl']:>10} {r['model']:>10.0f} "
                      f"{r['diff_pct']:>+7.2f}% {r['net_rtl']:>8} {r['net_model']:>9.0f} "
                      f"{r['rest_diff_pct']:>+8.2f}%  {c['tokens']}, {c['differ']}")
        print("(NET: the NET instructions' summed durations; rest diff: the stream's cycles "
              "less them, RTL vs model)")
        for c in out["cards"]:
            steps = [r for r in c["instructions"] if r["step"] is not None]
            print(f"card {c['card']}, per instruction (completion RTL - model; step = what the "
                  f"instruction added; duration = RTL - model duration):")
            for u in ("net", "dma", "mpu", "vpu"):
                us = [r for r in steps if r["unit"] == u]
                if not us:
                    continue
                print(f"  {u}: {len(us)} instructions, sum of steps {sum(r['step'] for r in us):+.0f}, "
                      f"sum of duration differences "
                      f"{sum(r['dur_diff'] or 0 for r in us):+.0f}; largest steps:")
                for r in sorted(us, key=lambda r: -abs(r["step"]))[:a.top]:
                    print(f"    {r['stream']:8} #{r['index']:<3} {r['op']:9} model "
                          f"{r['model_start']:8.0f}..{r['model']:8.0f}  RTL "
                          f"{r['rtl_start'] if r['rtl_start'] is not None else '-':>8}.."
                          f"{r['rtl']:<8} step {r['step']:+6.0f} duration "
                          f"{r['dur_diff'] if r['dur_diff'] is not None else 0:+6.0f}")
    for c in out["cards"]:
        print(f"card {c['card']}: {c['rtl_cycles']} cycles in {c['run_wall_s']} s "
              f"({c['cycles_per_s']} cycles/s), {c['sync_wait_s']} s waiting on the ring's pipes")
    print(f"total wall {out['total_s']} s" + ("" if a.net else f" (case {out['case_s']} s)")
          + f"; JSON: {report.relative_to(ROOT)}")
    if failure:
        print(f"FAILED: {failure}")
    return 1 if failure else 0


if __name__ == "__main__":
    raise SystemExit(main())
