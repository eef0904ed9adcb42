"""Hazard check for the timing model: do the compiler's waits make every overlap safe?

Each executed instruction reads and writes sets of scratchpad elements and HBM bytes (its
operands, defined once in fpgpt/isa/operands.py). Two instructions conflict when one writes
what the other reads or writes (RAW, WAR, WAW). docs/execution.md: a program means what it
computes one instruction at a time, so a later instruction that conflicts with an earlier one
must not start before the earlier one completes; otherwise :class:`TimingHazard` names both.

Sets are kept exact as strided row sets (row starts plus a common row length), so two heads
that write different columns of the same rows do not conflict. Slow-ish; meant for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..isa import BY_NAME
from ..isa.operands import operands
from .machine import SimError

if TYPE_CHECKING:
    from ..config import HardwareConfig

__all__ = ["TimingHazard", "HazardChecker", "accesses"]

# An access: (space, is_write, row starts, row length); space "S" = scratchpad elements,
# "H" = HBM bytes.
Access = tuple[str, bool, np.ndarray, int]


class TimingHazard(SimError):
    """Two conflicting instructions overlap in simulated time: a wait is missing."""


def accesses(op: str, f: dict[str, int], hw: "HardwareConfig") -> list[Access]:
    """What a captured instruction reads and writes (from fpgpt.isa.operands), as row sets.

    GATHER's table rows are data: they are taken as table rows ``r + R[ra]`` (as the HBM timing
    model charges them).
    """
    out: list[Access] = []
    for o in operands(op, f, devices=hw.devices):
        starts = o.starts()
        if starts.size:
            out.append((o.space, o.write, starts, o.length))
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
