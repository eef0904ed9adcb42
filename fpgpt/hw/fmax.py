"""Estimated Fmax of each block: static timing on the Yosys ``synth_xilinx -family xcup`` netlist.

Yosys gives cells, not delays for UltraScale+ (its ``cells_sim.v`` carries Artix-7 figures from
prjxray), so this module times the mapped netlist itself: every register-to-register path is
walked cell by cell (LUT, CARRY, MUXF, DSP48E2, LUTRAM, black box), each cell adds its delay
and each connection between cells that is not a dedicated in-slice wire adds one routing hop.
The constants (:class:`Delays`) are for a Virtex UltraScale+ -2 part at VCCINT 0.85 V (the
U280's XCU280 -2L run at 0.85 V), each with its source; docs/rtl-clock.md states the method,
the calibration and its expected error.

How the blocks of :mod:`fpgpt.hw.synth` are put together again:

* an FP operator black box (``fpgpt_bb_<kind>``) inside a block is a combinational cell whose
  delay is that operator's own longest input-to-output path (:func:`operator_delay` on its
  netlist), as it is in the design (the operators are combinational, followed by their
  ``latency`` registers);
* a block black box (another row: ``fpgpt_bb_mpulane``...) and the scratchpad storage
  (``fpgpt_spram``) are boundaries: their inputs end paths, their outputs start them; the top
  ports of a block likewise (a neighbour's register drives each input, one takes each output);
* **retiming**: the FP units' registers sit *after* their logic for synthesis retiming to
  spread (docs/rtl.md, "Latency"). A path that ends in a register followed by a plain chain of
  ``k`` registers (each driving only the next) can be cut into ``k`` stages, so its stage delay
  is ``path / k`` (never less than the slowest single cell on it plus a hop in and out). The
  report gives both figures: ``period_ns`` without retiming (the RTL as written) and
  ``retimed_period_ns``; a loop (the MPU accumulator) has ``k = 1`` and no retiming helps it.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Delays", "DELAYS", "MARGIN", "compact_netlist", "save_netlist", "load_netlist", "analyse", "fmax_report",
           "operator_delay", "chain_lengths", "supported_clock_mhz", "stages_needed",
           "DSP_STAGE_NS"]


@dataclass(frozen=True)
class Delays:
    """Per-cell and per-hop delays (ns) for Virtex UltraScale+ -2 (0.85 V).

    Sources
    -------
    RW : RapidWright's lightweight UltraScale+ timing model (Maidee, Neely, Kaviani, Lavin,
        "An Open-source Lightweight Timing Model for RapidWright", FPT 2019; the defaults of
        ``com.xilinx.rapidwright.timing.TimingModel``, fitted to Vivado timing reports, "within
        2 % average accuracy of Vivado for UltraScale+"): FF clock-to-out 78 ps, LUT input
        pins A1..A6 150/125/100/90/53/38 ps, CARRY CO 216 ps, site pins 43-74 ps, a wire
        timing group 43-46 ps + 3.7-4.5 ps per tile, site pin to FF 100 ps.
    DS923 : Virtex UltraScale+ data sheet (v1.20, 2024), DSP48 switching characteristics,
        -2 at 0.85 V: FMAX 775 MHz with all registers, 544 MHz without MREG, 410 MHz without
        pipeline registers (MREG, ADREG).
    """

    #: FF clock to Q [RW LOGIC_FF_DELAY 78 ps].
    ff_clk_to_q: float = 0.078
    #: FF setup, including the site pin to FF hop [RW INTRASITE_DELAY_SITEPIN_TO_FF_INPUT].
    ff_setup: float = 0.100
    #: LUT, any size [RW: mean of the A1..A6 pin delays, 93 ps, rounded up].
    lut: float = 0.100
    #: One routed connection between two sites: out and in site pins (~50 ps each) and
    #: about three wire timing groups of 45-60 ps [RW; D: 2 x 50 + 3 x 55 ≈ 0.27, rounded up].
    route: float = 0.300
    #: Entering a carry chain through S/DI to CO / O [RW CARRY_CO_DELAY 216 ps].
    carry_entry: float = 0.216
    #: Carry-in to carry-out along the chain, per CARRY4 (half a CARRY8) [estimate: not in RW;
    #: a dedicated in-column wire].
    carry_chain: float = 0.030
    #: MUXF7/F8/F9 inside the slice [estimate, about one fast LUT pin].
    muxf: float = 0.060
    #: DSP48E2 with no internal registers, any input to P [DS923: 1 / 410 MHz = 2.44 ns from
    #: the A/B register to the P register through the multiplier, less the FF clock-to-out
    #: and setup above, 0.18 ns; Vivado reports 1.51-1.57 ns A/B -> P for some DSPs (RW's
    #: DSPTimingData example), so this is the slow end].
    dsp_comb: float = 2.26
    #: DSP48E2 with PREG: clock to P, and the setup of a registered DSP input [DS923: 1 / 775 MHz
    #: = 1.29 ns for a fully registered stage, split evenly; estimate].
    dsp_clk_to_out: float = 0.65
    dsp_setup: float = 0.65
    #: Block RAM / UltraRAM (and the scratchpad storage black box) clock to data out without
    #: the output register [estimate: DS923 gives Fmax, not this delay; ~1/2 of a 1.6 ns cycle].
    ram_clk_to_out: float = 0.90
    #: LUTRAM read (address to data) [RW: as a LUT].
    lutram: float = 0.100
    #: SRL clock to Q [estimate: a LUTRAM read after the clock].
    srl_clk_to_q: float = 0.300

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: The delays used unless another set is given.
DELAYS = Delays()

#: The shortest stage retiming can reach through an FP operator: one combinational DSP48E2
#: between two fabric registers, with a hop in and out [D: from DELAYS, 3.04 ns = 329 MHz].
DSP_STAGE_NS = round(DELAYS.ff_clk_to_q + 2 * DELAYS.route + DELAYS.dsp_comb
                     + DELAYS.ff_setup, 3)

#: Fraction of the estimated Fmax a preset may claim: placement and routing of a large,
#: congested design lengthen the routing hops that this pre-placement estimate charges at a
#: typical 0.3 ns (docs/rtl-clock.md, "Expected error").
MARGIN = 0.80

_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1"}
_RAM = {"RAMB36E2", "RAMB18E2", "URAM288", "URAM288_BASE", "FIFO36E2", "FIFO18E2"}
_PASS = {"IBUF", "OBUF", "BUFG", "IBUFG", "BUFGCE", "OBUFT", "IOBUF"}
_CONST = {"VCC", "GND"}
_LUTRAM_READ = re.compile(r"^(ADDR[A-H]|A\d|A$|DPRA\d?|RADR)")
_DSP_REGS = ("AREG", "BREG", "CREG", "DREG", "ADREG", "MREG", "PREG", "ACASCREG", "BCASCREG")


def _param_int(v: Any) -> int:
    if isinstance(v, int):
        return v
    s = str(v)
    try:
        return int(s, 2) if set(s) <= {"0", "1"} else int(s)
    except ValueError:
        return 0


def compact_netlist(yosys_json: str | Path, top: str) -> dict[str, Any]:
    """The top module of a Yosys ``write_json`` netlist, reduced to what timing reads: ports,
    and per cell its type, DSP register flags and connections by direction."""
    doc = json.loads(Path(yosys_json).read_text())
    mod = doc["modules"][top]
    cells = []
    for name, c in mod["cells"].items():
        t = c["type"]
        if t.startswith("$scopeinfo"):
            continue
        dirs = c.get("port_directions", {})
        conns = {p: [dirs.get(p, "input"), bits] for p, bits in c["connections"].items()}
        cell = {"name": name, "type": t, "conns": conns}
        if t == "DSP48E2":
            cell["regs"] = {k: _param_int(c["parameters"].get(k, 0)) for k in _DSP_REGS}
        cells.append(cell)
    ports = {p: [v["direction"], v["bits"]] for p, v in mod["ports"].items()}
    # the RTL's names of the register outputs, so that a path reads ``acc -> ... -> acc``
    q_bits = {b for c in cells if c["type"] in _FF for b in c["conns"].get("Q", [0, []])[1]}
    names: dict[int, str] = {}
    for name, v in mod.get("netnames", {}).items():
        if v.get("hide_name"):
            continue
        for i, b in enumerate(v["bits"]):
            if isinstance(b, int) and b in q_bits and (b not in names or
                                                        len(name) < len(names[b])):
                names[b] = f"{name}[{i}]" if len(v["bits"]) > 1 else name
    return {"top": top, "ports": ports, "cells": cells,
            "names": {str(b): n for b, n in names.items()}}


def save_netlist(net: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with gzip.open(tmp, "wt") as f:
        json.dump(net, f, separators=(",", ":"))
    tmp.replace(path)
    return path


def load_netlist(path: str | Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def _fp_kind(cell_type: str, fp_kinds: set[str]) -> str | None:
    if cell_type.startswith("fpgpt_bb_"):
        kind = cell_type[len("fpgpt_bb_"):]
        if kind in fp_kinds:
            return kind
    return None


@dataclass
class _Graph:
    """Bits, their drivers and sinks, and each cell's timing class."""
    driver: dict[int, tuple[int, str]] = field(default_factory=dict)   # bit -> (cell, port)
    sinks: dict[int, list[tuple[int, str]]] = field(default_factory=dict)


def _graph(net: dict[str, Any]) -> _Graph:
    g = _Graph()
    for i, c in enumerate(net["cells"]):
        for p, (d, bits) in c["conns"].items():
            for b in bits:
                if not isinstance(b, int):
                    continue
                if d == "output":
                    g.driver[b] = (i, p)
                else:
                    g.sinks.setdefault(b, []).append((i, p))
    return g


def chain_lengths(net: dict[str, Any], g: _Graph | None = None) -> dict[int, int]:
    """For each FF (cell index), the registers in the plain chain that starts at it: 1 for a
    register whose Q drives anything but exactly one FF's D, k + 1 when it drives only the D
    of a register whose chain is k. Retiming may spread a path ending at that FF over k
    stages."""
    g = g or _graph(net)
    cells = net["cells"]
    nxt: dict[int, int] = {}
    for i, c in enumerate(cells):
        if c["type"] not in _FF:
            continue
        q = c["conns"].get("Q", [None, []])[1]
        if len(q) != 1 or not isinstance(q[0], int):
            continue
        s = g.sinks.get(q[0], [])
        if len(s) == 1 and cells[s[0][0]]["type"] in _FF and s[0][1] == "D":
            nxt[i] = s[0][0]
    memo: dict[int, int] = {}
    for i in range(len(cells)):
        if cells[i]["type"] not in _FF or i in memo:
            continue
        path = []
        j = i
        while j in nxt and j not in memo and len(path) <= len(cells):
            path.append(j)
            j = nxt[j]
        base = memo.get(j, 1) if j not in path else 1
        if j not in memo and j not in path:
            memo[j] = base
        for k in reversed(path):
            base += 1
            memo[k] = base
    return memo


def analyse(net: dict[str, Any], *, delays: Delays = DELAYS,
            fp_delays: dict[str, dict[str, float]] | None = None,
            inputs_registered: bool = True, endpoints: int = 0) -> dict[str, Any]:
    """Static timing of one block's netlist (:func:`compact_netlist`).

    Parameters
    ----------
    net : the compact netlist.
    delays : the cell and hop delays.
    fp_delays : for each FP operator kind met as a black box, ``{"delay_ns", "atomic_ns"}``
        from :func:`operator_delay` (its longest path, and its slowest single cell with a hop
        in and out). A kind missing here makes the analysis fail (``KeyError``).
    inputs_registered : the block's input ports come from registers (``True``), or arrive
        at time 0 and its outputs end with no setup (an operator timed alone).
    endpoints : also list the slowest ``endpoints`` end points (registers by name, bit
        indices dropped) after retiming: ``retimed_endpoints``, ``[[MHz, label, stages]]``
        (what limits the block after its critical path).

    Returns
    -------
    dict
        ``period_ns`` / ``fmax_mhz`` (no retiming), ``retimed_period_ns`` /
        ``retimed_fmax_mhz``, ``levels`` (cells on the critical path by kind), ``path`` (the
        critical path's cells, start to end: ``[type, name]``; ``retimed_path`` the same for
        the retimed critical path), ``start`` / ``end``,
        ``retimed_end`` / ``retimed_stages``, ``max_arrival_ns`` (of any output port, for
        operators), ``combinational_loops`` (cells left unordered), ``unknown_cells``.
    """
    from .synth import FP_OPERATORS          # the FP black boxes' kinds
    d = delays
    fp_delays = fp_delays or {}
    missing = {c["type"][9:] for c in net["cells"] if c["type"].startswith("fpgpt_bb_")
               and c["type"][9:] in FP_OPERATORS and c["type"][9:] not in fp_delays}
    if missing:
        raise KeyError(f"no delay for the FP operator(s) {sorted(missing)}: time their "
                       f"netlists first (operator_delay)")
    cells = net["cells"]
    names = net.get("names", {})

    def reg_name(i: int) -> str:
        """A register's RTL name (its Q bit's), else its cell name."""
        q = cells[i]["conns"].get("Q", [0, []])[1]
        return names.get(str(q[0]), cells[i]["name"]) if q else cells[i]["name"]
    g = _graph(net)
    chains = chain_lengths(net, g)
    fp_kinds = set(fp_delays)
    hier = sorted({c["type"] for c in cells if "." in c["type"]})
    if hier:
        raise ValueError(f"the netlist of {net.get('top')!r} is not flat (cells {hier[:3]}): "
                         "synthesize it again with synth_module(..., netlist=True)")

    arr: dict[int, float] = {}         # bit -> arrival at the driver's output
    pred: dict[int, int | None] = {}   # bit -> the bit it came from
    atom: dict[int, float] = {}        # bit -> slowest single stage on its worst path
    unknown: Counter = Counter()

    def kind_of(c) -> str:
        t = c["type"]
        if t in _FF:
            return "ff"
        if t.startswith("LUT") or t == "INV":
            return "lut"
        if t.startswith("CARRY"):
            return "carry"
        if t.startswith("MUXF"):
            return "muxf"
        if t in _PASS:
            return "pass"
        if t in _CONST:
            return "const"
        if t == "DSP48E2":
            return "dsp_comb" if not any(c["regs"].values()) else "dsp_reg"
        if t in _RAM or t == "fpgpt_spram":
            return "ram"
        if t.startswith("SRL"):
            return "srl"
        if t.startswith("RAM"):
            return "lutram"
        if _fp_kind(t, fp_kinds):
            return "fp"
        if t.startswith("fpgpt_bb_"):
            return "box"
        unknown[t] += 1
        return "lut"

    kinds = [kind_of(c) for c in cells]

    def comb_inputs(i: int) -> list[tuple[str, int]]:
        """(port, bit) inputs through which cell ``i`` is combinational."""
        c, k = cells[i], kinds[i]
        out = []
        for p, (dr, bits) in c["conns"].items():
            if dr == "output":
                continue
            if k == "lutram" and not _LUTRAM_READ.match(p):
                continue
            if k == "dsp_comb" and (p == "CLK" or p.startswith(("CE", "RST"))):
                continue
            for b in bits:
                if isinstance(b, int):
                    out.append((p, b))
        return out

    def is_comb(i: int) -> bool:
        return kinds[i] in ("lut", "carry", "muxf", "pass", "dsp_comb", "lutram", "fp")

    def dedicated(src_cell: int, src_port: str, dst_cell: int, dst_port: str) -> bool:
        ks, kd = kinds[src_cell], kinds[dst_cell]
        if kd == "carry" and dst_port == "CI" and ks == "carry":
            return True
        if kd == "muxf" and ks in ("lut", "muxf"):
            return True
        if kd == "carry" and ks == "lut" and dst_port in ("S", "DI"):
            return True          # the LUT in front of its carry, in the same slice
        if ks == "pass" or kd == "pass":
            return True
        return False

    def cell_delay(i: int, port: str) -> float:
        k = kinds[i]
        if k == "lut":
            return d.lut
        if k == "carry":
            return d.carry_chain if port == "CI" else d.carry_entry
        if k == "muxf":
            return d.muxf
        if k == "dsp_comb":
            return d.dsp_comb
        if k == "lutram":
            return d.lutram
        if k == "fp":
            return fp_delays[_fp_kind(cells[i]["type"], fp_kinds)]["delay_ns"]
        return 0.0

    def cell_atom(i: int) -> float:
        k = kinds[i]
        if k == "fp":
            return fp_delays[_fp_kind(cells[i]["type"], fp_kinds)]["atomic_ns"]
        return cell_delay(i, "") + (0.0 if k == "pass" else 2 * d.route)

    # Start points: register outputs, RAM outputs, block black-box outputs, input ports.
    start_t = d.ff_clk_to_q if inputs_registered else 0.0
    for p, (dr, bits) in net["ports"].items():
        if dr == "input":
            for b in bits:
                if isinstance(b, int):
                    arr[b], pred[b], atom[b] = start_t, None, 0.0
    for i, c in enumerate(cells):
        k = kinds[i]
        t0 = {"ff": d.ff_clk_to_q, "ram": d.ram_clk_to_out, "box": d.ff_clk_to_q,
              "srl": d.srl_clk_to_q, "dsp_reg": d.dsp_clk_to_out}.get(k)
        if t0 is None:
            continue
        for p, (dr, bits) in c["conns"].items():
            if dr == "output":
                for b in bits:
                    if isinstance(b, int):
                        arr[b], pred[b], atom[b] = t0, None, 0.0

    # Combinational cells in topological order (Kahn over the bits they drive).
    indeg = [0] * len(cells)
    comb = [i for i in range(len(cells)) if is_comb(i)]
    users: dict[int, list[int]] = {}
    ins_of: dict[int, list[tuple[str, int]]] = {}
    for i in comb:
        ins = comb_inputs(i)
        ins_of[i] = ins
        for _p, b in ins:
            dv = g.driver.get(b)
            if dv is not None and is_comb(dv[0]):
                indeg[i] += 1
                users.setdefault(dv[0], []).append(i)
    ready = [i for i in comb if indeg[i] == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        best, best_bit, best_atom = -math.inf, None, 0.0
        for p, b in ins_of[i]:
            if b not in arr:
                continue
            dv = g.driver.get(b)
            hop = 0.0 if dv is None or dedicated(dv[0], dv[1], i, p) else d.route
            if dv is None and not inputs_registered:
                hop = 0.0
            t = arr[b] + hop + cell_delay(i, p)
            if t > best:
                best, best_bit, best_atom = t, b, atom[b]
        if best_bit is not None:
            a = max(best_atom, cell_atom(i))
            for p, (dr, bits) in cells[i]["conns"].items():
                if dr == "output":
                    for b in bits:
                        if isinstance(b, int):
                            arr[b], pred[b], atom[b] = best, best_bit, a
        for u in users.get(i, ()):
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    loops = len(comb) - done

    # End points: register inputs, RAM and black-box inputs, registered DSP inputs, outputs.
    worst = (-math.inf, None, None, 1)
    worst_rt = (-math.inf, None, None, 1)
    max_out, max_out_bit = 0.0, None
    by_end: dict[str, tuple[float, int]] = {}

    def end(t: float, bit: int, label: str, k: int):
        nonlocal worst, worst_rt
        if t > worst[0]:
            worst = (t, bit, label, k)
        dv = g.driver.get(bit)
        lo = atom.get(bit, 0.0) + d.ff_clk_to_q + d.ff_setup
        rt = max(t / k, lo) if k > 1 else t
        if rt > worst_rt[0]:
            worst_rt = (rt, bit, label, k)
        if endpoints:
            key = re.sub(r"\[\d+\]", "", label)
            if rt > by_end.get(key, (-math.inf,))[0]:
                by_end[key] = (rt, k)

    for i, c in enumerate(cells):
        k = kinds[i]
        if k in ("ff", "ram", "box", "srl", "dsp_reg") or (k == "lutram"):
            setup = {"dsp_reg": d.dsp_setup}.get(k, d.ff_setup)
            for p, (dr, bits) in c["conns"].items():
                if dr == "output" or p in ("C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK"):
                    continue
                if k == "lutram" and _LUTRAM_READ.match(p):
                    continue
                for b in bits:
                    if isinstance(b, int) and b in arr:
                        dv = g.driver.get(b)
                        hop = 0.0 if dv is not None and kinds[dv[0]] == "pass" else d.route
                        t = arr[b] + hop + setup
                        label = (f"{reg_name(i)} ({p})" if k == "ff"
                                 else f"{c['type']} {c['name']}.{p}")
                        end(t, b, label,
                            chains.get(i, 1) if k == "ff" and p == "D" else 1)
    for p, (dr, bits) in net["ports"].items():
        if dr != "output":
            continue
        for b in bits:
            if isinstance(b, int) and b in arr:
                if arr[b] > max_out:
                    max_out, max_out_bit = arr[b], b
                if inputs_registered:
                    end(arr[b] + d.route + d.ff_setup, b, f"output {p}", 1)

    def trace(bit):
        path, seen = [], set()
        while bit is not None and bit not in seen:
            seen.add(bit)
            dv = g.driver.get(bit)
            if dv is not None:
                c = cells[dv[0]]
                path.append([c["type"], reg_name(dv[0]) if kinds[dv[0]] == "ff" else c["name"]])
            bit = pred.get(bit)
        return list(reversed(path))

    def levels(path) -> dict[str, int]:
        cnt: Counter = Counter()
        for t, _n in path[1:] if path and (path[0][0] in _FF or path[0][0] in _RAM) else path:
            if t in _PASS or t in _CONST:
                continue
            if t.startswith("LUT") or t == "INV":
                cnt["LUT"] += 1
            elif t.startswith("CARRY"):
                cnt["CARRY"] += 1
            elif t.startswith("MUXF"):
                cnt["MUXF"] += 1
            elif t == "DSP48E2":
                cnt["DSP48E2"] += 1
            elif t.startswith("fpgpt_bb_"):
                cnt[t[len("fpgpt_bb_"):]] += 1
            else:
                cnt[t] += 1
        return dict(cnt)

    res: dict[str, Any] = {"combinational_loops": loops, "unknown_cells": dict(unknown),
                           "max_arrival_ns": round(max_out, 3),
                           "output_levels": levels(trace(max_out_bit)) if max_out_bit else {}}
    if worst[1] is None:
        res.update(period_ns=0.0, fmax_mhz=None, retimed_period_ns=0.0, retimed_fmax_mhz=None,
                   levels={}, path=[], start=None, end=None, retimed_end=None,
                   retimed_stages=1)
        return res
    path = trace(worst[1])
    rpath = trace(worst_rt[1])
    res.update(
        period_ns=round(worst[0], 3), fmax_mhz=round(1000.0 / worst[0], 1),
        retimed_period_ns=round(worst_rt[0], 3),
        retimed_fmax_mhz=round(1000.0 / worst_rt[0], 1),
        levels=levels(path), path=path[:64], start=path[0][1] if path else "input port",
        end=worst[2], retimed_end=worst_rt[2], retimed_stages=worst_rt[3],
        retimed_levels=levels(rpath), retimed_path=rpath[:64])
    if endpoints:
        slow = sorted(by_end.items(), key=lambda kv: -kv[1][0])[:endpoints]
        res["retimed_endpoints"] = [[round(1000.0 / t, 1), lab, k] for lab, (t, k) in slow]
    return res


def operator_delay(net: dict[str, Any], *, delays: Delays = DELAYS) -> dict[str, Any]:
    """An FP operator synthesized alone, combinational: its longest input-to-output path
    (``delay_ns``: from the pins, with the hops inside it, without the hop into or out of
    it) and its slowest single cell with a hop in and out (``atomic_ns``: what retiming
    cannot cut), with the levels on that path."""
    r = analyse(net, delays=delays, inputs_registered=False)
    kinds = [c["type"] for c in net["cells"]]
    atomic = max([delays.dsp_comb + 2 * delays.route] * ("DSP48E2" in kinds)
                 + [delays.lut + 2 * delays.route])
    return {"delay_ns": r["max_arrival_ns"], "atomic_ns": round(atomic, 3),
            "levels": r["output_levels"]}


def stages_needed(delay_ns: float, period_ns: float, *, delays: Delays = DELAYS) -> int:
    """Registers an operator of combinational ``delay_ns`` (:func:`operator_delay`) needs
    behind it for retiming to reach ``period_ns``: its delay with a hop in and out and a
    register's clock-to-out and setup, over the period (what a preset's latency must be for
    its clock; docs/rtl-clock.md, "VPU latencies")."""
    if not period_ns > 0 or not delay_ns >= 0:
        raise ValueError(f"period_ns must be > 0 and delay_ns >= 0, not {period_ns!r}, "
                         f"{delay_ns!r}")
    path = delay_ns + 2 * delays.route + delays.ff_clk_to_q + delays.ff_setup
    return max(1, math.ceil(path / period_ns - 1e-9))


def supported_clock_mhz(fmax_mhz: float, margin: float = MARGIN) -> float:
    """The clock a preset may claim for a design whose estimated Fmax is ``fmax_mhz``: the
    margin (:data:`MARGIN`), rounded down to a multiple of 5 MHz."""
    return math.floor(fmax_mhz * margin / 5.0) * 5.0


#: End points per block that :func:`fmax_report` lists after retiming (the slowest first: what
#: limits the block once its critical path is fixed).
NEXT_ENDS = 5


def fmax_report(blocks: dict[str, str | Path], operators: dict[str, str | Path], *,
                clock_mhz: float | None = None, delays: Delays = DELAYS,
                margin: float = MARGIN, not_timed: dict[str, str] | None = None,
                structural: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Fmax of each block and of the core from their compacted netlists (paths of
    :func:`save_netlist` files; :func:`fpgpt.hw.synth.synth_report` with ``fmax=True``).

    Every FP operator a block instantiates must be among ``operators``. Every block of the
    core gets a row whose ``status`` says where its figure comes from:

    * ``"timed"``: its netlist walked here;
    * ``"structural"``: not timed this run, a figure from ``structural`` (``{name:
      {"retimed_fmax_mhz", "fmax_mhz" (optional), "basis": why}}``: an estimate from the
      block's structure, e.g. the same block timed on another preset);
    * ``"not timed"``: neither (``not_timed`` gives the reason).

    The core is not timed as one netlist (far too slow in Yosys): its Fmax is the minimum of
    its blocks' (``core["from"]`` says so and lists the blocks behind it), each block's ports
    taken as registered (a path that crosses a block boundary combinationally, e.g. the NET
    unit's write data into the scratchpad arbiter, is longer in the core; docs/rtl-clock.md).
    ``supported_clock_mhz`` applies :data:`MARGIN` to the retimed figure, and ``claim_ok`` says
    whether ``clock_mhz`` (the preset's) is within it; ``core["complete"]`` is False while a
    block is missing, and then the core's figure is an upper bound.
    """
    ops = {kind: operator_delay(load_netlist(p), delays=delays) for kind, p in operators.items()}
    rows: dict[str, Any] = {}
    for name, p in blocks.items():
        r = analyse(load_netlist(p), delays=delays, fp_delays=ops, endpoints=NEXT_ENDS)
        rows[name] = {k: r[k] for k in ("fmax_mhz", "period_ns", "retimed_fmax_mhz",
                                        "retimed_period_ns", "retimed_stages", "levels",
                                        "retimed_levels", "start", "end", "retimed_end",
                                        "retimed_endpoints", "combinational_loops",
                                        "unknown_cells") if k in r}
        rows[name]["path"] = [t if not t.startswith("fpgpt_bb_") else t[9:]
                              for t, _n in r["path"]]
        rows[name]["status"] = "timed"
    for name, est in (structural or {}).items():
        if name in rows:
            continue
        if not isinstance(est, dict) or not est.get("retimed_fmax_mhz") or not est.get("basis"):
            raise ValueError(f"structural estimate of {name!r} needs retimed_fmax_mhz and "
                             f"basis, not {est!r}")
        rows[name] = {"status": "structural", "retimed_fmax_mhz": float(est["retimed_fmax_mhz"]),
                      "fmax_mhz": float(est.get("fmax_mhz") or est["retimed_fmax_mhz"]),
                      "basis": str(est["basis"])}
    for name, why in (not_timed or {}).items():
        rows.setdefault(name, {"status": "not timed", "fmax_mhz": None,
                               "retimed_fmax_mhz": None, "reason": why})
    known = {n: r for n, r in rows.items() if r.get("fmax_mhz")}
    core: dict[str, Any] = {}
    if known:
        slow = min(known, key=lambda n: known[n]["fmax_mhz"])
        slow_rt = min(known, key=lambda n: known[n]["retimed_fmax_mhz"])
        missing = sorted(n for n, r in rows.items() if not r.get("fmax_mhz"))
        core = {"fmax_mhz": known[slow]["fmax_mhz"], "critical_block": slow,
                "retimed_fmax_mhz": known[slow_rt]["retimed_fmax_mhz"],
                "retimed_critical_block": slow_rt,
                "from": "minimum of its blocks (the whole core is not timed as one netlist)",
                "blocks_timed": sorted(n for n, r in rows.items() if r["status"] == "timed"),
                "blocks_structural": sorted(n for n, r in rows.items()
                                            if r["status"] == "structural"),
                "blocks_not_timed": missing, "complete": not missing}
        core["supported_clock_mhz"] = supported_clock_mhz(core["retimed_fmax_mhz"], margin)
    out = {"method": "static timing of the synth_xilinx netlists, per-cell and per-hop delays "
                     "for UltraScale+ -2 (fpgpt/hw/fmax.py, docs/rtl-clock.md)",
           "delays": delays.to_dict(), "margin": margin, "operators": ops, "blocks": rows,
           "core": core, "claimed_clock_mhz": clock_mhz}
    if clock_mhz is not None and core:
        out["claim_ok"] = clock_mhz <= core["supported_clock_mhz"]
    return out
