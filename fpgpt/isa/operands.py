"""The memory operands of every instruction: the one definition of what each one reads and writes.

Derived from the semantics in :mod:`fpgpt.isa.table`; the static verifier (fpgpt/isa/verify.py),
the timing model's hazard check (fpgpt/sim/hazards.py) and the compiler's dependency tracking
(fpgpt/compiler/schedule.py) all read :func:`operands` and nothing else.

An operand is a strided box (:class:`Operand`): ``batch`` blocks ``batch_stride`` apart, each of
``rows`` rows ``row_stride`` apart, each row ``length`` contiguous units (scratchpad elements in
space ``"S"``, HBM bytes in space ``"H"``).

:func:`operands` takes the instruction's field values with REG fields already replaced by
register values (what fpgpt.sim.control.capture produces). Every value may also be a numpy
array (one entry per instruction, FLAG fields excepted: they must be scalars), so that a whole
group of instructions is evaluated at once; the arithmetic is only ``+``, ``*`` and a maximum.

Which operands an instruction has depends only on its mnemonic, its FLAG fields and the device
count, never on sizes or registers, so evaluations at different register values line up one to
one (:func:`bounds` relies on it).

GATHER's table rows are data (the indices): its table operand is marked ``data_dependent`` and
assumes row ``r`` reads table row ``r + R[ra]`` (what the timing model charges and the hazard
check compares); :func:`bounds` keeps only the table's first row, which is all that can be
checked statically.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from .table import INSTRUCTIONS, Unit

__all__ = ["Operand", "operands", "bounds", "sizes", "has_operands"]

# An int, or a numpy array of them (float64 columns in the verifier).
Value = Any


def _max(x: Value, y: int) -> Value:
    """The larger of ``x`` (an int or an array) and the constant ``y``."""
    if x.__class__ is int:      # the per-instruction path: keep it cheap
        return x if x > y else y
    return np.maximum(x, y)


def _span(n: Value, stride: Value) -> Value:
    """Distance from the first to the last of ``n`` items ``stride`` apart (0 when n is 0)."""
    return _max(n - 1, 0) * stride


class Operand(NamedTuple):
    """One strided box of memory an instruction reads or writes (immutable; a NamedTuple rather
    than a frozen dataclass because the compiler builds one per operand of every instruction,
    and a frozen dataclass takes several times longer to construct).

    Attributes
    ----------
    name : str
        The field that addresses it (``"sram"``, ``"hbm"``, ``"a"``, ``"dst"``...).
    space : str
        ``"S"``: scratchpad FP16 elements; ``"H"``: HBM bytes.
    write : bool
        Written (True) or read (False).
    base, rows, row_stride, batch, batch_stride, length
        Row ``r`` of block ``b`` covers ``[base + b*batch_stride + r*row_stride, +length)``.
    data_dependent : bool
        The rows stand for data-dependent ones (GATHER's table; module docstring).
    """
    name: str
    space: str
    write: bool
    base: Value
    rows: Value = 1
    row_stride: Value = 0
    batch: Value = 1
    batch_stride: Value = 0
    length: Value = 0
    data_dependent: bool = False

    def extent(self) -> tuple[Value, Value]:
        """Bounding range ``(lo, hi)``: lo is ``base``, hi one past the last unit of the last row
        (``base + length`` when there are no rows)."""
        return self.base, (self.base + _span(self.batch, self.batch_stride)
                           + _span(self.rows, self.row_stride) + self.length)

    def starts(self) -> np.ndarray:
        """Start address of every row (int64, batch-major); empty when the box is empty."""
        rows, batch = max(int(self.rows), 0), max(int(self.batch), 1)
        if self.length <= 0 or rows == 0:
            return np.zeros(0, dtype=np.int64)
        r = self.base + np.arange(rows, dtype=np.int64) * self.row_stride
        if batch > 1:
            r = (r[None, :] + np.arange(batch, dtype=np.int64)[:, None] * self.batch_stride).ravel()
        return r


# mnemonic -> (size fields, operand function). A size is "imm" or "imm+reg": the instruction's
# effective count, which must not be 0 when no register adds to it.
_Fn = Callable[[str, Mapping[str, Value], int], list[Operand]]
_DEFS: dict[str, tuple[tuple[str, ...], _Fn]] = {}


def _define(*ops: str, sizes: tuple[str, ...] = ()) -> Callable[[_Fn], _Fn]:
    def deco(fn: _Fn) -> _Fn:
        for op in ops:
            _DEFS[op] = (sizes, fn)
        return fn
    return deco


@_define("LOAD", "STORE", sizes=("batch", "rows+rr", "cols+rc"))
def _dma_2d(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    rows, cols, batch = f["rows"] + f["rr"], f["cols"] + f["rc"], _max(f["batch"], 1)
    if f["transpose"]:     # HBM row c holds the tile's column c
        h = Operand("hbm", "H", op == "STORE", f["hbm"] + 2 * f["ra"], cols, f["hstride"],
                    batch, f["hbatch"], 2 * rows)
    else:
        h = Operand("hbm", "H", op == "STORE", f["hbm"] + f["ra"] * f["hstride"], rows,
                    f["hstride"], batch, f["hbatch"], 2 * cols)
    s = Operand("sram", "S", op == "LOAD", f["sram"], rows, f["sstride"], batch, f["sbatch"], cols)
    return [h, s] if op == "LOAD" else [s, h]


@_define("GATHER", sizes=("rows+rr", "cols"))
def _gather(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    rows = f["rows"] + f["rr"]
    return [Operand("idx", "H", False, f["idx"] + 4 * f["ra"], length=4 * rows),
            Operand("hbm", "H", False, f["hbm"] + f["ra"] * f["hstride"], rows, f["hstride"],
                    length=2 * f["cols"], data_dependent=True),
            Operand("sram", "S", True, f["sram"], rows, f["sstride"], length=f["cols"])]


@_define("STR")
def _str(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    return [Operand("hbm", "H", True, f["hbm"] + 4 * f["ra"], length=4)]


@_define("MM", sizes=("batch", "m", "k+rk", "n+rn"))
def _mm(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    batch, m, k, n = _max(f["batch"], 1), f["m"], f["k"] + f["rk"], f["n"] + f["rn"]
    out = [Operand("a", "S", False, f["a"], m, f["lda"], batch, f["bsa"], k),
           Operand("b", "S", False, f["b"], n, f["ldb"], batch, f["bsb"], k)]
    if f["has_bias"]:
        out.append(Operand("bias", "S", False, f["bias"], length=n))
    out.append(Operand("dst", "S", True, f["dst"], m, f["ldc"], batch, f["bsc"], n))
    return out


def _vpu(f: Mapping[str, Value], cols: Value, inputs: tuple[tuple[str, str], ...],
         vectors: tuple[str, ...] = ()) -> list[Operand]:
    """rows x cols operands (address field, row stride field), one-row ``vectors``, dst last."""
    out = [Operand(a, "S", False, f[a], f["rows"], f[ld], length=cols) for a, ld in inputs]
    out += [Operand(v, "S", False, f[v], length=cols) for v in vectors]
    out.append(Operand("dst", "S", True, f["dst"], f["rows"], f["ldd"], length=cols))
    return out


@_define("VADD", "VMUL", sizes=("rows", "cols+rc"))
def _binary(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    return _vpu(f, f["cols"] + f["rc"], (("a", "lda"), ("b", "ldb")))


@_define("GELU", "SOFTMAX", "VCOPY", sizes=("rows", "cols+rc"))
def _unary(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    return _vpu(f, f["cols"] + f["rc"], (("a", "lda"),))


@_define("LAYERNORM", sizes=("rows", "cols"))
def _layernorm(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    return _vpu(f, f["cols"], (("a", "lda"),), ("gamma", "beta"))


@_define("ARGMAX", sizes=("cols+rc",))
def _argmax(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    return [Operand("a", "S", False, f["a"], length=f["cols"] + f["rc"])]


@_define("SEND", "RECV", "ALLGATHER", "ALLREDUCE", sizes=("count",))
def _net(op: str, f: Mapping[str, Value], devices: int) -> list[Operand]:
    span = f["count"] * (devices if op == "ALLGATHER" else 1)
    out = []
    if op != "RECV":
        out.append(Operand("sram", "S", False, f["sram"], length=span))
    if op != "SEND":
        out.append(Operand("sram", "S", True, f["sram"], length=span))
    return out


def has_operands(op: str) -> bool:
    """Whether ``op`` has an entry here (every non-CTRL instruction must)."""
    return op in _DEFS


def operands(op: str, f: Mapping[str, Value], *, devices: int = 1) -> list[Operand]:
    """The memory ``op`` reads and writes, given its captured field values ``f``.

    Parameters
    ----------
    op
        Mnemonic. CTRL instructions touch no memory and give ``[]``.
    f
        Field values with REG fields replaced by register values; ints, or numpy arrays of one
        entry per instruction (FLAG fields stay scalars).
    devices
        Devices on the ring (ALLGATHER's result spans ``devices * count`` elements).

    Returns
    -------
    list of Operand
        Reads and writes; their number and order depend only on ``op``, FLAG fields and
        ``devices``.
    """
    d = _DEFS.get(op)
    return d[1](op, f, devices) if d else []


def sizes(op: str) -> tuple[tuple[str, str | None], ...]:
    """``op``'s size fields as ``(field, register field or None)``: the effective size is
    ``field + R[register]`` and must be at least 1."""
    out = []
    for s in _DEFS[op][0] if op in _DEFS else ():
        imm, _, reg = s.partition("+")
        out.append((imm, reg or None))
    return tuple(out)


def bounds(op: str, f_min: Mapping[str, Value], f_max: Mapping[str, Value], *,
           devices: int = 1) -> list[tuple[Operand, Value, Value]]:
    """Each operand with its bounding range ``(lo, hi)`` over all register values between those
    in ``f_min`` and ``f_max`` (the other fields equal in both).

    Every address and size grows with every register value, so lo is the start at ``f_min`` and
    hi the end at ``f_max`` (pass the same mapping twice when no register matters). A
    data-dependent operand keeps only its first row there (module docstring). The operands
    returned are those at ``f_max``.
    """
    out = []
    maxed = operands(op, f_max, devices=devices)
    least = maxed if f_min is f_max else operands(op, f_min, devices=devices)
    for o_min, o_max in zip(least, maxed):
        lo = o_min.base
        hi = lo + o_max.length if o_max.data_dependent else o_max.extent()[1]
        out.append((o_max, lo, hi))
    return out


def _check() -> None:
    for d in INSTRUCTIONS:
        if (d.unit is Unit.CTRL) == (d.name in _DEFS):
            raise AssertionError(f"{d.name}: operands must be defined exactly for non-CTRL "
                                 f"instructions")
        for s in _DEFS.get(d.name, ((), None))[0]:
            for name in s.split("+"):
                if name not in d.field_names:
                    raise AssertionError(f"{d.name}: size field {name!r} is not in the table")


_check()
