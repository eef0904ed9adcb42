"""Instructions as values, and their fixed-width binary encoding (derived from isa.table)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .table import (BY_NAME, BY_OPCODE, HEADER_BITS, OPCODE_BITS, WAIT_BITS, WAIT_UNITS,
                    WORD_BITS, WORD_BYTES, InstrDef, Kind)

__all__ = ["ISAError", "Instr", "encode", "decode", "encode_many", "decode_many",
           "f32_to_bits", "bits_to_f32"]


class ISAError(ValueError):
    """An instruction, word or program that does not follow the instruction set."""


def f32_to_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_to_f32(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", b & 0xFFFFFFFF))[0]


_WAIT_NAMES = tuple(u.value for u in WAIT_UNITS)


@dataclass(frozen=True)
class Instr:
    """One instruction: mnemonic, field values (raw integers, F32 fields as bit patterns), waits.

    Fields not given are zero. ``waits`` maps a unit name (``"dma"``, ``"mpu"``, ``"vpu"``,
    ``"net"``) to k in 0..15: wait for the k-th most recently dispatched instruction of that unit.
    """

    op: str
    args: tuple[tuple[str, int], ...] = ()
    waits: tuple[int, int, int, int] = (0, 0, 0, 0)
    comment: str = field(default="", compare=False)

    @classmethod
    def make(cls, op: str, *, waits: Mapping[str, int] | None = None, comment: str = "",
             **values: Any) -> "Instr":
        d = definition(op)
        args = []
        for name, bits, kind, top in _field_checks(d):
            v = values.pop(name, 0)
            if type(v) is int and 0 <= v < top:             # the common case, already valid
                args.append((name, v))
                continue
            if kind is Kind.F32 and isinstance(v, float):
                v = f32_to_bits(v)
            elif kind is Kind.FLAG:
                v = int(bool(v))
            args.append((name, _check_value(d, name, bits, kind, v)))
        if values:
            raise ISAError(f"{op}: unknown field {next(iter(values))!r}; fields: {', '.join(d.field_names) or 'none'}")
        w = [0, 0, 0, 0]
        for unit, k in (waits or {}).items():
            if unit not in _WAIT_NAMES:
                raise ISAError(f"{op}: cannot wait on unit {unit!r}; units: {', '.join(_WAIT_NAMES)}")
            if not isinstance(k, int) or not 0 <= k < (1 << WAIT_BITS):
                raise ISAError(f"{op}: wait {unit}={k!r} must be an integer in 0..{(1 << WAIT_BITS) - 1}")
            w[_WAIT_NAMES.index(unit)] = k
        return cls(op, tuple(args), tuple(w), comment)

    @property
    def definition(self) -> InstrDef:
        return BY_NAME[self.op]

    def __getitem__(self, name: str) -> int:
        for k, v in self.args:
            if k == name:
                return v
        raise KeyError(f"{self.op} has no field {name!r}")

    def get(self, name: str, default: int = 0) -> int:
        for k, v in self.args:
            if k == name:
                return v
        return default

    @property
    def fields(self) -> dict[str, int]:
        return dict(self.args)

    @property
    def wait_map(self) -> dict[str, int]:
        return dict(zip(_WAIT_NAMES, self.waits))

    def signed(self, name: str) -> int:
        """A SINT field's value as a Python int."""
        f = next(f for f in self.definition.fields if f.name == name)
        v = self[name]
        return v - (1 << f.bits) if v >> (f.bits - 1) else v

    def float(self, name: str) -> float:
        return bits_to_f32(self[name])

    def replace(self, *, waits: Mapping[str, int] | None = None, **values: Any) -> "Instr":
        cur = dict(self.args)
        for k, v in values.items():
            cur[k] = v
        w = self.wait_map if waits is None else {**self.wait_map, **waits}
        return Instr.make(self.op, waits=w, comment=self.comment, **cur)


def definition(op: str) -> InstrDef:
    try:
        return BY_NAME[op]
    except KeyError:
        raise ISAError(f"unknown instruction {op!r}") from None


_CHECKS: dict[str, tuple[tuple[str, int, Kind, int], ...]] = {}


def _field_checks(d: InstrDef) -> tuple[tuple[str, int, Kind, int], ...]:
    """Per field of ``d``: name, bits, kind, and the bound below which a plain int is valid as
    given (``2**bits``; 2 for a FLAG, whose 0 and 1 are kept; SINT and F32 values in range are
    stored unchanged too)."""
    got = _CHECKS.get(d.name)
    if got is None:
        got = _CHECKS[d.name] = tuple(
            (f.name, f.bits, f.kind, 2 if f.kind is Kind.FLAG else 1 << f.bits) for f in d.fields)
    return got


def _check_value(d: InstrDef, name: str, bits: int, kind: Kind, v: Any) -> int:
    if isinstance(v, bool):
        v = int(v)
    if not isinstance(v, int):
        raise ISAError(f"{d.name}: field {name} must be an integer, not {v!r}")
    if kind is Kind.SINT:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if not lo <= v <= (1 << bits) - 1:
            raise ISAError(f"{d.name}: field {name}={v} does not fit in {bits} signed bits ({lo}..{hi})")
        return v & ((1 << bits) - 1)
    if not 0 <= v < (1 << bits):
        raise ISAError(f"{d.name}: field {name}={v} does not fit in {bits} bits (0..{(1 << bits) - 1})")
    return int(v)


def encode(i: Instr) -> bytes:
    """One instruction as ``WORD_BYTES`` little-endian bytes."""
    d = i.definition
    word = d.opcode
    for k, w in enumerate(i.waits):
        word |= w << (OPCODE_BITS + WAIT_BITS * k)
    vals = dict(i.args)
    for f, pos in d.layout():
        word |= vals.get(f.name, 0) << pos
    return word.to_bytes(WORD_BYTES, "little")


def decode(word: bytes) -> Instr:
    """The instruction a ``WORD_BYTES``-byte word holds; :class:`ISAError` if it holds none."""
    if len(word) != WORD_BYTES:
        raise ISAError(f"an instruction word is {WORD_BYTES} bytes, not {len(word)}")
    w = int.from_bytes(word, "little")
    opcode = w & ((1 << OPCODE_BITS) - 1)
    d = BY_OPCODE.get(opcode)
    if d is None:
        raise ISAError(f"unknown opcode 0x{opcode:02x}")
    waits = tuple((w >> (OPCODE_BITS + WAIT_BITS * k)) & ((1 << WAIT_BITS) - 1)
                  for k in range(len(WAIT_UNITS)))
    args = []
    end = HEADER_BITS
    for f, pos in d.layout():
        args.append((f.name, (w >> pos) & f.max_value))
        end = pos + f.bits
    if w >> end:
        raise ISAError(f"{d.name}: reserved bits {end}..{WORD_BITS - 1} are not zero")
    return Instr(d.name, tuple(args), waits)  # type: ignore[arg-type]


def encode_many(instrs: Iterable[Instr]) -> bytes:
    return b"".join(encode(i) for i in instrs)


def decode_many(data: bytes) -> list[Instr]:
    if len(data) % WORD_BYTES:
        raise ISAError(f"{len(data)} bytes is not a whole number of {WORD_BYTES}-byte instructions")
    return [decode(data[o:o + WORD_BYTES]) for o in range(0, len(data), WORD_BYTES)]
