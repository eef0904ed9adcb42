"""The instruction table: the single definition of every fpgpt instruction.

Encoder, decoder, assembler, disassembler, docs/isa.md, the simulator's dispatch and the RTL
decoder's field layout are all derived from :data:`INSTRUCTIONS`. Nothing else may state an
opcode, a field name or a field width.

Word layout (512 bits, little-endian bit order, LSB first)::

    [0, 8)    opcode
    [8, 24)   wait.dma, wait.mpu, wait.vpu, wait.net   (4 bits each, see docs/isa.md "Dependencies")
    [24, ...) the instruction's own fields, in table order, each at its stated width
    rest      zero

Notation in the semantics: ``S[e]`` is scratchpad FP16 element ``e``; ``H16[b]`` / ``I32[b]`` the
FP16 / int32 at HBM byte address ``b``; ``R[i]`` register ``i`` (32-bit, ``R[0]`` is always 0);
``f32``/``f16`` the conversions and arithmetic of docs/numerics.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Unit", "Kind", "Field", "InstrDef", "INSTRUCTIONS", "BY_NAME", "BY_OPCODE",
           "WORD_BITS", "WORD_BYTES", "OPCODE_BITS", "WAIT_BITS", "WAIT_UNITS", "HEADER_BITS",
           "NUM_REGS", "REG_BITS"]

WORD_BITS = 512
WORD_BYTES = WORD_BITS // 8
OPCODE_BITS = 8
WAIT_BITS = 4
NUM_REGS = 16
REG_BITS = 32


class Unit(enum.Enum):
    """Which unit executes an instruction. CTRL instructions execute in the dispatcher."""
    DMA = "dma"
    MPU = "mpu"
    VPU = "vpu"
    NET = "net"
    CTRL = "ctrl"


#: Units an instruction can wait on, in header order.
WAIT_UNITS: tuple[Unit, ...] = (Unit.DMA, Unit.MPU, Unit.VPU, Unit.NET)
HEADER_BITS = OPCODE_BITS + WAIT_BITS * len(WAIT_UNITS)


class Kind(enum.Enum):
    """How a field's bits are read."""
    UINT = "uint"      # unsigned integer (addresses, sizes, strides)
    SINT = "sint"      # two's-complement integer
    REG = "reg"        # register number read by the instruction (captured at dispatch)
    REGW = "regw"      # register number written by the instruction
    FLAG = "flag"      # one bit
    F32 = "f32"        # IEEE binary32 bit pattern (a float in assembly)
    LABEL = "label"    # instruction index in the same stream (a label in assembly)


@dataclass(frozen=True)
class Field:
    name: str
    bits: int
    kind: Kind
    doc: str

    @property
    def max_value(self) -> int:
        return (1 << self.bits) - 1


@dataclass(frozen=True)
class InstrDef:
    name: str
    opcode: int
    unit: Unit
    fields: tuple[Field, ...]
    doc: str
    #: Row operands an element-wise VPU op streams beat by beat (fpgpt/hw/vpu_engine.py reads
    #: each beat before it writes it and never reads late): a destination row that overlaps
    #: one of them must start at or below it (:data:`STREAM_RULE`; fpgpt/isa/verify.py checks it).
    streams: tuple[str, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def layout(self) -> tuple[tuple[Field, int], ...]:
        """Each field with its bit offset in the word."""
        out, pos = [], HEADER_BITS
        for f in self.fields:
            out.append((f, pos))
            pos += f.bits
        return tuple(out)

    @property
    def reads_regs(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.kind is Kind.REG)

    @property
    def writes_regs(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.kind is Kind.REGW)


#: The aliasing rule of the ops with ``streams``, as their documentation states it.
STREAM_RULE = "(a destination overlapping an operand must start at or below it)"


def _u(name: str, bits: int, doc: str) -> Field:
    return Field(name, bits, Kind.UINT, doc)


def _r(name: str, doc: str) -> Field:
    return Field(name, 4, Kind.REG, doc)


# Shared field definitions (each defined once, used by several instructions).
SRAM = _u("sram", 32, "scratchpad element address")
DST = _u("dst", 32, "scratchpad element address of the result")
A = _u("a", 32, "scratchpad element address of operand A")
B = _u("b", 32, "scratchpad element address of operand B")
HBM = _u("hbm", 40, "HBM byte address")
ROWS = _u("rows", 16, "rows per matrix (plus R[rr] where the instruction has rr)")
COLS = _u("cols", 16, "elements per row (plus R[rc] where the instruction has rc)")
HSTRIDE = _u("hstride", 32, "HBM bytes between consecutive rows")
SSTRIDE = _u("sstride", 32, "scratchpad elements between consecutive rows")
BATCH = _u("batch", 8, "number of matrices (>= 1)")
HBATCH = _u("hbatch", 32, "HBM bytes between consecutive matrices")
SBATCH = _u("sbatch", 32, "scratchpad elements between consecutive matrices")
RA = _r("ra", "row offset: the tile's row r is HBM row r + R[ra]")
RR = _r("rr", "rows += R[rr]")
RC = _r("rc", "cols += R[rc]")
TRANSPOSE = Field("transpose", 1, Kind.FLAG, "HBM holds the tile transposed (row r is HBM column r)")
LDD = _u("ldd", 32, "scratchpad elements between rows of the result")
LDA = _u("lda", 32, "scratchpad elements between rows of A")
LDB = _u("ldb", 32, "scratchpad elements between rows of B (0 broadcasts B's first row)")
NET_COUNT = _u("count", 32, "elements")
NET_DIR = Field("prev", 1, Kind.FLAG, "direction of travel: 0 = ring direction (SEND to d+1, RECV from d-1), 1 = reverse")

_DMA_2D = (SRAM, HBM, ROWS, COLS, HSTRIDE, SSTRIDE, BATCH, HBATCH, SBATCH, RA, RR, RC, TRANSPOSE)
_VPU_2D = (ROWS, COLS, LDD, LDA)

INSTRUCTIONS: tuple[InstrDef, ...] = (
    # ---------------------------------------------------------------- CTRL (dispatcher)
    InstrDef("NOP", 0x00, Unit.CTRL, (), "Does nothing (its waits still apply)."),
    InstrDef("HALT", 0x01, Unit.CTRL, (),
             "Stops fetching; the run is done when every unit has drained."),
    InstrDef("SYNC", 0x02, Unit.CTRL, (),
             "Dispatch stalls until every unit has completed every instruction dispatched before."),
    InstrDef("SETI", 0x03, Unit.CTRL,
             (Field("rd", 4, Kind.REGW, "register written"),
              Field("imm", 32, Kind.SINT, "value")),
             "R[rd] = imm"),
    InstrDef("ADDI", 0x04, Unit.CTRL,
             (Field("rd", 4, Kind.REGW, "register written"), _r("rs", "register read"),
              Field("imm", 32, Kind.SINT, "addend")),
             "R[rd] = (R[rs] + imm) mod 2**32"),
    InstrDef("BNZ", 0x05, Unit.CTRL,
             (_r("rs", "register tested"), Field("target", 24, Kind.LABEL, "instruction index")),
             "if R[rs] != 0: pc = target"),
    # ---------------------------------------------------------------- DMA
    InstrDef("LOAD", 0x10, Unit.DMA, _DMA_2D,
             "HBM to scratchpad, strided, batched, optionally transposed:\n"
             "for b in range(batch):\n"
             "  for r in range(rows + R[rr]):\n"
             "    for c in range(cols + R[rc]):\n"
             "      h = hbm + b*hbatch + (c*hstride + 2*(r + R[ra]) if transpose\n"
             "                            else (r + R[ra])*hstride + 2*c)\n"
             "      S[sram + b*sbatch + r*sstride + c] = H16[h]"),
    InstrDef("STORE", 0x11, Unit.DMA, _DMA_2D,
             "Scratchpad to HBM; the same addressing as LOAD with the copy reversed:\n"
             "      H16[h] = S[sram + b*sbatch + r*sstride + c]"),
    InstrDef("GATHER", 0x12, Unit.DMA,
             (SRAM, HBM, _u("idx", 40, "HBM byte address of the int32 row indices"), ROWS, COLS,
              HSTRIDE, SSTRIDE, _r("ra", "index offset: row r uses index r + R[ra]"), RR),
             "Rows of an HBM table picked by an index vector in HBM (embedding gather):\n"
             "for r in range(rows + R[rr]):\n"
             "  t = I32[idx + 4*(r + R[ra])]\n"
             "  for c in range(cols):\n"
             "    S[sram + r*sstride + c] = H16[hbm + t*hstride + 2*c]"),
    InstrDef("STR", 0x13, Unit.DMA,
             (_r("rs", "register stored"), HBM, _r("ra", "element offset register")),
             "I32[hbm + 4*R[ra]] = R[rs]   (the generated token, for the host)"),
    # ---------------------------------------------------------------- MPU
    InstrDef("MM", 0x20, Unit.MPU,
             (DST, A, B, _u("bias", 32, "scratchpad element address of the bias row"),
              _u("m", 16, "rows of A and C"), _u("k", 16, "reduction length (plus R[rk])"),
              _u("n", 16, "rows of B = columns of C (plus R[rn])"),
              LDA, _u("ldb", 32, "scratchpad elements between rows of B"),
              _u("ldc", 32, "scratchpad elements between rows of C"), BATCH,
              _u("bsa", 32, "elements between matrices of A"),
              _u("bsb", 32, "elements between matrices of B"),
              _u("bsc", 32, "elements between matrices of C"),
              _r("rk", "k += R[rk]"), _r("rn", "n += R[rn]; also the causal-mask offset"),
              Field("has_bias", 1, Kind.FLAG, "add bias[n] before rounding"),
              Field("mask", 1, Kind.FLAG, "causal mask: C[m][n] = -inf where n > m + R[rn]")),
             "Matrix times transposed matrix, FP32 accumulation (docs/numerics.md, mpu_dot):\n"
             "for bt in range(batch):\n"
             "  for i in range(m):\n"
             "    for j in range(n + R[rn]):\n"
             "      acc = mpu_dot(S[a + bt*bsa + i*lda : +k+R[rk]], S[b + bt*bsb + j*ldb : +k+R[rk]])\n"
             "      if has_bias: acc = f32_add(acc, f32(S[bias + j]))\n"
             "      v = f16(acc)\n"
             "      if mask and j > i + R[rn]: v = -inf\n"
             "      S[dst + bt*bsc + i*ldc + j] = v"),
    # ---------------------------------------------------------------- VPU
    InstrDef("VADD", 0x30, Unit.VPU, (DST, A, B) + _VPU_2D + (LDB, RC),
             "for r in range(rows): for c in range(cols + R[rc]):\n"
             "  S[dst + r*ldd + c] = f16(f32(S[a + r*lda + c]) + f32(S[b + r*ldb + c]))\n"
             + STREAM_RULE, streams=("a", "b")),
    InstrDef("VMUL", 0x31, Unit.VPU, (DST, A, B) + _VPU_2D + (LDB, RC),
             "for r in range(rows): for c in range(cols + R[rc]):\n"
             "  S[dst + r*ldd + c] = f16(f32(S[a + r*lda + c]) * f32(S[b + r*ldb + c]))\n"
             + STREAM_RULE, streams=("a", "b")),
    InstrDef("GELU", 0x32, Unit.VPU, (DST, A) + _VPU_2D + (RC,),
             "for r in range(rows): for c in range(cols + R[rc]):\n"
             "  S[dst + r*ldd + c] = f16(gelu(f32(S[a + r*lda + c])))   (numerics.md, tanh form)\n"
             + STREAM_RULE, streams=("a",)),
    InstrDef("LAYERNORM", 0x33, Unit.VPU,
             (DST, A, _u("gamma", 32, "scratchpad address of the scale row"),
              _u("beta", 32, "scratchpad address of the shift row")) + _VPU_2D
             + (Field("eps", 32, Kind.F32, "epsilon added to the variance"),),
             "for r in range(rows):\n"
             "  S[dst + r*ldd : +cols] = f16(layernorm(f32(S[a + r*lda : +cols]), gamma, beta, eps))"),
    InstrDef("SOFTMAX", 0x34, Unit.VPU,
             (DST, A) + _VPU_2D + (RC, Field("scale", 32, Kind.F32, "multiplies the inputs first")),
             "for r in range(rows):\n"
             "  x = f32(S[a + r*lda : +cols + R[rc]]) * scale\n"
             "  S[dst + r*ldd : +cols + R[rc]] = f16(softmax(x))   (numerics.md)"),
    InstrDef("ARGMAX", 0x35, Unit.VPU,
             (Field("rd", 4, Kind.REGW, "register written"), A, COLS, RC,
              Field("cont", 1, Kind.FLAG, "continue the previous VPU instruction, an ARGMAX of "
                    "a multiple of vpu.width elements with rc = 0")),
             "x = S[a : a + cols + R[rc]]\n"
             "cont = 0: R[rd] = the first index of the largest of x (NaN never wins; all NaN: 0)\n"
             "cont = 1: x follows the elements of the ARGMAX this one continues (and of those it\n"
             "  continued): R[rd] = the first index of the largest of them all, counted from the\n"
             "  first one's a (an LM head's logits reduced chunk by chunk as they are made)"),
    InstrDef("VCOPY", 0x36, Unit.VPU, (DST, A) + _VPU_2D + (RC,),
             "for r in range(rows): for c in range(cols + R[rc]):\n"
             "  S[dst + r*ldd + c] = S[a + r*lda + c]\n"
             + STREAM_RULE, streams=("a",)),
    # ---------------------------------------------------------------- NET
    InstrDef("SEND", 0x40, Unit.NET, (SRAM, NET_COUNT, NET_DIR),
             "Sends S[sram : sram + count] to the neighbouring device."),
    InstrDef("RECV", 0x41, Unit.NET, (SRAM, NET_COUNT, NET_DIR),
             "Receives count elements from the neighbouring device into S[sram : sram + count]."),
    InstrDef("ALLGATHER", 0x42, Unit.NET,
             (SRAM, NET_COUNT),
             "On D devices, device d holds its chunk at S[sram + d*count : +count]; afterwards every\n"
             "device holds all D chunks there (ring, both directions: ceil((D-1)/2) steps)."),
    InstrDef("ALLREDUCE", 0x43, Unit.NET,
             (SRAM, NET_COUNT),
             "S[sram : sram + count] = f16(sum over devices d = 0..D-1, in that order, of f32(S_d[...]))"),
)

BY_NAME: dict[str, InstrDef] = {i.name: i for i in INSTRUCTIONS}
BY_OPCODE: dict[int, InstrDef] = {i.opcode: i for i in INSTRUCTIONS}


def _check_table() -> None:
    assert len(BY_NAME) == len(INSTRUCTIONS), "duplicate mnemonic"
    assert len(BY_OPCODE) == len(INSTRUCTIONS), "duplicate opcode"
    for i in INSTRUCTIONS:
        assert 0 <= i.opcode < (1 << OPCODE_BITS)
        names = i.field_names
        assert len(set(names)) == len(names), f"{i.name}: duplicate field"
        used = HEADER_BITS + sum(f.bits for f in i.fields)
        assert used <= WORD_BITS, f"{i.name}: {used} bits do not fit in {WORD_BITS}"
        for f in i.fields:
            if f.kind in (Kind.REG, Kind.REGW):
                assert f.bits == 4
            if f.kind is Kind.FLAG:
                assert f.bits == 1
            if f.kind is Kind.F32:
                assert f.bits == 32


_check_table()
