"""docs/isa.md, generated from the instruction table.

Regenerate with ``python -m fpgpt.isa.docgen > docs/isa.md`` (or ``python -m fpgpt.isa.docgen
--write``); a test fails while the file differs from :func:`render_isa_markdown`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .asm import SYNTAX_DOC, WAIT_FIELDS
from .disasm import format_instr
from .encoding import Instr
from .table import (HEADER_BITS, INSTRUCTIONS, NUM_REGS, OPCODE_BITS, REG_BITS, WAIT_BITS,
                    WAIT_UNITS, WORD_BITS, WORD_BYTES, InstrDef, Kind, Unit)

__all__ = ["render_isa_markdown", "DOC_PATH", "REGENERATE"]

#: Where the rendering lives in the repository, relative to its root.
DOC_PATH = Path("docs") / "isa.md"
REGENERATE = "python -m fpgpt.isa.docgen --write"

_KIND_MEANING = {
    Kind.UINT: "unsigned integer",
    Kind.SINT: "two's-complement integer",
    Kind.REG: "register read (its value is captured at dispatch)",
    Kind.REGW: "register written",
    Kind.FLAG: "one bit, 0 or 1",
    Kind.F32: "IEEE binary32 bit pattern, a float literal in assembly",
    Kind.LABEL: "instruction index in the same stream, a label in assembly",
}


def _anchor(d: InstrDef) -> str:
    return d.name.lower()


def _example(d: InstrDef) -> str:
    """An assembly line for the instruction with every field written (values are placeholders)."""
    values = {}
    for f in d.fields:
        values[f.name] = {Kind.REG: 1, Kind.REGW: 2, Kind.FLAG: 1, Kind.LABEL: 0,
                          Kind.F32: 0x3F800000, Kind.SINT: 1}.get(f.kind, 1)
    return format_instr(Instr.make(d.name, **values), {0: "loop"})


def _instr_section(d: InstrDef) -> list[str]:
    out = [f"### {d.name}", "",
           f"Opcode `0x{d.opcode:02x}`, unit {d.unit.name}"
           + (" (executes in the dispatcher)" if d.unit is Unit.CTRL else "") + ".", ""]
    if d.fields:
        out += ["| field | bits | offset | kind | meaning |", "|---|---|---|---|---|"]
        for f, pos in d.layout():
            doc = f.doc.replace("|", "\\|")   # a bar would end the table cell
            out.append(f"| `{f.name}` | {f.bits} | [{pos}, {pos + f.bits}) | {f.kind.value} | {doc} |")
        end = d.layout()[-1][1] + d.fields[-1].bits
        out += ["", f"Bits [{end}, {WORD_BITS}) are zero.", ""]
    else:
        out += [f"No fields: bits [{HEADER_BITS}, {WORD_BITS}) are zero.", ""]
    out += ["Semantics:", "", "```text", d.doc, "```", "",
            "Assembly:", "", "```asm", _example(d), "```", ""]
    return out


def render_isa_markdown() -> str:
    """The text of docs/isa.md, derived from :data:`fpgpt.isa.table.INSTRUCTIONS`."""
    waits = ", ".join(f"`{w}`" for w in WAIT_FIELDS)
    out = [
        "# fpgpt instruction set",
        "",
        "<!-- Generated from fpgpt/isa/table.py by fpgpt/isa/docgen.py; do not edit by hand.",
        f"     Regenerate: {REGENERATE} -->",
        "",
        "How a device fetches, dispatches and orders these instructions (units, queues, wait counts,",
        "register ABI) is in [execution.md](execution.md); the arithmetic in",
        "[numerics.md](numerics.md).",
        "",
        "## Word layout",
        "",
        f"Every instruction is one {WORD_BITS}-bit word ({WORD_BYTES} bytes, little-endian; bit 0 is",
        "the least significant bit of byte 0):",
        "",
        "| bits | contents |",
        "|---|---|",
        f"| [0, {OPCODE_BITS}) | opcode |",
    ]
    for k, u in enumerate(WAIT_UNITS):
        lo = OPCODE_BITS + WAIT_BITS * k
        out.append(f"| [{lo}, {lo + WAIT_BITS}) | `wait.{u.value}`: wait count on the {u.name} unit |")
    out += [f"| [{HEADER_BITS}, ...) | the instruction's fields, in table order |",
            "| rest | zero (a decoder rejects a word whose unused bits are set) |",
            "",
            f"Wait counts ({waits}) are 0..{(1 << WAIT_BITS) - 1}: `wait.X = k > 0` makes the",
            "instruction wait for the k-th most recently dispatched instruction of unit X",
            "([execution.md](execution.md#dependencies-wait-counts)).",
            "",
            f"Registers: {NUM_REGS} x {REG_BITS} bits, `R[0]` always reads 0.",
            "",
            "Field kinds:",
            "",
            "| kind | meaning |",
            "|---|---|"]
    out += [f"| {k.value} | {_KIND_MEANING[k]} |" for k in Kind]
    out += ["", "Notation in the semantics: `S[e]` is scratchpad FP16 element `e`; `H16[b]` / `I32[b]`",
            "the FP16 / int32 at HBM byte address `b`; `R[i]` register `i`; `f32` / `f16` the",
            "conversions and arithmetic of [numerics.md](numerics.md).",
            "",
            "## Instructions",
            "",
            "| mnemonic | opcode | unit | fields |",
            "|---|---|---|---|"]
    for d in INSTRUCTIONS:
        fields = ", ".join(d.field_names) or "none"
        out.append(f"| [{d.name}](#{_anchor(d)}) | `0x{d.opcode:02x}` | {d.unit.name} | {fields} |")
    out.append("")
    for unit in Unit:
        group = [d for d in INSTRUCTIONS if d.unit is unit]
        if group:
            out += [f"## {unit.name} instructions", ""]
            for d in group:
                out += _instr_section(d)
    out += ["## Assembly syntax", "", SYNTAX_DOC.rstrip("\n"), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print docs/isa.md, or write it with ``--write`` (run from the repository root)."""
    argv = sys.argv[1:] if argv is None else argv
    text = render_isa_markdown()
    if argv == ["--write"]:
        DOC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DOC_PATH}", file=sys.stderr)
    elif argv:
        print(f"usage: python -m fpgpt.isa.docgen [--write]; got {' '.join(argv)!r}", file=sys.stderr)
        return 2
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
