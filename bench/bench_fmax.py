"""Estimated Fmax of a preset's core, block by block, against the clock the preset claims.

    .venv/bin/python bench/bench_fmax.py --hw u280 [--blocks mpu_lane,net,...] [--json out.json]

Synthesizes the named blocks of :data:`fpgpt.hw.synth.COMPONENTS` (default: all) and the FP
operators they instantiate with Yosys (``synth_xilinx -family xcup``, cached in
``build/synth/cache`` with the netlists kept), times their netlists (fpgpt/hw/fmax.py) and
prints the per-block table, the core's estimate, the clock it supports with the margin, and
whether the preset's ``clock_mhz`` is within it (exit 1 when it is not: the u280 check of
issue 10 that is too slow for the suite). Blocks left out are said so: the core's figure is
then the slowest of the blocks timed.

The big u280 blocks take long in the WebAssembly Yosys (cold, on a loaded 2-core machine:
scratchpad arbiter ~29 min, MPU engine ~24, DMA ~22, VPU engine ~18); ``--blocks`` picks the
others (docs/rtl-clock.md gives the figures measured and how the rest were estimated).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fpgpt.config import load_config
from fpgpt.hw.synth import COMPONENTS, synth_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hw", default="u280")
    ap.add_argument("--blocks", default=None,
                    help="comma-separated block names (default: every block)")
    ap.add_argument("--work", default="build/synth")
    ap.add_argument("--json", default=None, help="write the fmax report here")
    ap.add_argument("--structural", default=None, metavar="FILE.json",
                    help="estimates for blocks left out of --blocks: {block: {retimed_fmax_mhz, "
                         "fmax_mhz, basis}} (reported as 'structural', not timed)")
    a = ap.parse_args(argv)
    hw = load_config(a.hw)
    names = [c.name for c in COMPONENTS]
    pick = names if a.blocks is None else a.blocks.split(",")
    bad = [n for n in pick if n not in names]
    if bad:
        print(f"unknown block(s) {bad}; blocks: {', '.join(names)}", file=sys.stderr)
        return 2
    comps = tuple(c for c in COMPONENTS if c.name in pick)
    structural = None
    if a.structural:
        try:
            structural = json.loads(Path(a.structural).read_text())
        except (OSError, ValueError) as e:
            print(f"cannot read --structural {a.structural}: {e}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    rep = synth_report(hw, Path(a.work).resolve(), components=comps, fmax=True,
                       structural=structural,
                       progress=lambda line: print(f"[{time.perf_counter() - t0:7.1f} s] {line}",
                                                   file=sys.stderr, flush=True))
    f = rep["fmax"]
    print(f"\n{hw.artifact_name}: estimated Fmax per block (UltraScale+ -2, pre-placement)")
    print(f"{'block':22} {'as written':>11} {'retimed':>9} {'stages':>6}  {'source':10} "
          "critical path (retimed)")
    for name, b in f["blocks"].items():
        if b["status"] == "not timed":
            print(f"{name:22} {'-':>11} {'-':>9} {'':6}  {'not timed':10} {b['reason']}")
            continue
        if b["status"] == "structural":
            print(f"{name:22} {b['fmax_mhz']:8.1f} MHz {b['retimed_fmax_mhz']:5.1f} MHz "
                  f"{'':6}  {'structural':10} {b['basis']}")
            continue
        lv = ", ".join(f"{k} {v}" for k, v in b["retimed_levels"].items())
        print(f"{name:22} {b['fmax_mhz']:8.1f} MHz {b['retimed_fmax_mhz']:5.1f} MHz "
              f"{b['retimed_stages']:6d}  {'timed':10} {lv} -> {b['retimed_end']}")
        nxt = b.get("retimed_endpoints", [])[1:]
        if nxt:
            print(f"{'':22} {'':>11} {'':>9} {'':6}  {'':10} next: " + "; ".join(
                f"{mhz:.1f} {lab}" for mhz, lab, _k in nxt))
    print(f"\n{'operator':22} {'comb. ns':>9}  levels")
    for kind, o in f["operators"].items():
        lv = ", ".join(f"{k} {v}" for k, v in o["levels"].items())
        print(f"{kind:22} {o['delay_ns']:9.2f}  {lv}")
    core = f["core"]
    print(f"\ncore ({core['from']}): {core['retimed_fmax_mhz']:.1f} MHz retimed "
          f"({core['retimed_critical_block']}), {core['fmax_mhz']:.1f} MHz as written "
          f"({core['critical_block']}); timed: {', '.join(core['blocks_timed'])}"
          + (f"; structural: {', '.join(core['blocks_structural'])}"
             if core["blocks_structural"] else "")
          + (f"; NOT timed (the core's figure is an upper bound): "
             f"{', '.join(core['blocks_not_timed'])}" if core["blocks_not_timed"] else ""))
    print(f"supported clock (x{f['margin']}): {core['supported_clock_mhz']:.0f} MHz; "
          f"{hw.name} claims {hw.clock_mhz:.0f} MHz: "
          f"{'within' if f['claim_ok'] else 'ABOVE the estimate'}")
    print(f"wall {time.perf_counter() - t0:.0f} s; Yosys s per block: " + ", ".join(
        f"{n} {r['synth_seconds']:.0f}" for n, r in rep["components"].items()
        if r["kind"] != "memory"))
    if a.json:
        # the Yosys run that made each (perhaps cached) netlist: its wall seconds
        yosys = {n: r["first_synth_seconds"] for n, r in rep["components"].items()
                 if r["kind"] != "memory"}
        Path(a.json).write_text(json.dumps({"hw": hw.name, "blocks_timed": pick,
                                            "yosys_seconds": yosys, "fmax": f}, indent=1))
    return 0 if f["claim_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
