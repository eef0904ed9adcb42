"""Static checks of a Program against a HardwareConfig (the compiler runs them before and after
its pipeline; the simulator may run them before executing).

What is checked, per stream (docs/isa.md gives each instruction's addressing):

- the stream is not empty, every branch target is an instruction of the stream, and no path
  from instruction 0 runs off the end without a HALT (BNZ falls through when not taken, so every
  reachable BNZ's successor is reachable; BNZ r0 is never taken);
- no instruction writes R0 (writes to R0 are dropped: such an instruction is a compiler bug);
- sizes are nonzero (``batch`` >= 1, ``rows``/``cols``/``m``/``k``/``n``/``count`` > 0 when no
  register adds to them);
- every scratchpad operand lies inside ``buffers.sram_elements``; every HBM access inside
  ``hbm.capacity_bytes`` and, when the program has regions, inside one region;
- SEND/RECV only on a ring of more than one device.

Register-dependent sizes and offsets use ``max_regs`` (register -> largest value it holds); a
register without a hint counts as 0, so the extent checked is then the smallest the instruction
can touch (still a necessary condition). The data-dependent rows of GATHER are checked from row 0.
"""

from __future__ import annotations

import bisect
from typing import Callable, Mapping

import numpy as np

from ..config import HardwareConfig
from .encoding import ISAError, Instr
from .program import Program
from .table import BY_NAME, NUM_REGS, REG_BITS, Kind

__all__ = ["ProgramError", "verify_program", "verify_stream", "OPERANDS", "NEEDS_NEIGHBOUR"]


class ProgramError(ISAError):
    """A program that breaks a statically checkable rule; the message names stream, index, op."""


class _Group:
    """The field values of every instruction of one opcode in a stream, as float64 columns.

    float64 is exact for integers below 2**53, and every limit checked is far below that, so an
    extent that rounds is beyond its limit either way.
    """

    def __init__(self, op: str, rows: list[tuple[int, ...]], reg_max: np.ndarray) -> None:
        d = BY_NAME[op]
        self.col = {f.name: k for k, f in enumerate(d.fields)}
        self.v = np.array(rows, dtype=np.float64).reshape(len(rows), len(d.fields))
        self.reg_max = reg_max

    def __getitem__(self, name: str) -> np.ndarray:
        return self.v[:, self.col[name]]

    def reg(self, name: str) -> np.ndarray:
        """Largest value of the register a REG field names (0 without a hint, R0 is 0)."""
        return self.reg_max[self[name].astype(np.int64)]

    def size(self, imm: str, reg: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(largest effective size, mask of instructions where it is certainly 0)."""
        if reg is None:
            return self[imm], self[imm] == 0
        return self[imm] + self.reg(reg), (self[imm] == 0) & (self[reg] == 0)


# An operand check: (what, kind, values). kind "size": values is (effective, zero-mask);
# "sram": (start, end) element addresses; "hbm": (start, end) byte addresses.
_Check = tuple[str, str, tuple[np.ndarray, np.ndarray]]


def _span(n: np.ndarray, stride: np.ndarray) -> np.ndarray:
    """Distance from the first to the last of n items ``stride`` apart (0 when n is 0)."""
    return np.maximum(n - 1, 0) * stride


def _dma_2d(g: _Group) -> list[_Check]:
    rows, rz = g.size("rows", "rr")
    cols, cz = g.size("cols", "rc")
    batch, bz = g.size("batch")
    ra = g.reg("ra")
    sram_end = g["sram"] + _span(batch, g["sbatch"]) + _span(rows, g["sstride"]) + cols
    row_end = ra + np.maximum(rows, 1)
    plain = _span(row_end, g["hstride"]) + 2 * cols
    transposed = _span(cols, g["hstride"]) + 2 * row_end
    hbm_end = g["hbm"] + _span(batch, g["hbatch"]) + np.where(g["transpose"] > 0, transposed, plain)
    return [("batch", "size", (batch, bz)), ("rows", "size", (rows, rz)),
            ("cols", "size", (cols, cz)), ("sram", "sram", (g["sram"], sram_end)),
            ("hbm", "hbm", (g["hbm"], hbm_end))]


def _gather(g: _Group) -> list[_Check]:
    rows, rz = g.size("rows", "rr")
    cols, cz = g.size("cols")
    sram_end = g["sram"] + _span(rows, g["sstride"]) + cols
    idx_end = g["idx"] + 4 * (g.reg("ra") + rows)
    return [("rows", "size", (rows, rz)), ("cols", "size", (cols, cz)),
            ("sram", "sram", (g["sram"], sram_end)), ("idx", "hbm", (g["idx"], idx_end)),
            ("hbm", "hbm", (g["hbm"], g["hbm"] + 2 * cols))]


def _str(g: _Group) -> list[_Check]:
    return [("hbm", "hbm", (g["hbm"], g["hbm"] + 4 * g.reg("ra") + 4))]


def _mm(g: _Group) -> list[_Check]:
    batch, bz = g.size("batch")
    m, mz = g.size("m")
    k, kz = g.size("k", "rk")
    n, nz = g.size("n", "rn")
    a_end = g["a"] + _span(batch, g["bsa"]) + _span(m, g["lda"]) + k
    b_end = g["b"] + _span(batch, g["bsb"]) + _span(n, g["ldb"]) + k
    c_end = g["dst"] + _span(batch, g["bsc"]) + _span(m, g["ldc"]) + n
    bias_end = np.where(g["has_bias"] > 0, g["bias"] + n, 0)
    return [("batch", "size", (batch, bz)), ("m", "size", (m, mz)), ("k", "size", (k, kz)),
            ("n", "size", (n, nz)), ("a", "sram", (g["a"], a_end)),
            ("b", "sram", (g["b"], b_end)), ("dst", "sram", (g["dst"], c_end)),
            ("bias", "sram", (g["bias"], bias_end))]


def _vpu(operands: tuple[tuple[str, str], ...], reg: str | None,
         rows_extra: tuple[str, ...] = ()) -> Callable[[_Group], list[_Check]]:
    """Checks for a VPU op whose operands are (address field, row stride field) pairs over
    rows x cols (+ R[reg]); ``rows_extra`` are one-row operands of length cols (gamma, beta)."""
    def check(g: _Group) -> list[_Check]:
        cols, cz = g.size("cols", reg)
        rows, rz = g.size("rows")
        out: list[_Check] = [("rows", "size", (rows, rz)), ("cols", "size", (cols, cz))]
        for addr, ld in operands:
            out.append((addr, "sram", (g[addr], g[addr] + _span(rows, g[ld]) + cols)))
        for addr in rows_extra:
            out.append((addr, "sram", (g[addr], g[addr] + cols)))
        return out
    return check


def _net(g: _Group, devices: int, gather: bool) -> list[_Check]:
    count, cz = g.size("count")
    end = g["sram"] + count * (devices if gather else 1)
    return [("count", "size", (count, cz)), ("sram", "sram", (g["sram"], end))]


def _argmax(g: _Group) -> list[_Check]:
    cols, cz = g.size("cols", "rc")
    return [("cols", "size", (cols, cz)), ("a", "sram", (g["a"], g["a"] + cols))]


_VADD = _vpu((("dst", "ldd"), ("a", "lda"), ("b", "ldb")), "rc")
_UNARY = _vpu((("dst", "ldd"), ("a", "lda")), "rc")
_LAYERNORM = _vpu((("dst", "ldd"), ("a", "lda")), None, rows_extra=("gamma", "beta"))

#: Operand checks per mnemonic; every instruction of the table has an entry (a test holds it).
OPERANDS: dict[str, Callable[[_Group, HardwareConfig], list[_Check]]] = {
    "NOP": lambda g, hw: [], "HALT": lambda g, hw: [], "SYNC": lambda g, hw: [],
    "SETI": lambda g, hw: [], "ADDI": lambda g, hw: [], "BNZ": lambda g, hw: [],
    "LOAD": lambda g, hw: _dma_2d(g), "STORE": lambda g, hw: _dma_2d(g),
    "GATHER": lambda g, hw: _gather(g), "STR": lambda g, hw: _str(g),
    "MM": lambda g, hw: _mm(g),
    "VADD": lambda g, hw: _VADD(g), "VMUL": lambda g, hw: _VADD(g),
    "GELU": lambda g, hw: _UNARY(g), "VCOPY": lambda g, hw: _UNARY(g),
    "LAYERNORM": lambda g, hw: _LAYERNORM(g),
    "SOFTMAX": lambda g, hw: _UNARY(g),
    "ARGMAX": lambda g, hw: _argmax(g),
    "SEND": lambda g, hw: _net(g, hw.devices, False), "RECV": lambda g, hw: _net(g, hw.devices, False),
    "ALLGATHER": lambda g, hw: _net(g, hw.devices, True),
    "ALLREDUCE": lambda g, hw: _net(g, hw.devices, False),
}
#: Instructions that talk to one neighbour and so need a ring of at least two devices.
NEEDS_NEIGHBOUR = ("SEND", "RECV")


def _fail(stream: str, index: int, ins: Instr, problem: str) -> ProgramError:
    return ProgramError(f"stream {stream!r}, instruction {index} ({ins.op}): {problem}")


def _check_flow(name: str, stream: list[Instr], ops: np.ndarray) -> None:
    n = len(stream)
    if n == 0:
        raise ProgramError(f"stream {name!r} is empty; expected at least a HALT")
    halts = np.flatnonzero(ops == "HALT").tolist()
    branches = []                       # (index, target) of every BNZ that can be taken
    for i in np.flatnonzero(ops == "BNZ").tolist():
        ins = stream[i]
        t = ins["target"]
        if t >= n:
            raise _fail(name, i, ins, f"branch target {t} is outside the stream; expected an "
                                      f"instruction index 0..{n - 1}")
        if ins["rs"]:
            branches.append((i, t))
    b_pos = [i for i, _ in branches]
    # Straight-line code from a start s runs to the first HALT at or after s; a taken BNZ inside
    # that run adds its target as a new start. Per HALT segment only the smallest start matters.
    lowest: dict[int, int] = {}
    work = [0]
    while work:
        s = work.pop()
        k = bisect.bisect_left(halts, s)
        if k in lowest and lowest[k] <= s:
            continue
        end = halts[k] if k < len(halts) else n - 1
        hi_prev = lowest.get(k, end + 1)
        lowest[k] = s
        if k == len(halts):
            raise _fail(name, n - 1, stream[n - 1],
                        f"execution can run past the end of the stream (reachable from "
                        f"instruction {s}); expected the stream to end in HALT")
        for j in range(bisect.bisect_left(b_pos, s), bisect.bisect_left(b_pos, hi_prev)):
            work.append(branches[j][1])


def verify_stream(name: str, stream: list[Instr], hw: HardwareConfig, *,
                  regions: list[tuple[int, int]] | None = None,
                  max_regs: Mapping[int, int] | None = None) -> None:
    """Check one stream; see :func:`verify_program` (``regions`` are (start, end) byte ranges)."""
    ops = np.array([ins.op for ins in stream], dtype=object)
    _check_flow(name, stream, ops)
    reg_max = np.zeros(NUM_REGS)
    for r, v in (max_regs or {}).items():
        reg_max[r] = v
    reg_max[0] = 0
    sram_limit = hw.buffers.sram_elements
    hbm_limit = hw.hbm.capacity_bytes
    if regions:
        order = sorted(regions)
        r_start = np.array([a for a, _ in order], dtype=np.float64)
        r_reach = np.maximum.accumulate(np.array([e for _, e in order], dtype=np.float64))
    problems: list[tuple[int, str]] = []   # the first problem of each check; the earliest wins
    for op in dict.fromkeys(ops.tolist()):
        idx = np.flatnonzero(ops == op)
        d = BY_NAME[op]
        g = _Group(op, [tuple(v for _, v in stream[i].args) for i in idx.tolist()], reg_max)
        for f in d.fields:
            if f.kind is Kind.REGW:
                bad = np.flatnonzero(g[f.name] == 0)
                if len(bad):
                    problems.append((int(idx[bad[0]]), f"{f.name}=r0, but R0 ignores writes; "
                                                       f"expected a register r1..r{NUM_REGS - 1}"))
        if op in NEEDS_NEIGHBOUR and hw.devices < 2:
            problems.append((int(idx[0]), f"{op} needs a neighbouring device, but the hardware has "
                                          f"devices={hw.devices}; expected no {op} on one device"))
        for what, kind, (x, y) in OPERANDS[op](g, hw):
            if kind == "size":
                bad = np.flatnonzero(y)
                if len(bad):
                    at = int(idx[bad[0]])
                    problems.append((at, f"{what}=0; expected {what} >= 1"))
                continue
            limit = sram_limit if kind == "sram" else hbm_limit
            bad = np.flatnonzero(y > limit)
            if len(bad):
                b = bad[0]
                unit = "elements" if kind == "sram" else "bytes"
                setting = ("buffers.sram_elements" if kind == "sram" else "hbm.capacity_bytes")
                problems.append((int(idx[b]), f"{what} operand spans {unit} [{int(x[b])}, "
                                               f"{int(y[b])}), beyond {setting} = {limit}; expected "
                                               f"an address and size that fit"))
            if kind == "hbm" and regions:
                k = np.searchsorted(r_start, x, side="right") - 1
                inside = (k >= 0) & (r_reach[np.maximum(k, 0)] >= y)
                bad = np.flatnonzero(~inside & (y > x))
                if len(bad):
                    b = bad[0]
                    problems.append((int(idx[b]), f"{what} operand spans HBM bytes [{int(x[b])}, "
                                                   f"{int(y[b])}), which no region holds; expected "
                                                   f"an access inside one region"))
    if problems:
        at, problem = min(problems, key=lambda p: p[0])
        raise _fail(name, at, stream[at], problem)


def verify_program(program: Program, hw: HardwareConfig, *,
                   max_regs: Mapping[int, int] | None = None) -> None:
    """Check the statically checkable rules of a program on a hardware configuration.

    Parameters
    ----------
    program
        The program; every stream is checked, regions (when there are any) bound HBM accesses.
    hw
        The hardware the program is meant for (scratchpad and HBM sizes, device count).
    max_regs
        Largest value each register can hold while the program runs, ``{register: value}``;
        registers not given count as 0, so their extents are checked from below only.

    Raises
    ------
    ProgramError
        The earliest problem of the first failing stream, naming stream, instruction index,
        mnemonic and the fix.
    ValueError
        ``max_regs`` names a register outside 1..15 or a value outside 32 bits.
    """
    for r, v in (max_regs or {}).items():
        if not (isinstance(r, int) and 1 <= r < NUM_REGS):
            raise ValueError(f"max_regs key {r!r} is not a register 1..{NUM_REGS - 1}")
        if not (isinstance(v, int) and 0 <= v < (1 << REG_BITS)):
            raise ValueError(f"max_regs[{r}] = {v!r} is not a 32-bit unsigned value")
    regions = [(r.addr, r.end) for r in program.regions.values()] or None
    for name, stream in program.streams.items():
        verify_stream(name, stream, hw, regions=regions, max_regs=max_regs)
