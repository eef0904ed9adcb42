"""Disassembler: instructions and programs to the assembly text that :mod:`.asm` reads back.

The text is exact: ``assemble(disassemble(x)) == x`` for every valid instruction list (F32 fields
print as the shortest decimal that rounds back to the same binary32, or ``bits(0x...)`` for NaN
payloads; branch targets print as generated labels ``L<index>``).
"""

from __future__ import annotations

import json
import math
from typing import Iterable

from .asm import WAIT_FIELDS, parse_f32
from .encoding import Instr, bits_to_f32
from .program import Program
from .table import Kind

__all__ = ["format_f32", "format_instr", "disassemble", "format_program"]

_HEX_ABOVE_BITS = 32   # UINT fields wider than this are byte addresses: printed in hex


def format_f32(bits: int) -> str:
    """The shortest assembly literal for a binary32 bit pattern that assembles back to ``bits``."""
    x = bits_to_f32(bits)
    if math.isnan(x):
        return "nan" if parse_f32("nan") == bits else f"bits(0x{bits:08x})"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    for digits in range(1, 10):   # 9 significant digits always identify a binary32
        s = f"{x:.{digits}g}"
        try:
            if parse_f32(s) == bits:
                break
        except OverflowError:   # rounded up past the largest binary32 (near 3.4e38)
            pass
    if not any(c in s for c in ".en"):
        s += ".0"   # reads as a float to people; the assembler accepts both
    return s


def _format_value(kind: Kind, bits: int, v: int, label: str | None) -> str:
    if kind in (Kind.REG, Kind.REGW):
        return f"r{v}"
    if kind is Kind.F32:
        return format_f32(v)
    if kind is Kind.SINT:
        return str(v - (1 << bits) if v >> (bits - 1) else v)
    if kind is Kind.LABEL and label is not None:
        return label
    if kind is Kind.UINT and bits > _HEX_ABOVE_BITS:
        return hex(v)
    return str(v)


def format_instr(ins: Instr, labels: dict[int, str] | None = None) -> str:
    """One instruction as a line of assembly, without indentation.

    Fields equal to 0 are left out (the assembler reads a missing field as 0), branch targets
    excepted; ``labels`` maps an
    instruction index to the label printed for LABEL fields holding it.
    """
    parts = []
    for f, (_, v) in zip(ins.definition.fields, ins.args):
        if v or f.kind is Kind.LABEL:   # a branch target is worth reading even when it is 0
            label = labels.get(v) if labels is not None and f.kind is Kind.LABEL else None
            parts.append(f"{f.name}={_format_value(f.kind, f.bits, v, label)}")
    parts += [f"{w}={k}" for w, k in zip(WAIT_FIELDS, ins.waits) if k]
    text = ins.op + (" " + ", ".join(parts) if parts else "")
    if ins.comment:
        text += "  ; " + " ".join(ins.comment.split())
    return text


def _stream_lines(instrs: list[Instr], labels: bool) -> list[str]:
    names: dict[int, str] = {}
    if labels:
        n = len(instrs)
        for ins in instrs:
            for f, (_, v) in zip(ins.definition.fields, ins.args):
                if f.kind is Kind.LABEL and v <= n:
                    names[v] = f"L{v}"
    lines = []
    for i, ins in enumerate(instrs):
        if i in names:
            lines.append(f"{names[i]}:")
        lines.append("    " + format_instr(ins, names))
    if len(instrs) in names:
        lines.append(f"{names[len(instrs)]}:")
    return lines


def disassemble(instrs: Iterable[Instr], *, labels: bool = True) -> str:
    """Assembly text for one stream of instructions.

    Parameters
    ----------
    instrs
        The instructions, in stream order.
    labels
        Print branch targets as labels ``L<index>`` (targets outside the stream stay numbers);
        with False every target is its instruction index.

    Returns
    -------
    str
        Text, one instruction per line, ending in a newline; :func:`.asm.assemble` reads it back
        to the same instructions.
    """
    lines = _stream_lines(list(instrs), labels)
    return "\n".join(lines) + "\n" if lines else ""


def format_program(program: Program, *, labels: bool = True) -> str:
    """Assembly text for a whole :class:`Program`.

    A header comment summarises it; ``.meta``, ``.region``, ``.stream`` and ``.regs`` directives
    carry metadata, regions, streams and register values, so that :func:`.asm.assemble_program`
    reads back everything but the HBM memory image (segments), which the header only counts.
    """
    counts = ", ".join(f"{name} ({len(s)})" for name, s in program.streams.items()) or "none"
    seg_bytes = sum(len(b) for _, b in program.segments)
    out = [f"; fpgpt program: streams {counts}; {len(program.regions)} HBM regions",
           f"; HBM image: {len(program.segments)} segments, {seg_bytes} bytes (not shown)"]
    if program.meta:
        out.append(".meta " + json.dumps(program.meta, sort_keys=True))
    for r in program.regions.values():
        shape = ", shape=" + "x".join(str(d) for d in r.shape) if r.shape else ""
        out.append(f".region {r.name}, addr={hex(r.addr)}, nbytes={r.nbytes}{shape}, dtype={r.dtype}")
    names = list(program.streams) + [s for s in program.registers if s not in program.streams]
    for name in names:
        out.append("")
        out.append(f".stream {name}")
        regs = program.registers.get(name, {})
        if regs:
            out.append(".regs " + ", ".join(f"r{k}={v}" for k, v in sorted(regs.items())))
        out += _stream_lines(program.streams.get(name, []), labels)
    return "\n".join(out) + "\n"

