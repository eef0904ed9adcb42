"""Fmax of the paths that cross from a block into its black-boxed sub-blocks and back: the VPU
with its lanes stitched in (the per-block walk of bench/bench_fmax.py cuts them at the lanes'
ports, taking each port as a register; docs/rtl-clock.md, "The VPU").

    .venv/bin/python bench/bench_fmax_stitched.py --hw u280 [--block vpu --sub vpu_lane]
        [--ends '^sum\\d+_r0' --ends '^(acc|has|best)\\d+']

Synthesizes (or takes from the cache, as bench/bench_fmax.py does) the block and the sub-block,
replaces each of the block's sub-block boxes by a copy of the sub-block's netlist (its ports
wired to the box's connections), and times the result with fpgpt/hw/fmax.py's walk, once per
``--ends`` pattern: only the registers whose RTL name matches it are end points (every other
register's and memory's inputs are cut, except the links of plain register chains, which the
retiming credit reads). Default patterns for the VPU: its summing rings' first registers
(LAYERNORM's sum and variance, SOFTMAX's exp-sum: the adder behind the lanes' outputs) and the
maxima's compare registers (SM_MAX, ARGMAX). Prints the as-written and retimed figure of each
and its critical path; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from fpgpt.config import load_config
from fpgpt.hw import fmax
from fpgpt.hw.synth import COMPONENTS, synth_block, synth_fp_operator

DEFAULT_ENDS = {"vpu": [r"^sum\d+_r0\[", r"^(acc|has|best)\d+"]}


def _max_bit(net: dict[str, Any]) -> int:
    m = 0
    for conns in [c["conns"] for c in net["cells"]] + [net["ports"]]:
        for _d, bits in conns.values():
            m = max([m] + [b for b in bits if isinstance(b, int)])
    return m


def stitch(parent: dict[str, Any], child: dict[str, Any], box_type: str) -> dict[str, Any]:
    """``parent`` with each cell of type ``box_type`` replaced by a copy of ``child`` (compact
    netlists, :func:`fpgpt.hw.fmax.compact_netlist`); child ports the box lacks (clock, reset)
    get bits of their own. The copies' register names are prefixed with the box's name."""
    off = max(_max_bit(parent), _max_bit(child)) + 16
    spare = iter(range(off * 1000, off * 2000))
    cells, names, n = [], dict(parent["names"]), 0
    for c in parent["cells"]:
        if c["type"] != box_type:
            cells.append(c)
            continue
        n += 1
        base = off * n
        sub = {}
        for p, (_d, bits) in child["ports"].items():
            box = c["conns"].get(p)
            for i, b in enumerate(bits):
                if isinstance(b, int):
                    sub[b + base] = box[1][i] if box is not None else next(spare)
        # the child's I/O buffers go: their far side is the box's net, so that the walk
        # counts the routing hop into and out of the child (it counts none at a buffer)
        for cc in child["cells"]:
            if cc["type"] in fmax._PASS and cc["type"] != "BUFG":
                (i_bits,), (o_bits,) = ([v[1] for v in cc["conns"].values() if v[0] == d]
                                        for d in ("input", "output"))
                for ib, ob in zip(i_bits, o_bits):
                    if not (isinstance(ib, int) and isinstance(ob, int)):
                        continue                     # a constant bit: no net to join
                    if ib + base in sub:             # IBUF: its output is the port's net
                        sub[ob + base] = sub[ib + base]
                    elif ob + base in sub:           # OBUF: its input is the port's net
                        sub[ib + base] = sub[ob + base]
        for cc in child["cells"]:
            if cc["type"] in fmax._PASS and cc["type"] != "BUFG":
                continue
            conns = {p: [d, [sub.get(b + base, b + base) if isinstance(b, int) else b
                             for b in bits]] for p, (d, bits) in cc["conns"].items()}
            cells.append({**cc, "name": f"{c['name']}.{cc['name']}", "conns": conns})
        prefix = c["name"].split(".")[0]
        for b, name in child["names"].items():
            names[str(sub.get(int(b) + base, int(b) + base))] = f"{prefix}.{name}"
    if not n:
        raise ValueError(f"no {box_type!r} cell in {parent.get('top')!r}")
    return {"top": f"{parent.get('top')}+{child.get('top')}", "cells": cells, "names": names,
            "ports": {p: v for p, v in parent["ports"].items() if v[0] == "input"}}


def only_ends(net: dict[str, Any], pattern: str) -> tuple[dict[str, Any], int]:
    """A copy of ``net`` whose end points are only the registers named by ``pattern``: the
    other registers' inputs (but the D of a register driven straight by another, a chain
    link) and the memories' inputs go to fresh undriven bits. Returns it and the count kept."""
    rx = re.compile(pattern)
    cells = [dict(c, conns=dict(c["conns"])) for c in net["cells"]]
    driver = {}
    for i, c in enumerate(cells):
        for _p, (d, bits) in c["conns"].items():
            if d == "output":
                driver.update((b, i) for b in bits if isinstance(b, int))
    spare = iter(range(_max_bit(net) + 1, 1 << 62))
    comb = ("LUT", "CARRY", "MUXF", "INV", "fpgpt_bb_", "IBUF", "OBUF", "BUFG", "DSP48E2")
    kept = 0
    for c in cells:
        t = c["type"]
        if t in fmax._FF:
            q = c["conns"]["Q"][1][0]
            if rx.search(net["names"].get(str(q), c["name"])):
                kept += 1
                continue
        elif t.startswith(comb):
            continue
        for p, (d, bits) in list(c["conns"].items()):
            if d == "output" or p in ("C", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK"):
                continue
            if (t in fmax._FF and p == "D" and isinstance(bits[0], int) and bits[0] in driver
                    and cells[driver[bits[0]]]["type"] in fmax._FF):
                continue
            c["conns"][p] = [d, [next(spare) if isinstance(b, int) else b for b in bits]]
    return {**net, "cells": cells}, kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hw", default="u280")
    ap.add_argument("--block", default="vpu")
    ap.add_argument("--sub", default="vpu_lane")
    ap.add_argument("--ends", action="append", default=None,
                    help="regex of the end registers' RTL names (repeatable)")
    ap.add_argument("--work", default="build/synth")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    hw = load_config(a.hw)
    comps = {c.name: c for c in COMPONENTS}
    if a.block not in comps or a.sub not in comps:
        print(f"blocks: {', '.join(comps)}", file=sys.stderr)
        return 2
    ends = a.ends or DEFAULT_ENDS.get(a.block) or [""]
    work = Path(a.work).resolve()
    t0 = time.perf_counter()
    nets, kinds = {}, set()
    for name in (a.block, a.sub):
        s, _elab, local = synth_block(hw, comps[name], work, netlist=True)
        nets[name] = fmax.load_netlist(s["netlist"])
        kinds |= set(local)
    ops = {k: fmax.operator_delay(fmax.load_netlist(
        synth_fp_operator(k, work, netlist=True)[0]["netlist"])) for k in sorted(kinds)}
    box = "fpgpt_bb_" + a.sub.replace("_", "")
    whole = stitch(nets[a.block], nets[a.sub], box)
    out = {"hw": hw.name, "block": a.block, "sub": a.sub, "ends": {}}
    print(f"{hw.artifact_name}: {a.block} with its {a.sub} boxes stitched in")
    for pat in ends:
        net, kept = only_ends(whole, pat)
        r = fmax.analyse(net, fp_delays=ops)
        out["ends"][pat] = {k: r[k] for k in ("fmax_mhz", "period_ns", "retimed_fmax_mhz",
                                              "retimed_period_ns", "retimed_stages",
                                              "retimed_levels", "end", "retimed_end", "path")}
        out["ends"][pat]["registers"] = kept
        print(f"\nends {pat!r} ({kept} register bits): as written {r['fmax_mhz']} MHz "
              f"({r['period_ns']} ns) -> {r['end']}; retimed {r['retimed_fmax_mhz']} MHz "
              f"({r['retimed_period_ns']} ns a stage over {r['retimed_stages']}) -> "
              f"{r['retimed_end']}, {r['retimed_levels']}")
        print("  path (as written): " + " -> ".join(
            f"{t[9:] if t.startswith('fpgpt_bb_') else t} {n}" for t, n in r["path"]
            if t not in fmax._PASS))
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
