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
    each pausing on every AXI channel (back-pressure and idle cycles) unless ``pauses`` is false
    (an ideal memory: what the cycle comparisons with the timing model use).

    ``port`` names channel ``k``'s AXI port (``"m_axi_gmem{k}"``); ``clock``/``reset`` and
    ``reset_active_level`` as cocotbext-axi takes them."""

    def __init__(self, dut, hw, nbytes: int, *, port: str, clock, reset,
                 reset_active_level: bool = True, separator: str = "_", pauses: bool = True):
        h = hw.hbm
        self.chan_bytes = -(-nbytes // (h.channels * h.interleave_bytes)) * h.interleave_bytes
        self.nbytes = nbytes
        self.rams = []
        for k in range(h.channels):
            bus = AxiBus.from_prefix(dut, port.format(k=k), bus_separator=separator)
            ram = AxiRam(bus, clock, reset, reset_active_level=reset_active_level,
                         size=self.chan_bytes)
            for ch in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                       ram.read_if.ar_channel, ram.read_if.r_channel) if pauses else ():
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


def line_geometry(hw) -> tuple[int, int, int]:
    """``(C, NB, P)``: elements per chunk (``mpu.width``), banks (``mpu.lanes``) and elements
    per line access (``C * NB``), as fpgpt.hw.scratchpad lays the scratchpad out."""
    c, nb = hw.mpu.width, hw.mpu.lanes
    return c, nb, c * nb


async def line_port(dut, prefix: str, sram: np.ndarray, hw, grants: Iterator[int],
                    counts: dict | None = None) -> None:
    """Answer a unit's line port ``{prefix}__*`` (fpgpt.hw.scratchpad.line_signature) from
    ``sram``: a granted access covers elements ``chunk*C .. chunk*C + P - 1`` (modulo the
    scratchpad); reads return all ``P`` one cycle after the grant, writes store the elements
    whose ``wmask`` bit is set; ``grant`` for the next cycle from ``grants``. ``counts``:
    granted accesses are added to its ``"access"``."""
    c, _, p = line_geometry(hw)
    size = len(sram)
    port = {n: getattr(dut, f"{prefix}__{n}")
            for n in ("grant", "rdata", "re", "we", "chunk", "wdata", "wmask")}
    grant = 1
    port["grant"].value = grant
    port["rdata"].value = 0
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        re, we = int(port["re"].value), int(port["we"].value)
        base = int(port["chunk"].value) * c
        wdata, wmask = int(port["wdata"].value), int(port["wmask"].value)
        await RisingEdge(dut.clk)
        idx = (base + np.arange(p)) % size
        if counts is not None and grant and (re or we):
            counts["access"] += 1
        if grant and re:
            port["rdata"].value = int.from_bytes(sram[idx].astype("<u2").tobytes(), "little")
        if grant and we:
            for e in range(p):
                if (wmask >> e) & 1:
                    sram[idx[e]] = (wdata >> (16 * e)) & 0xFFFF
        grant = int(next(grants))
        port["grant"].value = grant


async def bank_port(dut, prefix: str, sram: np.ndarray, hw) -> None:
    """Answer the MPU's bank read port ``{prefix}__*`` (fpgpt.hw.scratchpad.bank_signature)
    from ``sram``: with ``re``, bank ``b`` returns, one cycle later, the chunk at its row
    ``r_b`` (``rows`` bits ``[b*RB, (b+1)*RB)``), i.e. elements ``((r_b*NB + b)*C ..)+C-1``."""
    c, nb, p = line_geometry(hw)
    rb = max(1, (len(sram) // p - 1).bit_length())
    rows_sig, re_sig, rdata = (getattr(dut, f"{prefix}__{n}") for n in ("rows", "re", "rdata"))
    rdata.value = 0
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        re, rows = int(re_sig.value), int(rows_sig.value)
        await RisingEdge(dut.clk)
        if re:
            out = np.empty(p, np.uint16)
            for b in range(nb):
                r = (rows >> (b * rb)) & ((1 << rb) - 1)
                base = (r * nb + b) * c
                out[b * c:(b + 1) * c] = sram[base:base + c]
            rdata.value = int.from_bytes(out.astype("<u2").tobytes(), "little")
