"""Assembler: fpgpt assembly text to instructions (derived from isa.table).

Syntax (one statement per line; docs/isa.md "Assembly syntax" is generated from
:data:`SYNTAX_DOC`, keep the two in step by editing only here)::

    ; comment (also # comment), to the end of the line
    .equ    NAME, VALUE             ; symbolic constant: integer, float or register
    .stream NAME                    ; following lines go to stream NAME (default "main")
    .regs   r1=0, r4=1              ; registers the host sets before the current stream
    .region NAME, addr=A, nbytes=N, shape=12x64, dtype=f16   ; a named HBM region
    .meta   {"model": "gpt2"}       ; JSON object merged into the program's metadata
    loop:                           ; label (own line, or before an instruction)
    LOAD sram=0, hbm=0x1000, rows=4, cols=64, ra=r1, wait.vpu=1
    BNZ rs=r3, target=loop

Fields not written are 0; waits are the fields ``wait.dma``, ``wait.mpu``, ``wait.vpu``,
``wait.net`` (0..15). Mnemonics are case-insensitive; field names are lower case.
"""

from __future__ import annotations

import difflib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .encoding import ISAError, Instr
from .program import Program, Region
from .table import BY_NAME, NUM_REGS, WAIT_BITS, WAIT_UNITS, Field, InstrDef, Kind

__all__ = ["AsmError", "assemble", "assemble_program", "assemble_file", "parse_f32",
           "DEFAULT_STREAM", "WAIT_FIELDS", "SYNTAX_DOC"]

DEFAULT_STREAM = "main"
#: The wait counts as they are written in assembly, in header order.
WAIT_FIELDS: tuple[str, ...] = tuple(f"wait.{u.value}" for u in WAIT_UNITS)
_WAIT_MAX = (1 << WAIT_BITS) - 1
_DIRECTIVES = (".equ", ".stream", ".regs", ".region", ".meta")

SYNTAX_DOC = f"""\
One statement per line; `;` or `#` starts a comment that runs to the end of the line (a comment
after an instruction is kept as that instruction's comment and printed back by the disassembler).

    MNEMONIC field=value, field=value, ...

- Mnemonics are case-insensitive (`load` = `LOAD`); field names are lower case and separated by
  commas. A field that is not written is 0. Each field may appear once.
- Waits are written as the fields {", ".join(f"`{w}`" for w in WAIT_FIELDS)} (0..{_WAIT_MAX}),
  e.g. `VADD dst=0, a=64, b=128, rows=1, cols=64, wait.dma=1`.
- Integers: decimal, `0x` hex, `0b` binary, `0o` octal, `_` between digits (`0x1_0000`);
  a minus sign for `sint` fields (raw two's-complement bit patterns are accepted too).
- Registers: `r0`..`r{NUM_REGS - 1}` in `reg` and `regw` fields, and nowhere else.
- `f32` fields take a float literal (`1e-5`, `0.125`, `3`, `inf`, `-inf`, `nan`), rounded to the
  nearest binary32, or `bits(0x7fc00001)` for an exact bit pattern (NaN payloads). Hex integers are
  refused there, because `0x3f800000` could mean either.
- `flag` fields take 0 or 1.
- `label` fields take a label defined in the same stream (forward references allowed) or an
  instruction index.
- Labels: `name:` on its own line or before an instruction; it names the index of the next
  instruction of the current stream. Labels are local to their stream.
- Directives:
  - `.equ NAME, VALUE`: a constant (integer, float or register, or an earlier constant), usable
    wherever a value of its type is.
  - `.stream NAME`: the following lines go to stream NAME (the default stream is `{DEFAULT_STREAM}`).
  - `.regs r1=0, r4=1`: the register values the host sets before the current stream.
  - `.region NAME, addr=A, nbytes=N, shape=D0xD1, dtype=f16`: a named HBM region.
  - `.meta {{...}}`: a JSON object merged into the program's metadata.
- Errors name the place and the fix: `file:line:col: what is wrong; expected ...`.
"""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[^\s,;#=:]+")          # stream / region names: anything without separators
_LABEL_DEF = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:")
_WORD = re.compile(r"[.A-Za-z_][A-Za-z0-9_.]*")
_REG = re.compile(r"[rR]([0-9]+)")
_INT = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|[0-9](_?[0-9])*)")
_DIGITS = r"[0-9](_?[0-9])*"
_FLOAT = re.compile(rf"[+-]?((({_DIGITS})(\.({_DIGITS})?)?|\.{_DIGITS})([eE][+-]?[0-9]+)?|inf|infinity|nan)",
                    re.IGNORECASE)
_BITS = re.compile(r"bits\(\s*(.*?)\s*\)")
_RESERVED = {"inf", "infinity", "nan", "bits"}
_COMMENT = re.compile(r"[;#]")
_SPACE_THEN_TEXT = re.compile(r"\s+\S")


def _what(d: InstrDef, f: Field) -> str:
    return f"{d.name}.{f.name} ({f.kind.value}, {f.bits} bits)"


class AsmError(ISAError):
    """A line of assembly that does not parse; the message is ``file:line:col: problem``."""

    def __init__(self, filename: str, line: int, col: int, problem: str) -> None:
        super().__init__(f"{filename}:{line}:{col}: {problem}")
        self.filename, self.line, self.col, self.problem = filename, line, col, problem


@dataclass
class _Sym:
    kind: str          # "int", "float" or "reg"
    value: Any
    line: int


@dataclass
class _Pending:
    """An instruction whose label fields may still be unresolved."""
    d: InstrDef
    values: dict[str, int]
    waits: list[int]
    comment: str
    fixups: list[tuple[str, str, int, int]] = field(default_factory=list)  # field, label, line, col


def parse_f32(text: str) -> int | None:
    """The binary32 bit pattern a float literal or ``bits(0x...)`` denotes, or None if it is neither.

    Raises
    ------
    OverflowError
        The literal is finite but beyond the binary32 range.
    """
    m = _BITS.fullmatch(text)
    if m:
        if not _INT.fullmatch(m.group(1)):
            return None
        v = int(m.group(1), 0)
        return v if 0 <= v <= 0xFFFFFFFF else None
    if not _FLOAT.fullmatch(text):
        return None
    x = float(text.replace("_", ""))
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _split_comment(line: str) -> tuple[str, str | None]:
    """Code and comment of a line; ``;`` and ``#`` inside a JSON string (``.meta``) are text."""
    if '"' not in line:   # fast path: only .meta lines hold strings
        m = _COMMENT.search(line)
        return (line, None) if m is None else (line[:m.start()], line[m.end():])
    in_str = esc = False
    for i, ch in enumerate(line):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in ";#":
            return line[:i], line[i + 1:]
    return line, None


class _Assembler:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.symbols: dict[str, _Sym] = {}
        self.labels: dict[str, dict[str, tuple[int, int]]] = {}   # stream -> label -> (index, line)
        self.streams: dict[str, list[_Pending]] = {}
        self.stream_lines: dict[str, int] = {}
        self.registers: dict[str, dict[int, int]] = {}
        self.regions: dict[str, Region] = {}
        self.meta: dict[str, Any] = {}
        self.current = DEFAULT_STREAM
        self.line = 0

    # -- errors ------------------------------------------------------------------------------
    def err(self, col: int, problem: str) -> AsmError:
        return AsmError(self.filename, self.line, col, problem)

    # -- driving -----------------------------------------------------------------------------
    def run(self, text: str) -> Program:
        for self.line, raw in enumerate(text.splitlines(), start=1):
            self.statement(raw)
        streams = {}
        for name, pend in self.streams.items():
            labels = self.labels.get(name, {})
            out = []
            for p in pend:
                for fname, label, line, col in p.fixups:
                    if label not in labels:
                        self.line = line
                        known = ", ".join(sorted(labels)) or "none"
                        raise self.err(col, f"undefined label {label!r}; expected a label defined "
                                            f"in stream {name!r} (defined: {known})")
                    p.values[fname] = labels[label][0]
                args = tuple((f.name, p.values.get(f.name, 0)) for f in p.d.fields)
                out.append(Instr(p.d.name, args, tuple(p.waits), p.comment))  # type: ignore[arg-type]
            streams[name] = out
        return Program(streams, dict(self.regions), [], self.registers, self.meta)

    def stream_pending(self) -> list[_Pending]:
        if self.current not in self.streams:
            self.streams[self.current] = []
            self.stream_lines.setdefault(self.current, self.line)
        return self.streams[self.current]

    def statement(self, raw: str) -> None:
        code, comment = _split_comment(raw)
        pos = 0
        while True:
            m = _LABEL_DEF.match(code, pos)
            if not m:
                break
            self.define_label(m.group(1), m.start(1) + 1)
            pos = m.end()
        rest = code[pos:]
        if not rest.strip():
            return
        start = pos + len(rest) - len(rest.lstrip())
        m = _WORD.match(code, start)
        if not m:
            raise self.err(start + 1, f"unexpected {code[start:].split()[0]!r}; expected a mnemonic, "
                                      f"a directive or a label")
        word, end = m.group(0), m.end()
        if end < len(code) and not code[end].isspace():
            raise self.err(end + 1, f"unexpected {code[end]!r} after {word!r}; expected a space "
                                    f"and then field=value pairs")
        if word.startswith("."):
            self.directive(word, start + 1, code, end)
        else:
            self.instruction(word, start + 1, code, end, (comment or "").strip())

    # -- pieces ------------------------------------------------------------------------------
    def pieces(self, code: str, start: int, *, allow_empty: bool = True) -> list[tuple[int, str]]:
        """The comma-separated items after column ``start``: (1-based column, stripped text)."""
        body = code[start:]
        if not body.strip():
            if allow_empty:
                return []
            raise self.err(len(code.rstrip()) + 1, "missing operands; expected a name after the "
                                                   "directive")
        out, pos = [], start
        for part in body.split(","):
            text = part.strip()
            col = pos + len(part) - len(part.lstrip()) + 1
            if not text:
                raise self.err(col, "empty item between commas; expected field=value")
            out.append((col, text))
            pos += len(part) + 1
        return out

    def keyvalue(self, col: int, text: str) -> tuple[str, int, str]:
        """Split ``name=value``; returns (name, column of value, value)."""
        name, eq, value = text.partition("=")
        name_s = name.strip()
        if not eq:
            raise self.err(col, f"{text!r} is not field=value; expected field=value")
        if not name_s:
            raise self.err(col, "missing field name before '='; expected field=value")
        vcol = col + len(name) + 1 + len(value) - len(value.lstrip())
        value = value.strip()
        if not value:
            raise self.err(vcol, f"missing value after '{name_s}='; expected a value")
        bad = _SPACE_THEN_TEXT.search(value)
        if bad and not _BITS.fullmatch(value):
            raise self.err(vcol + bad.end() - 1, f"missing ',' before {value[bad.end() - 1:]!r}; "
                                                 f"expected ',' between fields")
        return name_s, vcol, value

    # -- values ------------------------------------------------------------------------------
    def resolve(self, text: str, col: int) -> tuple[str, Any]:
        """Classify a value: ("reg", n), ("int", v, literal), ("float", x), ("bits", b),
        ("name", identifier)."""
        m = _REG.fullmatch(text)
        if m:
            n = int(m.group(1))
            if n >= NUM_REGS:
                raise self.err(col, f"no register {text}; expected r0..r{NUM_REGS - 1}")
            return "reg", n
        if _BITS.fullmatch(text):
            b = parse_f32(text)
            if b is None:
                raise self.err(col, f"bad bit pattern {text!r}; expected bits(0x00000000..0xffffffff)")
            return "bits", b
        if _INT.fullmatch(text):
            try:
                return "int", int(text, 0)
            except ValueError:   # leading zeros ("007"): Python refuses them in base 0; decimal
                return "int", int(text.replace("_", ""), 10)
        if _FLOAT.fullmatch(text):
            return "float", text
        if _IDENT.fullmatch(text):
            sym = self.symbols.get(text)
            if sym is None:
                return "name", text
            if sym.kind == "float":
                return "float", sym.value
            return sym.kind, sym.value
        raise self.err(col, f"malformed value {text!r}; expected an integer, a float, a register "
                            f"r0..r{NUM_REGS - 1}, a label or a .equ name")

    def int_value(self, text: str, col: int, what: str) -> int:
        kind, v = self.resolve(text, col)
        if kind == "int":
            return v
        if kind == "reg":
            raise self.err(col, f"register r{v} where an integer is expected for {what}; "
                                f"expected an integer or a .equ integer constant")
        if kind == "name":
            raise self.undefined(text, col, "an integer or a .equ integer constant")
        raise self.err(col, f"{kind} {text!r} where an integer is expected for {what}; "
                            f"expected an integer")

    def undefined(self, name: str, col: int, expected: str) -> AsmError:
        if any(name in labels for labels in self.labels.values()):
            return self.err(col, f"label {name!r} used outside a label field; expected {expected}")
        close = difflib.get_close_matches(name, self.symbols, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return self.err(col, f"undefined name {name!r}{hint}; expected {expected}")

    def field_value(self, d: InstrDef, f: Field, text: str, col: int, p: _Pending) -> int:
        if f.kind in (Kind.REG, Kind.REGW):
            kind, v = self.resolve(text, col)
            if kind == "reg":
                return v
            if kind == "name":
                raise self.undefined(text, col, f"a register r0..r{NUM_REGS - 1}")
            raise self.err(col, f"{text!r} where a register is expected for {_what(d, f)}; "
                                f"expected r0..r{NUM_REGS - 1}")
        if f.kind is Kind.F32:
            kind, v = self.resolve(text, col)
            if kind == "bits":
                return v
            if kind == "int" and text[:3].lstrip("+-")[:2].lower() in ("0x", "0b", "0o"):
                raise self.err(col, f"{text!r} is an integer literal in float field {_what(d, f)}; expected "
                                    f"a float literal, or bits({text.lstrip('+-')}) for a bit pattern")
            if kind in ("int", "float"):
                try:
                    b = parse_f32(str(v))
                except OverflowError:
                    raise self.err(col, f"{text} is beyond the binary32 range for {_what(d, f)}; expected "
                                        f"a magnitude below 3.4028235e38, or inf") from None
                assert b is not None   # int and float literals always parse
                return b
            if kind == "name":
                raise self.undefined(text, col, "a float literal or a .equ constant")
            raise self.err(col, f"register r{v} where a float is expected for {_what(d, f)}; "
                                f"expected a float literal")
        if f.kind is Kind.LABEL:
            kind, v = self.resolve(text, col)
            if kind == "name":
                p.fixups.append((f.name, text, self.line, col))
                return 0
            if kind != "int":
                raise self.err(col, f"{text!r} where a label is expected for {_what(d, f)}; "
                                    f"expected a label or an instruction index")
            lo, hi = 0, f.max_value
        else:
            v = self.int_value(text, col, _what(d, f))
            if f.kind is Kind.SINT:
                lo, hi = -(1 << (f.bits - 1)), f.max_value
            elif f.kind is Kind.FLAG:
                lo, hi = 0, 1
            else:
                lo, hi = 0, f.max_value
        if not lo <= v <= hi:
            rng = (f"{lo}..{(1 << (f.bits - 1)) - 1} (or a raw pattern up to {hex(hi)})"
                   if f.kind is Kind.SINT else f"{lo}..{hi}")
            raise self.err(col, f"value {v} out of range for {_what(d, f)}; expected {rng}")
        return v & f.max_value

    # -- statements --------------------------------------------------------------------------
    def define_label(self, name: str, col: int) -> None:
        labels = self.labels.setdefault(self.current, {})
        if name in labels:
            raise self.err(col, f"duplicate label {name!r} (first defined at line "
                                f"{labels[name][1]}); expected a new name")
        if name in self.symbols:
            raise self.err(col, f"label {name!r} is already a .equ constant (line "
                                f"{self.symbols[name].line}); expected a new name")
        if name in _RESERVED or _REG.fullmatch(name):
            raise self.err(col, f"{name!r} is reserved; expected another label name")
        labels[name] = (len(self.stream_pending()), self.line)

    def instruction(self, word: str, col: int, code: str, end: int, comment: str) -> None:
        d = BY_NAME.get(word.upper())
        if d is None:
            close = difflib.get_close_matches(word.upper(), BY_NAME, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise self.err(col, f"unknown mnemonic {word!r}{hint}; expected one of "
                                f"{', '.join(BY_NAME)}")
        p = _Pending(d, {}, [0] * len(WAIT_FIELDS), comment)
        by_name = {f.name: f for f in d.fields}
        seen: dict[str, int] = {}
        for icol, text in self.pieces(code, end):
            name, vcol, value = self.keyvalue(icol, text)
            if name in seen:
                raise self.err(icol, f"field {name!r} given twice (first at column {seen[name]}); "
                                     f"expected each field once")
            seen[name] = icol
            if name in WAIT_FIELDS:
                v = self.int_value(value, vcol, name)
                if not 0 <= v <= _WAIT_MAX:
                    raise self.err(vcol, f"value {v} out of range for {name}; expected 0..{_WAIT_MAX}")
                p.waits[WAIT_FIELDS.index(name)] = v
                continue
            f = by_name.get(name)
            if f is None:
                valid = list(d.field_names) + list(WAIT_FIELDS)
                close = difflib.get_close_matches(name, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.err(icol, f"unknown field {name!r} for {d.name}{hint}; expected one of "
                                     f"{', '.join(valid)}")
            p.values[name] = self.field_value(d, f, value, vcol, p)
        self.stream_pending().append(p)

    def directive(self, word: str, col: int, code: str, end: int) -> None:
        if word == ".equ":
            self.equ(code, end)
        elif word == ".stream":
            items = self.pieces(code, end, allow_empty=False)
            icol, name = items[0]
            if len(items) > 1 or not _NAME.fullmatch(name):
                raise self.err(icol, f"bad stream name {code[end:].strip()!r}; expected .stream NAME")
            self.current = name
            self.stream_pending()
        elif word == ".regs":
            regs = self.registers.setdefault(self.current, {})
            self.stream_pending()
            for icol, text in self.pieces(code, end, allow_empty=False):
                name, vcol, value = self.keyvalue(icol, text)
                kind, r = self.resolve(name, icol)
                if kind != "reg":
                    raise self.err(icol, f"{name!r} is not a register; expected rN=value")
                v = self.int_value(value, vcol, f"register r{r}")
                if not -(1 << 31) <= v <= 0xFFFFFFFF:
                    raise self.err(vcol, f"value {v} does not fit a 32-bit register; expected "
                                         f"{-(1 << 31)}..{0xFFFFFFFF}")
                regs[r] = v & 0xFFFFFFFF
        elif word == ".region":
            self.region(code, end)
        elif word == ".meta":
            text = code[end:].strip()
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise self.err(end + 1 + len(code[end:]) - len(code[end:].lstrip()) + e.pos,
                               f"bad JSON ({e.msg}); expected .meta {{\"key\": value, ...}}") from None
            if not isinstance(obj, dict):
                raise self.err(end + 2, "the .meta value is not a JSON object; expected .meta {...}")
            self.meta.update(obj)
        else:
            close = difflib.get_close_matches(word, _DIRECTIVES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise self.err(col, f"unknown directive {word!r}{hint}; expected one of "
                                f"{', '.join(_DIRECTIVES)}")

    def equ(self, code: str, end: int) -> None:
        items = self.pieces(code, end, allow_empty=False)
        if len(items) != 2:
            raise self.err(items[0][0], f"{len(items)} operands; expected .equ NAME, VALUE")
        (ncol, name), (vcol, value) = items
        if not _IDENT.fullmatch(name) or name in _RESERVED or _REG.fullmatch(name):
            raise self.err(ncol, f"bad constant name {name!r}; expected an identifier that is not "
                                 f"a register or inf/nan/bits")
        if name in self.symbols:
            raise self.err(ncol, f"constant {name!r} already defined at line "
                                 f"{self.symbols[name].line}; expected a new name")
        if any(name in labels for labels in self.labels.values()):
            raise self.err(ncol, f"{name!r} is already a label; expected a new name")
        kind, v = self.resolve(value, vcol)
        if kind == "name":
            raise self.undefined(value, vcol, "an integer, a float, a register or an earlier .equ")
        if kind == "bits":
            raise self.err(vcol, "bits(...) cannot be a .equ value; expected a number or a register")
        self.symbols[name] = _Sym(kind, v, self.line)

    def region(self, code: str, end: int) -> None:
        items = self.pieces(code, end, allow_empty=False)
        ncol, name = items[0]
        if not _NAME.fullmatch(name):
            raise self.err(ncol, f"bad region name {name!r}; expected .region NAME, addr=A, nbytes=N")
        if name in self.regions:
            raise self.err(ncol, f"region {name!r} defined twice; expected a new name")
        vals: dict[str, Any] = {"shape": (), "dtype": "f16"}
        for icol, text in items[1:]:
            key, vcol, value = self.keyvalue(icol, text)
            if key in ("addr", "nbytes"):
                v = self.int_value(value, vcol, f"region {key}")
                if v < 0:
                    raise self.err(vcol, f"negative {key} {v}; expected a byte count >= 0")
                vals[key] = v
            elif key == "shape":
                if not re.fullmatch(r"[0-9]+(x[0-9]+)*", value):
                    raise self.err(vcol, f"bad shape {value!r}; expected dimensions like 12x64")
                vals[key] = tuple(int(x) for x in value.split("x"))
            elif key == "dtype":
                if not _IDENT.fullmatch(value):
                    raise self.err(vcol, f"bad dtype {value!r}; expected a name like f16")
                vals[key] = value
            else:
                raise self.err(icol, f"unknown region attribute {key!r}; expected addr, nbytes, "
                                     f"shape or dtype")
        for key in ("addr", "nbytes"):
            if key not in vals:
                raise self.err(ncol, f"region {name!r} has no {key}; expected {key}=...")
        self.regions[name] = Region(name, vals["addr"], vals["nbytes"], vals["shape"], vals["dtype"])


def assemble_program(text: str, *, filename: str = "<input>") -> Program:
    """Assemble text with any number of streams into a :class:`Program`.

    Parameters
    ----------
    text
        Assembly source (syntax in the module docstring and docs/isa.md).
    filename
        Name used in error messages.

    Returns
    -------
    Program
        Streams in order of first appearance, plus regions, registers and metadata from the
        ``.region``, ``.regs`` and ``.meta`` directives. No memory image (segments) is produced.

    Raises
    ------
    AsmError
        The first line that does not assemble, as ``file:line:col: problem; expected ...``.
    """
    return _Assembler(filename).run(text)


def assemble(text: str, *, filename: str = "<input>") -> list[Instr]:
    """Assemble a single-stream text into a list of instructions.

    Raises
    ------
    AsmError
        On the first malformed line, or if the text names more than one stream (use
        :func:`assemble_program` for those).
    """
    asm = _Assembler(filename)
    prog = asm.run(text)
    if len(prog.streams) > 1:
        second = list(prog.streams)[1]
        raise AsmError(filename, asm.stream_lines[second], 1,
                       f"a second stream {second!r}; expected one stream (use assemble_program)")
    return next(iter(prog.streams.values()), [])


def assemble_file(path: str | Path) -> Program:
    """Assemble a file into a :class:`Program`; errors name the file.

    Raises
    ------
    AsmError
        Malformed assembly.
    ISAError
        The file does not exist or is not UTF-8 text.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ISAError(f"assembly file {str(path)!r} not found") from None
    except UnicodeDecodeError as e:
        raise ISAError(f"{path}: not UTF-8 text (byte {e.start}); expected an assembly text file") from None
    return assemble_program(text, filename=str(path))
