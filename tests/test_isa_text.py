"""Assembler and disassembler: exact round trips (property-based) and every error message."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpgpt.isa import INSTRUCTIONS, WAIT_UNITS, WORD_BYTES, ISAError, Instr, Program, Region
from fpgpt.isa import decode, encode
from fpgpt.isa.asm import AsmError, assemble, assemble_file, assemble_program
from fpgpt.isa.disasm import disassemble, format_f32, format_instr, format_program
from fpgpt.isa.encoding import bits_to_f32, f32_to_bits
from fpgpt.isa.table import Kind


def _value(f, n_instrs: int):
    """Field values drawn from the table: edges often, anything in range otherwise."""
    edges = st.sampled_from([0, 1, f.max_value, f.max_value >> 1, (f.max_value >> 1) + 1])
    if f.kind is Kind.LABEL:
        return st.one_of(st.integers(0, n_instrs), edges, st.integers(0, f.max_value))
    if f.kind is Kind.F32:
        specials = st.sampled_from([f32_to_bits(x) for x in (0.0, -0.0, 1.0, 1e-5, 0.125,
                                                             math.inf, -math.inf, math.nan)]
                                   + [0x7FC00001, 0xFFC00000, 0x00000001, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFF0, 0x80000001])
        return st.one_of(specials, st.integers(0, f.max_value))
    return st.one_of(edges, st.integers(0, f.max_value))


@st.composite
def instructions(draw, n_instrs: int = 0, ops=INSTRUCTIONS):
    d = draw(st.sampled_from(ops))
    args = tuple((f.name, draw(_value(f, n_instrs))) for f in d.fields)
    waits = tuple(draw(st.one_of(st.just(0), st.integers(0, 15))) for _ in WAIT_UNITS)
    return Instr(d.name, args, waits)


@st.composite
def streams(draw, max_size: int = 12):
    n = draw(st.integers(0, max_size))
    return [draw(instructions(n)) for _ in range(n)]


@given(instructions())
def test_encode_decode_round_trip(ins):
    assert decode(encode(ins)) == ins


@given(instructions(n_instrs=1))
def test_one_instruction_text_round_trip(ins):
    assert assemble(format_instr(ins)) == [ins]


@settings(max_examples=60)
@given(streams(), st.booleans())
def test_stream_text_round_trip(instrs, labels):
    text = disassemble(instrs, labels=labels)
    assert assemble(text) == instrs


@given(st.binary(min_size=WORD_BYTES, max_size=WORD_BYTES))
def test_decode_random_words_never_crashes(word):
    try:
        ins = decode(word)
    except ISAError:
        return
    assert encode(ins) == word


@given(st.sampled_from(INSTRUCTIONS), st.binary(min_size=WORD_BYTES - 1, max_size=WORD_BYTES - 1),
       st.integers(24, 512))
def test_decode_words_with_valid_opcodes(d, rest, keep_bits):
    # Random bytes mostly fail on the opcode; these reach the field and reserved-bit logic.
    w = int.from_bytes(bytes([d.opcode]) + rest, "little") & ((1 << keep_bits) - 1)
    word = w.to_bytes(WORD_BYTES, "little")
    try:
        ins = decode(word)
    except ISAError as e:
        assert "reserved bits" in str(e)
        return
    assert ins.op == d.name and encode(ins) == word


@given(st.integers(0, 0xFFFFFFFF))
def test_f32_literals_are_exact(bits):
    text = format_f32(bits)
    ins = assemble(f"SOFTMAX scale={text}")[0]
    assert ins["scale"] == bits


def test_f32_literals_are_short():
    assert format_f32(f32_to_bits(1e-5)) == "1e-05"
    assert format_f32(f32_to_bits(0.125)) == "0.125"
    assert format_f32(f32_to_bits(3.0)) == "3.0"
    assert format_f32(f32_to_bits(-0.0)) == "-0.0"
    assert format_f32(f32_to_bits(math.nan)) == "nan"
    assert format_f32(0x7FC00001) == "bits(0x7fc00001)"
    assert format_f32(f32_to_bits(-math.inf)) == "-inf"


def test_syntax_features():
    src = """
    ; a comment line
    # another
    .equ N, 64
    .equ POS, r1
    .equ EPS, 1e-5
    top:  LOAD sram=0x10, hbm=0b1_0000, rows=4, cols=N, ra=POS, wait.vpu=1, wait.net=15 ; note
          layernorm cols=1_024, eps=EPS
    SETI rd=r3, imm=-5
    BNZ rs=r3, target=done   # forward reference
    BNZ rs=r3, target=top
    done:
    HALT
    """
    got = assemble(src)
    assert got == [
        Instr.make("LOAD", sram=16, hbm=16, rows=4, cols=64, ra=1, waits={"vpu": 1, "net": 15}),
        Instr.make("LAYERNORM", cols=1024, eps=bits_to_f32(f32_to_bits(1e-5))),
        Instr.make("SETI", rd=3, imm=-5),
        Instr.make("BNZ", rs=3, target=5),
        Instr.make("BNZ", rs=3, target=0),
        Instr.make("HALT"),
    ]
    assert got[0].comment == "note"
    assert assemble("LOAD rows=007, cols=-0")[0]["rows"] == 7
    assert got[2].signed("imm") == -5


def test_disassembly_text():
    instrs = assemble("loop: SETI rd=r3, imm=-1\nBNZ rs=r3, target=loop\nHALT")
    assert disassemble(instrs) == ("L0:\n    SETI rd=r3, imm=-1\n    BNZ rs=r3, target=L0\n"
                                   "    HALT\n")
    assert disassemble(instrs, labels=False).splitlines()[1] == "    BNZ rs=r3, target=0"


def test_program_round_trip(tmp_path):
    prog = Program(
        streams={"prefill": assemble("LOAD hbm=0x40, rows=1, cols=8, batch=1\nHALT"),
                 "decode": assemble("l: ADDI rd=r3, rs=r3, imm=-1\nBNZ rs=r3, target=l\nHALT")},
        regions={"wte": Region("wte", 0, 4096, (4, 512), "f16"),
                 "tokens_out": Region("tokens_out", 4096, 64, (16,), "i32")},
        segments=[(0, b"\x00" * 8)],
        registers={"prefill": {1: 0}, "decode": {3: 7, 4: 0xFFFFFFFF}},
        meta={"model": "tiny; # not a comment", "nested": {"a": [1, 2]}})
    text = format_program(prog)
    assert text.startswith("; fpgpt program: streams prefill (2), decode (3); 2 HBM regions\n")
    path = tmp_path / "p.s"
    path.write_text(text)
    back = assemble_file(path)
    assert back.streams == prog.streams
    assert back.regions == prog.regions
    assert back.registers == prog.registers
    assert back.meta == prog.meta
    assert back.segments == []   # the memory image is not text


def test_stream_directive_and_multi_stream_error():
    prog = assemble_program(".stream a\nHALT\n.stream b\nNOP\n.stream a\nSYNC")
    assert {k: [i.op for i in v] for k, v in prog.streams.items()} == {"a": ["HALT", "SYNC"],
                                                                      "b": ["NOP"]}
    assert assemble("") == []
    assert assemble_program("HALT").streams == {"main": [Instr.make("HALT")]}


def test_labels_are_local_to_their_stream():
    with pytest.raises(AsmError, match=r"t.s:4:19: undefined label 'x'; expected a label defined "
                                       r"in stream 'b' \(defined: none\)"):
        assemble_program(".stream a\nx: HALT\n.stream b\nBNZ rs=r1, target=x", filename="t.s")


def test_assemble_file_errors(tmp_path):
    with pytest.raises(ISAError, match="not found"):
        assemble_file(tmp_path / "missing.s")
    bad = tmp_path / "bad.s"
    bad.write_text("HALT\nHALT x=1\n")
    with pytest.raises(AsmError) as e:
        assemble_file(bad)
    assert str(e.value) == (f"{bad}:2:6: unknown field 'x' for HALT; expected one of wait.dma, "
                            f"wait.mpu, wait.vpu, wait.net")
    assert (e.value.line, e.value.col) == (2, 6)


ERRORS = [
    ("LAOD sram=0",
     "t.s:1:1: unknown mnemonic 'LAOD' (did you mean LOAD?); expected one of NOP, HALT, SYNC, "
     "SETI, ADDI, BNZ, LOAD, STORE, GATHER, STR, MM, VADD, VMUL, GELU, LAYERNORM, SOFTMAX, ARGMAX, "
     "VCOPY, SEND, RECV, ALLGATHER, ALLREDUCE"),
    ("HALT\nLOAD src=0",
     "t.s:2:6: unknown field 'src' for LOAD (did you mean 'rc'?); expected one of sram, hbm, rows, "
     "cols, hstride, sstride, batch, hbatch, sbatch, ra, rr, rc, transpose, wait.dma, wait.mpu, "
     "wait.vpu, wait.net"),
    ("LOAD rows=70000",
     "t.s:1:11: value 70000 out of range for LOAD.rows (uint, 16 bits); expected 0..65535"),
    ("SETI rd=r1, imm=-2147483649",
     "t.s:1:17: value -2147483649 out of range for SETI.imm (sint, 32 bits); expected "
     "-2147483648..2147483647 (or a raw pattern up to 0xffffffff)"),
    ("LOAD rows=r3",
     "t.s:1:11: register r3 where an integer is expected for LOAD.rows (uint, 16 bits); expected "
     "an integer or a .equ integer constant"),
    ("LOAD ra=3",
     "t.s:1:9: '3' where a register is expected for LOAD.ra (reg, 4 bits); expected r0..r15"),
    ("LOAD ra=r16", "t.s:1:9: no register r16; expected r0..r15"),
    ("loop:\nloop: HALT",
     "t.s:2:1: duplicate label 'loop' (first defined at line 1); expected a new name"),
    ("BNZ rs=r1, target=nowhere\nHALT",
     "t.s:1:19: undefined label 'nowhere'; expected a label defined in stream 'main' "
     "(defined: none)"),
    ("LOAD rows=1 cols=2", "t.s:1:13: missing ',' before 'cols=2'; expected ',' between fields"),
    ("LOAD rows=1,, cols=2", "t.s:1:13: empty item between commas; expected field=value"),
    ("LOAD rows", "t.s:1:6: 'rows' is not field=value; expected field=value"),
    ("LOAD rows=", "t.s:1:11: missing value after 'rows='; expected a value"),
    ("LOAD rows=1, rows=2",
     "t.s:1:14: field 'rows' given twice (first at column 6); expected each field once"),
    ("LOAD wait.dma=16", "t.s:1:15: value 16 out of range for wait.dma; expected 0..15"),
    ("LOAD wait.cpu=1",
     "t.s:1:6: unknown field 'wait.cpu' for LOAD (did you mean 'wait.vpu'?); expected one of "
     "sram, hbm, rows, cols, hstride, sstride, batch, hbatch, sbatch, ra, rr, rc, transpose, "
     "wait.dma, wait.mpu, wait.vpu, wait.net"),
    ("LAYERNORM eps=0x3f800000",
     "t.s:1:15: '0x3f800000' is an integer literal in float field LAYERNORM.eps (f32, 32 bits); "
     "expected a float literal, or bits(0x3f800000) for a bit pattern"),
    ("LAYERNORM eps=1e39",
     "t.s:1:15: 1e39 is beyond the binary32 range for LAYERNORM.eps (f32, 32 bits); expected a "
     "magnitude below 3.4028235e38, or inf"),
    ("LAYERNORM eps=r1",
     "t.s:1:15: register r1 where a float is expected for LAYERNORM.eps (f32, 32 bits); expected "
     "a float literal"),
    ("MM mask=2", "t.s:1:9: value 2 out of range for MM.mask (flag, 1 bits); expected 0..1"),
    (".equ N, 4\n.equ N, 5",
     "t.s:2:6: constant 'N' already defined at line 1; expected a new name"),
    (".foo 1",
     "t.s:1:1: unknown directive '.foo'; expected one of .equ, .stream, .regs, .region, .meta"),
    ("LOAD rows=N", "t.s:1:11: undefined name 'N'; expected an integer or a .equ integer constant"),
    ("x: HALT\nLOAD rows=x",
     "t.s:2:11: label 'x' used outside a label field; expected an integer or a .equ integer "
     "constant"),
    ("LOAD rows=1.5",
     "t.s:1:11: float '1.5' where an integer is expected for LOAD.rows (uint, 16 bits); expected "
     "an integer"),
    ("LOAD rows=12abc",
     "t.s:1:11: malformed value '12abc'; expected an integer, a float, a register r0..r15, a "
     "label or a .equ name"),
    ("LOAD,rows=1",
     "t.s:1:5: unexpected ',' after 'LOAD'; expected a space and then field=value pairs"),
    ("SOFTMAX scale=bits(0x1ffffffff)",
     "t.s:1:15: bad bit pattern 'bits(0x1ffffffff)'; expected bits(0x00000000..0xffffffff)"),
    (".stream a\nHALT\n.stream b\nHALT",
     "t.s:3:1: a second stream 'b'; expected one stream (use assemble_program)"),
    (".region w, addr=0", "t.s:1:9: region 'w' has no nbytes; expected nbytes=..."),
    (".meta [1]", "t.s:1:7: the .meta value is not a JSON object; expected .meta {...}"),
    (".meta {bad",
     "t.s:1:8: bad JSON (Expecting property name enclosed in double quotes); expected "
     ".meta {\"key\": value, ...}"),
    ("  123", "t.s:1:3: unexpected '123'; expected a mnemonic, a directive or a label"),
    ("BNZ target=16777216",
     "t.s:1:12: value 16777216 out of range for BNZ.target (label, 24 bits); expected 0..16777215"),
    (".regs r1=0x100000000",
     "t.s:1:10: value 4294967296 does not fit a 32-bit register; expected "
     "-2147483648..4294967295"),
    (".equ r1, 5",
     "t.s:1:6: bad constant name 'r1'; expected an identifier that is not a register or "
     "inf/nan/bits"),
]


@pytest.mark.parametrize("source, message", ERRORS, ids=[m.split(": ")[1][:40] for _, m in ERRORS])
def test_assembler_errors(source, message):
    with pytest.raises(AsmError) as e:
        assemble(source, filename="t.s")
    assert str(e.value) == message
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ISAError)


def test_f32_near_the_largest_finite():
    # Short decimal forms of these round past the largest binary32; the printer must skip them.
    for bits in (0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFF0):
        assert assemble(f"SOFTMAX scale={format_f32(bits)}")[0]["scale"] == bits
