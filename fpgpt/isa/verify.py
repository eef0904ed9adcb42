"""Static checks of a Program against a HardwareConfig (the compiler runs them before and after
its pipeline; the simulator may run them before executing).

What is checked, per stream (each instruction's operands and sizes come from
fpgpt/isa/operands.py, the one definition of what instructions read and write):

- the stream is not empty, every branch target is an instruction of the stream, and no path
  from instruction 0 runs off the end without a HALT (BNZ falls through when not taken, so every
  reachable BNZ's successor is reachable; BNZ r0 is never taken);
- no instruction writes R0 (writes to R0 are dropped: such an instruction is a compiler bug);
- sizes are nonzero (``batch`` >= 1, ``rows``/``cols``/``m``/``k``/``n``/``count`` > 0 when no
  register adds to them);
- every scratchpad operand lies inside ``buffers.sram_elements``; every HBM access inside
  ``hbm.capacity_bytes`` and, when the program has regions, inside one region;
- SEND/RECV only on a ring of more than one device;
- an ARGMAX with ``cont = 1`` follows, among the VPU's instructions, an ARGMAX whose length is a
  fixed multiple of ``vpu.width`` (``rc = 0``): the VPU's lanes then see each element at its
  index in the whole run.

Register-dependent sizes and offsets use ``max_regs`` (register -> largest value it holds); a
register without a hint counts as 0, so the extent checked is then the smallest the instruction
can touch (still a necessary condition). The data-dependent rows of GATHER are checked from row 0.
"""

from __future__ import annotations

import bisect
from typing import Mapping

import numpy as np

from ..config import HardwareConfig
from .encoding import ISAError, Instr
from .operands import bounds, sizes
from .program import Program
from .table import BY_NAME, NUM_REGS, REG_BITS, Kind, Unit

__all__ = ["ProgramError", "verify_program", "verify_stream", "NEEDS_NEIGHBOUR"]


class ProgramError(ISAError):
    """A program that breaks a statically checkable rule; the message names stream, index, op."""


#: Instructions that talk to one neighbour and so need a ring of at least two devices.
NEEDS_NEIGHBOUR = ("SEND", "RECV")


def _group_checks(op: str, v: np.ndarray, reg_max: np.ndarray,
                  devices: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """Checks for the instructions of one opcode whose field values are the rows of ``v``.

    Returns ``(what, kind, x, y)``: kind "size" (effective size ``x``, mask ``y`` of those where it
    is certainly 0), "S" or "H" (an operand spanning ``[x, y)`` over every register value up to
    ``reg_max``). Values are float64: exact for integers below 2**53, and every limit checked is
    far below that, so an extent that rounds is beyond its limit either way.
    """
    d = BY_NAME[op]
    col = {f.name: v[:, k] for k, f in enumerate(d.fields)}
    regs = {f.name: reg_max[col[f.name].astype(np.int64)] for f in d.fields if f.kind is Kind.REG}
    out: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for imm, reg in sizes(op):
        if reg is None:
            out.append((imm, "size", col[imm], col[imm] == 0))
        else:
            out.append((imm, "size", col[imm] + regs[reg], (col[imm] == 0) & (col[reg] == 0)))
    flags = [f.name for f in d.fields if f.kind is Kind.FLAG]
    # Which operands exist depends on FLAG fields: evaluate each combination on its own rows.
    if flags:
        keys = v[:, [d.field_names.index(n) for n in flags]]
        combos, which = np.unique(keys, axis=0, return_inverse=True)
        which = which.reshape(-1)
    else:
        combos, which = np.zeros((1, 0)), np.zeros(len(v), dtype=np.int64)
    for c, combo in enumerate(combos):
        sel = np.flatnonzero(which == c) if len(combos) > 1 else slice(None)
        f_min = {n: x[sel] for n, x in col.items()}
        f_min.update({n: int(b) for n, b in zip(flags, combo)})
        f_max = dict(f_min, **{n: r[sel] for n, r in regs.items()})
        f_min.update({n: 0 for n in regs})
        for o, lo, hi in bounds(op, f_min, f_max, devices=devices):
            # Instructions of the other flag combinations read as NaN: no comparison holds.
            x, y = np.full(len(v), np.nan), np.full(len(v), np.nan)
            x[sel], y[sel] = lo, hi
            out.append((o.name, o.space, x, y))
    return out


def _argmax_runs(stream: list[Instr], ops: np.ndarray, width: int) -> list[tuple[int, str]]:
    """The first ARGMAX with ``cont = 1`` whose previous VPU instruction is not an ARGMAX it can
    continue (module docstring), as a ``(index, problem)`` list."""
    cont = [i for i in np.flatnonzero(ops == "ARGMAX").tolist() if stream[i]["cont"]]
    if not cont:
        return []
    vpu = [i for i, ins in enumerate(stream) if ins.definition.unit is Unit.VPU]
    for i in cont:
        k = bisect.bisect_left(vpu, i)
        prev = stream[vpu[k - 1]] if k else None
        if prev is None or prev.op != "ARGMAX":
            return [(i, "cont=1 but the previous VPU instruction is "
                        + (prev.op if prev else "none") + "; expected an ARGMAX to continue")]
        if prev["rc"] or prev["cols"] % width:
            return [(i, f"cont=1 continues an ARGMAX of cols={prev['cols']}, rc=r{prev['rc']}; "
                        f"expected rc=r0 and cols a multiple of vpu.width = {width}")]
    return []


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


def _overlaps_upwards(op, idx, v, d, reg_max) -> list[tuple[int, str]]:
    """An element-wise VPU instruction whose first destination row starts strictly inside its
    first row of an operand: the VPU engine reads each beat before it writes it and never reads
    late, so a row's destination may overlap its operand row only from at or below it (``dst <=
    a``: in place, or the compiler's in-place all-gather moves); fpgpt/hw/vpu_engine.py,
    "Aliasing contract" (its rule across rows, a row's destination against later rows'
    operands, is not checked here)."""
    col = {f.name: v[:, k] for k, f in enumerate(d.fields)}
    cols = col["cols"] + reg_max[col["rc"].astype(np.int64)]
    for a in d.streams:
        end = col[a] + cols
        bad = np.flatnonzero((col["dst"] > col[a]) & (col["dst"] < end))
        if len(bad):
            b = bad[0]
            return [(int(idx[b]), f"{op}'s destination {int(col['dst'][b])} starts inside its "
                                  f"operand {a} [{int(col[a][b])}, {int(end[b])}): the VPU "
                                  f"streams forward, so an overlapping destination must start "
                                  f"at or below the operand; expected dst <= {a} or a destination "
                                  f"past the operand's row")]
    return []


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
    problems += _argmax_runs(stream, ops, hw.vpu.width)
    for op in dict.fromkeys(ops.tolist()):
        idx = np.flatnonzero(ops == op)
        d = BY_NAME[op]
        v = np.array([[x for _, x in stream[i].args] for i in idx.tolist()],
                     dtype=np.float64).reshape(len(idx), len(d.fields))
        for k, f in enumerate(d.fields):
            if f.kind is Kind.REGW:
                bad = np.flatnonzero(v[:, k] == 0)
                if len(bad):
                    problems.append((int(idx[bad[0]]), f"{f.name}=r0, but R0 ignores writes; "
                                                       f"expected a register r1..r{NUM_REGS - 1}"))
        if d.streams:
            problems += _overlaps_upwards(op, idx, v, d, reg_max)
        if op in NEEDS_NEIGHBOUR and hw.devices < 2:
            problems.append((int(idx[0]), f"{op} needs a neighbouring device, but the hardware has "
                                          f"devices={hw.devices}; expected no {op} on one device"))
        for what, kind, x, y in _group_checks(op, v, reg_max, hw.devices):
            if kind == "size":
                bad = np.flatnonzero(y)
                if len(bad):
                    at = int(idx[bad[0]])
                    problems.append((at, f"{what}=0; expected {what} >= 1"))
                continue
            limit = sram_limit if kind == "S" else hbm_limit
            bad = np.flatnonzero(y > limit)
            if len(bad):
                b = bad[0]
                unit = "elements" if kind == "S" else "bytes"
                setting = ("buffers.sram_elements" if kind == "S" else "hbm.capacity_bytes")
                problems.append((int(idx[b]), f"{what} operand spans {unit} [{int(x[b])}, "
                                               f"{int(y[b])}), beyond {setting} = {limit}; expected "
                                               f"an address and size that fit"))
            if kind == "H" and regions:
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
