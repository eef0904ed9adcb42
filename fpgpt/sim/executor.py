"""Functional executor: runs a Program's stream on a :class:`~fpgpt.sim.machine.Machine`.

A program means what it computes when its instructions run one at a time in dispatch order
(docs/execution.md, "Meaning of a program"); this module runs it exactly so. The dispatcher's
control semantics come from :func:`fpgpt.sim.control.walk`; each non-CTRL instruction is executed
by one handler from :data:`HANDLERS`, written from the semantics docstring of
:mod:`fpgpt.isa.table`, with the arithmetic of :mod:`fpgpt.isa.numerics` (docs/numerics.md).

Each handler reads all of its operands before it writes its result, as the hardware's units
stream a tile in and then out; a program whose result overlaps its own operands only partially
is outside what the compiler emits.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..isa import INSTRUCTIONS, ISAError, Program, Unit
from ..isa import numerics
from .control import MAX_STEPS_DEFAULT, Captured, walk
from .machine import F16, I32, Machine, SimError

__all__ = ["ExecStats", "run_stream", "HANDLERS", "MODES"]

MODES = ("exact", "fast")


@dataclass
class ExecStats:
    """What one :func:`run_stream` call executed.

    Attributes
    ----------
    stream : str
        Stream name.
    instructions : int
        Instructions dispatched (CTRL ones included; loop bodies counted every iteration).
    by_op : dict[str, int]
        The same count per mnemonic.
    macs : int
        Multiply-accumulates performed by MM instructions.
    wall_s : float
        Host seconds spent in the run.
    """
    stream: str
    instructions: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    macs: int = 0
    wall_s: float = 0.0

    @property
    def instructions_per_s(self) -> float:
        return self.instructions / self.wall_s if self.wall_s > 0 else float("inf")


class _Exec:
    """Per-run context handed to the handlers."""

    __slots__ = ("m", "mode", "macs")

    def __init__(self, m: Machine, mode: str) -> None:
        self.m, self.mode, self.macs = m, mode, 0


def _batch(f: dict[str, int]) -> int:
    b = f["batch"]
    if b < 1:
        # Instr.make leaves unset fields at 0; a batch of 0 would silently do nothing.
        raise SimError("batch=0; it must be >= 1 (set batch=1 for a single matrix)")
    return b


# ---------------------------------------------------------------------------------- DMA
def _dma_views(x: _Exec, f: dict[str, int], hbm_what: str, sram_what: str):
    nb, rows, cols = _batch(f), f["rows"] + f["rr"], f["cols"] + f["rc"]
    shape = (nb, rows, cols)
    if f["transpose"]:
        h = x.m.hbm_view(hbm_what, f["hbm"] + 2 * f["ra"], shape, (f["hbatch"], 2, f["hstride"]))
    else:
        h = x.m.hbm_view(hbm_what, f["hbm"] + f["ra"] * f["hstride"], shape,
                         (f["hbatch"], f["hstride"], 2))
    s = x.m.sram_view(sram_what, f["sram"], shape, (f["sbatch"], f["sstride"], 1))
    return h, s


def _load(x: _Exec, c: Captured) -> None:
    h, s = _dma_views(x, c.f, "source (hbm)", "destination (sram)")
    s[...] = h


def _store(x: _Exec, c: Captured) -> None:
    h, s = _dma_views(x, c.f, "destination (hbm)", "source (sram)")
    h[...] = s


def _gather(x: _Exec, c: Captured) -> None:
    f, m = c.f, x.m
    rows, cols = f["rows"] + f["rr"], f["cols"]
    idx = m.hbm_view("index vector (idx)", f["idx"] + 4 * f["ra"], (rows,), (4,), I32)
    starts = f["hbm"] + idx.astype(np.int64) * f["hstride"]
    if rows and cols:
        bad = np.flatnonzero((starts < 0) | (starts + 2 * cols > m.hbm.size))
        if bad.size:
            r = int(bad[0])
            raise SimError(f"table row (hbm) for index {int(idx[r])} (row {r}) at bytes "
                           f"[{int(starts[r]):#x}, {int(starts[r]) + 2 * cols:#x}) outside the "
                           f"program's HBM [0, {m.hbm.size:#x}); the index or hstride is wrong")
    dst = m.sram_view("destination (sram)", f["sram"], (rows, cols), (f["sstride"], 1))
    # byte-granular fancy index so that any row alignment works, then reinterpret as FP16
    byte_idx = starts[:, None] + np.arange(2 * cols)[None, :]
    dst[...] = m.hbm[byte_idx].view(F16).reshape(rows, cols)


def _str(x: _Exec, c: Captured) -> None:
    v = x.m.hbm_view("destination (hbm)", c.f["hbm"] + 4 * c.f["ra"], (1,), (4,), I32)
    v[0] = np.array([c.f["rs"]], dtype=np.uint32).view(I32)[0]


# ---------------------------------------------------------------------------------- MPU
def _mm(x: _Exec, c: Captured) -> None:
    f, m = c.f, x.m
    nb, rows, k, n = _batch(f), f["m"], f["k"] + f["rk"], f["n"] + f["rn"]
    bias = m.sram_view("bias", f["bias"], (n,), (1,)) if f["has_bias"] else None
    mask = None
    if f["mask"]:
        mask = np.arange(n)[None, :] > np.arange(rows)[:, None] + f["rn"]
    width = m.hw.mpu.width
    for bt in range(nb):
        a = m.sram_view("operand a", f["a"] + bt * f["bsa"], (rows, k), (f["lda"], 1))
        b = m.sram_view("operand b", f["b"] + bt * f["bsb"], (n, k), (f["ldb"], 1))
        out = numerics.mpu_matmul(a, b, bias, width=width, mode=x.mode)
        if mask is not None:
            out = np.where(mask, np.float16(-np.inf), out)
        m.sram_view("result (dst)", f["dst"] + bt * f["bsc"], (rows, n), (f["ldc"], 1))[...] = out
    x.macs += nb * rows * n * k


# ---------------------------------------------------------------------------------- VPU
def _vpu_in(x: _Exec, f: dict[str, int], cols: int, name: str = "a", ld: str = "lda") -> np.ndarray:
    return x.m.sram_view(f"operand {name}", f[name], (f["rows"], cols), (f[ld], 1))


def _vpu_out(x: _Exec, f: dict[str, int], cols: int, value: np.ndarray) -> None:
    x.m.sram_view("result (dst)", f["dst"], (f["rows"], cols), (f["ldd"], 1))[...] = value


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def handler(x: _Exec, c: Captured) -> None:
        f = c.f
        cols = f["cols"] + f["rc"]
        a, b = _vpu_in(x, f, cols), _vpu_in(x, f, cols, "b", "ldb")  # ldb = 0 broadcasts row 0
        if a.size:
            _vpu_out(x, f, cols, fn(a, b))
    return handler


def _gelu(x: _Exec, c: Captured) -> None:
    cols = c.f["cols"] + c.f["rc"]
    a = _vpu_in(x, c.f, cols)
    if a.size:
        _vpu_out(x, c.f, cols, numerics.gelu(a))


def _layernorm(x: _Exec, c: Captured) -> None:
    f, m = c.f, x.m
    cols = f["cols"]
    gamma = m.sram_view("gamma", f["gamma"], (cols,), (1,))
    beta = m.sram_view("beta", f["beta"], (cols,), (1,))
    a = _vpu_in(x, f, cols)
    if not a.size:
        return
    out = numerics.layernorm(a, gamma, beta, eps=c.instr.float("eps"),
                             width=m.hw.vpu.width, partials=m.hw.vpu.acc_latency)
    _vpu_out(x, f, cols, out)


def _softmax(x: _Exec, c: Captured) -> None:
    cols = c.f["cols"] + c.f["rc"]
    a = _vpu_in(x, c.f, cols)
    if not a.size:
        return
    v = x.m.hw.vpu
    out = numerics.softmax(a, scale=c.instr.float("scale"), width=v.width,
                           partials=v.acc_latency, sum_width=v.special_lanes)
    _vpu_out(x, c.f, cols, out)


def _argmax(x: _Exec, c: Captured) -> None:
    cols = c.f["cols"] + c.f["rc"]
    v = x.m.sram_view("operand a", c.f["a"], (cols,), (1,))
    if cols == 0:
        raise SimError("cols + R[rc] = 0: the argmax of an empty vector is undefined")
    i = int(numerics.argmax(v))
    best = None if np.isnan(v[i]) else v[i]
    if c.f["cont"]:
        if x.m.argmax_run is None:
            raise SimError("cont = 1 but the previous VPU instruction was no ARGMAX; expected "
                           "an ARGMAX to continue")
        b0, i0, n0 = x.m.argmax_run
        # the first index keeps a tie: a later element wins only if strictly larger
        if best is None or (b0 is not None and not best > b0):
            best, i = b0, i0
        else:
            i += n0
        cols += n0
    x.m.argmax_run = (best, i, cols)
    # the register write happens here, before walk() dispatches the next instruction
    x.m.regs[c.f["rd"]] = i


def _ends_argmax(handler: Callable[[_Exec, Captured], None]) -> Callable[[_Exec, Captured], None]:
    """A VPU instruction other than ARGMAX: it ends the VPU's running ARGMAX."""
    def run(x: _Exec, c: Captured) -> None:
        x.m.argmax_run = None
        handler(x, c)
    return run


def _vcopy(x: _Exec, c: Captured) -> None:
    cols = c.f["cols"] + c.f["rc"]
    _vpu_out(x, c.f, cols, np.array(_vpu_in(x, c.f, cols)))


# ---------------------------------------------------------------------------------- NET
def _net_devices(x: _Exec, c: Captured) -> int:
    d = x.m.hw.devices
    if d > 1:
        raise SimError(f"{d} devices: multi-device simulation is not implemented yet; "
                       "simulate a program compiled for devices = 1")
    return d


def _point_to_point(x: _Exec, c: Captured) -> None:
    _net_devices(x, c)
    raise SimError(f"{c.op} needs N>1 devices (multi-device simulation is not implemented yet); "
                   f"{x.m.hw.name!r} has devices = 1")


def _allgather(x: _Exec, c: Captured) -> None:
    d = _net_devices(x, c)
    # one device: its own chunk is the whole result; still check the operand is addressable
    x.m.sram_view("buffer (sram)", c.f["sram"], (d * c.f["count"],), (1,))


def _allreduce(x: _Exec, c: Captured) -> None:
    _net_devices(x, c)
    # the sum over one device of f32(S) rounded to f16 is S itself
    x.m.sram_view("buffer (sram)", c.f["sram"], (c.f["count"],), (1,))


#: Handler per non-CTRL mnemonic (CTRL instructions execute in control.walk).
HANDLERS: dict[str, Callable[[_Exec, Captured], None]] = {
    "LOAD": _load, "STORE": _store, "GATHER": _gather, "STR": _str,
    "MM": _mm,
    "VADD": _ends_argmax(_binary(lambda a, b: numerics.vadd(a, b))),
    "VMUL": _ends_argmax(_binary(lambda a, b: numerics.vmul(a, b))),
    "GELU": _ends_argmax(_gelu), "LAYERNORM": _ends_argmax(_layernorm),
    "SOFTMAX": _ends_argmax(_softmax), "ARGMAX": _argmax, "VCOPY": _ends_argmax(_vcopy),
    "SEND": _point_to_point, "RECV": _point_to_point,
    "ALLGATHER": _allgather, "ALLREDUCE": _allreduce,
}

_EXPECTED = {d.name for d in INSTRUCTIONS if d.unit is not Unit.CTRL}
if set(HANDLERS) != _EXPECTED:  # the table changed: this module must follow it
    raise ImportError(f"fpgpt.sim.executor handles {sorted(HANDLERS)} but the ISA table's "
                      f"non-CTRL instructions are {sorted(_EXPECTED)}")


def run_stream(machine: Machine, program: Program, stream_name: str, *, mode: str = "exact",
               on_instr: Callable[[Captured, Machine], None] | None = None,
               max_steps: int = MAX_STEPS_DEFAULT) -> ExecStats:
    """Execute one stream of ``program`` on ``machine``, one instruction at a time.

    Parameters
    ----------
    machine : Machine
        Device state; its registers are read and updated (they persist between streams).
    program : Program
        The program; only ``program.streams[stream_name]`` is read (load its segments into the
        machine first, e.g. with :meth:`Machine.for_program`).
    stream_name : str
        ``"prefill"``, ``"decode"`` or any stream the program has.
    mode : {"exact", "fast"}
        ``"exact"``: MPU arithmetic bit for bit as the RTL (docs/numerics.md); ``"fast"``:
        BLAS float32 products, for large models.
    on_instr : callable, optional
        Called as ``on_instr(captured, machine)`` after each instruction (CTRL ones included).
    max_steps : int
        Dispatch limit guarding against endless loops.

    Returns
    -------
    ExecStats

    Raises
    ------
    SimError
        On an out-of-range access, an unsupported NET operation or a stream without ``HALT``;
        the one-line message names the stream, the instruction index and mnemonic.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    stream = program.stream(stream_name)
    x = _Exec(machine, mode)
    ops: Counter[str] = Counter()
    t0 = time.perf_counter()
    gen = walk(stream, machine.regs, max_steps=max_steps)
    while True:
        try:
            cap = next(gen)
        except StopIteration:
            break
        except ISAError as e:
            raise SimError(f"stream {stream_name!r}: {e}") from None
        ops[cap.op] += 1
        handler = HANDLERS.get(cap.op)
        if handler is not None:
            try:
                handler(x, cap)
            except (SimError, numerics.NumericsError) as e:
                raise SimError(f"stream {stream_name!r}, instruction {cap.index} ({cap.op}): {e}") from None
        if on_instr is not None:
            on_instr(cap, machine)
    return ExecStats(stream_name, sum(ops.values()), dict(ops), x.macs, time.perf_counter() - t0)
