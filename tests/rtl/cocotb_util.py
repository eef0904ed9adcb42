"""Shared cocotb steps for the unit benches (cmd stream in, done pulse out; a scratchpad)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


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
