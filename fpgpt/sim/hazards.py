"""Hazard check for the timing model: do the compiler's waits make every overlap safe?

Each executed instruction reads and writes sets of scratchpad elements and HBM bytes (from its
semantics in fpgpt/isa/table.py). Two instructions conflict when one writes what the other
reads or writes (RAW, WAR, WAW). docs/execution.md: a program means what it computes one
instruction at a time, so a later instruction that conflicts with an earlier one must not start
before the earlier one completes; otherwise :class:`TimingHazard` names both.

Sets are kept exact as strided row sets (row starts plus a common row length), so two heads
that write different columns of the same rows do not conflict. Slow-ish; meant for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..isa import BY_NAME
from .hbm import dma_segments
from .machine import SimError

if TYPE_CHECKING:
    from ..config import HardwareConfig

__all__ = ["TimingHazard", "HazardChecker", "accesses"]

# An access: (space, is_write, row starts, row length); space "S" = scratchpad elements,
# "H" = HBM bytes.
Access = tuple[str, bool, np.ndarray, int]


class TimingHazard(SimError):
    """Two conflicting instructions overlap in simulated time: a wait is missing."""


def _grid(base: int, rows: int, stride: int, batch: int = 1, bstride: int = 0) -> np.ndarray:
    r = base + np.arange(max(rows, 0), dtype=np.int64) * stride
    if batch > 1:
        r = (r[None, :] + np.arange(batch, dtype=np.int64)[:, None] * bstride).ravel()
    return r


def _acc(space: str, write: bool, starts: np.ndarray, length: int) -> list[Access]:
    return [(space, write, starts, length)] if length > 0 and starts.size else []


def accesses(op: str, f: dict[str, int], hw: "HardwareConfig") -> list[Access]:
    """What a captured instruction reads and writes."""
    out: list[Access] = []
    if op in ("LOAD", "STORE", "GATHER", "STR"):
        for a0, length, n, stride, batch, bstride in dma_segments(op, f):
            out += _acc("H", op in ("STORE", "STR"), _grid(a0, n, stride, batch, bstride), length)
        if op == "STR":
            return out
        if op == "GATHER":
            rows, cols, batch, sb = f["rows"] + f["rr"], f["cols"], 1, 0
        else:
            rows, cols, batch, sb = f["rows"] + f["rr"], f["cols"] + f["rc"], max(f["batch"], 1), f["sbatch"]
        out += _acc("S", op != "STORE", _grid(f["sram"], rows, f["sstride"], batch, sb), cols)
        return out
    if op == "MM":
        k, n, m, bt = f["k"] + f["rk"], f["n"] + f["rn"], f["m"], max(f["batch"], 1)
        out += _acc("S", False, _grid(f["a"], m, f["lda"], bt, f["bsa"]), k)
        out += _acc("S", False, _grid(f["b"], n, f["ldb"], bt, f["bsb"]), k)
        if f["has_bias"]:
            out += _acc("S", False, _grid(f["bias"], 1, 0), n)
        out += _acc("S", True, _grid(f["dst"], m, f["ldc"], bt, f["bsc"]), n)
        return out
    if op == "ARGMAX":
        return _acc("S", False, _grid(f["a"], 1, 0), f["cols"] + f["rc"])
    if op in ("VADD", "VMUL", "GELU", "LAYERNORM", "SOFTMAX", "VCOPY"):
        rows, cols = f["rows"], f["cols"] + f.get("rc", 0)
        out += _acc("S", False, _grid(f["a"], rows, f["lda"]), cols)
        if op in ("VADD", "VMUL"):
            out += _acc("S", False, _grid(f["b"], rows, f["ldb"]), cols)
        if op == "LAYERNORM":
            out += _acc("S", False, _grid(f["gamma"], 1, 0), cols)
            out += _acc("S", False, _grid(f["beta"], 1, 0), cols)
        out += _acc("S", True, _grid(f["dst"], rows, f["ldd"]), cols)
        return out
    if op in ("SEND", "RECV", "ALLGATHER", "ALLREDUCE"):
        span = f["count"] * (hw.devices if op == "ALLGATHER" else 1)
        s = _grid(f["sram"], 1, 0)
        if op != "RECV":
            out += _acc("S", False, s, span)
        if op != "SEND":
            out += _acc("S", True, s, span)
        return out
    return out


def _overlap(sa: np.ndarray, la: int, sb: np.ndarray, lb: int) -> int | None:
    """An element both row sets hold, or None."""
    if sa.min() >= sb.max() + lb or sb.min() >= sa.max() + la:
        return None
    sb = np.sort(sb)
    j = np.searchsorted(sb, sa + la, side="left") - 1   # the b row starting last before a's end
    ok = j >= 0
    hit = ok & (sb[np.maximum(j, 0)] + lb > sa)
    if not hit.any():
        return None
    i = int(np.argmax(hit))
    return int(max(sa[i], sb[j[i]]))


_KIND = {(True, False): "RAW", (False, True): "WAR", (True, True): "WAW"}


class HazardChecker:
    """Checks each executed instruction against the earlier ones still in flight."""

    def __init__(self, hw: "HardwareConfig", stream: str = "") -> None:
        self.hw = hw
        self.stream = stream
        self._active: list[tuple[int, str, float, float, list[Access]]] = []
        self.checked = 0

    def check(self, index: int, op: str, f: dict[str, int], start: float, end: float,
              dispatch: float) -> None:
        """Record one instruction (``start``/``end`` in cycles); raise on a conflict."""
        self.checked += 1
        # Every later instruction starts at or after ``dispatch``: older ones done by then are safe.
        self._active = [a for a in self._active if a[3] > dispatch]
        mine = accesses(op, f, self.hw)
        for pidx, pop, pstart, pend, pacc in self._active:
            if pend <= start:
                continue
            for sp, pw, ps, pl in pacc:
                for sp2, w, s, ln in mine:
                    if sp != sp2 or not (pw or w):
                        continue
                    hit = _overlap(ps, pl, s, ln)
                    if hit is not None:
                        what = "scratchpad element" if sp == "S" else "HBM byte"
                        raise TimingHazard(
                            f"stream {self.stream!r}: {_KIND[(pw, w)]} hazard on {what} {hit}: "
                            f"instruction {index} ({op}) starts at cycle {start:.0f} before "
                            f"instruction {pidx} ({pop}) completes at cycle {pend:.0f}; add a wait "
                            f"on {BY_NAME[pop].unit.value} to instruction {index}")
        self._active.append((index, op, start, end, mine))
