"""The timing model's dispatch loop, compiled: ``fastloop.c`` built once with the C compiler and
loaded with ctypes (no Python headers needed).

:func:`fpgpt.sim.timing.stream_timeline` uses it for a stream that records no trace, checks no
hazards and is not one card of a ring; the Python loop stays the reference and runs everything
else. Both do the same IEEE double operations in the same order (the C is built with
``-ffp-contract=off``: no fused multiply-adds), so the cycles agree to the last bit
(tests/test_sim_fastloop.py compares them on every shipped preset and model).

The library is built on first use into ``$FPGPT_NATIVE_CACHE`` (default
``$XDG_CACHE_HOME/fpgpt`` or ``~/.cache/fpgpt``; the temporary folder if that is not writable),
named by a hash of the source and the flags, so a changed source is rebuilt. Without a C
compiler the Python loop runs, and :func:`status` says why. ``FPGPT_TIMING_LOOP=python`` forces
the Python loop.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .results import CAUSES, UNITS

__all__ = ["open_stream", "NativeStream", "status", "LOOP_ENV"]

LOOP_ENV = "FPGPT_TIMING_LOOP"
_SRC = Path(__file__).with_name("fastloop.c")
_FLAGS = ["-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-std=c99"]
_NCAUSES = len(CAUSES)                           # fastloop.c's NCAUSES (checked at load)
_I32 = ctypes.POINTER(ctypes.c_int32)
_I64 = ctypes.POINTER(ctypes.c_int64)
_F64 = ctypes.POINTER(ctypes.c_double)


class _Run(ctypes.Structure):
    """fastloop.c's ``Run``, field for field."""
    _fields_ = ([("n", ctypes.c_int64)]
                + [(f, _I32) for f in ("code", "wd", "wo_off", "wo_n", "wo_u", "wo_k",
                                       "touch_off", "touch_n", "touch", "cost", "dyn_sid",
                                       "dyn_n", "dyn_off", "dyn_regs")]
                + [(f, _I64) for f in ("x1", "x2", "x3", "regs")]
                + [("nregs", ctypes.c_int64), ("depth", ctypes.c_int), ("pad", ctypes.c_int),
                   ("refresh", ctypes.c_int)]
                + [(f, ctypes.c_double) for f in ("h_iv", "h_rc", "h_av", "h_lat", "h_lo",
                                                  "h_shift", "h_mb")]
                + [("h_base", _F64), ("max_steps", ctypes.c_int64),
                   ("progress_every", ctypes.c_int64), ("t", ctypes.c_double),
                   ("per_busy", _F64), ("per_cnt", _I64),
                   ("wm", ctypes.c_double * (len(UNITS) * _NCAUSES)),
                   ("hbm_bytes", ctypes.c_int64), ("steps", ctypes.c_int64),
                   ("err_pc", ctypes.c_int64), ("coupled", ctypes.c_int),
                   ("pause_pc", ctypes.c_int64), ("pause_s", ctypes.c_double),
                   ("pause_cost", ctypes.c_double)])


_RESOLVE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64)
_PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64)
_state: dict[str, Any] = {}


def _cache_dir() -> Path:
    v = os.environ.get("FPGPT_NATIVE_CACHE")
    if v:
        return Path(v)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fpgpt"


def _compiler() -> list[str] | None:
    for cc in (os.environ.get("CC"), "cc", "gcc"):
        if cc and shutil.which(cc):
            return [cc]
    if shutil.which("g++"):
        return ["g++", "-x", "c"]
    return None


def _build() -> ctypes.CDLL | None:
    cc = _compiler()
    if cc is None:
        _state["why"] = "no C compiler (cc, gcc or g++) on PATH"
        return None
    src = _SRC.read_bytes()
    tag = hashlib.sha256(src + " ".join(cc + _FLAGS).encode()).hexdigest()[:16]
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / "fpgpt"):
        lib = folder / f"fastloop-{tag}.so"
        if not lib.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
                os.close(fd)
                done = subprocess.run(cc + _FLAGS + ["-o", tmp, str(_SRC), "-lm"],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    os.unlink(tmp)
                    _state["why"] = f"{cc[0]} failed: {done.stderr.strip()[:300]}"
                    return None
                os.replace(tmp, lib)                # atomic: parallel workers may race here
            except OSError:
                continue                            # not writable: the next folder
        try:
            dll = _declare(ctypes.CDLL(str(lib)))
        except OSError as e:
            _state["why"] = f"cannot load {lib}: {e}"
            return None
        _state["path"] = str(lib)
        return dll
    _state["why"] = "no writable cache folder"
    return None


def _declare(dll: ctypes.CDLL) -> ctypes.CDLL:
    if dll.fl_ncauses() != _NCAUSES or len(UNITS) != 4:
        raise OSError(f"fastloop.c counts {dll.fl_ncauses()} wait causes and 4 units, the model "
                      f"{_NCAUSES} and {len(UNITS)}")
    dll.fl_new.restype = ctypes.c_void_p
    dll.fl_new.argtypes = [ctypes.c_int]
    dll.fl_free.argtypes = [ctypes.c_void_p]
    dll.fl_add_unit_cost.restype = ctypes.c_int64
    dll.fl_add_unit_cost.argtypes = [ctypes.c_void_p, ctypes.c_double, ctypes.c_double,
                                     ctypes.c_int]
    dll.fl_add_dma_cost.restype = ctypes.c_int64
    dll.fl_add_dma_cost.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_double, _F64, _I32,
                                    ctypes.c_int, ctypes.c_double, ctypes.c_int64,
                                    ctypes.c_double, ctypes.c_double, ctypes.c_double]
    dll.fl_clear_slots.argtypes = [ctypes.c_void_p]
    dll.fl_dyncount.restype = ctypes.c_int64
    dll.fl_dyncount.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    dll.fl_run.restype = ctypes.c_int
    dll.fl_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Run), _RESOLVE, _PROGRESS,
                           ctypes.c_int64, ctypes.c_double]
    return dll


def _lib() -> ctypes.CDLL | None:
    if "lib" not in _state:
        _state["lib"] = _build()
    return _state["lib"]


def status() -> str:
    """Which loop :func:`fpgpt.sim.timing.stream_timeline` runs, and why: ``"native (PATH)"``,
    or ``"python (REASON)"``."""
    if os.environ.get(LOOP_ENV, "").strip().lower() == "python":
        return f"python ({LOOP_ENV}=python)"
    return f"native ({_state['path']})" if _lib() is not None else f"python ({_state['why']})"


def _ptr(a: np.ndarray, kind):
    return a.ctypes.data_as(kind)


class _Costs:
    """Cost objects (the Python loop's tuples) registered with the C context, by identity."""

    def __init__(self, dll: ctypes.CDLL, ctx: int, channels: int) -> None:
        self.dll, self.ctx, self.channels = dll, ctx, channels
        self.ids: dict[int, int] = {}
        self.objs: list = []

    def cid(self, cost: tuple, dma: bool) -> int:
        c = self.ids.get(id(cost))
        if c is not None:
            return c
        if dma:
            kind, work, idx, straggle, nbytes, extra, eng, occ, _ = cost
            if kind == 2:
                w = np.ascontiguousarray(work, dtype=np.float64)
                ix = None if idx is None else np.ascontiguousarray(idx, dtype=np.int32)
                c = self.dll.fl_add_dma_cost(
                    self.ctx, 2, 0.0, _ptr(w, _F64), None if ix is None else _ptr(ix, _I32),
                    -1 if ix is None else len(ix), float(straggle), int(nbytes), float(extra),
                    float(eng), float(occ))
            else:
                c = self.dll.fl_add_dma_cost(self.ctx, kind, float(work), None, None, -1,
                                             float(straggle), int(nbytes), float(extra),
                                             float(eng), float(occ))
        else:
            c = self.dll.fl_add_unit_cost(self.ctx, float(cost[0]), float(cost[1]), int(cost[2]))
        if c < 0:
            raise MemoryError("the timing loop's cost table")
        self.ids[id(cost)] = c
        self.objs.append(cost)                          # keeps id(cost) valid
        return c


class NativeStream:
    """One stream on the compiled loop: :meth:`advance` runs it to HALT, or, for one card of a
    ring (``coupled``), to its next NET instruction, as the Python generator does."""

    def __init__(self, dll: ctypes.CDLL, plan, hbm, regs_v: list[int], *, depth: int, pad: int,
                 max_steps: int, progress_every: int, trim_at: int,
                 dyn_cost: Callable[[tuple, list[int], dict], Any],
                 progress: Callable[[int], None] | None, coupled: bool) -> None:
        self.dll, self.hbm, self.regs_v, self.trim_at = dll, hbm, regs_v, trim_at
        entries = plan.entries
        n = len(entries)
        # per instruction (fastloop.c's Run): int32 and int64 columns
        a = {k: np.zeros(n, np.int32) for k in ("code", "wd", "wo_off", "wo_n", "touch_off",
                                                 "touch_n", "dyn_sid", "dyn_n", "dyn_off")}
        a["cost"] = np.full(n, -1, np.int32)                # -1: register-dependent
        b = {k: np.zeros(n, np.int64) for k in ("x1", "x2", "x3")}
        code, wd, wo_off, wo_n, cost = a["code"], a["wd"], a["wo_off"], a["wo_n"], a["cost"]
        touch_off, touch_n = a["touch_off"], a["touch_n"]
        dyn_sid, dyn_n, dyn_off = a["dyn_sid"], a["dyn_n"], a["dyn_off"]
        x1, x2, x3 = b["x1"], b["x2"], b["x3"]
        wo_u: list[int] = []
        wo_k: list[int] = []
        touch: list[int] = []
        dyn_regs: list[int] = []
        self.ctx = dll.fl_new(hbm.channels)
        if not self.ctx:
            raise MemoryError("the timing loop's context")
        self.costs = costs = _Costs(dll, self.ctx, hbm.channels)
        for i, (c, waits, touched, cst, dyn, a1, a2) in enumerate(entries):
            code[i] = c
            unit = c < 4
            wo_off[i] = len(wo_u)
            for u, k in waits:
                if unit and u == 0:
                    wd[i] = k
                else:
                    wo_u.append(u)
                    wo_k.append(k)
            wo_n[i] = len(wo_u) - wo_off[i]
            touch_off[i] = len(touch)
            touch.extend(touched)
            touch_n[i] = len(touched)
            x1[i] = a1
            if unit:
                if dyn is not None:
                    dyn_sid[i], dyn_n[i], dyn_off[i] = dyn[3], len(dyn[0]), len(dyn_regs)
                    dyn_regs.extend(dyn[0])
                else:
                    cost[i] = costs.cid(cst, c == 0)
            elif isinstance(a2, tuple):                 # ADDI: (rs, imm)
                x2[i], x3[i] = a2
            else:
                x2[i] = a2
        a.update((k, np.asarray(v if v else [0], np.int32))
                 for k, v in (("wo_u", wo_u), ("wo_k", wo_k), ("touch", touch),
                              ("dyn_regs", dyn_regs)))
        self.regs = regs = np.asarray(regs_v, np.int64)
        b["regs"] = regs
        self.h_base = np.ascontiguousarray(hbm._base, dtype=np.float64).copy()
        self.per_busy = np.zeros(n, np.float64)
        self.per_cnt = np.zeros(n, np.int64)
        self._keep = (a, b)                             # the arrays must outlive the calls
        self.run = _Run(
            n=n, nregs=len(regs), depth=depth, pad=pad, refresh=1 if hbm.refresh else 0,
            h_iv=hbm.interval_cycles, h_rc=hbm.refresh_cycles, h_av=hbm._avail,
            h_lat=hbm.latency_cycles, h_lo=hbm._lo, h_shift=hbm._shift, h_mb=hbm._maxbase,
            h_base=_ptr(self.h_base, _F64), max_steps=max_steps, progress_every=progress_every,
            per_busy=_ptr(self.per_busy, _F64), per_cnt=_ptr(self.per_cnt, _I64),
            coupled=1 if coupled else 0, **{k: _ptr(v, _I32) for k, v in a.items()},
            **{k: _ptr(v, _I64) for k, v in b.items()})
        self.failed: list[BaseException] = []
        failed, dyn_costs = self.failed, plan.costs

        def resolve(pc: int) -> int:
            try:
                before = len(dyn_costs)
                c = dyn_cost(entries[pc][4], regs.tolist(), dyn_costs)
                if len(dyn_costs) <= before:            # the Python cache was cleared: so is C's
                    dll.fl_clear_slots(self.ctx)
                return costs.cid(c, entries[pc][0] == 0)
            except BaseException as e:              # noqa: BLE001 (re-raised by advance)
                failed.append(e)
                return -1

        def step(steps: int) -> int:
            try:
                progress(steps)
                return 0
            except BaseException as e:              # noqa: BLE001 (re-raised by advance)
                failed.append(e)
                return 1

        self._resolve = _RESOLVE(resolve)
        self._progress = _PROGRESS(step) if progress is not None else ctypes.cast(None, _PROGRESS)

    def advance(self, resume_e: float = 0.0) -> tuple:
        """Run on: ``("pause", (pc, start, cost))`` at a NET instruction of a ring card (call
        again with its completion), ``("done", None)`` at HALT (then :meth:`result`),
        ``("end", pc)`` when it ran off the stream, ``("steps", n)`` at the step limit."""
        rc = self.dll.fl_run(self.ctx, ctypes.byref(self.run), self._resolve, self._progress,
                             self.trim_at, resume_e)
        if self.failed:
            raise self.failed[0]
        r = self.run
        if rc == 4:
            raise MemoryError("the timing loop ran out of memory")
        if rc == 5:
            return "pause", (int(r.pause_pc), r.pause_s, r.pause_cost)
        if rc == 1:
            return "end", int(r.err_pc)
        if rc == 2:
            return "steps", int(r.steps)
        return "done", None

    def result(self) -> dict:
        """After HALT: ``t``, ``per_busy``, ``per_cnt``, ``wm``, ``hbm_bytes``, ``steps`` and
        ``dyn`` (each register-dependent cost object with its dispatches, in first-dispatch
        order); the registers and the HBM model's state are written back."""
        r, dll = self.run, self.dll
        self.regs_v[:] = self.regs.tolist()
        hbm = self.hbm
        hbm._base[:] = self.h_base
        hbm._lo, hbm._shift, hbm._maxbase = r.h_lo, r.h_shift, r.h_mb
        dyn = [(obj, dll.fl_dyncount(self.ctx, self.costs.ids[id(obj)]))
               for obj in self.costs.objs]
        return {"t": r.t, "per_busy": self.per_busy.tolist(), "per_cnt": self.per_cnt.tolist(),
                "wm": [list(r.wm[u * _NCAUSES:(u + 1) * _NCAUSES]) for u in range(len(UNITS))],
                "hbm_bytes": int(r.hbm_bytes), "steps": int(r.steps),
                "dyn": [(o, k) for o, k in dyn if k]}

    def close(self) -> None:
        if self.ctx:
            self.dll.fl_free(self.ctx)
            self.ctx = None

    def __enter__(self) -> "NativeStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stream(plan, hbm, regs_v: list[int], **options: Any) -> NativeStream | None:
    """A :class:`NativeStream` for ``plan`` (a :class:`fpgpt.sim.timing.StreamPlan`) from the
    HBM model's and the registers' state; None when the compiled loop is not available (or
    turned off with ``FPGPT_TIMING_LOOP=python``)."""
    if os.environ.get(LOOP_ENV, "").strip().lower() == "python":
        return None
    dll = _lib()
    if dll is None or any(e[4] is not None and len(e[4][0]) > dll.fl_maxdyn()
                          for e in plan.entries):
        return None
    return NativeStream(dll, plan, hbm, regs_v, **options)
