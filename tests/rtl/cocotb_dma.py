"""cocotb test module: the DMA engine (fpgpt.hw.dma.DMA for preset DMA_PRESET) with one
cocotbext-axi ``AxiRam`` per HBM channel and a Python scratchpad on its scratchpad port, against
fpgpt.sim's executor, instruction by instruction, bit for bit (scratchpad and HBM).

With DMA_PAUSES=1 (the default) back-pressure is on everywhere: every AXI channel of every RAM
pauses one cycle in three, the scratchpad refuses one request in five, and commands arrive after
idle cycles; only bit-exactness is checked. DMA_PAUSES=2 is heavier where the element path's
write pipeline holds data: W and B pause in bursts (four cycles in seven) and the scratchpad
refuses two requests in five. With DMA_PAUSES=0 the memory is ideal (no pauses,
every scratchpad request granted) and every instruction's measured cycles must equal
fpgpt.hw.dma.engine_cycles at the AxiRams' latencies (AXI_LATENCY).

Environment: DMA_PRESET, DMA_SEED, DMA_N (instructions), DMA_PAUSES, DMA_STATS (JSON written
here), DMA_CASES (a JSON file of ``[op, fields, regs]`` instructions run before the random ones).
"""

from __future__ import annotations

import itertools
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from cocotb_util import HBM, issue_and_wait, line_port
from fpgpt.config import load_preset
from fpgpt.hw.decoder import Opcode
from fpgpt.hw.decoder import captured_layout
from fpgpt.hw.dma import dma_path, engine_cycles
from fpgpt.isa import Instr, Program, Unit
from fpgpt.sim.control import capture
from fpgpt.sim.executor import run_stream
from fpgpt.sim.hbm import HBMModel, dma_bytes, dma_segments
from fpgpt.sim.machine import Machine

HBM_BYTES = 1 << 15          # the program's HBM: 32 KiB over the channels
IDX_BASE = HBM_BYTES - 256   # GATHER index vectors live here (never written by STOREs)
TABLE_ROWS = 16
REG_RA, REG_RR, REG_RC, REG_VAL = 5, 6, 7, 8
#: The AxiRams' latencies in an ideal run (cycles): AR accepted to first R beat, last W beat to B
#: received, as the DMA's engine_cycles takes them (measured on cocotbext-axi's AxiRam).
AXI_LATENCY = (2, 2)


def pack(fields: dict[str, int], op: str) -> int:
    layout = captured_layout(Unit.DMA)
    word = 0
    for name, fl in layout:
        v = Opcode[op].value if name == "op" else fields.get(name, 0)
        word |= (v & ((1 << fl.width) - 1)) << fl.offset
    return word


def random_instr(rng, hw, regs) -> Instr:
    """A LOAD / STORE / GATHER / STR inside the bench's HBM and scratchpad, no overlaps."""
    n_sram = hw.buffers.sram_elements
    op = rng.choice(["LOAD", "STORE", "LOAD", "STORE", "GATHER", "STR"])
    ra, rr, rc = (int(rng.integers(0, 4)) for _ in range(3))
    regs[REG_RA], regs[REG_RR], regs[REG_RC] = ra, rr, rc
    if op == "STR":
        regs[REG_VAL] = int(rng.integers(0, 2**32))
        return Instr.make("STR", rs=REG_VAL, ra=REG_RA,
                          hbm=4 * int(rng.integers(0, IDX_BASE // 4 - 4)))
    rows, cols = int(rng.integers(1, 7)), int(rng.integers(1, 41))
    if op == "GATHER":
        hstride = 2 * cols + 2 * int(rng.integers(0, 30))
        sstride = cols + int(rng.integers(0, 9))
        span = (TABLE_ROWS - 1) * hstride + 2 * cols
        c = hw.mpu.width
        if rng.random() < 0.6:      # the stripe path's alignment rule
            hstride += (-hstride // 2) % c * 2
            sstride += (-sstride) % c
            span = (TABLE_ROWS - 1) * hstride + 2 * cols
        hbm = 2 * int(rng.integers(0, (IDX_BASE - span) // 2))
        sram = int(rng.integers(c, n_sram - (rows + rr) * sstride))
        if rng.random() < 0.6:
            sram -= (sram - hbm // 2) % c
        return Instr.make("GATHER", sram=sram, hbm=hbm, idx=IDX_BASE + 4 * int(rng.integers(0, 20)),
                          rows=rows, cols=cols, hstride=hstride, sstride=sstride,
                          ra=REG_RA, rr=REG_RR)
    transpose = int(rng.random() < 0.4)
    batch = int(rng.integers(1, 4))
    re, ce = rows + rr, cols + rc
    if transpose:       # HBM column r of the tile: 2*(rows+ra) contiguous bytes per column c
        hstride = 2 * (re + ra) + 2 * int(rng.integers(0, 8))
        extent = (ce - 1) * hstride + 2 * (re + ra)
    else:
        hstride = 2 * ce + 2 * int(rng.integers(0, 30))
        extent = (re + ra - 1) * hstride + 2 * ce
    hbatch = extent + 2 * int(rng.integers(0, 40))
    total = (batch - 1) * hbatch + extent
    hbm = 2 * int(rng.integers(0, (IDX_BASE - total) // 2))
    sstride = ce + int(rng.integers(0, 9))
    sbatch = re * sstride + int(rng.integers(0, 20))
    c = hw.mpu.width
    stripe = not transpose and rng.random() < 0.6
    if stripe:      # rows congruent modulo the chunk in HBM and scratchpad: the stripe path
        sstride += (hstride // 2 - sstride) % c
        sbatch = re * sstride + int(rng.integers(0, 20))
        sbatch += (hbatch // 2 - sbatch) % c
    stotal = (batch - 1) * sbatch + re * sstride
    sram = int(rng.integers(c, n_sram - stotal))
    if stripe:
        sram -= (sram - (hbm + ra * hstride) // 2) % c
    return Instr.make(op, sram=sram, hbm=hbm, rows=rows, cols=cols, hstride=hstride,
                      sstride=sstride, batch=batch, hbatch=hbatch, sbatch=sbatch,
                      ra=REG_RA, rr=REG_RR, rc=REG_RC, transpose=transpose)


def ideal_memory(hbm: HBM) -> None:
    """Make ``hbm``'s AxiRams an ideal memory: besides no pauses, no limit on queued requests
    (cocotbext-axi's AxiRam queues 2 per AXI channel and drops ready beyond, which throttles
    trains of short bursts); what remains is one beat per cycle per channel at a fixed latency."""
    for ram in hbm.rams:
        for ch in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                   ram.read_if.ar_channel, ram.read_if.r_channel):
            ch.queue_occupancy_limit = -1


async def axi_latency(dut, k: int, out: dict) -> None:
    """Measure channel ``k``'s AxiRam latencies (cycles): AR accepted to its burst's first R
    beat, and last W beat accepted to its B; keep the smallest seen (no queueing)."""
    p = f"m_axi{k}__"
    sig = {n: getattr(dut, p + n) for n in ("arvalid", "arready", "rvalid", "rready", "rlast",
                                            "wvalid", "wready", "wlast", "bvalid")}
    cyc, ars, wl, first = 0, [], [], True
    while True:
        await RisingEdge(dut.clk)
        cyc += 1
        v = {n: int(x.value) for n, x in sig.items()}
        if v["arvalid"] and v["arready"]:
            ars.append(cyc)
        if v["rvalid"] and first and ars:
            out["read"] = min(out.get("read", 1 << 30), cyc - ars.pop(0))
            first = False
        if v["rvalid"] and v["rready"] and v["rlast"]:
            first = True
        if v["wvalid"] and v["wready"] and v["wlast"]:
            wl.append(cyc)
        if v["bvalid"] and wl:
            out["write"] = min(out.get("write", 1 << 30), cyc - wl.pop(0))


#: DMA_PAUSES=2: W and B stall in runs (a full W register with a complete beat waiting behind
#: it, and bursts piling up without B), per channel out of phase.
HEAVY_WB = [1, 1, 0, 1, 1, 0, 0]


class TB:
    def __init__(self, dut, hw, pauses: int):
        self.dut, self.hw = dut, hw
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.hbm = HBM(dut, hw, HBM_BYTES, port="m_axi{k}", separator="__", clock=dut.clk,
                       reset=dut.rst, pauses=pauses > 0)
        if not pauses:
            ideal_memory(self.hbm)
        if pauses > 1:
            for k, ram in enumerate(self.hbm.rams):
                for ch in (ram.write_if.w_channel, ram.write_if.b_channel):
                    ch.set_pause_generator(itertools.cycle(HEAVY_WB[k:] + HEAVY_WB[:k]))
        self.sram = np.zeros(hw.buffers.sram_elements, dtype=np.uint16)


def gather_indices(machine, f) -> list[int]:
    """The table rows a GATHER reads (its int32 index vector, from the HBM image)."""
    a = f["idx"] + 4 * f["ra"]
    n = f["rows"] + f["rr"]
    return [int(v) for v in np.frombuffer(machine.hbm[a:a + 4 * n].tobytes(), "<i4")]


def explicit_cases() -> list[tuple[Instr, dict[int, int]]]:
    """DMA_CASES' instructions with the register values to set before each."""
    path = os.environ.get("DMA_CASES")
    if not path:
        return []
    return [(Instr.make(op, **fields), {int(k): v for k, v in r.items()})
            for op, fields, r in json.loads(open(path).read())]


@cocotb.test()
async def dma_matches_executor(dut):
    hw = load_preset(os.environ["DMA_PRESET"])
    rng = np.random.default_rng(int(os.environ.get("DMA_SEED", "1")))
    n_instr = int(os.environ.get("DMA_N", "40"))
    pauses = int(os.environ.get("DMA_PAUSES", "1"))
    tb = TB(dut, hw, pauses)
    dut.rst.value = 1
    dut.cmd__valid.value = 0
    dut.data_base.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    grants = itertools.cycle({0: [1], 1: [1, 1, 1, 1, 0], 2: [1, 0, 1, 1, 0]}[pauses])
    cocotb.start_soon(line_port(dut, "line", tb.sram, hw, grants))
    measured = {}
    cocotb.start_soon(axi_latency(dut, 0, measured))

    machine = Machine(hw, HBM_BYTES)
    image = rng.integers(0, 256, HBM_BYTES, dtype=np.uint8)
    image[IDX_BASE:] = np.frombuffer(rng.integers(0, TABLE_ROWS, 64).astype("<i4").tobytes(),
                                     np.uint8)
    machine.hbm[:] = image
    tb.hbm.write(image)
    sram0 = rng.integers(0, 1 << 16, hw.buffers.sram_elements, dtype=np.uint16)
    machine.sram.view(np.uint16)[:] = sram0
    tb.sram[:] = sram0

    cases = explicit_cases()
    records, bad, slow = [], [], []
    for i in range(len(cases) + n_instr):
        if i < len(cases):
            ins, regs = cases[i]
            for r, v in regs.items():
                machine.regs[r] = v
        else:
            ins = random_instr(rng, hw, machine.regs)
        f = capture(ins, machine.regs)
        indices = gather_indices(machine, f) if ins.op == "GATHER" else None
        run_stream(machine, Program(streams={"s": [ins, Instr.make("HALT")]}), "s")
        cycles = await issue_and_wait(dut, pack(f, ins.op),
                                      idle=int(rng.integers(0, 3)) if pauses else 1,
                                      limit=200_000, what=f"instruction {i} ({ins.op})")
        await RisingEdge(dut.clk)     # the last scratchpad write lands in the model
        hbm_ok = np.array_equal(tb.hbm.read(), machine.hbm)
        sram_ok = np.array_equal(tb.sram, machine.sram.view(np.uint16))
        if not (hbm_ok and sram_ok):
            bad.append({"i": i, "op": ins.op, "fields": f, "hbm_ok": hbm_ok, "sram_ok": sram_ok})
            # Resynchronise so that one bug does not fail every later instruction.
            tb.hbm.write(machine.hbm)
            tb.sram[:] = machine.sram.view(np.uint16)
        model = HBMModel(hw)
        kind, work, idx, straggle = model.plan(dma_segments(ins.op, f))
        model_cycles = model.issue(0.0, kind, work, idx, straggle) + \
            (model.latency_cycles if ins.op == "GATHER" else 0.0)
        formula = engine_cycles(hw, ins.op, f, latency=AXI_LATENCY, indices=indices)
        rec = {"i": i, "op": ins.op, "fields": f, "bytes": dma_bytes(ins.op, f),
               "rtl_cycles": cycles, "model_cycles": model_cycles, "formula": formula,
               "path": dma_path(hw, ins.op, f), "indices": indices}
        records.append(rec)
        if not pauses and cycles != formula:
            slow.append(rec)
        # Settle: the idle gap before the next command is part of neither count.
        for _ in range(2):
            await RisingEdge(dut.clk)
    if os.environ.get("DMA_STATS"):
        with open(os.environ["DMA_STATS"], "w") as fh:
            json.dump({"instructions": len(records), "mismatches": bad, "formula_misses": slow,
                       "pauses": pauses, "axi_latency": measured,
                       "records": records}, fh)
    if not pauses:
        assert measured == {"read": AXI_LATENCY[0], "write": AXI_LATENCY[1]}, \
            f"the AxiRams' latencies are {measured}, not AXI_LATENCY={AXI_LATENCY}"
    assert not bad, f"{len(bad)} of {len(records)} instructions differ from the executor: {bad[:3]}"
    assert not slow, (f"{len(slow)} of {len(records)} instructions' cycles differ from "
                      f"engine_cycles: {[(r['op'], r['rtl_cycles'], r['formula']) for r in slow[:5]]}")
