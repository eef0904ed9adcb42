"""Pass 6, schedule: instruction order and dependency wait counts.

1. **Footprints.** Every instruction's scratchpad element ranges and HBM byte ranges, read and
   written, are derived from its fields (bounding boxes; register-dependent sizes at the
   register's largest value in that stream). HBM is tracked only where programs write it (KV
   caches, ``tokens_out``): weights are read-only.
2. **Hoisting.** A LOAD marked ``hoist`` (weight chunks, layer vectors) moves up to just after
   the last instruction it conflicts with (in practice the MM that last read its slot), so DMA of
   the next chunks overlaps MM of the current one and runs ahead across layer seams. It never
   crosses a SYNC, and a weight chunk may pass a non-hoisted DMA instruction (KV traffic,
   embedding) only if it is at most ``lead`` chunks ahead of it: the DMA queue is in order, and
   KV traffic queued behind chunks that wait for free slots would stall attention. An
   all-gather's unpack (``Item.unpack``) that waits, on every unit, for instructions at least as
   late as the chunk's own dependencies (each instruction's *clock*: the latest instruction of
   each unit it waits for, directly or through others; units run in order) cannot start before
   the chunk; when the unpack's result is also used after the chunk's (the first instruction
   that waits for it, its STOREs counted through its LOAD), the chunk passes it. (Without the
   second condition a ring of two ``micro`` cores' prefill took 8,459 -> 10,094 cycles: chunks
   on tiny's narrow ports delayed unpacks the next products needed first.)
3. **Waits.** For each instruction, the latest conflicting (RAW, WAR, WAW) instruction of each
   unit, turned into the wait count of docs/execution.md (dispatch-relative, capped at 15, which
   waits for a later instruction: still correct). SYNC clears the tracking.
"""

from __future__ import annotations

import bisect
from typing import Iterable, Mapping

from fpgpt.isa import INSTRUCTIONS, WAIT_UNITS, Instr, Unit
from fpgpt.isa.operands import bounds

from .codegen import Item

__all__ = ["footprint", "schedule", "assign_waits", "hoist", "LEAD_CHUNKS"]

#: How many weight chunks a LOAD may run ahead of a non-hoisted DMA instruction it passes.
LEAD_CHUNKS = 1
_MAXW = 15
_UNITS = tuple(u.value for u in WAIT_UNITS)   # header order
_REG_FIELDS = {d.name: d.reads_regs for d in INSTRUCTIONS}
_REG_WRITERS = {d.name for d in INSTRUCTIONS if d.writes_regs}

# (space, lo, hi): space "S" scratchpad elements, "H" HBM bytes.
Range = tuple[str, int, int]


def footprint(ins: Instr, regmax: Mapping[int, int], *,
              devices: int = 1) -> tuple[list[Range], list[Range]]:
    """(reads, writes) of ``ins`` as bounding ranges (fpgpt.isa.operands) over every value its
    registers can hold: from 0 up to their largest value in ``regmax``."""
    f_min = f_max = ins.fields        # a fresh dict: changed in place
    regs = _REG_FIELDS[ins.op]
    for name in regs:
        r = f_max[name]
        f_max[name] = regmax.get(r, 0) if r else 0
    if any(f_max[name] for name in regs):
        f_min = dict(f_max, **{name: 0 for name in regs})
    reads: list[Range] = []
    writes: list[Range] = []
    for o, lo, hi in bounds(ins.op, f_min, f_max, devices=devices):
        (writes if o.write else reads).append((o.space, lo, hi))
    return reads, writes


class _Footprints:
    """:func:`footprint` per distinct instruction (its op and fields: the waits and comment do
    not change it), computed once for both of :func:`schedule`'s passes."""

    def __init__(self, regmax: Mapping[int, int], devices: int) -> None:
        self.regmax, self.devices, self.known = regmax, devices, {}

    def __call__(self, ins: Instr) -> tuple[list[Range], list[Range]]:
        key = (ins.op, ins.args)
        got = self.known.get(key)
        if got is None:
            got = self.known[key] = footprint(ins, self.regmax, devices=self.devices)
        return got


class _Seg:
    __slots__ = ("writer", "readers")

    def __init__(self, writer: int = -1, readers: dict | None = None) -> None:
        self.writer = writer
        self.readers = dict(readers or {})


class _Tracker:
    """Disjoint segments of an address space with their last writer and readers since."""

    def __init__(self) -> None:
        self.bounds = [0]
        self.segs = [_Seg()]

    def _split(self, x: int) -> int:
        i = bisect.bisect_right(self.bounds, x) - 1
        if self.bounds[i] == x:
            return i
        s = self.segs[i]
        self.bounds.insert(i + 1, x)
        self.segs.insert(i + 1, _Seg(s.writer, s.readers))
        return i + 1

    def span(self, lo: int, hi: int) -> list[_Seg]:
        if hi <= lo:
            return []
        i, j = self._split(lo), self._split(hi)
        return self.segs[i:j]

    def overwrite(self, lo: int, hi: int, writer: int) -> None:
        """``[lo, hi)`` becomes one segment written by ``writer`` with no readers: the segments
        it covered are all alike now, so they merge (fewer segments for later spans to walk)."""
        if hi <= lo:
            return
        i, j = self._split(lo), self._split(hi)
        self.bounds[i + 1:j] = []
        self.segs[i:j] = [_Seg(writer, {})]


class _Deps:
    """Conflict tracking over both spaces; readers are kept per key (a unit, or one key)."""

    def __init__(self, writable: list[tuple[int, int]]) -> None:
        self.t = {"S": _Tracker(), "H": _Tracker()}
        self.writable = sorted(writable)
        # the writable HBM ranges merged into disjoint ones: a non-empty range meets one of them
        # iff it meets the last merged range starting below its end (O(log n), not a scan)
        merged: list[list[int]] = []
        for lo, hi in self.writable:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.w_lo = [lo for lo, _ in merged]
        self.w_hi = [hi for _, hi in merged]
        self.exact_scan = any(hi <= lo for lo, hi in self.writable)

    def _tracked(self, r: Range) -> bool:
        if r[0] == "S":
            return True
        if r[1] >= r[2] or self.exact_scan:      # empty ranges: the definition itself
            return any(lo < r[2] and r[1] < hi for lo, hi in self.writable)
        i = bisect.bisect_left(self.w_lo, r[2]) - 1
        return i >= 0 and r[1] < self.w_hi[i]

    def access(self, j: int, key: str, reads: Iterable[Range], writes: Iterable[Range]) -> list[int]:
        """Instructions ``j`` conflicts with (latest writer, and readers for writes); records j."""
        reads = [r for r in reads if self._tracked(r)]
        writes = [w for w in writes if self._tracked(w)]
        deps: list[int] = []
        rsegs = [s for sp, lo, hi in reads for s in self.t[sp].span(lo, hi)]
        wsegs = [s for sp, lo, hi in writes for s in self.t[sp].span(lo, hi)]
        for s in rsegs:
            if s.writer >= 0:
                deps.append(s.writer)
        for s in wsegs:
            if s.writer >= 0:
                deps.append(s.writer)
            deps.extend(s.readers.values())
        for s in rsegs:
            s.readers[key] = j
        for sp, lo, hi in writes:
            self.t[sp].overwrite(lo, hi, j)
        return deps


def _reads_regs(ins: Instr) -> set[int]:
    return {ins[n] for n in ins.definition.reads_regs if ins[n]}


def _writes_regs(ins: Instr) -> set[int]:
    return {ins[n] for n in ins.definition.writes_regs if ins[n]}


def _waits_as_late(fence: dict | None, waits_for: list[int], units: list) -> bool:
    """Whether an instruction with clock ``fence`` waits, on the unit of each of ``waits_for``,
    for an instruction at least as late (units run in order): then it cannot start first."""
    return fence is not None and all(fence.get(units[c], -1) >= c for c in waits_for)


def hoist(items: list[Item], regmax: Mapping[int, int], writable: list[tuple[int, int]],
          *, lead: int = LEAD_CHUNKS, devices: int = 1,
          footprints: _Footprints | None = None) -> list[Item]:
    """Items in scheduled order: hoistable LOADs moved up as far as allowed (module docstring)."""
    fp = footprints or _Footprints(regmax, devices)
    # what each instruction waits for (its conflicts; a hoisted one's registers' writers too),
    # and its first user
    deps = _Deps(writable)
    barrier = -1                        # last SYNC
    reg_writer: dict[int, int] = {}
    waits: list[list[int]] = []
    bars: list[int] = []
    first_use: list[int] = [len(items)] * len(items)
    for j, it in enumerate(items):
        ins = it.instr
        r, w = fp(ins)
        wf = deps.access(j, "any", r, w)
        if it.hoist:
            wf += [x for x in (reg_writer.get(x, -1) for x in _reads_regs(ins)) if x >= 0]
        for c in wf:
            if first_use[c] > j:
                first_use[c] = j
        waits.append(wf)
        bars.append(barrier)
        if ins.op == "SYNC":
            barrier = j
            deps = _Deps(writable)
        if ins.op in _REG_WRITERS:
            for x in _writes_regs(ins):
                reg_writer[x] = j
    for j in range(len(items) - 1, -1, -1):     # an unpack's STOREs are used by its LOAD:
        u = first_use[j]                         # count the LOAD's user
        if items[j].unpack and u < len(items) and items[u].unpack:
            first_use[j] = first_use[u]
    anchor: list[int] = []
    fence_chunks: list[int] = []        # chunks issued before each non-hoisted DMA instruction
    fence_index: list[int] = []         # and its index
    fence_clock: list[dict | None] = []  # and, for an all-gather's unpack, its clock
    clock: list[dict] = []              # per instruction: the latest instruction of each unit
                                        # it waits for, directly or through others
    units: list = []                    # and its unit
    clocks = any(it.unpack for it in items)     # only an unpack's clock is ever read
    chunks_seen = 0
    for j, it in enumerate(items):
        unit = it.instr.definition.unit
        mine: dict = {}
        if clocks:
            for c in waits[j]:
                for u, i in clock[c].items():
                    if mine.get(u, -1) < i:
                        mine[u] = i
            mine[unit] = j
        clock.append(mine)
        units.append(unit)
        if it.hoist:
            a = max([bars[j], *waits[j]])
            if it.chunk is not None:
                # the latest fence this chunk may not pass: chunks_before <= chunk - lead, but
                # not an all-gather's unpack that waits for a later instruction than the chunk
                # does on every unit (it waits on the ring too: it cannot start first) and whose
                # result is used after the chunk's
                k = bisect.bisect_right(fence_chunks, it.chunk - lead)
                while (k and first_use[fence_index[k - 1]] > first_use[j]
                       and _waits_as_late(fence_clock[k - 1], waits[j], units)):
                    k -= 1
                if k:
                    a = max(a, fence_index[k - 1])
                chunks_seen = it.chunk + 1
            anchor.append(a)
        else:
            anchor.append(j)
            if unit is Unit.DMA:
                fence_chunks.append(chunks_seen)
                fence_index.append(j)
                fence_clock.append(mine if it.unpack else None)
    followers: dict[int, list[int]] = {}
    for j, a in enumerate(anchor):
        if a != j:
            followers.setdefault(a, []).append(j)
    order: list[int] = []

    def place(i: int) -> None:
        order.append(i)
        for f in followers.get(i, ()):
            place(f)

    for f in followers.get(-1, ()):
        place(f)
    for j, a in enumerate(anchor):
        if a == j:
            place(j)
    return [items[i] for i in order]


def assign_waits(instrs: list[Instr], regmax: Mapping[int, int],
                 writable: list[tuple[int, int]], *, devices: int = 1,
                 footprints: _Footprints | None = None) -> list[Instr]:
    """``instrs`` (in dispatch order, no branches but the loop back edge to a SYNC) with the
    wait counts their dependencies need."""
    fp = footprints or _Footprints(regmax, devices)
    deps = _Deps(writable)
    count = {u: 0 for u in _UNITS}        # instructions dispatched to each unit so far
    pos: list[tuple[str, int]] = []       # (unit, index among that unit's instructions)
    out = []
    for j, ins in enumerate(instrs):
        unit = ins.definition.unit.value
        r, w = fp(ins)
        need: dict[str, int] = {}
        for i in deps.access(j, unit, r, w):
            u, k = pos[i]
            need[u] = max(need.get(u, -1), k)
        waits = {u: min(_MAXW, count[u] - k) for u, k in need.items()}
        if waits:   # values are 1..15 by construction: skip Instr.make's re-validation
            ins = Instr(ins.op, ins.args, tuple(waits.get(u, 0) for u in _UNITS), ins.comment)
        out.append(ins)
        if unit in count:
            pos.append((unit, count[unit]))
            count[unit] += 1
        else:
            pos.append((unit, -1))
        if ins.op == "SYNC":
            deps = _Deps(writable)
    return out


def schedule(items: list[Item], regmax: Mapping[int, int], writable: list[tuple[int, int]],
             *, lead: int = LEAD_CHUNKS, devices: int = 1) -> list[Instr]:
    """Hoist, fix branch targets to the new positions of their labels, assign waits
    (``devices``: the ring size, which sets the span an ALLGATHER writes)."""
    fp = _Footprints(regmax, devices)
    ordered = hoist(items, regmax, writable, lead=lead, devices=devices, footprints=fp)
    new_index = {id(it): i for i, it in enumerate(ordered)}
    instrs = []
    for it in ordered:
        ins = it.instr
        if ins.op == "BNZ":
            ins = ins.replace(target=new_index[id(items[ins["target"]])])
        instrs.append(ins)
    return assign_waits(instrs, regmax, writable, devices=devices, footprints=fp)
