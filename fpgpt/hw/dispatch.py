"""The dispatcher: fetch, CTRL execution, register capture, unit queues, wait counts, scoreboard.

Exactly docs/execution.md (and fpgpt.sim.timing's dispatch loop):

- one instruction per cycle from the instruction memory (synchronous read: the word of the
  address presented in one cycle arrives in the next; the dispatcher presents the *next* pc
  combinationally, so a taken ``BNZ`` costs no bubble); a stream starts one fetch cycle after
  ``start``; ``BNZ`` targets count from the stream's ``entry`` (the ISA's "instruction index in
  the same stream"), so a program image holds its streams back to back without relocation;
- CTRL instructions execute here once their waits are met; ``SYNC`` and ``HALT`` also wait until
  every unit has completed everything dispatched to it;
- any other instruction is captured (each ``Kind.REG`` field replaced by the register's value)
  and enters its unit's queue, with one threshold per wait count ``k > 0``:
  ``threshold[Y] = dispatched[Y] - k + 1``; dispatch stalls while the unit has ``queue_depth``
  instructions dispatched and not completed;
- a queue head starts when its unit is ready and ``completed[Y] >= threshold[Y]`` for each of
  its waits; an empty queue passes an instruction through in its dispatch cycle;
- register scoreboard: ``ARGMAX rd`` marks ``rd`` pending at dispatch; an instruction that reads
  or writes a pending register does not dispatch until the unit writes it back (``wb_*``).

Units report completion with a one-cycle ``{unit}_done`` pulse, in order.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..isa.table import (INSTRUCTIONS, NUM_REGS, REG_BITS, WAIT_UNITS, WORD_BITS, Kind, Unit)
from .decoder import WORD_LAYOUT, Opcode
from .decoder import captured_layout

__all__ = ["UNITS", "UnitQueue", "Dispatcher"]

#: The queued units, in wait-field order (``dma``, ``mpu``, ``vpu``, ``net``).
UNITS: tuple[Unit, ...] = WAIT_UNITS
_COUNT_BITS = 32     # dispatched / completed counters; compared modulo 2**32 (signed difference)


def _entry_layout(unit: Unit) -> data.StructLayout:
    waits = {f"thr_{u.value}": unsigned(_COUNT_BITS) for u in UNITS}
    waits.update({f"has_{u.value}": unsigned(1) for u in UNITS})
    return data.StructLayout({"instr": captured_layout(unit), **waits})


class UnitQueue(wiring.Component):
    """In-order queue of one unit: ``depth`` entries, fall-through when empty.

    Ports
    -----
    push : In(1), entry : In(layout)
        Enqueue ``entry`` this cycle (the dispatcher guarantees room).
    head : Out(layout), head_valid : Out(1)
        The oldest entry (``entry`` itself when the queue is empty and ``push`` is high).
    empty : Out(1), oldest : Out(layout)
        No entry is stored (the head, if valid, is ``entry`` falling through); the oldest
        stored entry (the head when not ``empty``).
    pop_if_push, pop_if_not : In(1)
        The head is removed this cycle: what that is when ``push`` is high and when it is low
        (the unit takes the head; with ``push`` low only a stored head can be taken). ``push``
        is the dispatcher's late issue decision; given both cases, the queue's pointers and
        count choose between values made without it, one LUT in front of each register
        (docs/rtl-clock.md, "Session 24").
    pop : Out(1)
        The head is removed this cycle.
    """

    def __init__(self, layout: data.StructLayout, depth: int):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._depth = depth
        self._layout = layout
        super().__init__({"push": In(1), "entry": In(layout), "head": Out(layout),
                          "head_valid": Out(1), "empty": Out(1), "oldest": Out(layout),
                          "pop_if_push": In(1), "pop_if_not": In(1), "pop": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d = self._depth
        m.submodules.mem = mem = memory.Memory(shape=self._layout.size, depth=d, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")     # LUT RAM: the head is read combinationally
        wptr, rptr = Signal(range(d)), Signal(range(d))
        count = Signal(range(d + 1))
        m.d.comb += [wr.addr.eq(wptr), wr.data.eq(self.entry), wr.en.eq(self.push),
                     rd.addr.eq(rptr)]
        empty = count == 0
        m.d.comb += [self.head.eq(Mux(empty, self.entry, rd.data)),
                     self.head_valid.eq(~empty | self.push), self.empty.eq(empty),
                     self.oldest.eq(rd.data)]

        def inc(p):
            return Mux(p == d - 1, 0, p + 1)

        pp, pn = self.pop_if_push, self.pop_if_not
        m.d.comb += self.pop.eq(Mux(self.push, pp, pn))
        with m.If(self.push):
            m.d.sync += wptr.eq(inc(wptr))
        m.d.sync += [
            rptr.eq(Mux(self.push, Mux(pp, inc(rptr), rptr), Mux(pn, inc(rptr), rptr))),
            count.eq(Mux(self.push, Mux(pp, count, count + 1), Mux(pn, count - 1, count))),
        ]
        return m


class Dispatcher(wiring.Component):
    """Fetch and dispatch of one instruction stream (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
        ``buffers.queue_depth`` entries per unit queue.
    pc_bits : int
        Width of the instruction address (the instruction memory holds ``2**pc_bits`` words).

    Ports
    -----
    start : In(1)
        Starts the stream at instruction ``entry`` (while idle).
    entry : In(pc_bits)
    running : Out(1)
    halted : Out(1)
        One-cycle pulse: ``HALT`` dispatched with every unit drained.
    imem_addr : Out(pc_bits), imem_data : In(WORD_BITS)
        Instruction memory with a synchronous read.
    reg_we, reg_waddr, reg_wdata : In
        Host writes to a register (while idle).
    regs : Out(16 * 32)
        The register file, R[i] at bits [32*i, 32*i + 32).
    wb_we, wb_addr, wb_data : In
        A unit's register write-back (ARGMAX), with its ``done`` pulse.
    {unit}_cmd : Out(stream.Signature(captured_layout(unit))), {unit}_done : In(1)
        For unit in dma, mpu, vpu, net.
    dispatched_{unit}, completed_{unit} : Out(32)
        The counters of the wait rule (for status and tests).
    """

    def __init__(self, *, hw: HardwareConfig, pc_bits: int = 16):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        if not isinstance(pc_bits, int) or not 1 <= pc_bits <= 24:
            raise ValueError(f"pc_bits must be an integer in 1..24 (BNZ targets are 24 bits), "
                             f"not {pc_bits!r}")
        self._hw = hw
        self._pc_bits = pc_bits
        members = {
            "start": In(1), "entry": In(pc_bits), "running": Out(1), "halted": Out(1),
            "imem_addr": Out(pc_bits), "imem_data": In(WORD_BITS),
            "reg_we": In(1), "reg_waddr": In(4), "reg_wdata": In(REG_BITS),
            "regs": Out(NUM_REGS * REG_BITS),
            "wb_we": In(1), "wb_addr": In(4), "wb_data": In(REG_BITS),
        }
        for u in UNITS:
            members[f"{u.value}_cmd"] = Out(stream.Signature(captured_layout(u)))
            members[f"{u.value}_done"] = In(1)
            members[f"dispatched_{u.value}"] = Out(_COUNT_BITS)
            members[f"completed_{u.value}"] = Out(_COUNT_BITS)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        depth = self._hw.buffers.queue_depth
        view = data.View(WORD_LAYOUT, self.imem_data)
        op = view.nop.opcode

        # ---- registers and scoreboard ------------------------------------------------------
        regs = [Const(0, REG_BITS)] + [Signal(REG_BITS, name=f"r{i}") for i in range(1, NUM_REGS)]
        R = Array(regs)
        for i, r in enumerate(regs):
            m.d.comb += self.regs[REG_BITS * i:REG_BITS * (i + 1)].eq(r)
        pending = Signal(NUM_REGS)
        set_pending = Signal(NUM_REGS)
        clr_pending = Signal(NUM_REGS)
        with m.If(self.wb_we):
            m.d.comb += clr_pending.eq(1 << self.wb_addr)
        m.d.sync += pending.eq((pending & ~clr_pending | set_pending) & ~1)

        # ---- counters ------------------------------------------------------------------------
        disp = {u: Signal(_COUNT_BITS, name=f"disp_{u.value}") for u in UNITS}
        comp = {u: Signal(_COUNT_BITS, name=f"comp_{u.value}") for u in UNITS}
        push = {u: Signal(name=f"push_{u.value}") for u in UNITS}
        for u in UNITS:
            m.d.sync += [disp[u].eq(disp[u] + push[u]),
                         comp[u].eq(comp[u] + getattr(self, f"{u.value}_done"))]
            m.d.comb += [getattr(self, f"dispatched_{u.value}").eq(disp[u]),
                         getattr(self, f"completed_{u.value}").eq(comp[u])]
        # Instructions dispatched and not completed, per unit (``disp - comp``, at most
        # ``depth``): a register beside the counters, so that the room, the drain and the wait
        # tests of the word being dispatched are small compares instead of 32-bit subtractions
        # in front of the issue decision.
        outs = {u: Signal(range(depth + 1), name=f"outs_{u.value}") for u in UNITS}
        for u in UNITS:
            m.d.sync += outs[u].eq(outs[u] + push[u] - getattr(self, f"{u.value}_done"))
        drained = Const(1)
        for u in UNITS:
            drained = drained & (outs[u] == 0)

        def met(u, thr):
            return (comp[u] - thr)[:_COUNT_BITS].as_signed() >= 0

        # Wait thresholds of the word being dispatched.
        waits = {u: getattr(view.nop, f"wait_{u.value}") for u in UNITS}
        thr = {u: (disp[u] - waits[u] + 1)[:_COUNT_BITS] for u in UNITS}
        # met(u, thr[u]) is comp - disp + wait - 1 >= 0, that is outs < wait
        waits_met = Const(1)
        for u in UNITS:
            waits_met = waits_met & ((waits[u] == 0) | (outs[u] < waits[u]))

        # ---- queues --------------------------------------------------------------------------
        queues = {}
        for u in UNITS:
            layout = _entry_layout(u)
            q = queues[u] = UnitQueue(layout, depth)
            m.submodules[f"queue_{u.value}"] = q
            for w in UNITS:
                m.d.comb += [getattr(q.entry, f"thr_{w.value}").eq(thr[w]),
                             getattr(q.entry, f"has_{w.value}").eq(waits[w] != 0)]
            m.d.comb += q.push.eq(push[u])
            cmd = getattr(self, f"{u.value}_cmd")
            # The head's waits: a stored entry's thresholds against the completions, or, falling
            # through, the word's own (the same test on ``outs``); the word's thresholds only
            # go into the queue's storage.
            head_met = Const(1)
            for w in UNITS:
                head_met = head_met & (~getattr(q.oldest, f"has_{w.value}")
                                       | met(w, getattr(q.oldest, f"thr_{w.value}")))
            # Taken with the word pushed: its own waits when it falls through, else the stored
            # head's; without: only a stored head (UnitQueue's pop_if_push / pop_if_not).
            met_if_push = Mux(q.empty, waits_met, head_met)
            m.d.comb += [cmd.payload.eq(q.head.instr),
                         cmd.valid.eq(Mux(q.push, met_if_push, ~q.empty & head_met)),
                         q.pop_if_push.eq(met_if_push & cmd.ready),
                         q.pop_if_not.eq(~q.empty & head_met & cmd.ready)]

        # ---- decode of the word at pc ----------------------------------------------------------
        pc = Signal(self._pc_bits)
        base = Signal(self._pc_bits)       # the running stream's entry
        next_pc = Signal(self._pc_bits)
        go = Signal()
        run = Signal()          # the dispatcher is in RUN: the word at pc is live
        room = {u: outs[u] < depth for u in UNITS}
        # Issue condition as a sum of products: ``pending`` is read at every register field
        # position of the formats in parallel, straight from the word, and the opcode alone
        # says which positions the instruction reads or writes and whose room (a unit's queue,
        # or CTRL's waits) it needs. (A per-opcode Switch of ``~sb & ok`` mapped to 15 LUT
        # levels from the word to the queues' counters; docs/rtl-clock.md.)
        fields = {}                     # (offset, width) in the word -> bit in ``uses``
        for d in INSTRUCTIONS:
            lay = WORD_LAYOUT.members[d.name.lower()]
            for f in d.fields:
                if f.kind in (Kind.REG, Kind.REGW):
                    fields.setdefault((lay[f.name].offset, f.bits), len(fields))
        uses = Signal(len(fields))
        is_unit = {u: Signal(name=f"is_{u.value}") for u in UNITS}
        is_ctrl, is_drain = Signal(), Signal()
        sb = Const(0)
        for (off, bits), i in fields.items():
            sb = sb | (uses[i] & pending.bit_select(self.imem_data[off:off + bits], 1))
        ok = is_ctrl & waits_met & (~is_drain | drained)
        for u in UNITS:
            ok = ok | (is_unit[u] & room[u])
        m.d.comb += go.eq(~sb & ok)
        for u in UNITS:
            m.d.comb += push[u].eq(run & go & is_unit[u])
        with m.Switch(op):
            for d in INSTRUCTIONS:
                with m.Case(Opcode[d.name]):
                    iv = getattr(view, d.name.lower())
                    lay = WORD_LAYOUT.members[d.name.lower()]
                    m.d.comb += uses.eq(sum(1 << fields[lay[f.name].offset, f.bits] for f in d.fields
                                            if f.kind in (Kind.REG, Kind.REGW)))
                    if d.unit is Unit.CTRL:
                        m.d.comb += [is_ctrl.eq(1), is_drain.eq(d.name in ("SYNC", "HALT"))]
                        continue
                    q = queues[d.unit]
                    m.d.comb += is_unit[d.unit].eq(1)
                    m.d.comb += q.entry.instr.op.eq(op)
                    for f in d.fields:
                        v = getattr(iv, f.name)
                        m.d.comb += getattr(q.entry.instr, f.name).eq(R[v] if f.kind is Kind.REG else v)
                    for f in d.fields:
                        if f.kind is Kind.REGW:
                            with m.If(go & run):
                                m.d.comb += set_pending.eq(1 << getattr(iv, f.name))

        # ---- run control ---------------------------------------------------------------------
        m.d.comb += [self.imem_addr.eq(next_pc), next_pc.eq(pc)]
        with m.FSM(name="disp"):
            with m.State("IDLE"):
                m.d.comb += next_pc.eq(self.entry)
                with m.If(self.start):
                    m.d.sync += [pc.eq(self.entry), base.eq(self.entry)]
                    m.next = "FETCH"
                with m.If(self.reg_we):
                    for i in range(1, NUM_REGS):
                        with m.If(self.reg_waddr == i):
                            m.d.sync += regs[i].eq(self.reg_wdata)
            with m.State("FETCH"):
                m.d.comb += self.running.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.running.eq(1), run.eq(1)]
                with m.If(go):
                    m.d.comb += next_pc.eq(pc + 1)
                    with m.Switch(op):
                        for d in INSTRUCTIONS:
                            with m.Case(Opcode[d.name]):
                                iv = getattr(view, d.name.lower())
                                if d.name == "SETI":
                                    self._write(m, regs, iv.rd, iv.imm.as_unsigned())
                                elif d.name == "ADDI":
                                    self._write(m, regs, iv.rd, (R[iv.rs] + iv.imm.as_unsigned())[:32])
                                elif d.name == "BNZ":
                                    with m.If(R[iv.rs] != 0):
                                        m.d.comb += next_pc.eq(base + iv.target)
                                elif d.name == "HALT":
                                    m.d.comb += self.halted.eq(1)
                                    m.next = "IDLE"
                m.d.sync += pc.eq(next_pc)
        # Unit write-back (ARGMAX), after the dispatcher's own writes: the scoreboard keeps them
        # from ever naming the same register in one cycle.
        with m.If(self.wb_we):
            for i in range(1, NUM_REGS):
                with m.If(self.wb_addr == i):
                    m.d.sync += regs[i].eq(self.wb_data)
        return m

    @staticmethod
    def _write(m, regs, rd, value):
        for i in range(1, len(regs)):
            with m.If(rd == i):
                m.d.sync += regs[i].eq(value)
