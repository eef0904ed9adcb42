"""The VPU engine: executes captured VPU instructions (VADD, VMUL, GELU, LAYERNORM, SOFTMAX,
ARGMAX, VCOPY) on one :class:`~fpgpt.hw.vpu.VPU`, reading and writing the scratchpad.

Semantics: the ISA table's, row by row (``n = cols + R[rc]``; LAYERNORM has no ``rc``): for each
row ``r < rows`` (ARGMAX: one row) one VPU command of ``n`` columns; its operand beats carry
``S[a + r*lda + c]`` (lane ``a``), ``S[b + r*ldb + c]`` (VADD/VMUL; ``ldb = 0`` broadcasts B's
row 0) or ``S[gamma + c]`` / ``S[beta + c]`` (LAYERNORM, lanes ``b`` / ``c``); the result beats
go to ``S[dst + r*ldd + c]``, ``c < n`` only. ARGMAX writes ``R[rd]`` on ``wb_*`` in its ``done``
cycle. Bit-exact with ``fpgpt.sim.executor`` by construction of the VPU. An instruction with
``rows == 0`` or ``n == 0`` writes nothing and completes at once (ARGMAX with ``n == 0``, which
the simulator rejects, writes ``R[rd] = 0`` so that the dispatcher's scoreboard is released).

Schedule. Three parts share the scratchpad port (one element per cycle):

* the *reader* walks rows, beats (``W = hw.vpu.width`` columns) and operands (a, then b, then c),
  one element read per cycle, into staging registers; a beat whose reads are all issued is
  *held* and handed to the VPU's input stream (the last element straight from ``rdata``) as soon
  as the VPU takes it; the next beat's reads start in the hand-off cycle. Lanes past ``n`` are
  not read (the VPU masks them);
* the VPU command of the reader's row is offered as soon as the reader is on that row; the VPU
  accepts it only when idle, i.e. after the previous row has left it;
* the *writer* takes one result beat at a time from the VPU and stores its valid lanes, one per
  cycle, with priority over the reader.

Aliasing contract (what makes row-by-row streaming equal to the executor's "read everything,
then write"): the destination of row ``r`` must not overlap the operands of any later row, and
for the element-wise ops (VADD, VMUL, GELU, VCOPY) a row's destination must not start strictly
inside one of its operand rows (``dst_row <= a_row`` or disjoint; same for b). In-place
(``dst == a``, ``ldd == lda``) is allowed for every op; LAYERNORM / SOFTMAX rows may overlap their
own operands arbitrarily (all reads precede the first write of a row). LAYERNORM / SOFTMAX rows
longer than ``max_cols`` are beyond the VPU's row buffer (not checked here).

Cycle cost: :func:`engine_cycles` gives the exact count from the ``cmd`` handshake to ``done``
with the scratchpad granting every request; it is a cycle-level model of the schedule above and
of the VPU's stream timing, asserted equal to the RTL in amaranth.sim (tests/rtl/
test_hw_vpu_engine.py; 114 measured (op, rows, n) points at width 2 matched it exactly). Its
shape, with ``P`` operands per element (2 VADD/VMUL, 3 LAYERNORM, 1 otherwise), ``W`` the
width and ``L`` the VPU latency of the op's output pass (``vpu.mode_latency``):

* 2 cycles of start (handshake, CHECK), then the port is the bottleneck: every row costs
  ``P*n`` reads plus ``n`` writes, one element per cycle, each beat handed to the VPU one cycle
  after its last read is issued (its data go to the VPU straight from ``rdata``);
* the VPU takes one row per command, so every row also pays the VPU's per-row fill (its
  ``mode_latency`` / ``scalar_wait`` terms, cf. ``fpgpt.sim.costs._vpu_fill``) minus what the
  reader hides by reading the next row's first beat meanwhile; single row, one beat
  (``n <= W``): ``2 + P*n + L + 2 + (n - 1)`` for the element-wise ops, e.g. VADD ``3n + L + 3``;
* a result beat that leaves the VPU while the writer still stores the previous one waits a cycle
  (the writer takes a beat in the cycle after it went idle), which stalls the VPU's input.

The port-bound part, ``rows * (P + 1) * n``, dominates long rows: ``fpgpt.sim.costs.vpu_cycles``
charges ``passes * ceil(n / W)`` per row for a VPU fed ``W`` elements per cycle; this engine
reads one element per cycle (the banked, wide scratchpad is not built yet), as the MPU engine.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..isa.table import Unit
from .decoder import Opcode
from .dma import captured_layout
from .scratchpad import ELEMENT_BITS, addr_bits, port_signature
from .vpu import VPU, check_vpu_args

__all__ = ["VPUEngine", "engine_cycles"]

_N = 33                  # n = cols (16 bits) + R[rc] (32 bits)
_A = 32                  # scratchpad address arithmetic (the ISA's addresses are 32 bits)


class VPUEngine(wiring.Component):
    """Executes captured VPU instructions on one :class:`~fpgpt.hw.vpu.VPU` (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
        ``vpu.width`` and latencies (the VPU's), ``buffers.sram_elements`` (the port).
    max_cols : int
        Longest LAYERNORM / SOFTMAX row (the VPU's row buffer; a multiple of ``vpu.width``).

    Ports
    -----
    cmd : In(stream.Signature(captured_layout(Unit.VPU)))
        The next instruction, register fields holding register values; taken when idle.
    done : Out(1)
        One-cycle pulse when an instruction has completed (its last result written).
    wb_we, wb_addr, wb_data : Out(1), Out(4), Out(32)
        ARGMAX's ``R[rd] = index``, in its ``done`` cycle.
    busy : Out(1)
    sram : Out(scratchpad.port_signature(hw))
    """

    def __init__(self, *, hw: HardwareConfig, max_cols: int = 1024):
        check_vpu_args(hw, max_cols)
        self._hw, self._max_cols = hw, max_cols
        super().__init__({
            "cmd": In(stream.Signature(captured_layout(Unit.VPU))),
            "done": Out(1), "busy": Out(1),
            "wb_we": Out(1), "wb_addr": Out(4), "wb_data": Out(32),
            "sram": Out(port_signature(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        w = hw.vpu.width
        m.submodules.vpu = vpu = VPU(hw=hw, max_cols=self._max_cols)

        # ---- the captured instruction ------------------------------------------------------
        ins = Signal(captured_layout(Unit.VPU))
        n = Signal(_N)                       # columns per row
        rows = Signal(16)
        n_ops = Signal(range(4))             # operands per element: a (b (c))
        is_argmax = Signal()
        running = Signal()

        # ---- reader state --------------------------------------------------------------------
        rrow = Signal(17)                    # row being read (== rows: all read)
        a_row, b_row = Signal(_A), Signal(_A)
        rcol = Signal(_N)                    # first column of the beat being read
        p = Signal(range(3))                 # operand being read (0 a, 1 b / gamma, 2 beta)
        e = Signal(range(w))                 # lane being read
        hold = Signal()                      # a beat is fully read, waiting for the VPU
        h_row = Signal(17)                   # row of the held beat
        sent = Signal(17)                    # rows whose VPU command has been accepted
        pend, pend_p, pend_e = Signal(), Signal.like(p), Signal.like(e)

        ne = Signal(range(w + 1))            # lanes of the beat being read
        rem = (n - rcol)[:_N]
        m.d.comb += ne.eq(Mux(rem >= w, w, rem))

        st = [[Signal(ELEMENT_BITS, name=f"st{q}_{x}") for x in range(w)] for q in range(3)]
        m.d.sync += pend.eq(0)
        with m.If(pend):
            for q in range(3):
                for x in range(w):
                    with m.If((pend_p == q) & (pend_e == x)):
                        m.d.sync += st[q][x].eq(self.sram.rdata)
        # What the VPU takes: the staging registers, the landing element straight from rdata.
        lanes = [[Mux(pend & (pend_p == q) & (pend_e == x), self.sram.rdata, st[q][x])
                  for x in range(w)] for q in range(3)]
        for q, name in enumerate("abc"):
            for x in range(w):
                m.d.comb += getattr(vpu.i.payload, name)[16 * x:16 * x + 16].eq(lanes[q][x])

        i_ok = hold & (sent > h_row)
        handoff = Signal()
        m.d.comb += [vpu.i.valid.eq(i_ok), handoff.eq(i_ok & vpu.i.ready)]

        # ---- VPU commands: the reader's row, once --------------------------------------------
        m.d.comb += [
            vpu.cmd.valid.eq(running & (sent <= rrow) & (sent < rows)),
            vpu.cmd.payload.op.eq(ins.op), vpu.cmd.payload.cols.eq(n),
            vpu.cmd.payload.scale.eq(ins.scale), vpu.cmd.payload.eps.eq(ins.eps),
        ]
        with m.If(vpu.cmd.valid & vpu.cmd.ready):
            m.d.sync += sent.eq(sent + 1)

        # ---- writer ---------------------------------------------------------------------------
        w_busy = Signal()
        w_beat = Signal(16 * w)
        wl = Signal(range(w))
        ocol = Signal(_N)
        orow = Signal(17)
        d_row = Signal(_A)
        orem = (n - ocol)[:_N]
        wn = Signal(range(w + 1))
        m.d.comb += wn.eq(Mux(orem >= w, w, orem))
        m.d.comb += vpu.o.ready.eq(running & ~w_busy)
        o_take = vpu.o.valid & vpu.o.ready
        with m.If(o_take & ~is_argmax):
            m.d.sync += [w_busy.eq(1), w_beat.eq(vpu.o.payload), wl.eq(0)]
        w_req = w_busy
        w_granted = w_req & self.sram.grant
        finished = Signal()                  # the last result is stored this cycle
        with m.If(w_granted):
            m.d.sync += wl.eq(wl + 1)
            with m.If(wl + 1 == wn):
                m.d.sync += w_busy.eq(0)
                with m.If(ocol + w >= n):
                    m.d.sync += [ocol.eq(0), orow.eq(orow + 1), d_row.eq(d_row + ins.ldd)]
                    with m.If(orow + 1 == rows):
                        m.d.comb += finished.eq(1)
                with m.Else():
                    m.d.sync += ocol.eq(ocol + w)

        # ---- the scratchpad port: the writer first, then the reader ----------------------------
        r_req = running & (rrow < rows) & (~hold | handoff)
        r_addr = Signal(_A)
        m.d.comb += r_addr.eq(Mux(p == 0, a_row, Mux(p == 1, b_row, ins.beta)) + rcol + e)
        m.d.comb += [
            self.sram.we.eq(w_req), self.sram.wdata.eq(w_beat.word_select(wl, ELEMENT_BITS)),
            self.sram.re.eq(r_req & ~w_req),
            self.sram.addr.eq(Mux(w_req, d_row + ocol + wl, r_addr)[:addr_bits(hw)]),
        ]
        r_granted = r_req & ~w_req & self.sram.grant

        with m.If(handoff):
            m.d.sync += hold.eq(0)
        with m.If(r_granted):
            m.d.sync += [pend.eq(1), pend_p.eq(p), pend_e.eq(e), e.eq(e + 1)]
            with m.If(e + 1 == ne):
                m.d.sync += e.eq(0)
                with m.If(p + 1 == n_ops):    # the beat is read: hold it, move on
                    m.d.sync += [p.eq(0), hold.eq(1), h_row.eq(rrow)]
                    with m.If(rcol + w >= n):
                        m.d.sync += [rcol.eq(0), rrow.eq(rrow + 1), a_row.eq(a_row + ins.lda),
                                     b_row.eq(Mux(ins.op == Opcode.LAYERNORM, ins.gamma,
                                                  b_row + ins.ldb))]
                    with m.Else():
                        m.d.sync += rcol.eq(rcol + w)
                with m.Else():
                    m.d.sync += p.eq(p + 1)

        # ---- control --------------------------------------------------------------------------
        m.d.comb += [self.wb_addr.eq(ins.rd), self.wb_data.eq(0)]
        with m.FSM(name="vpu_engine"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    pl = self.cmd.payload
                    argmax = pl.op == Opcode.ARGMAX
                    ln = pl.op == Opcode.LAYERNORM
                    m.d.sync += [
                        ins.eq(pl), n.eq(pl.cols + Mux(ln, 0, pl.rc)),
                        rows.eq(Mux(argmax, 1, pl.rows)), is_argmax.eq(argmax),
                        n_ops.eq(Mux(ln, 3, Mux((pl.op == Opcode.VADD) | (pl.op == Opcode.VMUL),
                                                2, 1))),
                        rrow.eq(0), a_row.eq(pl.a), b_row.eq(Mux(ln, pl.gamma, pl.b)),
                        rcol.eq(0), p.eq(0), e.eq(0), hold.eq(0), sent.eq(0),
                        w_busy.eq(0), ocol.eq(0), orow.eq(0), d_row.eq(pl.dst),
                    ]
                    m.next = "CHECK"
            with m.State("CHECK"):   # nothing to compute: complete at once
                m.d.comb += self.busy.eq(1)
                with m.If((n == 0) | (rows == 0)):
                    m.d.comb += [self.done.eq(1), self.wb_we.eq(is_argmax)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += running.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(is_argmax & o_take):
                    m.d.comb += [self.done.eq(1), self.wb_we.eq(1),
                                 self.wb_data.eq(vpu.o.payload[:32])]
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"
                with m.If(finished):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"
        return m


def engine_cycles(hw: HardwareConfig, op: str, rows: int, n: int) -> int:
    """Cycles from the ``cmd`` handshake to ``done`` of one instruction, the scratchpad granting
    every request: a cycle-level model of this engine's schedule and of the VPU's stream timing
    (``mode_latency`` / ``scalar_wait``), asserted equal to the RTL in amaranth.sim.

    Parameters
    ----------
    hw : HardwareConfig
    op : str
        A VPU mnemonic (``"VADD"`` ... ``"VCOPY"``).
    rows : int
        ``rows`` (ignored for ARGMAX, which has one row).
    n : int
        Columns per row, ``cols + R[rc]`` (LAYERNORM: ``cols``).
    """
    from .vpu import _FROM_BUFFER, _NEXT, FIRST_MODE, OUTPUT_MODES, mode_latency, scalar_wait

    if op not in FIRST_MODE:
        raise ValueError(f"op must be a VPU mnemonic {sorted(FIRST_MODE)}, not {op!r}")
    rows = 1 if op == "ARGMAX" else rows
    if rows <= 0 or n <= 0:
        return 1
    w = hw.vpu.width
    lat, waits = mode_latency(hw), scalar_wait(hw)
    n_ops = {"VADD": 2, "VMUL": 2, "LAYERNORM": 3}.get(op, 1)
    beats = -(-n // w)
    first = FIRST_MODE[op]
    # Engine registers (as in VPUEngine.elaborate).
    rrow = rcol = p = e = sent = h_row = wl = ocol = orow = 0
    hold = w_busy = False
    # VPU registers (as in VPU.elaborate): stages[0] is src_valid.
    state, mode, issued, retired, wait = "IDLE", first, 0, 0, 0
    stages = [False] * (max(lat.values()) + 1)
    for t in range(2, 1 << 30):             # cycle 0: the handshake, 1: CHECK
        # ---- the cycle's combinational terms
        streaming = state == "STREAM"
        out_mode = mode in OUTPUT_MODES
        tap = stages[lat[mode]]
        o_valid = (streaming and out_mode and tap) or state == "RESULT"
        advance = not (out_mode and tap and w_busy)
        from_buf = mode in _FROM_BUFFER
        i_ready = streaming and not from_buf and issued < beats and advance
        handoff = hold and sent > h_row and i_ready
        r_granted = rrow < rows and (not hold or handoff) and not w_busy
        cmd_take = state == "IDLE" and sent <= rrow and sent < rows
        o_take = o_valid and not w_busy
        if op == "ARGMAX" and o_take:
            return t
        # ---- the engine's edge
        sent += cmd_take
        if handoff:
            hold = False
        if r_granted:
            e += 1
            if e == min(w, n - rcol):
                e = 0
                p += 1
                if p == n_ops:
                    p, hold, h_row = 0, True, rrow
                    rcol += w
                    if rcol >= n:
                        rcol, rrow = 0, rrow + 1
        if w_busy:
            wl += 1
            if wl == min(w, n - ocol):
                w_busy, wl = False, 0
                ocol += w
                if ocol >= n:
                    ocol, orow = 0, orow + 1
                    if orow == rows:
                        return t
        elif o_take:
            w_busy, wl = True, 0
        # ---- the VPU's edge
        flush = False
        if state == "IDLE":
            if cmd_take:
                mode, issued, retired, flush, state = first, 0, 0, True, "STREAM"
        elif state == "STREAM":
            if retired == beats and issued == beats:
                if out_mode:
                    state = "IDLE"
                else:
                    wait, state = waits[mode], "SCALAR"
            if tap and advance:
                retired += 1
        elif state == "SCALAR":
            wait -= 1
            if wait < 0:
                if op == "ARGMAX":
                    state = "RESULT"
                else:
                    mode, issued, retired, flush, state = _NEXT[mode], 0, 0, True, "STREAM"
        elif o_take:                        # RESULT
            state = "IDLE"
        if advance:
            src = streaming and issued < beats and (handoff or from_buf)
            issued += src
            stages = [src] + stages[:-1]
        if flush:
            stages = [False] * len(stages)
    raise AssertionError("unreachable")
