"""The VPU engine: executes captured VPU instructions (VADD, VMUL, GELU, LAYERNORM, SOFTMAX,
ARGMAX, VCOPY) on one :class:`~fpgpt.hw.vpu.VPU`, reading and writing the scratchpad's line port.

Semantics: the ISA table's, row by row (``n = cols + R[rc]``; LAYERNORM has no ``rc``): for each
row ``r < rows`` (ARGMAX: one row) the VPU's ``n`` columns (one VPU command a row; LAYERNORM and
SOFTMAX one a group of ``geometry.vpu_group_rows(hw, beats)`` rows, the last group the rest,
each run pass by pass in the VPU's row buffer); its operand beats carry
``S[a + r*lda + c]`` (lane ``a``), ``S[b + r*ldb + c]`` (VADD/VMUL; ``ldb = 0`` broadcasts B's
row 0) or ``S[gamma + c]`` / ``S[beta + c]`` (LAYERNORM, lanes ``b`` / ``c``); the result beats
go to ``S[dst + r*ldd + c]``, ``c < n`` only. ARGMAX writes ``R[rd]`` on ``wb_*`` in its ``done``
cycle. Bit-exact with ``fpgpt.sim.executor`` by construction of the VPU. An instruction with
``rows == 0`` or ``n == 0`` writes nothing and completes at once (ARGMAX with ``n == 0``, which
the simulator rejects, writes ``R[rd] = 0`` so that the dispatcher's scoreboard is released).

Schedule (``W = vpu.width``, ``C`` elements per chunk, a multiple of ``W``; ``K =``
:func:`window_chunks`, 4 on tiny, 2 on u280). One line port, the writer's requests first:

* *reader*: per operand (a; b or gamma; beta) a cursor and two *window* slots of ``K`` chunks.
  A window is one line read at the chunk holding the next beat's first element, of which the
  first ``K`` chunks are kept (no line-wide shifter: they are always rdata's chunks ``0..K-1``).
  A row whose start is a multiple of ``W`` (the *fast path*: no beat straddles two chunks) takes
  windows ``K`` chunks apart, ``K·C/W`` beats each; any other row takes them ``K - 1`` chunks
  apart, so that each beat lies inside one window (``(K-1)·C/W`` beats each). Operands read in
  order a, b, c whenever one has a free slot (from CHECK on), so the next row's first windows
  are fetched while the VPU is still on the current row;
* *extraction*: a beat is chunks ``h, h+1`` of the operand's head window, then ``W`` lanes at an
  offset inside one chunk (a ``C:1`` mux per lane); the VPU takes it when its command is running;
  a window is released after its last beat (or the row's);
* *VPU commands*: one per row (LAYERNORM, SOFTMAX: per group of rows; ``grp`` is set in CHECK
  from the registered beats by a priority test, no divider), offered as soon as the VPU is idle;
* *writer*: each result beat's valid lanes are deposited into a ``K``-chunk buffer (element
  mask); a beat that does not fit (or the instruction's last beat) moves the buffer to the flush
  register, written as one masked line write in the next cycle. The VPU's output stalls only
  while a flush is refused.

Aliasing contract (what makes row-by-row streaming equal to the executor's "read everything,
then write"; windows are read early, never late, so it is the element engine's): the destination
of row ``r`` must not overlap the operands of any later row, and for the element-wise ops (VADD,
VMUL, GELU, VCOPY) a row's destination must not start strictly inside one of its operand rows
(``dst_row <= a_row`` or disjoint; same for b). In-place (``dst == a``, ``ldd == lda``) is
allowed for every op; LAYERNORM / SOFTMAX rows may overlap their own operands arbitrarily (all
reads precede the first write of a row; with groups, all reads of a group, pass 1, precede its
first write, pass 3, so rows of a group may also overlap each other's destinations; the next
group's reads may follow those writes, which the rule above covers). LAYERNORM / SOFTMAX rows
longer than ``max_cols`` are beyond the VPU's row buffer (not checked here).

Cycle cost: :func:`engine_cycles` gives the exact count from the ``cmd`` handshake to ``done``
with the scratchpad granting every request: a cycle-level model of this schedule and of the
VPU's stream timing, asserted equal to the RTL in amaranth.sim (tests/rtl/
test_hw_vpu_engine.py at width 2; test_hw_vpu_engine_tiny.py, slow, on the tiny preset's
compiler shapes). With every request granted the writer never stalls the VPU and the reader
keeps up (at most ``n_ops + 1`` port cycles per window of ``>= (K-1)·C/W`` beats), so the cost is
the VPU's own, plus the serial first reads (``costs.vpu_cycles``: equal or one cycle short for
row-aligned operands, tests/rtl/test_hw_calibration.py). One exception inside a LAYERNORM
group: where a row's last window holds a single beat, the next row's first windows of the
three operands arrive 2-3 cycles after the VPU could take them (the model charges 2).
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..geometry import vpu_group_rows, vpu_window_chunks
from ..isa.table import Unit
from .decoder import Opcode
from .decoder import captured_layout
from .scratchpad import ELEMENT_BITS, chunk_bits, chunk_elements, line_signature
from .vpu import VPU, check_vpu_args
from .vpu_lane import GROUPED_OPS

__all__ = ["VPUEngine", "engine_cycles", "window_chunks"]

_N = 33                  # n = cols (16 bits) + R[rc] (32 bits)
_A = 32                  # scratchpad address arithmetic (the ISA's addresses are 32 bits)
_E = ELEMENT_BITS


#: ``K``: chunks of one operand window / of the write buffer (module docstring).
window_chunks = vpu_window_chunks


def check_engine_args(hw: HardwareConfig, max_cols: int) -> None:
    """The VPU's checks, and the chunk geometry the engine's extractors assume."""
    check_vpu_args(hw, max_cols)
    c, w = chunk_elements(hw), hw.vpu.width
    if c % w:
        raise ValueError(f"mpu.width = {c} (the scratchpad chunk) must be a multiple of "
                         f"vpu.width = {w}: a beat must lie in at most two chunks; make "
                         f"vpu.width a power of two <= {c}")


class VPUEngine(wiring.Component):
    """Executes captured VPU instructions on one :class:`~fpgpt.hw.vpu.VPU` (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
        ``vpu.width`` and latencies (the VPU's); the scratchpad geometry (``mpu.width`` elements
        per chunk, a multiple of ``vpu.width``; ``mpu.lanes`` chunks per line).
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
    line : Out(scratchpad.line_signature(hw))
    """

    def __init__(self, *, hw: HardwareConfig, max_cols: int = 1024):
        check_engine_args(hw, max_cols)
        self._hw, self._max_cols = hw, max_cols
        super().__init__({
            "cmd": In(stream.Signature(captured_layout(Unit.VPU))),
            "done": Out(1), "busy": Out(1),
            "wb_we": Out(1), "wb_addr": Out(4), "wb_data": Out(32),
            "line": Out(line_signature(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        w, c, k = hw.vpu.width, chunk_elements(hw), window_chunks(hw)
        lw, lc = w.bit_length() - 1, c.bit_length() - 1
        kc = k * c                                  # elements of a window / the write buffer
        m.submodules.vpu = vpu = VPU(hw=hw, max_cols=self._max_cols)
        port = self.line

        # ---- the captured instruction ------------------------------------------------------
        ins = Signal(captured_layout(Unit.VPU))
        n = Signal(_N)                       # columns per row
        rows = Signal(16)
        n_ops = Signal(range(4))             # operands per element: a (b (c))
        is_argmax = Signal()
        running = Signal()
        # the reader runs (from CHECK on: one cycle early); a register, set as a command that has
        # something to compute is taken and cleared with ``running`` (it was CHECK's decode and
        # ``~empty`` in front of the reader's requests: u280's next 11-LUT path)
        reading = Signal()
        beats = Signal(_N)                   # beats per row, registered with n
        beats_one = Signal()                 # beats == 1
        nbuf = hw.vpu.buffer_beats
        grouped = Signal()                   # LAYERNORM / SOFTMAX: groups of rows per command
        grp = Signal(range(nbuf + 1))        # rows per group (geometry.vpu_group_rows)
        left = Signal(17)                    # rows not yet in a VPU command
        # n == 0 or rows == 0, registered as the command is taken: CHECK's test was ``n``'s and
        # ``rows``' zero compares in front of the reader's requests and window slots (11 LUT,
        # u280's VPU engine at 205.0 MHz retimed, docs/rtl-clock.md "Session 21")
        empty = Signal()

        # ---- operand windows: per operand a reader cursor and two window slots --------------
        # Operand x's row r starts at s_x; its windows start at chunks s_x // C + i * stride,
        # stride K (no beat straddles a chunk: s_x % W == 0) or K - 1 (each beat lies inside one
        # window), and the row's last window is the one holding its last beat's first element.
        rd_row = [Signal(17, name=f"rd_row{x}") for x in range(3)]
        s = [Signal(_A, name=f"s{x}") for x in range(3)]
        q = [Signal(_A - lc, name=f"q{x}") for x in range(3)]
        first = [Signal(name=f"first{x}") for x in range(3)]
        ld = [Signal(_A, name=f"ld{x}") for x in range(3)]
        slot = [[Signal(kc * _E, name=f"slot{x}_{j}") for j in range(2)] for x in range(3)]
        s_busy = [[Signal(name=f"sbusy{x}_{j}") for j in range(2)] for x in range(3)]
        s_full = [[Signal(name=f"sfull{x}_{j}") for j in range(2)] for x in range(3)]
        s_e = [[Signal(lc, name=f"se{x}_{j}") for j in range(2)] for x in range(3)]
        s_k = [[Signal(name=f"sk{x}_{j}") for j in range(2)] for x in range(3)]   # stride K
        wp = [Signal(name=f"wp{x}") for x in range(3)]
        rp = [Signal(name=f"rp{x}") for x in range(3)]

        need, aligned, stride, lastq = [], [], [], []
        for x in range(3):
            al = Signal(name=f"aligned{x}")
            m.d.comb += al.eq(s[x][:lw] == 0 if lw else 1)
            st = Mux(al, k, k - 1)
            lq = Signal(_A - lc, name=f"lastq{x}")
            m.d.comb += lq.eq((s[x] + ((beats - 1) << lw)) >> lc)
            nd = Signal(name=f"need{x}")
            m.d.comb += nd.eq(reading & (x < n_ops) & (rd_row[x] < rows)
                              & ~Mux(wp[x], s_busy[x][1], s_busy[x][0]))
            need.append(nd)
            aligned.append(al)
            stride.append(st)
            lastq.append(lq)
        r_op = Signal(range(3))              # the operand read this cycle (lowest index first)
        for x in reversed(range(3)):
            with m.If(need[x]):
                m.d.comb += r_op.eq(x)
        r_req = Signal()
        m.d.comb += r_req.eq(need[0] | need[1] | need[2])

        # ---- the writer's flush register (its requests go first) ---------------------------
        f_busy = Signal()
        f_data, f_mask, f_q = Signal(kc * _E), Signal(kc), Signal(_A - lc)
        m.d.comb += [
            port.we.eq(f_busy), port.re.eq(r_req & ~f_busy),
            port.wdata.eq(f_data), port.wmask.eq(f_mask),
        ]
        r_chunk = Signal(_A - lc)
        with m.Switch(r_op):
            for x in range(3):
                with m.Case(x):
                    m.d.comb += r_chunk.eq(q[x])
        m.d.comb += port.chunk.eq(Mux(f_busy, f_q, r_chunk)[:chunk_bits(hw)])
        w_granted = f_busy & port.grant
        r_granted = r_req & ~f_busy & port.grant

        # A granted read: reserve the slot, advance the cursor; capture the data next cycle.
        pend, pend_x, pend_j = Signal(), Signal(range(3)), Signal()
        m.d.sync += pend.eq(r_granted)
        with m.If(r_granted):
            m.d.sync += [pend_x.eq(r_op)]
        for x in range(3):
            with m.If(r_granted & (r_op == x)):
                m.d.sync += [pend_j.eq(wp[x]), wp[x].eq(~wp[x])]
                for j in range(2):
                    with m.If(wp[x] == j):
                        m.d.sync += [s_busy[x][j].eq(1),
                                     s_e[x][j].eq(Mux(first[x], s[x][:lc], s[x][:lw] if lw else 0)),
                                     s_k[x][j].eq(aligned[x])]
                with m.If(q[x] + stride[x] > lastq[x]):      # the row's last window
                    m.d.sync += [rd_row[x].eq(rd_row[x] + 1), first[x].eq(1),
                                 s[x].eq(s[x] + ld[x]), q[x].eq((s[x] + ld[x]) >> lc)]
                with m.Else():
                    m.d.sync += [q[x].eq(q[x] + stride[x]), first[x].eq(0)]
            for j in range(2):
                with m.If(pend & (pend_x == x) & (pend_j == j)):
                    m.d.sync += [slot[x][j].eq(port.rdata[:kc * _E]), s_full[x][j].eq(1)]

        # ---- extraction: the head window of each operand, W elements at offset e ------------
        e = [Signal(range(kc), name=f"e{x}") for x in range(3)]
        fresh = [Signal(name=f"fresh{x}") for x in range(3)]   # e comes from the head slot
        ext_row = Signal(17)
        kb = Signal(_N)                      # beat of the row being handed over
        sent = Signal(17)                    # rows whose VPU command has been accepted
        full_all = Const(1, 1)
        eu, hk = [], []
        for x in range(3):
            head = Signal(kc * _E, name=f"head{x}")
            hf, he, hkx = Signal(name=f"hfull{x}"), Signal(lc, name=f"he{x}"), Signal(name=f"hk{x}")
            m.d.comb += [head.eq(Mux(rp[x], slot[x][1], slot[x][0])),
                         hf.eq(Mux(rp[x], s_full[x][1], s_full[x][0])),
                         he.eq(Mux(rp[x], s_e[x][1], s_e[x][0])),
                         hkx.eq(Mux(rp[x], s_k[x][1], s_k[x][0]))]
            used = Signal(range(kc), name=f"eused{x}")
            m.d.comb += used.eq(Mux(fresh[x], he, e[x]))
            full_all = full_all & (hf | (x >= n_ops))
            eu.append(used)
            hk.append(hkx)
            # Chunks h and h+1 of the window (zeros past it), then W lanes at offset o (C:1).
            pair = Signal(2 * c * _E, name=f"pair{x}")
            with m.Switch(used[lc:]):
                for h in range(k):
                    with m.Case(h):
                        m.d.comb += pair.eq(head[h * c * _E:min(h + 2, k) * c * _E])
            lanes = Signal(w * _E, name=f"lanes{x}")
            with m.Switch(used[:lc]):
                for o in range(c):
                    with m.Case(o):
                        m.d.comb += lanes.eq(pair[o * _E:(o + w) * _E])
            m.d.comb += getattr(vpu.i.payload, "abc"[x]).eq(lanes)
        m.d.comb += vpu.i.valid.eq(running & (ext_row < sent) & full_all)
        handoff = vpu.i.valid & vpu.i.ready
        # kb + 1 == beats, kept in a register one beat ahead: the compare was the head of the
        # engine's critical path (n -> beats -> compare -> the window slots' release, 19-20 LUT
        # levels, docs/rtl-clock.md).
        row_end = Signal()
        with m.If(handoff):
            m.d.sync += [kb.eq(Mux(row_end, 0, kb + 1)),
                         row_end.eq(Mux(row_end, beats_one, kb + 2 == beats))]
            with m.If(row_end):
                m.d.sync += ext_row.eq(ext_row + 1)
            for x in range(3):
                nxt = eu[x] + w
                pop = row_end | (nxt >= Mux(hk[x], kc, kc - c))
                with m.If(x < n_ops):
                    with m.If(pop):
                        m.d.sync += [rp[x].eq(~rp[x]), fresh[x].eq(1)]
                        for j in range(2):
                            with m.If(rp[x] == j):
                                m.d.sync += [s_busy[x][j].eq(0), s_full[x][j].eq(0)]
                    with m.Else():
                        m.d.sync += [e[x].eq(nxt), fresh[x].eq(0)]

        # ---- VPU commands: one per group of rows (LAYERNORM, SOFTMAX: ``grp`` rows, the last
        # group the rest), one per row for the other ops, in order -----------------------------
        crow = Signal(range(nbuf + 1))
        m.d.comb += crow.eq(Mux(grouped, Mux(left > grp, grp, left), 1))
        m.d.comb += [
            vpu.cmd.valid.eq(running & (sent < rows)), vpu.cmd.payload.rows.eq(crow),
            vpu.cmd.payload.op.eq(ins.op), vpu.cmd.payload.cols.eq(n),
            vpu.cmd.payload.scale.eq(ins.scale), vpu.cmd.payload.eps.eq(ins.eps),
            vpu.cmd.payload.cont.eq(ins.cont),
        ]
        with m.If(vpu.cmd.valid & vpu.cmd.ready):
            m.d.sync += [sent.eq(sent + crow), left.eq(left - crow)]

        # ---- writer: result beats packed into a K-chunk buffer, flushed as one line write ----
        orow, ocol, d_row = Signal(17), Signal(_N), Signal(_A)
        b_valid, b_q = Signal(), Signal(_A - lc)
        b_data, b_mask = Signal(kc * _E), Signal(kc)
        # The result beat's destination sd = d_row + ocol, its valid lanes nv = min(W, n -
        # ocol), "last beat of its row" (ocol + W >= n) and "last row" (orow + 1 == rows) are
        # registers, each set one beat ahead (the adds and compares were in front of the
        # buffer's fit test and the beat placement, in one cycle).
        sd = Signal(_A)
        nv = Signal(range(w + 1))
        oc_end, orow_last = Signal(), Signal()
        # Rows still to come out, the current one included: "last row" is orow_left == 2 as a
        # row ends (``orow + 2 == rows`` was a 17-bit add and compare in front of orow_last,
        # the u280 engine's critical path at 213.0 MHz, docs/rtl-clock.md "Session 24").
        orow_left = Signal(17)
        n_le_w, nv_row = Signal(), Signal(range(w + 1))    # n <= W, min(W, n): a row's first
        fits = Signal()
        m.d.comb += fits.eq(b_valid & (sd >= (b_q << lc)) & (sd + nv <= ((b_q + k) << lc)))
        last = Signal()
        m.d.comb += last.eq(orow_last & oc_end)
        f_free = ~f_busy | w_granted
        m.d.comb += vpu.o.ready.eq(running & (is_argmax | ((~b_valid | fits) & ~last) | f_free))
        o_take = vpu.o.valid & vpu.o.ready & ~is_argmax
        # The beat deposited into the buffer (fits) or into a fresh one at its own chunk.
        base = Signal(_A - lc)
        m.d.comb += base.eq(Mux(fits, b_q, sd >> lc))
        p = Signal(_A)
        m.d.comb += p.eq(Mux(fits, sd - (b_q << lc), sd[:lc]))    # sd - (base << lc)
        pd, pm = Signal(2 * c * _E), Signal(2 * c)
        lane_on = Cat(*[nv > j for j in range(w)])
        with m.Switch(p[:lc]):
            for o in range(c):
                with m.Case(o):
                    m.d.comb += [pd.eq(vpu.o.payload << (o * _E)),
                                 pm.eq(lane_on << o)]
        nd_, nm_ = Signal(kc * _E), Signal(kc)       # the beat placed in the window
        with m.Switch(p[lc:]):
            for h in range(k):
                with m.Case(h):
                    m.d.comb += [nd_.eq(pd[:min(2, k - h) * c * _E] << (h * c * _E)),
                                 nm_.eq(pm[:min(2, k - h) * c] << (h * c))]
        old_d, old_m = Mux(fits, b_data, 0), Mux(fits, b_mask, 0)
        md = Cat(*[Mux(nm_[i], nd_[i * _E:(i + 1) * _E], old_d[i * _E:(i + 1) * _E])
                   for i in range(kc)])
        mm = old_m | nm_
        load_f = Signal()
        with m.If(o_take):
            orem2 = (n - ocol - w)[:_N]                # the next beat's columns left
            m.d.sync += [ocol.eq(ocol + w), sd.eq(sd + w), oc_end.eq(ocol + 2 * w >= n),
                         nv.eq(Mux(orem2 >= w, w, orem2))]
            with m.If(oc_end):
                nd_row = (d_row + ins.ldd)[:_A]
                m.d.sync += [ocol.eq(0), orow.eq(orow + 1), d_row.eq(nd_row), sd.eq(nd_row),
                             oc_end.eq(n_le_w), nv.eq(nv_row), orow_left.eq(orow_left - 1),
                             orow_last.eq(orow_left == 2)]
            with m.If(b_valid & ~fits):           # flush the buffer, start a new one
                m.d.comb += load_f.eq(1)
                m.d.sync += [f_data.eq(b_data), f_mask.eq(b_mask), f_q.eq(b_q),
                             b_data.eq(md), b_mask.eq(mm), b_q.eq(base), b_valid.eq(1)]
            with m.Elif(last):                    # the instruction's last beat: flush it now
                m.d.comb += load_f.eq(1)
                m.d.sync += [f_data.eq(md), f_mask.eq(mm), f_q.eq(base), b_valid.eq(0)]
            with m.Else():
                m.d.sync += [b_data.eq(md), b_mask.eq(mm), b_q.eq(base), b_valid.eq(1)]
        all_out = orow == rows
        with m.If(all_out & b_valid & f_free & running):   # drain
            m.d.comb += load_f.eq(1)
            m.d.sync += [f_data.eq(b_data), f_mask.eq(b_mask), f_q.eq(b_q), b_valid.eq(0)]
        with m.If(load_f):
            m.d.sync += f_busy.eq(1)
        with m.Elif(w_granted):
            m.d.sync += f_busy.eq(0)
        finished = all_out & ~b_valid & w_granted

        # ---- control --------------------------------------------------------------------------
        m.d.comb += [self.wb_addr.eq(ins.rd), self.wb_data.eq(0)]
        with m.FSM(name="vpu_engine"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    pl = self.cmd.payload
                    argmax = pl.op == Opcode.ARGMAX
                    ln = pl.op == Opcode.LAYERNORM
                    m.d.sync += [grouped.eq(Cat(*[pl.op == Opcode[o] for o in GROUPED_OPS]).any()),
                                 left.eq(Mux(argmax, 1, pl.rows))]
                    two = (pl.op == Opcode.VADD) | (pl.op == Opcode.VMUL)
                    n_new = (pl.cols + Mux(ln, 0, pl.rc))[:_N]
                    beats_new = ((n_new + (w - 1)) >> lw)[:_N]
                    m.d.sync += [
                        beats.eq(beats_new), beats_one.eq(beats_new == 1),
                        row_end.eq(beats_new == 1),
                        ins.eq(pl), n.eq(n_new),
                        rows.eq(Mux(argmax, 1, pl.rows)), is_argmax.eq(argmax),
                        n_ops.eq(Mux(ln, 3, Mux(two, 2, 1))),
                        s[0].eq(pl.a), s[1].eq(Mux(ln, pl.gamma, pl.b)), s[2].eq(pl.beta),
                        q[0].eq(pl.a >> lc), q[1].eq(Mux(ln, pl.gamma, pl.b) >> lc),
                        q[2].eq(pl.beta >> lc),
                        ld[0].eq(pl.lda), ld[1].eq(Mux(ln, 0, pl.ldb)), ld[2].eq(0),
                        ext_row.eq(0), kb.eq(0), sent.eq(0),
                        orow.eq(0), ocol.eq(0), d_row.eq(pl.dst), b_valid.eq(0), f_busy.eq(0),
                        sd.eq(pl.dst), oc_end.eq(n_new <= w), n_le_w.eq(n_new <= w),
                        nv.eq(Mux(n_new >= w, w, n_new)), nv_row.eq(Mux(n_new >= w, w, n_new)),
                        orow_last.eq(Mux(argmax, 1, pl.rows) == 1),
                        orow_left.eq(Mux(argmax, 1, pl.rows)),
                        pend.eq(0), empty.eq((n_new == 0) | (Mux(argmax, 1, pl.rows) == 0)),
                        reading.eq((n_new != 0) & (Mux(argmax, 1, pl.rows) != 0)),
                    ]
                    for x in range(3):
                        m.d.sync += [rd_row[x].eq(0), first[x].eq(1), wp[x].eq(0), rp[x].eq(0),
                                     fresh[x].eq(1)]
                        for j in range(2):
                            m.d.sync += [s_busy[x][j].eq(0), s_full[x][j].eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):   # nothing to compute: complete at once
                m.d.comb += self.busy.eq(1)
                # rows per group: buffer_beats >> ceil(log2 beats), from the registered beats
                # (a priority test, no divider: geometry.vpu_group_rows)
                with m.If(beats > nbuf):
                    m.d.sync += grp.eq(1)
                for i in reversed(range(nbuf.bit_length())):
                    with m.If(beats <= (1 << i)):
                        m.d.sync += grp.eq(nbuf >> i)
                with m.If(empty):
                    m.d.comb += [self.done.eq(1), self.wb_we.eq(is_argmax)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += running.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(is_argmax & vpu.o.valid):
                    m.d.comb += [self.done.eq(1), self.wb_we.eq(1),
                                 self.wb_data.eq(vpu.o.payload[:32])]
                    m.d.sync += [running.eq(0), reading.eq(0)]
                    m.next = "IDLE"
                with m.If(finished):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += [running.eq(0), reading.eq(0)]
                    m.next = "IDLE"
        return m


def engine_cycles(hw: HardwareConfig, op: str, f: dict) -> int:
    """Cycles from the ``cmd`` handshake to ``done`` of one instruction, the scratchpad granting
    every request: a cycle-level model of this engine's schedule (its registers, as in
    :meth:`VPUEngine.elaborate`) and of the VPU's stream timing (``mode_latency`` /
    ``scalar_wait``; a summing row's end ``vpu.acc_latency`` cycles after its last beat, when
    the accumulator rings have drained), asserted equal to the RTL in amaranth.sim.

    Parameters
    ----------
    hw : HardwareConfig
    op : str
        A VPU mnemonic (``"VADD"`` ... ``"VCOPY"``).
    f : dict
        The captured fields (as ``fpgpt.sim.costs.vpu_cycles`` takes them): ``rows``, ``cols``,
        ``rc`` (R[rc]'s value; ignored by LAYERNORM), the addresses ``a``, ``b``, ``dst``,
        ``gamma``, ``beta`` and strides ``lda``, ``ldb``, ``ldd`` (missing ones read 0).
    """
    from .vpu_lane import (_FROM_BUFFER, _NEXT, _ROW_REDUCING, FIRST_MODE, OUTPUT_MODES,
                           SPECIAL_MODES, SUMMING_MODES, mode_latency, scalar_wait)

    if op not in FIRST_MODE:
        raise ValueError(f"op must be a VPU mnemonic {sorted(FIRST_MODE)}, not {op!r}")
    g = {key: int(f.get(key, 0)) for key in
         ("rows", "cols", "rc", "a", "b", "dst", "gamma", "beta", "lda", "ldb", "ldd")}
    ln = op == "LAYERNORM"
    rows = 1 if op == "ARGMAX" else g["rows"]
    n = g["cols"] + (0 if ln else g["rc"])
    if rows <= 0 or n <= 0:
        return 1
    w, c, k = hw.vpu.width, chunk_elements(hw), window_chunks(hw)
    kc = k * c
    lat, waits = mode_latency(hw), scalar_wait(hw)
    n_ops = {"VADD": 2, "VMUL": 2, "LAYERNORM": 3}.get(op, 1)
    beats = -(-n // w)
    first_mode = FIRST_MODE[op]
    grp = vpu_group_rows(hw, beats) if op in GROUPED_OPS else 1
    # Engine registers (as in VPUEngine.elaborate).
    s = [g["a"], g["gamma"] if ln else g["b"], g["beta"]]
    ld = [g["lda"], 0 if ln else g["ldb"], 0]
    q = [v // c for v in s]
    rd_row, first = [0, 0, 0], [True] * 3
    wp, rp = [0, 0, 0], [0, 0, 0]
    busy = [[False, False] for _ in range(3)]
    full = [[False, False] for _ in range(3)]
    s_e = [[0, 0] for _ in range(3)]
    s_k = [[False, False] for _ in range(3)]
    e, fresh = [0, 0, 0], [True] * 3
    pend = None                              # (operand, slot) of last cycle's granted read
    ext_row = kb = sent = 0
    orow = ocol = 0
    d_row = g["dst"]
    b_valid, b_q, f_busy = False, 0, False
    # VPU registers (as in VPU.elaborate): stages[0] is src_valid.
    state, mode, wait = "IDLE", first_mode, 0
    nrows = ib = irow = rrow = 0             # the command's rows, issue / tap row counters
    kacc, gap, drain = hw.vpu.acc_latency, 0, 0   # a summing row's rings drain kacc turns
    # (valid, last beat of its row, last sub-beat of its beat)
    stages = [(False, False, False)] * (max(lat.values()) + 1)
    r_sub, sub = hw.vpu.special_ratio, 0         # a special pass's sub-beats (VPU's ``sub``)
    for t in range(1, 1 << 30):             # cycle 0: the handshake, 1: CHECK (reader only)
        # ---- the cycle's combinational terms: the reader
        aligned = [v % w == 0 for v in s]
        stride = [k if al else k - 1 for al in aligned]
        lastq = [(s[x] + (beats - 1) * w) // c for x in range(3)]
        need = [x < n_ops and rd_row[x] < rows and not busy[x][wp[x]] for x in range(3)]
        r_op = next((x for x in range(3) if need[x]), None)
        w_granted = f_busy
        r_granted = r_op is not None and not f_busy
        # extraction
        used = [s_e[x][rp[x]] if fresh[x] else e[x] for x in range(3)]
        i_valid = t > 1 and ext_row < sent and all(full[x][rp[x]] for x in range(n_ops))
        # the VPU
        streaming = state == "STREAM"
        out_mode = mode in OUTPUT_MODES
        tap, tap_last, tap_sl = stages[lat[mode]]
        split = r_sub > 1 and mode in SPECIAL_MODES
        sub_last = not split or sub == r_sub - 1
        emit = not split or tap_sl
        o_valid = (streaming and out_mode and tap and emit) or state == "RESULT"
        # the writer (o.ready: the flush register is always free, every write being granted)
        sd = d_row + ocol
        nv = min(w, n - ocol)
        fits = b_valid and b_q * c <= sd and sd + nv <= (b_q + k) * c
        last = orow + 1 == rows and ocol + w >= n
        o_ready = True
        advance = not (out_mode and tap and emit and not o_ready)
        from_buf = mode in _FROM_BUFFER
        summing = mode in SUMMING_MODES
        row_pass = mode in _ROW_REDUCING
        src_open = gap == 0
        i_ready = (streaming and not from_buf and irow < nrows and advance and src_open
                   and sub_last)
        handoff = i_valid and i_ready
        cmd_take = t > 1 and state == "IDLE" and sent < rows
        crow = min(rows - sent, grp)
        if op == "ARGMAX" and o_valid:
            return t
        if orow == rows and not b_valid and w_granted:
            return t
        o_take = o_valid and o_ready and op != "ARGMAX"
        all_out = orow == rows
        # ---- the engine's edge: reader
        if pend is not None:
            full[pend[0]][pend[1]] = True
        pend = None
        if r_granted:
            x = r_op
            j = wp[x]
            pend = (x, j)
            wp[x] ^= 1
            busy[x][j] = True
            s_e[x][j] = s[x] % c if first[x] else s[x] % w
            s_k[x][j] = aligned[x]
            if q[x] + stride[x] > lastq[x]:
                rd_row[x] += 1
                first[x] = True
                s[x] += ld[x]
                q[x] = s[x] // c
            else:
                q[x] += stride[x]
                first[x] = False
        # extraction
        if handoff:
            row_end = kb + 1 == beats
            kb = 0 if row_end else kb + 1
            ext_row += row_end
            for x in range(n_ops):
                nxt = used[x] + w
                if row_end or nxt >= (kc if s_k[x][rp[x]] else kc - c):
                    busy[x][rp[x]] = full[x][rp[x]] = False
                    rp[x] ^= 1
                    fresh[x] = True
                else:
                    e[x], fresh[x] = nxt, False
        sent += crow if cmd_take else 0
        # writer
        load_f = False
        if o_take:
            ocol += w
            if ocol >= n:
                ocol, orow, d_row = 0, orow + 1, d_row + g["ldd"]
            base = b_q if fits else sd // c
            if b_valid and not fits:
                load_f, b_q, b_valid = True, base, True
            elif last:
                load_f, b_valid = True, False
            else:
                b_q, b_valid = base, True
        if all_out and b_valid:             # drain (the flush register is free)
            load_f, b_valid = True, False
        if load_f:
            f_busy = True
        elif w_granted:
            f_busy = False
        # ---- the VPU's edge
        flush = False
        take_sum = streaming and tap and advance and summing
        sum_last = drain == 1
        if state == "IDLE":
            if cmd_take:
                mode, nrows, flush, state = first_mode, crow, True, "STREAM"
                ib = irow = rrow = 0
        elif state == "STREAM":
            if rrow == nrows and (not summing or sum_last):
                if out_mode:
                    state = "IDLE"
                else:
                    wait, state = waits[mode], "SCALAR"
            if tap and advance:
                rrow += tap_last
        elif state == "SCALAR":
            wait -= 1
            if wait < 0:
                if op == "ARGMAX":
                    state = "RESULT"
                else:
                    mode, flush, state = _NEXT[mode], True, "STREAM"
                    ib = irow = rrow = 0
        elif o_valid:                       # RESULT
            state = "IDLE"
        if take_sum and tap_last:
            drain = kacc
        elif drain:
            drain -= 1
        src = advance and streaming and irow < nrows and src_open and (i_valid or from_buf)
        ilast = ib + 1 == beats
        if advance:
            stages = [(src, ilast and sub_last, sub_last)] + stages[:-1]
        if src and sub_last:
            ib, irow = (0, irow + 1) if ilast else (ib + 1, irow)
            sub = 0
        elif src:
            sub += 1
        if src and row_pass and ilast and sub_last:
            gap = kacc if summing else 1
        else:
            gap = max(gap - 1, 0)
        if flush:
            stages = [(False, False, False)] * len(stages)
            gap = drain = sub = 0
    raise AssertionError("unreachable")
