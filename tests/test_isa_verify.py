"""The static program verifier: each rule caught by a crafted program, and no crash on any op."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpgpt.config import load_preset
from fpgpt.isa import INSTRUCTIONS, Instr, Program, Region, Unit
from fpgpt.isa.asm import assemble
from fpgpt.isa.operands import has_operands
from fpgpt.isa.verify import ProgramError, verify_program

from test_isa_text import instructions

HW = load_preset("tiny")                 # one device
SRAM = HW.buffers.sram_elements
HBM = HW.hbm.capacity_bytes


def prog(text: str, **kw) -> Program:
    return Program({"main": assemble(text)}, **kw)


def fails(text: str, pattern: str, hw=HW, **kw) -> None:
    regions = kw.pop("regions", {})
    with pytest.raises(ProgramError, match=pattern):
        verify_program(prog(text, regions=regions), hw, **kw)


GOOD = """
    SETI rd=r3, imm=4
loop:
    LOAD sram=0, hbm=0, rows=4, cols=64, hstride=128, sstride=64, batch=1, ra=r1
    MM dst=512, a=0, b=256, m=1, k=64, n=4, lda=64, ldb=64, ldc=4, batch=1, rn=r1
    SOFTMAX dst=512, a=512, rows=1, cols=4, rc=r1, scale=0.125
    ARGMAX rd=r2, a=512, cols=4
    STR rs=r2, hbm=0x1000, ra=r4
    ADDI rd=r3, rs=r3, imm=-1
    BNZ rs=r3, target=loop
    HALT
"""


def test_good_program_passes():
    verify_program(prog(GOOD), HW)
    verify_program(prog(GOOD, regions={"w": Region("w", 0, 0x2000)}), HW,
                   max_regs={1: 60, 4: 100})


def test_every_instruction_has_operand_rules():
    assert all(has_operands(d.name) == (d.unit is not Unit.CTRL) for d in INSTRUCTIONS)


@settings(max_examples=150)
@given(instructions(ops=[d for d in INSTRUCTIONS if d.name not in ("BNZ", "HALT")]))
def test_any_instruction_verifies_or_fails_cleanly(ins):
    p = Program({"s": [ins, Instr.make("HALT")]}, {"r": Region("r", 64, 1 << 20)})
    try:
        verify_program(p, HW, max_regs={1: 5, 7: 0xFFFFFFFF})
    except ProgramError as e:
        assert re.match(r"stream 's', instruction 0 \(\w+\): .+; expected ", str(e))


def test_empty_stream():
    fails("", r"stream 'main' is empty; expected at least a HALT")


def test_branch_target_out_of_range():
    fails("BNZ rs=r1, target=5\nHALT",
          r"stream 'main', instruction 0 \(BNZ\): branch target 5 is outside the stream; "
          r"expected an instruction index 0..1")


def test_missing_halt():
    fails("SETI rd=r1, imm=1", r"instruction 0 \(SETI\): execution can run past the end")
    # The loop's exit falls through to NOP at the end.
    fails("l: ADDI rd=r3, rs=r3, imm=-1\nBNZ rs=r3, target=l\nNOP",
          r"instruction 2 \(NOP\): execution can run past the end of the stream \(reachable "
          r"from instruction 0\)")
    # Only reachable through a taken branch: the branch target's straight line has no HALT.
    fails("BNZ rs=r1, target=2\nHALT\nNOP", r"instruction 2 \(NOP\): .*reachable from "
                                            r"instruction 2")


def test_unreachable_tail_and_untaken_branch_are_fine():
    verify_program(prog("HALT\nNOP"), HW)
    verify_program(prog("BNZ rs=r0, target=2\nHALT\nNOP"), HW)   # BNZ r0 never jumps


def test_write_to_r0():
    fails("SETI rd=r0, imm=1\nHALT",
          r"instruction 0 \(SETI\): rd=r0, but R0 ignores writes; expected a register r1..r15")
    fails("NOP\nARGMAX a=0, cols=4\nHALT", r"instruction 1 \(ARGMAX\): rd=r0")


def test_zero_sizes():
    fails("LOAD rows=1, cols=8\nHALT", r"instruction 0 \(LOAD\): batch=0; expected batch >= 1")
    fails("MM m=1, k=8, n=0, batch=1\nHALT", r"\(MM\): n=0; expected n >= 1")
    fails("ALLREDUCE sram=0\nHALT", r"\(ALLREDUCE\): count=0; expected count >= 1")
    # A register may add to the size at run time: not statically zero.
    verify_program(prog("VADD rows=1, cols=0, rc=r5\nHALT"), HW)


def test_overlapping_destinations_only_downwards():
    """The VPU streams forward: an element-wise op's destination may overlap an operand from at
    or below it (in place; the compiler's in-place all-gather moves data down), never above."""
    verify_program(prog("VCOPY dst=832, a=896, rows=1, cols=384\nHALT"), HW)
    verify_program(prog("VCOPY dst=0, a=64, rows=1, cols=64\nHALT"), HW)      # disjoint
    fails("VCOPY dst=896, a=832, rows=1, cols=384\nHALT",
          r"instruction 0 \(VCOPY\): VCOPY's destination 896 starts inside its operand a "
          r"\[832, 1216\): the VPU streams forward")
    fails("VCOPY dst=4, a=0, rows=2, cols=8, lda=64, ldd=64\nHALT", r"inside its operand a")
    # rows side by side: each row's destination beside its own operand row, not inside it
    verify_program(prog("VCOPY dst=8, a=0, rows=4, cols=8, lda=16, ldd=16\nHALT"), HW)
    fails("VCOPY dst=8, a=0, rows=1, cols=0, rc=r1\nHALT", r"inside its operand a \[0, 20\)",
          max_regs={1: 20})
    verify_program(prog("VADD dst=0, a=0, b=0, rows=1, cols=64\nGELU dst=0, a=0, rows=1, "
                        "cols=64\nHALT"), HW)                                    # in place
    fails("VADD dst=100, a=0, b=96, rows=1, cols=64\nHALT", r"\(VADD\): VADD's destination 100 "
          r"starts inside its operand b \[96, 160\)")
    fails("GELU dst=1, a=0, rows=1, cols=8\nHALT", r"\(GELU\).*operand a \[0, 8\)")


def test_scratchpad_extent():
    fails(f"VCOPY dst={SRAM - 8}, a=0, rows=2, cols=8, ldd=8\nHALT",
          rf"instruction 0 \(VCOPY\): dst operand spans elements \[{SRAM - 8}, {SRAM + 8}\), "
          rf"beyond buffers.sram_elements = {SRAM}; expected")
    verify_program(prog(f"VCOPY dst={SRAM - 16}, a=0, rows=2, cols=8, ldd=8\nHALT"), HW)
    # Register-dependent size: fine without a hint, out of range with it.
    text = f"SOFTMAX dst={SRAM - 64}, rows=1, cols=1, rc=r1\nHALT"
    verify_program(prog(text), HW)
    fails(text, r"dst operand spans elements", max_regs={1: 64})


def test_mm_operand_extents():
    fails(f"MM dst=0, a={SRAM - 64}, b=0, m=2, k=64, n=1, lda=64, batch=1\nHALT",
          r"\(MM\): a operand spans elements")
    fails(f"MM dst=0, a=0, b=0, bias={SRAM - 1}, m=1, k=8, n=2, batch=1, has_bias=1\nHALT",
          r"\(MM\): bias operand spans elements")
    verify_program(prog(f"MM dst=0, a=0, b=0, bias={SRAM - 1}, m=1, k=8, n=2, batch=1\nHALT"), HW)


def test_hbm_capacity_and_transpose():
    fails(f"LOAD hbm={HBM - 64}, rows=1, cols=64, batch=1\nHALT",
          rf"\(LOAD\): hbm operand spans bytes \[{HBM - 64}, {HBM + 64}\), beyond "
          rf"hbm.capacity_bytes = {HBM}")
    # Transposed: rows step by 2 bytes, columns by hstride.
    verify_program(prog(f"LOAD hbm={HBM - 4096}, rows=64, cols=2, hstride=128, batch=1, "
                        f"transpose=1\nHALT"), HW)
    fails(f"LOAD hbm={HBM - 4096}, rows=64, cols=2, hstride=4096, batch=1, transpose=1\nHALT",
          r"hbm operand spans bytes")
    fails(f"STR rs=r2, hbm={HBM - 8}, ra=r4\nHALT", r"\(STR\): hbm operand", max_regs={4: 2})


def test_hbm_regions():
    regions = {"a": Region("a", 0, 256), "b": Region("b", 256, 256)}
    verify_program(prog("LOAD hbm=256, rows=1, cols=128, batch=1\nHALT", regions=regions), HW)
    fails("LOAD hbm=128, rows=1, cols=128, batch=1\nHALT",
          r"\(LOAD\): hbm operand spans HBM bytes \[128, 384\), which no region holds; "
          r"expected an access inside one region", regions=regions)
    fails("NOP\nGATHER sram=0, hbm=0, idx=600, rows=2, cols=8\nHALT",
          r"instruction 1 \(GATHER\): idx operand spans HBM bytes \[600, 608\)", regions=regions)


def test_allgather_uses_device_count():
    hw4 = load_preset("u280").replace(devices=4)
    n = hw4.buffers.sram_elements
    text = f"ALLGATHER sram={n - 4 * 100}, count=100\nHALT"
    verify_program(prog(text), hw4)
    fails(f"ALLGATHER sram={n - 4 * 100 + 1}, count=100\nHALT", r"sram operand spans", hw=hw4)


def test_send_needs_two_devices():
    fails("SEND sram=0, count=8\nHALT", r"\(SEND\): SEND needs a neighbouring device")


def test_earliest_problem_is_reported_and_streams_named():
    p = Program({"ok": assemble("HALT"),
                 "bad": assemble("NOP\nVADD cols=8, dst=0\nSETI rd=r0\nHALT")})
    with pytest.raises(ProgramError, match=r"^stream 'bad', instruction 1 \(VADD\)"):
        verify_program(p, HW)


def test_max_regs_is_checked():
    with pytest.raises(ValueError, match="max_regs key 0 is not a register 1..15"):
        verify_program(prog("HALT"), HW, max_regs={0: 1})
    with pytest.raises(ValueError, match=r"max_regs\[1\] = -1 is not a 32-bit unsigned value"):
        verify_program(prog("HALT"), HW, max_regs={1: -1})
