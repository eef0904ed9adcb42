"""cocotb test module: a small program end to end on the emitted Vitis-named top (fpgpt_top).

HBM is one cocotbext-axi ``AxiRam`` per channel (back-pressure on every AXI channel), the host an
``AxiLiteMaster`` on ``s_axi_control``: it writes R[i] and ``entry``, sets ``ap_start`` and polls
``ap_done``. Afterwards HBM is compared bit for bit with fpgpt.sim (Machine + executor
``run_stream`` on the same Program), and the RTL's cycle counts (start to each unit's completion
pulse, and to ``halted``) are written next to ``fpgpt.sim.timing.time_stream``'s prediction.

Environment: CORE_PRESET, CORE_CASE (JSON: the program, see test_hw_core.py), CORE_STATS.
"""

from __future__ import annotations

import itertools
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from fpgpt.config import load_preset
from fpgpt.hw.control import REG_CTRL, REG_ENTRY, REG_R0


class HBM:
    """``channels`` AxiRams holding one global HBM image (interleaved as fpgpt.hw.dma maps it)."""

    def __init__(self, dut, hw, nbytes: int):
        h = hw.hbm
        self.chan_bytes = -(-nbytes // (h.channels * h.interleave_bytes)) * h.interleave_bytes
        self.nbytes = nbytes
        self.rams = []
        for k in range(h.channels):
            bus = AxiBus.from_prefix(dut, f"m_axi_gmem{k}")
            ram = AxiRam(bus, dut.ap_clk, dut.ap_rst_n, reset_active_level=False,
                         size=self.chan_bytes)
            for ch in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                       ram.read_if.ar_channel, ram.read_if.r_channel):
                ch.set_pause_generator(itertools.cycle([0, 0, 1] if k % 2 else [0, 1, 0, 0]))
            self.rams.append(ram)
        a = np.arange(nbytes)
        g, c = h.interleave_bytes, h.channels
        self.ch_of = (a // g) % c
        self.local_of = (a // (g * c)) * g + a % g

    def write(self, image: np.ndarray) -> None:
        for k, ram in enumerate(self.rams):
            buf = np.zeros(self.chan_bytes, np.uint8)
            sel = self.ch_of == k
            buf[self.local_of[sel]] = image[sel]
            ram.write(0, buf.tobytes())

    def read(self) -> np.ndarray:
        out = np.zeros(self.nbytes, np.uint8)
        for k, ram in enumerate(self.rams):
            buf = np.frombuffer(ram.read(0, self.chan_bytes), np.uint8)
            sel = self.ch_of == k
            out[sel] = buf[self.local_of[sel]]
        return out


@cocotb.test()
async def program_matches_simulator(dut):
    hw = load_preset(os.environ["CORE_PRESET"])
    case = json.loads(open(os.environ["CORE_CASE"]).read())
    image = np.frombuffer(bytes.fromhex(case["hbm_in"]), np.uint8)
    cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns").start())
    hbm = HBM(dut, hw, len(image))
    host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.ap_clk, dut.ap_rst_n,
                         reset_active_level=False)
    dut.ap_rst_n.value = 0
    for _ in range(4):
        await RisingEdge(dut.ap_clk)
    dut.ap_rst_n.value = 1
    hbm.write(image)
    for r, v in case["regs"].items():
        await host.write_dword(REG_R0 + 4 * int(r), int(v))
    await host.write_dword(REG_ENTRY, 0)

    # Cycle stamps of the unit completion pulses, from the start pulse (cycle 0).
    core = dut.core
    probes = {"start": core.ctl.start, "halted": core.disp.halted,
              "dma": core.dma.done, "mpu": core.mpu.done}
    events = {k: [] for k in probes}

    async def stamp():
        cyc, started = 0, False
        while True:
            await RisingEdge(dut.ap_clk)
            await ReadOnly()
            if not started and int(probes["start"].value):
                started, cyc = True, 0
            if started:
                for k in ("dma", "mpu", "halted"):
                    if int(probes[k].value):
                        events[k].append(cyc)
                cyc += 1

    cocotb.start_soon(stamp())
    await host.write_dword(REG_CTRL, 1)
    for _ in range(200_000):
        if (await host.read_dword(REG_CTRL)) & 2:
            break
    else:
        raise AssertionError("ap_done never set")
    got = hbm.read()
    want = np.frombuffer(bytes.fromhex(case["hbm_out"]), np.uint8)
    diff = np.flatnonzero(got != want)
    with open(os.environ["CORE_STATS"], "w") as fh:
        json.dump({"differ": int(diff.size), "first_diff": diff[:8].tolist(),
                   "changed": int(np.count_nonzero(want != image)), "events": events}, fh)
    assert diff.size == 0, f"{diff.size} HBM bytes differ from fpgpt.sim, first at {diff[:8]}"
