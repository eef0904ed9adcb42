"""The dispatcher's control semantics, shared by the functional executor and the timing model.

Both walk a stream the same way: CTRL instructions execute in the dispatcher, every other
instruction is *captured* (its register fields replaced by the register values at dispatch) and
handed to its unit. See docs/execution.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..isa import ISAError, Instr, Kind, Unit

__all__ = ["Registers", "Captured", "walk", "MAX_STEPS_DEFAULT"]

MAX_STEPS_DEFAULT = 50_000_000
_MASK = 0xFFFFFFFF


class Registers:
    """16 x 32-bit registers; R[0] reads as 0 and ignores writes."""

    __slots__ = ("v",)

    def __init__(self, init: dict[int, int] | None = None) -> None:
        self.v = [0] * 16
        for k, val in (init or {}).items():
            self[k] = val

    def __getitem__(self, i: int) -> int:
        return self.v[i]

    def __setitem__(self, i: int, value: int) -> None:
        if i:
            self.v[i] = value & _MASK

    def snapshot(self) -> dict[int, int]:
        return {i: x for i, x in enumerate(self.v) if x}


@dataclass(frozen=True)
class Captured:
    """An instruction as its unit sees it: field values with REG fields replaced by the register
    values at dispatch. ``index`` is its position in the stream, ``seq`` its dispatch number."""
    instr: Instr
    index: int
    seq: int
    f: dict[str, int]

    @property
    def op(self) -> str:
        return self.instr.op

    @property
    def unit(self) -> Unit:
        return self.instr.definition.unit


def capture(instr: Instr, regs: Registers) -> dict[str, int]:
    f = dict(instr.args)
    for fd in instr.definition.fields:
        if fd.kind is Kind.REG:
            f[fd.name] = regs[f[fd.name]]
    return f


def walk(stream: list[Instr], regs: Registers, *,
         max_steps: int = MAX_STEPS_DEFAULT) -> Iterator[Captured]:
    """Dispatch a stream in order, executing CTRL instructions on ``regs``.

    Yields every instruction in dispatch order as :class:`Captured` (CTRL ones too, so that a
    timing model can charge them). Register writes by units (ARGMAX's ``rd``) are the caller's:
    it performs them on ``regs`` before resuming the generator, which is exactly the register
    scoreboard of docs/execution.md (a later instruction reading ``rd`` sees the new value).
    """
    pc, seq, steps = 0, 0, 0
    n = len(stream)
    while True:
        if pc >= n:
            raise ISAError(f"execution ran off the end of the stream at instruction {pc} (missing HALT?)")
        steps += 1
        if steps > max_steps:
            raise ISAError(f"stopped after {max_steps} instructions without HALT (endless loop?)")
        ins = stream[pc]
        op = ins.op
        cap = Captured(ins, pc, seq, capture(ins, regs))
        seq += 1
        yield cap
        if op == "HALT":
            return
        if op == "SETI":
            regs[ins["rd"]] = ins.signed("imm")
        elif op == "ADDI":
            regs[ins["rd"]] = regs[ins["rs"]] + ins.signed("imm")
        elif op == "BNZ":
            if regs[ins["rs"]] != 0:
                pc = ins["target"]
                continue
        pc += 1
