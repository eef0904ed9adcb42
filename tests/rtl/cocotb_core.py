"""cocotb test module: a small program end to end on the emitted Vitis-named top (fpgpt_top).

HBM is one cocotbext-axi ``AxiRam`` per channel (back-pressure on every AXI channel), the host an
``AxiLiteMaster`` on ``s_axi_control``: it gives the program image's place (loaded by the core on
``m_axi_prog``), writes R[i] and ``entry``, sets ``ap_start`` and polls ``ap_done``. Afterwards HBM is compared bit for bit with fpgpt.sim (Machine + executor
``run_stream`` on the same Program), and the RTL's cycle counts (start to each unit's completion
pulse, and to ``halted``) are written next to ``fpgpt.sim.timing.time_stream``'s prediction.

Environment: CORE_PRESET, CORE_CASE (JSON: the program, see test_hw_core.py), CORE_STATS.
"""

from __future__ import annotations

import itertools
import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from cocotb_util import HBM

from fpgpt.config import load_preset
from fpgpt.isa.table import WAIT_UNITS
from fpgpt.hw.control import (REG_COMPLETED, REG_CTRL, REG_CYCLES, REG_ENTRY, REG_LAST_DONE,
                               REG_LOAD_CYCLES, REG_PROG_BASE, REG_PROG_LEN, REG_R0)

#: Units in the control slave's counter order (the ISA's wait fields).
UNITS = tuple(u.value for u in WAIT_UNITS)


class Card:
    """The host's view of one core: reset, HBM, program load, registers, runs (fpgpt.hw.control).

    The program image goes into its own ``AxiRam`` on ``m_axi_prog`` (at address 0); on a card
    it would sit in HBM.
    """

    def __init__(self, dut, hw, hbm_bytes: int, program_image: bytes, *, pauses: bool = True):
        self.dut, self.hw = dut, hw
        cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns").start())
        self.hbm = HBM(dut, hw, hbm_bytes, port="m_axi_gmem{k}", clock=dut.ap_clk,
                       reset=dut.ap_rst_n, reset_active_level=False, pauses=pauses)
        self.prog = AxiRam(AxiBus.from_prefix(dut, "m_axi_prog"), dut.ap_clk, dut.ap_rst_n,
                           reset_active_level=False, size=max(4096, len(program_image)))
        self.prog.read_if.r_channel.set_pause_generator(itertools.cycle([0, 0, 0, 1]))
        self.image = program_image
        self._completed = {u: 0 for u in UNITS}
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.ap_clk,
                                  dut.ap_rst_n, reset_active_level=False)
        self._stamps: dict[str, list[int]] | None = None
        self._starts: dict[str, list[int]] | None = None
        if hasattr(dut, "probe"):       # a top written with probes=True: per-instruction stamps
            self._stamps = {u: [] for u in UNITS}
            self._starts = {u: [] for u in UNITS}
            cocotb.start_soon(self._watch())

    async def _watch(self) -> None:
        """Record each unit's issue and completion cycles, counted from the dispatcher's start
        (the run counter's origin), from the top's ``probe`` port: bits ``0..n-1`` completion,
        ``n`` running, ``n+1..2n`` issue, for the units of ``WAIT_UNITS``. An event bit can stay
        high for back-to-back events, so it is sampled every cycle while any is high."""
        units = [u.value for u in WAIT_UNITS]
        n = len(units)
        events = ((1 << n) - 1) | (((1 << n) - 1) << (n + 1))
        sig, running, t_run = self.dut.probe, 0, 0
        while True:
            await sig.value_change
            while True:
                v = int(sig.value)
                t = get_sim_time("ns")
                if v >> n & 1 and not running:
                    t_run = t
                running = v >> n & 1
                for i, u in enumerate(units):
                    if v >> i & 1:
                        self._stamps[u].append(round((t - t_run) / 10))
                    if v >> (n + 1 + i) & 1:
                        self._starts[u].append(round((t - t_run) / 10))
                if not v & events:
                    break
                await RisingEdge(self.dut.ap_clk)
                await ReadOnly()

    async def reset(self) -> None:
        self.dut.ap_rst_n.value = 0
        for _ in range(4):
            await RisingEdge(self.dut.ap_clk)
        self.dut.ap_rst_n.value = 1
        self.prog.write(0, self.image)
        await self.host.write_dword(REG_PROG_BASE, 0)
        await self.host.write_dword(REG_PROG_LEN, len(self.image) // 64)

    async def set_regs(self, regs: dict) -> None:
        for r, v in regs.items():
            await self.host.write_dword(REG_R0 + 4 * int(r), int(v) & 0xFFFFFFFF)

    async def run(self, entry: int, *, poll_every: int = 200, max_cycles: int = 50_000_000,
                  progress: str | None = None) -> dict:
        """Start the stream at ``entry``, wait for ``ap_done``; returns the cycle counters.

        ``progress``: a file that gets a line (cycles, completed per unit, wall seconds) every
        100 polls, to watch a long run."""
        await self.host.write_dword(REG_ENTRY, entry)
        await self.host.write_dword(REG_CTRL, 1)
        t0 = time.perf_counter()
        for poll in range(max_cycles // poll_every):
            status = await self.host.read_dword(REG_CTRL)
            if status & 2:
                break
            if progress and poll % 100 == 0:
                done = [await self.host.read_dword(REG_COMPLETED + 4 * i)
                        for i in range(len(UNITS))]
                cyc = await self.host.read_dword(REG_CYCLES)
                with open(progress, "a") as fh:
                    fh.write(f"entry {entry} cycle {cyc} completed {done} "
                             f"wall {time.perf_counter() - t0:.1f}\n")
            await ClockCycles(self.dut.ap_clk, poll_every)
        else:
            raise AssertionError(f"ap_done never set within {max_cycles} cycles")
        assert not status & 8, "the core reports the program longer than its instruction memory"
        out = {"cycles": await self.host.read_dword(REG_CYCLES),
               "load_cycles": await self.host.read_dword(REG_LOAD_CYCLES), "units": {}}
        for i, u in enumerate(UNITS):
            done = await self.host.read_dword(REG_COMPLETED + 4 * i)
            out["units"][u] = {"completed": (done - self._completed[u]) & 0xFFFFFFFF,
                               "last": await self.host.read_dword(REG_LAST_DONE + 4 * i)}
            self._completed[u] = done
        if self._stamps is not None:
            out["stamps"], out["starts"] = self._stamps, self._starts
            self._stamps = {u: [] for u in UNITS}
            self._starts = {u: [] for u in UNITS}
        return out

    async def reg(self, i: int) -> int:
        return await self.host.read_dword(REG_R0 + 4 * i)


@cocotb.test()
async def program_matches_simulator(dut):
    hw = load_preset(os.environ["CORE_PRESET"])
    case = json.loads(open(os.environ["CORE_CASE"]).read())
    image = np.frombuffer(bytes.fromhex(case["hbm_in"]), np.uint8)
    card = Card(dut, hw, len(image), bytes.fromhex(case["program"]))
    await card.reset()
    card.hbm.write(image)
    await card.set_regs(case["regs"])
    counters = await card.run(case["entry"])
    got = card.hbm.read()
    want = np.frombuffer(bytes.fromhex(case["hbm_out"]), np.uint8)
    diff = np.flatnonzero(got != want)
    with open(os.environ["CORE_STATS"], "w") as fh:
        json.dump({"differ": int(diff.size), "first_diff": diff[:8].tolist(),
                   "changed": int(np.count_nonzero(want != image)), **counters}, fh)
    assert diff.size == 0, f"{diff.size} HBM bytes differ from fpgpt.sim, first at {diff[:8]}"
