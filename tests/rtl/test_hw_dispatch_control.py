"""The AXI4-Lite control slave (fpgpt.hw.control) in Amaranth's simulator."""

from __future__ import annotations

from amaranth.sim import Simulator

from fpgpt.hw.control import REG_CTRL, REG_DATA_BASE, REG_R0, ControlSlave


async def axil_write(ctx, dut, addr, data):
    """One write; returns the ``start`` output seen in the handshake cycle."""
    s = dut.s_axi
    ctx.set(s.awaddr, addr); ctx.set(s.awvalid, 1)
    ctx.set(s.wdata, data); ctx.set(s.wstrb, 0xF); ctx.set(s.wvalid, 1)
    while not ctx.get(s.awready):
        await ctx.tick()
    start = ctx.get(dut.start)
    await ctx.tick()
    ctx.set(s.awvalid, 0); ctx.set(s.wvalid, 0); ctx.set(s.bready, 1)
    while not ctx.get(s.bvalid):
        await ctx.tick()
    await ctx.tick()
    ctx.set(s.bready, 0)
    return start


async def axil_read(ctx, s, addr):
    ctx.set(s.araddr, addr); ctx.set(s.arvalid, 1)
    while not ctx.get(s.arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(s.arvalid, 0); ctx.set(s.rready, 1)
    while not ctx.get(s.rvalid):
        await ctx.tick()
    v = ctx.get(s.rdata)
    await ctx.tick()
    ctx.set(s.rready, 0)
    return v


def test_control_slave_register_map():
    dut = ControlSlave()
    s = dut.s_axi
    seen = {}

    async def bench(ctx):
        ctx.set(dut.regs, sum((100 + i) << (32 * i) for i in range(16)))
        await axil_write(ctx, dut, REG_DATA_BASE + 4, 0x12)
        await axil_write(ctx, dut, REG_DATA_BASE, 0x3400)
        seen["base"] = ctx.get(dut.data_base)
        seen["r5"] = await axil_read(ctx, s, REG_R0 + 4 * 5)
        seen["start"] = await axil_write(ctx, dut, REG_CTRL, 1)
        seen["idle"] = await axil_read(ctx, s, REG_CTRL)
        ctx.set(dut.halted, 1)
        await ctx.tick()
        ctx.set(dut.halted, 0)
        seen["done"] = await axil_read(ctx, s, REG_CTRL)
        seen["cleared"] = await axil_read(ctx, s, REG_CTRL)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["base"] == 0x12_0000_3400
    assert seen["r5"] == 105
    assert seen["start"] == 1
    assert seen["idle"] == 0b100
    assert seen["done"] == 0b110 and seen["cleared"] == 0b100
