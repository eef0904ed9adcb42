"""A small program end to end on the emitted Verilog top (cocotb_core.py): LOAD A, B and a bias
row from HBM, MM with bias (N through R[rn]), STORE the result, HALT; AxiRam HBM with
back-pressure, AxiLiteMaster host. HBM compared bit for bit with fpgpt.sim's executor; the RTL's
cycles are recorded next to fpgpt.sim.timing.time_stream's prediction (reported, not asserted:
the MPU engine reads one scratchpad element per cycle, the timing model assumes width)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fpgpt.config import load_preset
from fpgpt.isa import Instr, Program

M, K, N0, RN = 5, 20, 9, 2          # C is M x (N0 + R[rn]); K is not a multiple of width 8
N = N0 + RN
A_HBM, B_HBM, BIAS_HBM, C_HBM, HBM_BYTES = 0, 1024, 2048, 4096, 8192
A_S, B_S, BIAS_S, C_S = 0, 512, 1024, 2048
REG_N = 5


def mm_program() -> Program:
    return Program(streams={"main": [
        Instr.make("SETI", rd=REG_N, imm=RN),
        Instr.make("LOAD", sram=A_S, hbm=A_HBM, rows=M, cols=K, hstride=2 * K, sstride=K, batch=1),
        Instr.make("LOAD", sram=B_S, hbm=B_HBM, rows=N, cols=K, hstride=2 * K, sstride=K, batch=1),
        Instr.make("LOAD", sram=BIAS_S, hbm=BIAS_HBM, rows=1, cols=N, hstride=2 * N, sstride=N,
                   batch=1),
        Instr.make("MM", waits={"dma": 1}, dst=C_S, a=A_S, b=B_S, bias=BIAS_S, m=M, k=K, n=N0,
                   rn=REG_N, lda=K, ldb=K, ldc=N, batch=1, has_bias=1),
        Instr.make("STORE", waits={"mpu": 1}, sram=C_S, hbm=C_HBM, rows=M, cols=N,
                   hstride=2 * N, sstride=N, batch=1),
        Instr.make("HALT"),
    ]})


def test_core_runs_mm_program_like_the_simulator(tmp_path, rtl_build):
    from fpgpt.hw.cosim import run_cocotb
    from fpgpt.hw.top import write_top
    from fpgpt.sim.control import Registers
    from fpgpt.sim.executor import run_stream
    from fpgpt.sim.machine import Machine
    from fpgpt.sim.timing import time_stream
    from fpgpt.sim.trace import TraceRecorder

    hw = load_preset("tiny")
    prog = mm_program()
    rng = np.random.default_rng(11)
    image = np.zeros(HBM_BYTES, np.uint8)
    for base, count in ((A_HBM, M * K), (B_HBM, N * K), (BIAS_HBM, N)):
        image[base:base + 2 * count] = (rng.standard_normal(count)).astype("<f2").view(np.uint8)
    machine = Machine(hw, HBM_BYTES)
    machine.hbm[:] = image
    run_stream(machine, prog, "main")
    assert np.count_nonzero(machine.hbm[C_HBM:C_HBM + 2 * M * N]) > 0

    tr = TraceRecorder()
    timing = time_stream(prog, "main", hw, Registers(), trace=tr)
    predicted = {ev["args"]["index"]: TraceRecorder.completion_us(ev) * hw.clock_mhz
                 for ev in tr.events if ev.get("ph") == "X" and "index" in ev.get("args", {})}

    d = rtl_build(f"core_{hw.artifact_name}")
    v = write_top(hw, d / "fpgpt_top.v", flat=True, probes=True)   # one build with the program test
    words, entries = prog.image()
    case, stats = tmp_path / "case.json", tmp_path / "stats.json"
    case.write_text(json.dumps({"hbm_in": image.tobytes().hex(), "program": words.hex(),
                                "entry": entries["main"],
                                "hbm_out": machine.hbm.tobytes().hex(), "regs": {}}))
    run_cocotb([v], "fpgpt_top", "cocotb_core", d / "sim", test_dir=Path(__file__).parent,
               cxx_opt=False,
               env={"CORE_PRESET": "tiny", "CORE_CASE": str(case), "CORE_STATS": str(stats)})
    s = json.loads(stats.read_text())
    assert s["differ"] == 0 and s["changed"] > 0
    u = s["units"]
    assert [u[k]["completed"] for k in ("dma", "mpu", "vpu", "net")] == [4, 1, 0, 0]
    assert s["load_cycles"] >= len(prog.stream("main")) and s["cycles"] > u["dma"]["last"]
    # Completion cycles, RTL vs model: the MM (instruction 4), the STORE (5), the HALT.
    report = {"MM": {"rtl_end": u["mpu"]["last"], "model_end": predicted.get(4)},
              "STORE": {"rtl_end": u["dma"]["last"], "model_end": predicted.get(5)},
              "HALT": {"rtl_end": s["cycles"], "model_end": timing.cycles}}
    (rtl_build("core_reports") / f"mm_program_{hw.artifact_name}.json").write_text(
        json.dumps(report, indent=1))
