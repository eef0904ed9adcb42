"""The instruction decoder, with every layout derived from the ISA table (fpgpt/isa/table.py).

Nothing here names an opcode, a field or a width: :data:`Opcode` is built from
``INSTRUCTIONS``, and each instruction's :class:`~amaranth.lib.data.StructLayout` lists the
header (opcode, one wait count per unit) and then the instruction's fields in table order, which
is exactly the bit order of ``InstrDef.layout()``.
"""


# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
import types

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ..isa.table import (BY_OPCODE, INSTRUCTIONS, OPCODE_BITS, WAIT_BITS, WAIT_UNITS, WORD_BITS,
                         Field, InstrDef, Kind, Unit)

__all__ = ["captured_layout", "Opcode", "UnitCode", "field_shape", "instr_layout", "INSTR_LAYOUTS", "WORD_LAYOUT",
           "Decoder"]


def _enum(name: str, members: dict[str, int], bits: int) -> type[enum.Enum]:
    return types.new_class(name, (enum.Enum,), {"shape": bits},
                           lambda ns: [ns.__setitem__(k, v) for k, v in members.items()])


#: Opcodes, one member per table instruction (``Opcode.MM`` ...), 8 bits.
Opcode = _enum("Opcode", {d.name: d.opcode for d in INSTRUCTIONS}, OPCODE_BITS)

#: Executing unit, one member per ``isa.table.Unit`` (in the table's order).
UnitCode = _enum("UnitCode", {u.name: i for i, u in enumerate(Unit)},
                 max(1, (len(Unit) - 1).bit_length()))


def field_shape(f: Field):
    """The Amaranth shape of one table field (SINT fields are signed)."""
    return signed(f.bits) if f.kind is Kind.SINT else unsigned(f.bits)


def _header() -> dict:
    h = {"opcode": Opcode}
    for u in WAIT_UNITS:
        h[f"wait_{u.value}"] = unsigned(WAIT_BITS)
    return h


def instr_layout(d: InstrDef) -> data.StructLayout:
    """The bit layout of instruction ``d`` from bit 0: header, then its fields."""
    members = _header()
    for f in d.fields:
        if f.name in members:
            raise ValueError(f"{d.name}: field {f.name!r} clashes with a header member")
        members[f.name] = field_shape(f)
    return data.StructLayout(members)


#: Each instruction's layout, by lower-case mnemonic (the member name in :data:`WORD_LAYOUT`).
INSTR_LAYOUTS: dict[str, data.StructLayout] = {d.name.lower(): instr_layout(d)
                                               for d in INSTRUCTIONS}

#: A whole instruction word seen as any instruction (a union over the table).
WORD_LAYOUT = data.UnionLayout({"raw": unsigned(WORD_BITS), **INSTR_LAYOUTS})


class Decoder(wiring.Component):
    """Combinational decoder of one ``WORD_BITS``-bit instruction word.

    Ports
    -----
    word : In(WORD_BITS)
    opcode : Out(Opcode)
    known : Out(1)
        The opcode is in the table (an unknown one is an illegal instruction).
    unit : Out(UnitCode)
        The unit that executes it (meaningful when ``known``).
    instr : Out(WORD_LAYOUT)
        The word viewed through every instruction's layout: read ``instr.mm.k``,
        ``instr.load.hbm``... for the instruction that ``opcode`` names.
    """

    word: In(WORD_BITS)
    opcode: Out(Opcode)
    known: Out(1)
    unit: Out(UnitCode)
    instr: Out(WORD_LAYOUT)

    def elaborate(self, platform):
        m = Module()
        view = data.View(WORD_LAYOUT, self.word)
        m.d.comb += [
            self.instr.eq(self.word),
            self.opcode.eq(view.nop.opcode),
        ]
        with m.Switch(view.nop.opcode):
            for opcode, d in BY_OPCODE.items():
                with m.Case(opcode):
                    m.d.comb += [self.known.eq(1), self.unit.eq(UnitCode[d.unit.name])]
            with m.Default():
                # Assign every output in every case: a case statement with no default is what
                # Verilator's CASEINCOMPLETE warns about.
                m.d.comb += [self.known.eq(0), self.unit.eq(UnitCode.CTRL)]
        return m


def captured_layout(unit: Unit) -> data.StructLayout:
    """The instruction as ``unit``'s queue holds it: ``op`` plus the union of the fields of its
    instructions, by name, register fields (``Kind.REG``) widened to the 32-bit register value
    captured at dispatch. Fields an instruction lacks are zero."""
    members: dict = {"op": Opcode}
    for d in INSTRUCTIONS:
        if d.unit is not unit:
            continue
        for f in d.fields:
            shape = unsigned(32) if f.kind is Kind.REG else field_shape(f)
            if members.get(f.name, shape) != shape:
                raise ValueError(f"{unit.name} field {f.name!r} has two shapes in the ISA table; "
                                 "give it one width")
            members[f.name] = shape
    return data.StructLayout(members)
