"""cocotb test module: one NET unit (fpgpt.hw.net.NetUnit, device 1 of a ring of 2) in Verilator,
its ring ports driven by cocotbext-axi AxiStreamSource / AxiStreamSink (bound with
``bus_separator="__"`` to Amaranth's flat names) and a Python scratchpad on its line port
(the tiny preset's geometry, which the test's configuration keeps).

Checks: SEND in both directions (the bytes on ``tx_next`` / ``tx_prev`` are the elements,
little-endian, LSB first), RECV in both directions, and ALLREDUCE as the last device (FP32
partial sums in on ``rx_prev``, the FP16 result written back and sent on ``tx_next``), against
fpgpt.isa.numerics. Sinks and sources stall at random.

Environment: NET_SEED. The tdata width is the DUT's (cocotbext-axi reads it from the port).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from cocotb_util import issue_and_wait, line_port
from fpgpt.config import load_preset
from fpgpt.hw.decoder import Opcode
from fpgpt.hw.decoder import captured_layout
from fpgpt.isa import numerics
from fpgpt.isa.table import Unit

SRAM = 1024


def pack(op: str, **fields) -> int:
    word = 0
    for name, fl in captured_layout(Unit.NET):
        v = Opcode[op].value if name == "op" else fields.get(name, 0)
        word |= (v & ((1 << fl.width) - 1)) << fl.offset
    return word


def pauses(rng, n=4096):
    return iter([bool(x) for x in (rng.random(n) < 0.3)])


@cocotb.test()
async def net_unit_axis(dut):
    rng = np.random.default_rng(int(os.environ.get("NET_SEED", "1")))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.cmd__valid.value = 0
    dut.device_index.value = 1
    dut.device_count.value = 2
    streams = {}
    for name in ("tx_next", "tx_prev"):
        streams[name] = AxiStreamSink(AxiStreamBus.from_prefix(dut, name, bus_separator="__"),
                                      dut.clk, dut.rst)
    for name in ("rx_prev", "rx_next"):
        streams[name] = AxiStreamSource(AxiStreamBus.from_prefix(dut, name, bus_separator="__"),
                                        dut.clk, dut.rst)
    for s in streams.values():
        s.set_pause_generator(pauses(rng))
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    sram = rng.integers(0, 1 << 16, SRAM, dtype=np.uint16)
    cocotb.start_soon(line_port(dut, "line", sram, load_preset("tiny"),     # tiny's geometry
                                iter(lambda: int(rng.random() < 0.75), None)))

    # SEND, both directions: the frame is the elements' bytes, little-endian
    for prev, port in ((0, "tx_next"), (1, "tx_prev")):
        a, n = int(rng.integers(0, 500)), int(rng.integers(1, 60))
        want = sram[a:a + n].astype("<u2").tobytes()
        await issue_and_wait(dut, pack("SEND", sram=a, count=n, prev=prev), idle=1,
                             limit=10_000, what=f"SEND prev={prev}")
        frame = await streams[port].recv()
        assert bytes(frame.tdata) == want, (prev, bytes(frame.tdata).hex(), want.hex())

    # RECV, both directions
    for prev, port in ((0, "rx_prev"), (1, "rx_next")):
        b, n = int(rng.integers(0, 500)), int(rng.integers(1, 60))
        data = rng.integers(0, 1 << 16, n, dtype=np.uint16)
        await streams[port].send(AxiStreamFrame(data.astype("<u2").tobytes()))
        await issue_and_wait(dut, pack("RECV", sram=b, count=n, prev=prev), idle=0,
                             limit=10_000, what=f"RECV prev={prev}")
        assert np.array_equal(sram[b:b + n], data), prev
    assert int(dut.error.value) == 0

    # ALLREDUCE as device D-1 = 1: FP32 partial sums in, f16(p + f32(S)) stored and sent on
    n, c = 37, 600
    parts = np.stack([(rng.standard_normal(n) * 4).astype(np.float16) for _ in range(2)])
    parts[0, :3] = [-0.0, np.inf, 65504.0]
    parts[1, :3] = [-0.0, 1.0, 65504.0]
    sram[c:c + n] = parts[1].view(np.uint16)
    partial = (np.float32(0) + parts[0].astype(np.float32)).astype("<f4")   # what device 0 sends
    want = numerics.f16_bits(numerics.allreduce_sum(parts)).astype(np.uint16)
    await streams["rx_prev"].send(AxiStreamFrame(partial.tobytes()))
    await issue_and_wait(dut, pack("ALLREDUCE", sram=c, count=n), idle=0, limit=10_000,
                         what="ALLREDUCE")
    frame = await streams["tx_next"].recv()
    assert np.array_equal(sram[c:c + n], want), (sram[c:c + n], want)
    assert bytes(frame.tdata) == want.astype("<u2").tobytes()
    assert int(dut.error.value) == 0
