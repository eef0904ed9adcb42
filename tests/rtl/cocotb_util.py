"""Shared cocotb steps for the unit benches (cmd stream in, done pulse out)."""

from __future__ import annotations

from cocotb.triggers import RisingEdge


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
