"""Shared cocotb pieces of the benches: HBM as AxiRams, a scratchpad port, a command issue."""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiRam


class HBM:
    """``hbm.channels`` cocotbext-axi ``AxiRam``s holding one global HBM image, interleaved as
    fpgpt.hw.dma maps it (byte ``a`` in channel ``(a // G) % C`` at ``(a // (G*C))*G + a % G``),
    each pausing on every AXI channel (back-pressure and idle cycles).

    ``port`` names channel ``k``'s AXI port (``"m_axi_gmem{k}"``); ``clock``/``reset`` and
    ``reset_active_level`` as cocotbext-axi takes them."""

    def __init__(self, dut, hw, nbytes: int, *, port: str, clock, reset,
                 reset_active_level: bool = True, separator: str = "_"):
        h = hw.hbm
        self.chan_bytes = -(-nbytes // (h.channels * h.interleave_bytes)) * h.interleave_bytes
        self.nbytes = nbytes
        self.rams = []
        for k in range(h.channels):
            bus = AxiBus.from_prefix(dut, port.format(k=k), bus_separator=separator)
            ram = AxiRam(bus, clock, reset, reset_active_level=reset_active_level,
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


async def scratchpad(dut, sram: np.ndarray, grants: Iterator[int]) -> None:
    """Answer a unit's ``sram`` port (fpgpt.hw.scratchpad.port_signature) from ``sram``: one
    request per cycle, read data one cycle after a granted read, ``grant`` for the next cycle
    from ``grants`` (refusals as back-pressure)."""
    port = {n: getattr(dut, f"sram__{n}") for n in ("grant", "rdata", "re", "we", "addr", "wdata")}
    grant = 1
    port["grant"].value = grant
    port["rdata"].value = 0
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        re, we = int(port["re"].value), int(port["we"].value)
        addr, wdata = int(port["addr"].value), int(port["wdata"].value)
        await RisingEdge(dut.clk)
        if grant and re:
            port["rdata"].value = int(sram[addr])
        if grant and we:
            sram[addr] = wdata
        grant = int(next(grants))
        port["grant"].value = grant


async def issue_and_wait(dut, payload: int, *, idle: int, limit: int, what: str) -> int:
    """Wait ``idle`` cycles, hand ``payload`` to ``dut.cmd`` (valid/ready), then count the
    cycles until ``dut.done`` pulses; fail naming ``what`` after ``limit`` cycles."""
    for _ in range(idle):
        await RisingEdge(dut.clk)
    dut.cmd__payload.value = payload
    dut.cmd__valid.value = 1
    while True:
        await RisingEdge(dut.clk)
        if int(dut.cmd__ready.value):
            break
    dut.cmd__valid.value = 0
    cycles = 1
    while True:
        await RisingEdge(dut.clk)
        cycles += 1
        if int(dut.done.value):
            return cycles
        if cycles > limit:
            raise AssertionError(f"{what} did not complete within {limit} cycles")
