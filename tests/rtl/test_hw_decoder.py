"""The RTL decoder against fpgpt.isa.encode on random instructions of every kind."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from fpgpt.hw.decoder import INSTR_LAYOUTS, Decoder, Opcode, UnitCode
from fpgpt.isa.encoding import Instr, encode
from fpgpt.isa.table import INSTRUCTIONS, WAIT_UNITS, Kind


def _random_instr(d, rng) -> Instr:
    vals = {}
    for f in d.fields:
        v = int(rng.integers(0, 1 << f.bits, dtype=np.uint64)) if f.bits < 64 else 0
        if f.kind is Kind.SINT and v >> (f.bits - 1):
            v -= 1 << f.bits
        vals[f.name] = v
    waits = {u.value: int(rng.integers(0, 16)) for u in WAIT_UNITS}
    return Instr.make(d.name, waits=waits, **vals)


def test_layouts_match_table_offsets():
    for d in INSTRUCTIONS:
        layout = INSTR_LAYOUTS[d.name.lower()]
        for f, pos in d.layout():
            assert layout[f.name].offset == pos, (d.name, f.name)
            assert layout[f.name].shape.width == f.bits
    assert {m.name: m.value for m in Opcode} == {d.name: d.opcode for d in INSTRUCTIONS}


def test_decoder_fields_equal_encoded():
    rng = np.random.default_rng(5)
    instrs = [_random_instr(d, rng) for d in INSTRUCTIONS for _ in range(4)]
    dut = Decoder()
    checked = []

    async def bench(ctx):
        for ins in instrs:
            ctx.set(dut.word, int.from_bytes(encode(ins), "little"))
            d = ins.definition
            assert ctx.get(dut.known) == 1
            assert ctx.get(dut.opcode) == Opcode[d.name]
            assert ctx.get(dut.unit) == UnitCode[d.unit.name]
            view = getattr(dut.instr, d.name.lower())
            for k, u in enumerate(WAIT_UNITS):
                assert ctx.get(getattr(view, f"wait_{u.value}")) == ins.waits[k]
            for f in d.fields:
                want = ins.signed(f.name) if f.kind is Kind.SINT else ins[f.name]
                assert ctx.get(getattr(view, f.name)) == want, (d.name, f.name)
                checked.append(f.name)
        ctx.set(dut.word, 0xFF)     # no instruction has opcode 0xff
        assert ctx.get(dut.known) == 0

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == 4 * sum(len(d.fields) for d in INSTRUCTIONS)
