"""cocotb test module: the MPU engine (fpgpt.hw.mpu_engine.MPUEngine for preset MPU_PRESET) with a
Python scratchpad on its port, against fpgpt.sim's executor, MM by MM, bit for bit.

Random MMs: K not a multiple of width (and K = 0), N not a multiple of lanes, R[rk] / R[rn]
offsets, bias, causal mask, batch with strides, ldb = 0 (broadcast). The scratchpad refuses one
request in five (the DMA's priority), and commands arrive after idle cycles.

Environment: MPU_PRESET, MPU_SEED, MPU_N (instructions), MPU_STATS (JSON written here).
"""

from __future__ import annotations

import itertools
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from cocotb_util import issue_and_wait, scratchpad
from fpgpt.config import load_preset
from fpgpt.hw.decoder import Opcode
from fpgpt.hw.dma import captured_layout
from fpgpt.isa import Instr, Program, Unit
from fpgpt.sim.control import capture
from fpgpt.sim.costs import mpu_cycles
from fpgpt.sim.executor import run_stream
from fpgpt.sim.machine import Machine

REG_RK, REG_RN = 5, 6
REGION = 4096            # elements per operand region (A, B, bias, C are disjoint)


def pack(fields: dict[str, int], op: str, unit: Unit) -> int:
    word = 0
    for name, fl in captured_layout(unit):
        v = Opcode[op].value if name == "op" else fields.get(name, 0)
        word |= (v & ((1 << fl.width) - 1)) << fl.offset
    return word


def random_mm(rng, hw, regs) -> Instr:
    """An MM whose operands and result lie in disjoint regions of the first 5*REGION elements."""
    w, lanes = hw.mpu.width, hw.mpu.lanes
    rk, rn = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    regs[REG_RK], regs[REG_RN] = rk, rn
    m = int(rng.integers(1, 5))
    k = int(rng.choice([0, 1, w - 1, w, w + 3, 2 * w + 5, int(rng.integers(0, 3 * w))]))
    k = max(0, k - rk) if rng.random() < 0.8 else k
    n = int(rng.integers(1, 2 * lanes + 3))
    K, N = k + rk, n + rn
    batch = int(rng.integers(1, 4))
    lda = K + int(rng.integers(0, 4))
    ldb = 0 if rng.random() < 0.1 else K + int(rng.integers(0, 4))
    ldc = N + int(rng.integers(0, 4))
    bsa = m * lda + int(rng.integers(0, 8))
    bsb = max(N * ldb, 1) + int(rng.integers(0, 8))
    bsc = m * ldc + int(rng.integers(0, 8))
    for used in (batch * bsa, batch * (bsb + K), N, batch * bsc):
        if used > REGION:
            raise AssertionError(f"bench bug: region of {used} elements")
    return Instr.make("MM", a=int(rng.integers(0, 64)), b=REGION + int(rng.integers(0, 64)),
                      bias=2 * REGION + int(rng.integers(0, 64)),
                      dst=3 * REGION + int(rng.integers(0, 64)),
                      m=m, k=k, n=n, lda=lda, ldb=ldb, ldc=ldc, batch=batch,
                      bsa=bsa, bsb=bsb, bsc=bsc, rk=REG_RK, rn=REG_RN,
                      has_bias=int(rng.random() < 0.6), mask=int(rng.random() < 0.4))


def random_f16(rng, size) -> np.ndarray:
    """Mostly moderate values (long sums stay finite), some arbitrary bit patterns."""
    x = (rng.standard_normal(size) * 2.0).astype(np.float16).view(np.uint16)
    wild = rng.random(size) < 0.02
    x[wild] = rng.integers(0, 1 << 16, int(wild.sum()), dtype=np.uint16)
    return x


@cocotb.test()
async def mpu_engine_matches_executor(dut):
    hw = load_preset(os.environ["MPU_PRESET"])
    rng = np.random.default_rng(int(os.environ.get("MPU_SEED", "1")))
    n_instr = int(os.environ.get("MPU_N", "30"))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.cmd__valid.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    sram = np.zeros(hw.buffers.sram_elements, np.uint16)
    cocotb.start_soon(scratchpad(dut, sram, itertools.cycle([1, 1, 1, 1, 0])))

    machine = Machine(hw, 0)
    records, bad = [], []
    for t in range(n_instr):
        init = random_f16(rng, 5 * REGION)
        sram[:5 * REGION] = init
        machine.sram.view(np.uint16)[:5 * REGION] = init
        ins = random_mm(rng, hw, machine.regs)
        f = capture(ins, machine.regs)
        run_stream(machine, Program(streams={"s": [ins, Instr.make("HALT")]}), "s")
        cycles = await issue_and_wait(dut, pack(f, "MM", Unit.MPU), idle=int(rng.integers(0, 3)),
                                      limit=500_000, what=f"MM {t}")
        got, want = sram[:5 * REGION], machine.sram.view(np.uint16)[:5 * REGION]
        if not np.array_equal(got, want):
            diff = np.flatnonzero(got != want)
            bad.append({"i": t, "fields": f, "differ": int(diff.size),
                        "first": [int(diff[0]), int(got[diff[0]]), int(want[diff[0]])]})
        records.append({"m": f["m"], "k": f["k"] + f["rk"], "n": f["n"] + f["rn"],
                        "batch": f["batch"], "has_bias": f["has_bias"], "mask": f["mask"],
                        "rtl_cycles": cycles, "model_cycles": mpu_cycles(hw, f)})
    if os.environ.get("MPU_STATS"):
        with open(os.environ["MPU_STATS"], "w") as fh:
            json.dump({"instructions": n_instr, "mismatches": bad, "records": records}, fh)
    assert not bad, f"{len(bad)} of {n_instr} MMs differ from the executor: {bad[:3]}"
