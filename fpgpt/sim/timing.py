"""Transaction-level timing model of one device running a Program (DESIGN.md contract 5).

The dispatcher walks a stream exactly as :func:`fpgpt.sim.control.walk` does (docs/execution.md),
one instruction per cycle. CTRL instructions execute in the dispatcher; every other instruction
enters its unit's in-order queue and occupies the unit for a duration computed from its shape
(:mod:`fpgpt.sim.costs`) or, for DMA, from the HBM model (:mod:`fpgpt.sim.hbm`). Every time is
known at dispatch, so the model is one forward pass whose cost grows with instructions executed,
never with cycles:

- dispatch of instruction *j* of unit X waits for a queue slot: instruction *j − queue_depth*
  of X must have completed (a queue entry is held until its instruction completes, so a DMA
  queue also bounds the transfers in flight);
- it starts at max(dispatch, X free, its waits met), waits being docs/execution.md's counts;
- MPU/VPU/NET occupy the unit for their duration; the DMA unit executes one transfer at a
  time, as the RTL DMA does: until the later of the HBM model's completion and the DMA
  engine's own cycles (``costs.dma_cycles``: one stripe of ``channels × beat`` bytes per cycle
  on its stripe path, one element per cycle on its element path);
- completion is in order per unit; SYNC and HALT wait for every unit to drain;
- the register scoreboard stalls dispatch of any instruction that touches a register an
  in-flight ARGMAX writes. The timing model does not know the token: ARGMAX writes 0.

Per-instruction static data (unit, waits, scoreboard registers, duration or transfer plan) is
computed once per stream; instructions whose shape depends on registers are costed per distinct
register value and cached.

The dispatch loop of :func:`stream_timeline` also exists compiled (:mod:`fpgpt.sim.fastloop`,
``fastloop.c``: the same operations in the same order, equal to the bit); it runs a stream
unless it is traced or hazard-checked (a ring card pauses it at each NET instruction). The
Python loop here is the reference.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from ..isa import Kind, Unit
from ..geometry import ring_group_elements, stripe_elements
from ..isa.operands import operands
from .control import MAX_STEPS_DEFAULT, Registers, capture
from . import fastloop
from .costs import (EVENT_KEYS, dma_cycles, dma_port_b, instr_events, mpu_cycles,
                    mpu_issue_cycles, net_cycles, port_b_accesses, vpu_cycles)
from .hazards import HazardChecker, TimingHazard
from .hbm import HBMModel
from .machine import SimError
from .results import CAUSES, UNITS, SimResult, StreamTiming
from .trace import TraceRecorder

if TYPE_CHECKING:
    from ..config import HardwareConfig
    from ..isa import Instr, Program

__all__ = ["TimingError", "TimingHazard", "simulate", "time_stream", "stream_timeline",
           "StreamPlan"]

_UNIT_INDEX = {Unit.DMA: 0, Unit.MPU: 1, Unit.VPU: 2, Unit.NET: 3}
_NOP, _HALT, _SYNC, _SETI, _ADDI, _BNZ = 10, 11, 12, 13, 14, 15
_CTRL = {"NOP": _NOP, "HALT": _HALT, "SYNC": _SYNC, "SETI": _SETI, "ADDI": _ADDI, "BNZ": _BNZ}
_MASK32 = 0xFFFFFFFF
_COST_CACHE_LIMIT = 1 << 16
_PROGRESS_EVERY = 1 << 16
_TRIM_AT = 1 << 12                 # completion-list length at which a SYNC trims the lists


class TimingError(SimError):
    """A timing request that cannot be served (bad lengths, a stream without HALT, ...)."""


_CHANNEL_WORK = "hbm_channel_cycles"      # a tally key beside the events (not an event)


def _cost_function(hw: "HardwareConfig", hbm: HBMModel, op: str, unit: Unit) -> Callable[[dict], Any]:
    """f (captured fields) -> cost: (cycles, issue cycles, port-B accesses, tally) for
    MPU/VPU/NET (issue cycles: when the unit takes its next instruction, ``costs.mpu_issue_cycles``
    for an MM, the cycles for the others), a transfer plan tuple for DMA (with the engine's
    cycles, its port-B occupancy and a tally).

    The tally (last item) is what the stream totals add up per dispatch, as ``(key, value)``
    pairs: the instruction's nonzero events (:func:`fpgpt.sim.costs.instr_events`, the page
    activations from the HBM model) and, for a DMA, the HBM channel-cycles of work it asks
    (its charged bytes over the channel rate, summed over the channels)."""
    if unit is Unit.DMA:
        extra = hbm.latency_cycles if op == "GATHER" else 0.0   # the dependent index read
        def dma(f):
            eng = dma_cycles(hw, op, f)
            occupancy = min(1.0, dma_port_b(hw, op, f) / eng) if eng > 0 else 0.0
            ops = operands(op, f)
            segs = [(o.base, o.length, o.rows, o.row_stride, o.batch, o.batch_stride)
                    for o in ops if o.space == "H"]        # what hbm.dma_segments gives
            plan, act, work = hbm.plan_tally(segs)
            ev = instr_events(hw, op, f, ops)
            nbytes = ev.get("hbm_read_bytes", 0) + ev.get("hbm_write_bytes", 0)
            if act:
                ev["hbm_activations"] = act
            if work:
                ev[_CHANNEL_WORK] = work
            if plan[0] == 2:                      # per-channel work as Python floats (the loop's)
                plan = (2, plan[1].tolist(), None if plan[2] is None else plan[2].tolist(),
                        plan[3])
            return plan + (nbytes, extra, eng, occupancy, tuple(ev.items()))
        return dma
    if unit is Unit.MPU:
        return lambda f: (mpu_cycles(hw, f), mpu_issue_cycles(hw, f),
                          port_b_accesses(hw, op, f), tuple(instr_events(hw, op, f).items()))
    if unit is Unit.VPU:
        cyc = lambda f: vpu_cycles(hw, op, f)                           # noqa: E731
    else:
        cyc = lambda f: net_cycles(hw, op, f)                           # noqa: E731
    def unit_cost(f):
        c = cyc(f)
        return (c, c, port_b_accesses(hw, op, f), tuple(instr_events(hw, op, f).items()))
    return unit_cost


def _address_moduli(hw: "HardwareConfig") -> dict[str, int]:
    """Address fields, and the modulus their cost depends on them through.

    Every cost (:mod:`fpgpt.sim.costs`, :meth:`HBMModel.plan_tally`) reads an HBM address only
    through its residue modulo the interleave period (the channel demand), the stripe (the DMA
    engine's stripe counts), the interleave piece and ``2·C`` (the stripe-path alignment test), and
    a scratchpad address only modulo ``C`` (chunk alignment; a NET operand modulo the NET
    unit's group ``G`` too); so instructions whose fields agree
    but for addresses congruent modulo these share one cost, exactly (each layer's tiles)."""
    c = hw.mpu.width
    h = hw.hbm
    m = math.lcm(h.interleave_bytes * h.channels, 2 * stripe_elements(hw), h.interleave_bytes, 2 * c)
    # NET reads its scratchpad operand in G-aligned blocks (costs.net_engine_cycles)
    sram = math.lcm(c, ring_group_elements(hw))
    return {"hbm": m, "idx": m, "sram": sram, "a": c, "b": c, "bias": c, "dst": c, "gamma": c,
            "beta": c}


class StreamPlan:
    """Static per-instruction data of one stream, built once (see module docstring).

    ``entries[i]`` is ``(code, waits, touched, cost, dyn, x1, x2)``: code 0..3 a unit (wait-field
    order) or a CTRL code; waits ``((unit, k), ...)`` for k > 0; registers the scoreboard
    checks; the static cost (None when register-dependent); ``dyn`` = (register numbers, their
    field names, base fields, shape id, cost function, the register when it is the only one
    else -1) for register-dependent shapes; x1/x2 per
    code (ARGMAX rd; SETI rd/imm; ADDI rd/(rs, imm); BNZ rs/target).

    Costs live in ``costs``, keyed ``(shape id, register values...)``: the shape id names the
    mnemonic and the fields other than register values, addresses reduced by
    :func:`_address_moduli`, so the tiles of every layer share their costs (exactly).
    """

    def __init__(self, stream: list["Instr"], hw: "HardwareConfig", hbm: HBMModel) -> None:
        self.ops = [ins.op for ins in stream]
        entries = []
        fns: dict[str, Callable] = {}
        moduli = _address_moduli(hw)
        self.costs: dict[tuple, Any] = {}
        shapes: dict[tuple, int] = {}
        # Per mnemonic: its definition, unit, and the fields naming registers it reads/writes;
        # per wait tuple its (unit, k) list; per register set what the scoreboard checks.
        defs: dict[str, tuple] = {}
        wait_sets: dict[tuple, tuple] = {}
        touch_sets: dict[tuple, tuple] = {}
        units = []
        for ins in stream:
            op = ins.op
            dd = defs.get(op)
            if dd is None:
                d = ins.definition
                dd = defs[op] = (d, d.unit, tuple(fd.name for fd in d.fields if fd.kind is Kind.REG),
                                 tuple(fd.name for fd in d.fields if fd.kind is Kind.REGW))
            d, unit, reg_names, regw_names = dd
            units.append(unit)
            f = dict(ins.args)
            waits = wait_sets.get(ins.waits)
            if waits is None:
                waits = wait_sets[ins.waits] = tuple((u, k) for u, k in enumerate(ins.waits) if k)
            regs_read = [(name, f[name]) for name in reg_names]
            rkey = (tuple(r for _, r in regs_read), tuple(f[name] for name in regw_names))
            touched = touch_sets.get(rkey)
            if touched is None:
                touched = touch_sets[rkey] = tuple(sorted({r for r in rkey[0] if r}
                                                          | set(rkey[1]) - {0}))
            if unit is Unit.CTRL:
                code = _CTRL[op]
                x1: Any = 0
                x2: Any = 0
                if code == _SETI:
                    x1, x2 = f["rd"], ins.signed("imm")
                elif code == _ADDI:
                    x1, x2 = f["rd"], (f["rs"], ins.signed("imm"))
                elif code == _BNZ:
                    x1, x2 = f["rs"], f["target"]
                entries.append((code, waits, touched, None, None, x1, x2))
                continue
            fn = fns.get(op)
            if fn is None:
                fn = fns[op] = _cost_function(hw, hbm, op, unit)
            # STR's rs is the value it stores: no part of its cost.
            dyn_regs = tuple((name, r) for name, r in regs_read
                             if r and not (op == "STR" and name == "rs"))
            names = tuple(n for n, _ in dyn_regs)
            # (The register fields' numbers stay in the key: a finer key, as exact.)
            shape = (op, names, *[v % moduli[k] if k in moduli else v for k, v in ins.args])
            sid = shapes.setdefault(shape, len(shapes))
            if dyn_regs:
                regnums = tuple(r for _, r in dyn_regs)
                cost, dyn = None, (regnums, names, f, sid, fn,
                                   regnums[0] if len(regnums) == 1 else -1)
            else:
                cost = self.costs.get((sid,))
                if cost is None:
                    cost = self.costs[(sid,)] = fn(f)
                dyn = None
            rd = f["rd"] if op == "ARGMAX" else 0
            entries.append((_UNIT_INDEX[unit], waits, touched, cost, dyn, rd, 0))
        self.units = units
        self.entries = entries


def _ran_off(stream: str, pc: int) -> TimingError:
    return TimingError(f"stream {stream!r}: execution ran off the end of the stream at "
                       f"instruction {pc} (missing HALT?)")


def _endless(stream: str, max_steps: int) -> TimingError:
    return TimingError(f"stream {stream!r}: stopped after {max_steps} instructions without HALT "
                       "(endless loop?)")


def _dyn_cost(dyn: tuple, regs_v: list[int], costs: dict) -> Any:
    """The cost of a register-dependent instruction at the current register values."""
    regnums, names, base, sid, fn, _ = dyn
    key = (sid, *[regs_v[r] for r in regnums])
    c = costs.get(key)
    if c is None:
        if len(costs) >= _COST_CACHE_LIMIT:
            costs.clear()
        f = dict(base)
        for name, v in zip(names, key[1:]):
            f[name] = v
        c = costs[key] = fn(f)
    return c


def time_stream(program: "Program", stream: str, hw: "HardwareConfig", regs: Registers,
                **options: Any) -> StreamTiming:
    """Time one stream of ``program`` on one device, every unit idle at its start: the
    arguments and result of :func:`stream_timeline`, run to its end (a lone card's NET
    instructions cost ``costs.net_cycles``, the partner assumed ready)."""
    gen = stream_timeline(program, stream, hw, regs, **options)
    try:
        next(gen)
    except StopIteration as done:
        return done.value
    raise AssertionError("an uncoupled timeline never stops at a NET instruction")


def stream_timeline(program: "Program", stream: str, hw: "HardwareConfig", regs: Registers, *,
                    trace: TraceRecorder | None = None, check_hazards: bool = False,
                    progress: Callable[[str, int], None] | None = None,
                    max_steps: int = MAX_STEPS_DEFAULT, offset_cycles: float = 0.0,
                    exact_hbm: bool = False, coupled: bool = False):
    """Time one stream of ``program`` on one device, every unit idle at its start (a generator:
    its return value is the :class:`StreamTiming`).

    Parameters
    ----------
    program : Program
        Only ``program.streams[stream]`` is read.
    stream : str
        Stream name.
    hw : HardwareConfig
        The design being timed.
    regs : Registers
        Register values at the start; updated as the stream runs (they persist, as on the device).
    trace : TraceRecorder, optional
        Receives one event per unit instruction and per transfer.
    check_hazards : bool
        Raise :class:`TimingHazard` when conflicting instructions overlap (slow; for tests).
    progress : callable, optional
        Called as ``progress(stream, instructions_dispatched)`` now and then.
    max_steps : int
        Dispatch limit guarding against endless loops.
    offset_cycles : float
        Where the stream starts on the trace's time axis.
    exact_hbm : bool
        Track every HBM channel exactly, also for balanced transfers (:meth:`HBMModel.plan`).
    coupled : bool
        One card of a ring (fpgpt.sim.system): at each NET instruction the generator yields
        ``(pc, start, cycles)`` (the earliest start on this card, its idle-ring cost) and is sent
        back the cycle it completes, once the partners' data have arrived.

    Returns
    -------
    StreamTiming
    """
    instrs = program.stream(stream)
    hbm = HBMModel(hw, exact=exact_hbm)
    plan = StreamPlan(instrs, hw, hbm)
    entries = plan.entries
    costs = plan.costs
    hz = HazardChecker(hw, stream) if check_hazards else None
    if trace is not None:
        trace.begin_stream(stream, offset_cycles, hw.clock_mhz)

    depth = hw.buffers.queue_depth
    # Completion times by dispatch, one list per unit, after `pad` zeros (no instruction: a
    # wait on it is met at once, as the clock never runs below 0): the instruction j look-backs
    # before the next one is at index -j, the DMA transfer dispatched k-th at index pad + k.
    pad = max([depth, 16] + [kk for e in entries for _, kk in e[1]])
    if trace is None and hz is None:
        # The same loop compiled (fastloop.c: the same operations in the same order); None
        # when it is not available. The Python loop below is the reference.
        fast = fastloop.open_stream(plan, hbm, regs.v, depth=depth, pad=pad, max_steps=max_steps,
                                    progress_every=_PROGRESS_EVERY, trim_at=_TRIM_AT,
                                    dyn_cost=_dyn_cost, coupled=coupled,
                                    progress=None if progress is None else
                                    (lambda k: progress(stream, k)))
        if fast is not None:
            with fast:
                state, value = fast.advance()
                while state == "pause":                # a ring card at a NET instruction
                    state, value = fast.advance((yield value))
                if state == "end":
                    raise _ran_off(stream, value)
                if state == "steps":
                    raise _endless(stream, max_steps)
                r = fast.result()
            return _stream_result(stream, hw, plan, hbm, r["t"], r["steps"], r["per_cnt"],
                                  r["per_busy"], r["dyn"], r["wm"], r["hbm_bytes"], progress)
    ring = [[0.0] * pad for _ in UNITS]
    ring0 = ring[0]
    free = [0.0, 0.0, 0.0, 0.0]                        # when each unit can start the next
    #                                                    (its last completion, or for an MM the
    #                                                    end of its issue: docs/timing.md)
    last = [0.0, 0.0, 0.0, 0.0]                        # each engine's last completion (in order)
    last_ev: list = [None] * 4                         # ... and its trace event
    n = len(entries)
    per_busy = [0.0] * n
    regs_v = regs.v
    pend = [0.0] * len(regs_v)                         # scoreboard: register ready time
    pend_u = [0] * len(regs_v)                         # ... and the unit that writes it
    max_pend = 0.0
    hbm_bytes = 0
    # The HBM model's state and constants as locals: transfers are issued inline below, the
    # same arithmetic in the same order as HBMModel.issue (kind 2, per channel, on a list of
    # Python floats rather than a numpy array: the same IEEE operations), and the state is
    # written back at the end.
    h_base = hbm._base.tolist()
    refresh = hbm.refresh
    h_iv, h_rc, h_av, h_lat = hbm.interval_cycles, hbm.refresh_cycles, hbm._avail, hbm.latency_cycles
    h_lo, h_shift, h_mb = hbm._lo, hbm._shift, hbm._maxbase
    # DMA transfers not yet booked, in dispatch order (consecutive ring0 indices): those at
    # ring0 index <= `frozen` are final (an instruction has read their completion), the rest
    # are in flight: the engines' port-B accesses during them may still delay them (module
    # docstring). Each is a list
    # [k, pc, ready, s, e, e_hbm, eng, steal, occupancy, nbytes, trace event, blame], k its
    # index in ring0, blame None or what blame() needs to attribute the wait before the
    # transfer's start. Final transfers are booked (busy time, waits, trace) in order, in
    # batches (at once when tracing, so that the trace's order stays the dispatch order).
    inflight: list[list] = []
    frozen = pad - 1
    # Waits (docs/timing.md, "Decode breakdown"): wm[unit][cause] cycles that the unit was free
    # but its next instruction had not started, by the unit whose completion it waited for
    # (0..3) or the dispatcher (4). The dispatch clock t was last raised (by a queue slot, the
    # scoreboard, a CTRL wait or SYNC) to `traise`, waiting on unit `tcause`.
    wm = [[0.0] * len(CAUSES) for _ in UNITS]
    tcause, traise = 4, 0.0
    wcause = 4                                         # the wait that bound an instruction's ready
    wc = [4]                                           # ... as waits_met reports it
    dma_end = 0.0                                      # the last final DMA completion
    dyn_hist: list = []                                # the cost of every register-dependent dispatch
    # Unit instructions' waits, split for the loop: the DMA look-back (0: none) and the
    # others as (completion list, -look-back, unit), in unit order (the order they bind in).
    entries = [e if e[0] > 3 else
               (e[0], (next((kk for u, kk in e[1] if u == 0), 0),
                       tuple((ring[u], -kk, u) for u, kk in e[1] if u))) + e[2:]
               for e in entries]

    def blame(u: int, f0: float, s: float, td: float, ready: float, wcause: int, tr: float,
              tcs: int) -> None:
        """Attribute [f0, s), unit ``u`` free but its instruction not started: the part after
        its dispatch ``td`` to the wait that held ``ready``, the rest to the dispatch clock's last
        stall up to ``tr`` and to the dispatcher after it; a DMA start pushed past ``ready``
        (port-B delays of an earlier transfer) to the DMA itself."""
        row = wm[u]
        if s > ready:
            lo = ready if ready > f0 else f0
            row[u] += s - lo
            s = lo
        if s > td:
            lo = td if td > f0 else f0
            row[wcause] += s - lo
            s = lo
        if s <= f0:
            return
        if tr > f0:
            hi = tr if tr < s else s
            row[tcs] += hi - f0
            row[4] += s - hi
        else:
            row[4] += s - f0

    def book() -> None:
        """Book the final transfers (ring0 index <= ``frozen``), in order: busy time, the wait
        before each start, the trace."""
        nonlocal dma_end
        m = 0
        for k_, pc_, _, s_, e_, _, _, _, _, nb_, ev_, bl_ in inflight:
            if k_ > frozen:
                break
            m += 1
            per_busy[pc_] += e_ - s_
            if s_ > dma_end and bl_ is not None:
                blame(0, dma_end, s_, *bl_)
            dma_end = e_
            if ev_ is not None:
                trace.retime(ev_, s_, e_)
                trace.transfer(plan.ops[pc_], pc_, s_, e_, nb_)
        del inflight[:m]

    def finalize(upto: int) -> None:
        """Completions of DMA transfers at ring0 index ``<= upto`` are read: no more delays;
        book them."""
        nonlocal frozen
        if upto > frozen:
            frozen = upto
        book()

    def steal(sc: float, ec: float, acc: int, recs: list) -> None:
        """An engine instruction on [sc, ec) makes ``acc`` port-B accesses, spread evenly; each
        that meets a DMA transfer's port-B cycle (its occupancy) delays that transfer by one
        cycle, and every later transfer queued behind it. ``recs``: the transfers in flight.

        One pass: a transfer's overlap is measured on its times before this call moves them
        (transfers start and end in order, so none from the first that starts at or after
        ``ec`` on can overlap), its delay added, then its start and end recomputed from its
        predecessor's; those before the first overlapped transfer do not move."""
        span = ec - sc if ec > sc else 1.0
        prev_e = -1.0
        moving = scan = False
        for rec in recs:
            if not moving:
                rs = rec[3]
                if rs >= ec:
                    return                             # nothing overlaps: nothing moves
                re_ = rec[4]
                if re_ > sc:
                    ov = (ec if ec < re_ else re_) - (sc if sc > rs else rs)
                    if ov > 0:
                        rec[7] += acc * ov / span * rec[8]
                        moving = scan = True
                if not moving:
                    prev_e = re_
                    continue
            elif scan:
                rs = rec[3]
                if rs >= ec:
                    scan = False
                else:
                    re_ = rec[4]
                    if re_ > sc:
                        ov = (ec if ec < re_ else re_) - (sc if sc > rs else rs)
                        if ov > 0:
                            rec[7] += acc * ov / span * rec[8]
            r = rec[2]
            s_new = r if r > prev_e else prev_e
            s_old = rec[3]
            if s_new > s_old:
                rec[5] += s_new - s_old
                rec[3] = s_old = s_new
            e_new = s_old + rec[6] + rec[7]
            r = rec[5]
            if r > e_new:
                e_new = r
            if prev_e > e_new:
                e_new = prev_e
            rec[4] = e_new
            ring0[rec[0]] = e_new
            prev_e = e_new
        if moving:
            free[0] = prev_e

    def check_steps(steps: int) -> int:
        """The step limit and the progress callback, at a count ``>= check_at``; the next
        count to look at."""
        if steps > max_steps:
            raise _endless(stream, max_steps)
        if progress is not None:
            progress(stream, steps)
        return min(steps + _PROGRESS_EVERY - steps % _PROGRESS_EVERY, max_steps + 1)

    def waits_met(waits: tuple, t0: float) -> float:
        """The earliest time >= t0 at which every wait ``(unit, k)`` is met (a DMA completion
        read here is final); ``wc[0]``: the unit whose completion set it, when above t0. (Done
        inline for unit instructions in the loop below.)"""
        for wu, kk in waits:
            ru = ring[wu]
            if wu == 0 and inflight:
                finalize(len(ru) - kk)
            c = ru[-kk]
            if c > t0:
                t0 = c
                wc[0] = wu
        return t0

    t = 0.0                                            # dispatch clock (cycles)
    pc = 0
    # Dispatches are counted per straight run of instructions (from a branch target or the
    # start to a taken BNZ or HALT), not one by one: runs[(first, last)] = times it ran.
    steps = 0
    run0 = 0
    runs: dict[tuple[int, int], int] = {}
    check_at = min(_PROGRESS_EVERY, max_steps + 1)     # the next step count to look at
    while True:
        try:
            code, waits, touched, cost, dyn, x1, x2 = entries[pc]
        except IndexError:
            raise _ran_off(stream, pc) from None
        if max_pend > t:
            for r in touched:
                if pend[r] > t:
                    t = traise = pend[r]
                    tcause = pend_u[r]
        if code < 4:
            ru = ring[code]
            q = ru[-depth]                             # the queue slot: the instruction depth back
            if code == 0:
                k = len(ru) - depth
                if k > frozen:
                    frozen = k                         # final now (booked later)
                    if trace is not None:
                        book()
            if q > t:
                t = traise = q
                tcause = code
            ready = t
            wd, wo = waits                             # waits_met, inlined (hot path)
            if wd:
                k = len(ring0) - wd
                if k > frozen:
                    frozen = k
                    if trace is not None:
                        book()
                c = ring0[-wd]
                if c > ready:
                    ready = c
                    wcause = 0
            for rw, kk, wu in wo:
                c = rw[kk]
                if c > ready:
                    ready = c
                    wcause = wu
            f0 = s = free[code]
            if ready > s:
                s = ready
            if dyn is not None:
                r0 = dyn[5]                            # one register: no list (hot path)
                cost = costs.get((dyn[3], regs_v[r0]) if r0 >= 0
                                 else (dyn[3], *[regs_v[r] for r in dyn[0]]))
                if cost is None:
                    cost = _dyn_cost(dyn, regs_v, costs)
                dyn_hist.append(cost)
            if code == 0:
                kind, work, idx, straggle, nbytes, extra, eng, occ, _ = cost
                if kind == 0:
                    e_hbm = s + 1.0 + extra
                else:                                  # HBMModel.issue, inlined (hot path)
                    if refresh:                        # the start, on the refresh-free clock
                        kq = s // h_iv
                        w = s - kq * h_iv - h_rc
                        w = kq * h_av + (w if w > 0.0 else 0.0)
                    else:
                        w = s
                    if kind == 1:
                        w = w - h_shift
                        if w > h_lo:
                            h_lo = w
                        h_shift = h_shift + work
                        fin = (h_mb if h_mb > h_lo else h_lo) + h_shift + straggle
                    else:                              # kind 2
                        # busy = max(max(base, lo) + shift, w) + work, per channel (after a
                        # kind 2 transfer lo = -inf and shift = 0: busy = base, exactly)
                        if h_shift == 0.0 and h_lo == -math.inf:
                            h_base = [(b if b > w else w) + x for b, x in zip(h_base, work)]
                        else:
                            h_base = [(y if (y := (b if b > h_lo else h_lo) + h_shift) > w
                                       else w) + x for b, x in zip(h_base, work)]
                        h_lo, h_shift = -math.inf, 0.0
                        h_mb = max(h_base)
                        fin = h_mb if idx is None else max([h_base[i] for i in idx])
                    if refresh:                        # the finish, back on the wall clock
                        kq = fin // h_av
                        w = fin - kq * h_av
                        fin = kq * h_iv + (h_rc + w if w > 0 else 0.0)
                    e_hbm = fin + h_lat + extra
                e = s + eng if s + eng > e_hbm else e_hbm   # the DMA engine or HBM bounds it
                if e < f0:
                    e = f0                 # one transfer at a time, as the RTL DMA
                hbm_bytes += nbytes
                ev = trace.instr(0, plan.ops[pc], pc, s, e) if trace is not None and nbytes else None
                inflight.append([len(ru), pc, ready, s, e, e_hbm, eng, 0.0, occ, nbytes, ev,
                                 (t, ready, wcause, traise, tcause) if s > f0 else None])
                if len(inflight) > 64:
                    book()
                free[0] = e
            else:
                cost, hold, acc, _ = cost
                # The unit is busy until its last completion e0 (an MM's drain overlaps the
                # next MM's start): only a start after e0 leaves it waiting.
                e0 = last[code]
                if e0 > f0:
                    f0 = e0
                if s > f0:
                    # blame(code, f0, s, t, ready, ...), inlined: an engine starts at
                    # max(free, ready), so s > f0 means s == ready and its first case is void.
                    row = wm[code]
                    x = s
                    if x > t:
                        lo = t if t > f0 else f0
                        row[wcause] += x - lo
                        x = lo
                    if x > f0:
                        if traise > f0:
                            hi = traise if traise < x else x
                            row[tcause] += hi - f0
                            row[4] += x - hi
                        else:
                            row[4] += x - f0
                e = s + cost
                if coupled and code == 3:              # the ring's partners (sim/system.py)
                    e = yield (pc, s, cost)
                if code == 1 and e <= e0:
                    e = e0 + 1.0                       # in order: an empty MM behind a drain
                if s >= e0:
                    per_busy[pc] += cost
                else:                                  # the part after the previous completion
                    per_busy[pc] += e - e0
                # steal() changes nothing unless a transfer overlaps [s, e): skip the call when
                # every transfer ended by s or the first starts at e or later (in order).
                if acc and inflight and inflight[-1][4] > s:
                    lo = frozen + 1 - inflight[0][0]   # the first in flight
                    if lo <= 0:
                        if inflight[0][3] < e:
                            steal(s, e, acc, inflight)
                    elif lo < len(inflight) and inflight[lo][3] < e:
                        steal(s, e, acc, inflight[lo:])
                if trace is not None:
                    pe = last_ev[code]
                    if pe is not None and s < e0:      # the previous MM's drain under this one
                        trace.overlapped(pe, s)
                    last_ev[code] = trace.instr(code, plan.ops[pc], pc, s, e)
                last[code] = e
                # an MM: the next may start when this one's issue ends (an independent one
                # overlaps its drain; a dependent one waits for e)
                free[code] = s + hold if hold < cost else e
            ru.append(e)
            if hz is not None:
                hz.check(pc, plan.ops[pc], capture(instrs[pc], regs), s, e, t)
            if x1:
                regs_v[x1] = 0                         # ARGMAX: token unknown to timing
                pend[x1] = e
                pend_u[x1] = code
                if e > max_pend:
                    max_pend = e
            t += 1.0
            pc += 1
            continue
        # CTRL: executes in the dispatcher once its waits are met.
        if waits:
            t0 = waits_met(waits, t)
            if t0 > t:
                t = traise = t0
                tcause = wc[0]
        if code == _BNZ:
            t += 1.0
            if regs_v[x1]:
                key = (run0, pc)
                runs[key] = runs.get(key, 0) + 1
                steps += pc - run0 + 1
                if steps >= check_at:
                    check_at = check_steps(steps)
                pc = run0 = x2
            else:
                pc += 1
            continue
        if code == _SETI:
            if x1:
                regs_v[x1] = x2 & _MASK32
        elif code == _ADDI:
            if x1:
                regs_v[x1] = (regs_v[x2[0]] + x2[1]) & _MASK32
        elif code == _SYNC or code == _HALT:
            if inflight:
                finalize(len(ring0) - 1)
            for u, c in enumerate(free):
                if last[u] > c:
                    c = last[u]
                if c > t:
                    t = traise = c
                    tcause = u
            if max(map(len, ring)) > _TRIM_AT:
                # Every transfer is booked: keep the last `pad` completions of each unit (all
                # that a look-back reads), so memory does not grow with the tokens.
                for ru in ring:
                    del ru[:-pad]
                frozen = pad - 1
            if code == _HALT:
                key = (run0, pc)
                runs[key] = runs.get(key, 0) + 1
                steps += pc - run0 + 1
                if steps > max_steps:
                    check_steps(steps)
                break
        t += 1.0
        pc += 1
    hbm._base[:] = h_base                              # the HBM model's state, written back
    hbm._lo, hbm._shift, hbm._maxbase = h_lo, h_shift, h_mb

    per_cnt = [0] * (n + 1)                            # dispatches per instruction, from the runs
    for (a, b), c in runs.items():
        per_cnt[a] += c
        per_cnt[b + 1] -= c
    c = 0
    for i in range(n):
        c += per_cnt[i]
        per_cnt[i] = c
    del per_cnt[n]
    # register-dependent costs: each distinct cost object and its dispatches, in the order of
    # their first dispatch
    objs = {id(c): c for c in dyn_hist}
    dyn = [(objs[ident], c) for ident, c in Counter(map(id, dyn_hist)).items()]
    return _stream_result(stream, hw, plan, hbm, t, steps, per_cnt, per_busy, dyn, wm, hbm_bytes,
                          progress)


def _stream_result(stream: str, hw: "HardwareConfig", plan: StreamPlan, hbm: HBMModel, t: float,
                   steps: int, per_cnt: list[int], per_busy: list[float], dyn: list[tuple],
                   wm: list[list[float]], hbm_bytes: int,
                   progress: Callable[[str, int], None] | None) -> StreamTiming:
    """The :class:`StreamTiming` of a finished stream (either loop): per instruction its
    dispatches and busy cycles, the register-dependent costs with their dispatches, the waits."""
    entries = plan.entries
    counts: dict[str, int] = {}
    busy = {u: 0.0 for u in UNITS}
    breakdown: dict[str, dict[str, float]] = {}
    for i, c in enumerate(per_cnt):
        if not c:
            continue
        op = plan.ops[i]
        counts[op] = counts.get(op, 0) + c
        unit = plan.units[i]
        if unit is not Unit.CTRL:
            u = unit.value
            busy[u] += per_busy[i]
            d = breakdown.setdefault(u, {})
            d[op] = d.get(op, 0.0) + per_busy[i]
    # Events and HBM channel work: static costs once per instruction times its dispatches,
    # register-dependent ones once per distinct cost object times its dispatches.
    tally = dict.fromkeys(EVENT_KEYS + (_CHANNEL_WORK,), 0)
    for i, c in enumerate(per_cnt):
        cst = entries[i][3]
        if c and cst is not None and entries[i][0] < 4:
            for key, v in cst[-1]:
                tally[key] += c * v
    for cst, c in dyn:
        for key, v in cst[-1]:
            tally[key] += c * v
    work = tally.pop(_CHANNEL_WORK)
    events = {k: float(v) for k, v in tally.items()}
    waits_out = {u: {CAUSES[c]: wm[i][c] for c in range(len(CAUSES)) if wm[i][c] > 0}
                 for i, u in enumerate(UNITS)}
    if progress is not None:
        progress(stream, steps)
    return StreamTiming(stream, t, hw.clock_mhz, steps, counts, busy, breakdown, hbm_bytes,
                        events=events, waits=waits_out,
                        hbm_channel_busy_cycles=float(work) / hbm.channels)


def _check_len(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TimingError(f"{name} must be an integer >= {minimum}, not {value!r}")


def simulate(program: "Program", hw: "HardwareConfig", *, prompt_len: int, gen_len: int,
             trace: TraceRecorder | None = None, check_hazards: bool = False,
             progress: Callable[[str, int], None] | None = None,
             exact_hbm: bool = False) -> SimResult:
    """Time a generation: the ``prefill`` stream, then ``decode`` for the remaining tokens.

    Follows docs/execution.md's host protocol: registers start as ``program.registers["prefill"]``
    lists, persist between streams, and ``R3`` is set to ``gen_len - 1`` before ``decode``
    (which does not run when ``gen_len == 1``).

    Parameters
    ----------
    program : Program
        A compiled program with ``prefill`` and ``decode`` streams.
    hw : HardwareConfig
        The design to time.
    prompt_len, gen_len : int
        Prompt tokens and tokens to generate (>= 1 each). When the program's metadata states the
        prompt length it was compiled for (``meta["prompt_len"]``) or its context
        (``meta["n_ctx"]``), these must agree with it.
    trace : TraceRecorder, optional
        Collects a Perfetto timeline (streams one after the other on one time axis).
    check_hazards : bool
        Validate the program's waits (:class:`TimingHazard` on a conflict); slow.
    progress : callable, optional
        ``progress(stream, instructions_dispatched)``.
    exact_hbm : bool
        Track every HBM channel exactly (slower; see :meth:`fpgpt.sim.hbm.HBMModel.plan`).

    Returns
    -------
    SimResult
    """
    _check_len("prompt_len", prompt_len, 1)
    _check_len("gen_len", gen_len, 1)
    meta = program.meta or {}
    compiled = meta.get("prompt_len")
    if isinstance(compiled, int) and compiled != prompt_len:
        raise TimingError(f"prompt_len={prompt_len} but the program was compiled for a "
                          f"{compiled}-token prompt; recompile with --prompt-len {prompt_len}")
    n_ctx = meta.get("n_ctx")
    if isinstance(n_ctx, int) and prompt_len + gen_len - 1 > n_ctx:
        raise TimingError(f"prompt_len + gen_len - 1 = {prompt_len + gen_len - 1} exceeds the "
                          f"model's context of {n_ctx} positions; generate fewer tokens")
    t0 = time.perf_counter()
    regs = Registers(program.registers.get("prefill", {}))
    prefill = time_stream(program, "prefill", hw, regs, trace=trace, check_hazards=check_hazards,
                          progress=progress, exact_hbm=exact_hbm)
    decode = None
    if gen_len > 1:
        regs[3] = gen_len - 1                          # R3 = COUNT (register ABI)
        decode = time_stream(program, "decode", hw, regs, trace=trace,
                             check_hazards=check_hazards, progress=progress,
                             offset_cycles=prefill.cycles, exact_hbm=exact_hbm)
    model = str(meta.get("model", "?"))
    return SimResult(model, hw, prompt_len, gen_len, prefill, decode, time.perf_counter() - t0)
