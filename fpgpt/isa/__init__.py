"""The fpgpt instruction set: one table, and everything derived from it."""

from .table import (BY_NAME, BY_OPCODE, INSTRUCTIONS, NUM_REGS, WAIT_UNITS, WORD_BYTES, Field,
                    InstrDef, Kind, Unit)
from .encoding import ISAError, Instr, decode, decode_many, encode, encode_many
from .program import Program, Region
from .asm import AsmError, assemble, assemble_file, assemble_program
from .disasm import disassemble, format_instr, format_program
from .verify import ProgramError, verify_program

__all__ = ["BY_NAME", "BY_OPCODE", "INSTRUCTIONS", "NUM_REGS", "WAIT_UNITS", "WORD_BYTES", "Field",
           "InstrDef", "Kind", "Unit", "ISAError", "Instr", "decode", "decode_many", "encode",
           "encode_many", "Program", "Region", "AsmError", "assemble", "assemble_file",
           "assemble_program", "disassemble", "format_instr", "format_program", "ProgramError",
           "verify_program"]
