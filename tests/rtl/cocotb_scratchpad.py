"""cocotb test module: the banked scratchpad (fpgpt.hw.scratchpad.Scratchpad for preset
SPAD_PRESET with ports line, element, line and the MPU's bank port) against a numpy model,
cycle by cycle: random line reads and masked writes at any chunk, element reads and writes,
bank reads on port A, all ports requesting at random so that the fixed priority is exercised.

Environment: SPAD_PRESET, SPAD_SEED, SPAD_CYCLES, SPAD_STATS (JSON written here).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from cocotb_util import line_geometry
from fpgpt.config import load_preset

KINDS = ("line", "element", "line")


def pack(values: np.ndarray) -> int:
    return int.from_bytes(values.astype("<u2").tobytes(), "little")


@cocotb.test()
async def scratchpad_random(dut):
    hw = load_preset(os.environ.get("SPAD_PRESET", "tiny"))
    rng = np.random.default_rng(int(os.environ.get("SPAD_SEED", "1")))
    cycles = int(os.environ.get("SPAD_CYCLES", "3000"))
    c, nb, p = line_geometry(hw)
    size = hw.buffers.sram_elements
    rb = max(1, (size // p - 1).bit_length())
    span = 4 * p                        # accesses stay in a window so that reads hit writes
    mem = np.zeros(size, np.uint16)     # the model; the banks start as zeros in Verilator
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for i, kind in enumerate(KINDS):
        for n in ("re", "we"):
            getattr(dut, f"port{i}__{n}").value = 0
    dut.bank__re.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    checked = {"line_reads": 0, "element_reads": 0, "bank_reads": 0, "writes": 0}
    mismatches = []
    for cyc in range(cycles):
        await FallingEdge(dut.clk)
        # drive this cycle's requests (inputs settle before the next rising edge)
        reqs = []
        for i, kind in enumerate(KINDS):
            pt = lambda n: getattr(dut, f"port{i}__{n}")
            op = rng.choice(["none", "read", "write"], p=[0.3, 0.35, 0.35])
            pt("re").value = int(op == "read")
            pt("we").value = int(op == "write")
            if kind == "line":
                chunk = int(rng.integers(0, span // c))
                data = rng.integers(0, 1 << 16, p, dtype=np.uint16)
                mask = rng.random(p) < 0.6
                pt("chunk").value = chunk
                pt("wdata").value = pack(data)
                pt("wmask").value = int(sum(1 << e for e in range(p) if mask[e]))
                reqs.append((op, kind, chunk * c, data, mask))
            else:
                addr = int(rng.integers(0, span))
                data = int(rng.integers(0, 1 << 16))
                pt("addr").value = addr
                pt("wdata").value = data
                reqs.append((op, kind, addr, data, None))
        bank_re = rng.random() < 0.7
        rows = [int(rng.integers(0, span // p + 1)) for _ in range(nb)]
        dut.bank__re.value = int(bank_re)
        dut.bank__rows.value = sum(r << (b * rb) for b, r in enumerate(rows))
        await ReadOnly()
        winner = next((i for i, r in enumerate(reqs) if r[0] != "none"), None)
        grants = [int(getattr(dut, f"port{i}__grant").value) for i in range(len(KINDS))]
        if grants != [int(i == winner) for i in range(len(KINDS))]:
            mismatches.append({"cycle": cyc, "grants": grants, "winner": winner})
        expect = []
        if bank_re:     # port A reads the memory as it was before this cycle's write
            want = np.concatenate([mem[(r * nb + b) * c:(r * nb + b) * c + c]
                                   for b, r in enumerate(rows)])
            expect.append(("bank", pack(want)))
            checked["bank_reads"] += 1
        if winner is not None:
            op, kind, base, data, mask = reqs[winner]
            if kind == "line":
                idx = (base + np.arange(p)) % size
                if op == "read":
                    expect.append((winner, pack(mem[idx])))
                    checked["line_reads"] += 1
                else:
                    mem[idx[mask]] = data[mask]
                    checked["writes"] += 1
            else:
                if op == "read":
                    expect.append((winner, int(mem[base])))
                    checked["element_reads"] += 1
                else:
                    mem[base] = data
                    checked["writes"] += 1
        await RisingEdge(dut.clk)
        await ReadOnly()
        for what, want in expect:       # registered reads: on rdata after the edge
            got = int((dut.bank__rdata if what == "bank" else
                       getattr(dut, f"port{what}__rdata")).value)
            if got != want:
                mismatches.append({"cycle": cyc, "port": what})
    out = os.environ.get("SPAD_STATS")
    if out:
        with open(out, "w") as f:
            json.dump({"cycles": cycles, "checked": checked, "mismatches": mismatches[:20],
                       "mismatch_count": len(mismatches)}, f)
    assert not mismatches, f"{len(mismatches)} mismatches, first {mismatches[:3]}"
