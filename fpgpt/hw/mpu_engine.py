"""The MPU engine: executes captured ``MM`` instructions with ``hw.mpu.lanes`` :class:`MPULane`\\ s.

Semantics: the ISA table's ``MM`` (and ``numerics.mpu_matmul`` exact, bit for bit): for every
matrix ``bt`` of the batch, row ``i`` of A and column ``j`` of C, the dot product of
``S[a + bt*bsa + i*lda : +K]`` and ``S[b + bt*bsb + j*ldb : +K]`` (``K = k + R[rk]``,
``N = n + R[rn]``), plus ``S[bias + j]`` when ``has_bias``, rounded to FP16; ``-inf`` where
``mask`` and ``j > i + R[rn]``.

Schedule (one instruction at a time, in order). The output columns are taken ``lanes`` at a
time (a *group*: lane ``l`` computes column ``j0 + l``); for each row ``i`` and group, the
reduction runs in chunks of ``width`` elements. For each chunk the *operand sequencer* reads,
one scratchpad element per cycle, the chunk of A's row, then the chunk of each valid lane's B
row, then (last chunk, ``has_bias``) the group's bias elements, into staging registers (elements
past ``K`` and lanes past ``N`` are not read: they stay +0, the contract's padding); one cycle
after the last read's data arrive, every lane takes the chunk (``first`` / ``last`` marked).
The lanes' FP16 results come back ``MPULane.latency`` cycles after a group's last chunk; they
go into a small FIFO with the group's descriptor (destination, valid lanes, masked lanes) and a
*writer* stores them one element per cycle, ahead of the sequencer's reads. Groups overlap:
up to ``_GROUPS_IN_FLIGHT`` groups may have their last chunk taken and results not yet stored.

Cost of this version (stated, not hidden): the scratchpad port serves one element per cycle, so
a chunk costs ``ke·(1 + valid lanes) + 1`` cycles (``ke`` = elements of K in the chunk), not the
one cycle per chunk that ``fpgpt.sim.costs.mpu_cycles`` charges for a scratchpad that delivers
``width`` elements per lane per cycle (banked by ``buffers.banks``, not built yet).
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..isa.table import Unit
from .dma import captured_layout
from .mpu import MPULane
from .scratchpad import ELEMENT_BITS, addr_bits, port_signature

__all__ = ["MPUEngine", "F16_NEG_INF"]

#: FP16 bit pattern of -inf (the causal mask's value).
F16_NEG_INF = 0xFC00
_GROUPS_IN_FLIGHT = 4    # result FIFO depth: groups whose results may wait to be stored
_W = 34                  # loop bounds: 16-bit fields plus 32-bit registers
_A = 32                  # scratchpad address arithmetic (the ISA's addresses are 32 bits)


class MPUEngine(wiring.Component):
    """Executes captured MM instructions on ``hw.mpu.lanes`` lanes (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
        ``mpu.lanes``, ``mpu.width`` and the lane latencies.

    Ports
    -----
    cmd : In(stream.Signature(captured_layout(Unit.MPU)))
        The next MM; taken when the engine is idle.
    done : Out(1)
        One-cycle pulse when an MM has completed (every result is in the scratchpad).
    busy : Out(1)
    sram : Out(scratchpad.port_signature(hw))
    """

    def __init__(self, *, hw: HardwareConfig):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        self._hw = hw
        super().__init__({
            "cmd": In(stream.Signature(captured_layout(Unit.MPU))),
            "done": Out(1), "busy": Out(1),
            "sram": Out(port_signature(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        L, w = hw.mpu.lanes, hw.mpu.width
        lanes = [MPULane(hw=hw) for _ in range(L)]
        for l, lane in enumerate(lanes):
            m.submodules[f"lane{l}"] = lane

        # ---- the captured instruction ------------------------------------------------------
        ins = Signal(captured_layout(Unit.MPU))
        K, N = Signal(_W), Signal(_W)

        # ---- loop state ----------------------------------------------------------------------
        bt, i, j0, c_off = Signal(8), Signal(16), Signal(_W), Signal(_W)
        a_bt, b_bt, d_bt = Signal(_A), Signal(_A), Signal(_A)     # matrix bases
        a_row, b_grp, d_row = Signal(_A), Signal(_A), Signal(_A)  # row of A, group's first B row, row of C
        p = Signal(range(L + 2))     # phase: 0 = A, 1..L = B row of lane p-1, L+1 = bias
        e = Signal(range(max(w, L) + 1))
        row_ptr = Signal(_A)
        inflight = Signal(range(_GROUPS_IN_FLIGHT + 1))

        ke = Signal(range(w + 1))                  # elements of K in this chunk
        rem_k = (K - c_off)[:_W]
        m.d.comb += ke.eq(Mux(K > c_off, Mux(rem_k >= w, w, rem_k), 0))
        nl = Signal(range(L + 1))                  # valid lanes of this group
        rem_n = (N - j0)[:_W]
        m.d.comb += nl.eq(Mux(rem_n >= L, L, rem_n))
        last_chunk = (c_off + w) >= K
        count = Signal(range(max(w, L) + 1))       # elements the current phase reads
        with m.If(p == 0):
            m.d.comb += count.eq(ke)
        with m.Elif(p == L + 1):
            m.d.comb += count.eq(Mux(ins.has_bias & last_chunk, nl, 0))
        with m.Else():
            m.d.comb += count.eq(Mux(p <= nl, ke, 0))

        # ---- staging registers (what the lanes take) -----------------------------------------
        a_st = [Signal(ELEMENT_BITS, name=f"a_st{x}") for x in range(w)]
        b_st = [[Signal(ELEMENT_BITS, name=f"b_st{l}_{x}") for x in range(w)] for l in range(L)]
        bias_st = [Signal(ELEMENT_BITS, name=f"bias_st{l}") for l in range(L)]
        pend, pend_p, pend_e = Signal(), Signal.like(p), Signal.like(e)

        fire = Signal()
        first = Signal()
        for l, lane in enumerate(lanes):
            m.d.comb += [lane.a.eq(Cat(*a_st)), lane.b.eq(Cat(*b_st[l])),
                         lane.bias.eq(bias_st[l]), lane.has_bias.eq(ins.has_bias),
                         lane.valid.eq(fire), lane.first.eq(first), lane.last.eq(last_chunk)]
        with m.If(fire):        # the lanes take the chunk at this edge; the next one starts at +0
            m.d.sync += [r.eq(0) for r in a_st + sum(b_st, []) + bias_st]
        m.d.sync += pend.eq(0)
        with m.If(pend):
            for x in range(w):
                with m.If((pend_p == 0) & (pend_e == x)):
                    m.d.sync += a_st[x].eq(self.sram.rdata)
            for l in range(L):
                for x in range(w):
                    with m.If((pend_p == l + 1) & (pend_e == x)):
                        m.d.sync += b_st[l][x].eq(self.sram.rdata)
                with m.If((pend_p == L + 1) & (pend_e == l)):
                    m.d.sync += bias_st[l].eq(self.sram.rdata)

        # ---- results: descriptor FIFO (at the last chunk) + data FIFO (at y_valid) -----------
        desc_w = _A + 2 * L
        m.submodules.desc_q = desc_q = fifo.SyncFIFO(width=desc_w, depth=_GROUPS_IN_FLIGHT)
        m.submodules.res_q = res_q = fifo.SyncFIFO(width=ELEMENT_BITS * L,
                                                   depth=_GROUPS_IN_FLIGHT)
        valid_mask = Cat(*[nl > l for l in range(L)])
        lim = (i + ins.rn)[:_W + 1]
        neg_mask = Cat(*[ins.mask & ((j0 + l) > lim) for l in range(L)])
        m.d.comb += [desc_q.w_data.eq(Cat((d_row + j0)[:_A], valid_mask, neg_mask)),
                     desc_q.w_en.eq(fire & last_chunk),
                     res_q.w_data.eq(Cat(*[lane.y for lane in lanes])),
                     res_q.w_en.eq(lanes[0].y_valid)]

        # ---- writer: stores the head group, one element per cycle ------------------------------
        wl = Signal(range(L))
        h_base = desc_q.r_data[:_A]
        h_valid = desc_q.r_data[_A:_A + L]
        h_neg = desc_q.r_data[_A + L:_A + 2 * L]
        h_y = res_q.r_data
        have = desc_q.r_rdy & res_q.r_rdy
        w_req = Signal()
        w_data = Signal(ELEMENT_BITS)
        m.d.comb += [w_req.eq(have & h_valid.bit_select(wl, 1)),
                     w_data.eq(Mux(h_neg.bit_select(wl, 1), F16_NEG_INF,
                                   h_y.word_select(wl, ELEMENT_BITS)))]
        w_step = have & (~w_req | self.sram.grant)
        group_stored = Signal()
        with m.If(w_step):
            with m.If(wl == L - 1):
                m.d.sync += wl.eq(0)
                m.d.comb += [group_stored.eq(1), desc_q.r_en.eq(1), res_q.r_en.eq(1)]
            with m.Else():
                m.d.sync += wl.eq(wl + 1)
        m.d.sync += inflight.eq(inflight + (fire & last_chunk) - group_stored)

        # ---- the scratchpad port: the writer first, then the sequencer's reads ---------------
        r_req = Signal()
        r_addr = Signal(_A)
        m.d.comb += [
            self.sram.we.eq(w_req), self.sram.wdata.eq(w_data),
            self.sram.re.eq(r_req & ~w_req),
            self.sram.addr.eq(Mux(w_req, h_base + wl, r_addr)[:addr_bits(hw)]),
        ]
        r_granted = r_req & ~w_req & self.sram.grant

        # ---- sequencer ----------------------------------------------------------------------
        m.d.comb += [self.cmd.ready.eq(0), r_addr.eq(row_ptr + e)]

        def next_phase_ptr(q):
            """row_ptr for phase q (entered from q - 1)."""
            return Mux(q == 1, b_grp + c_off, Mux(q == L + 1, ins.bias + j0, row_ptr + ins.ldb))

        with m.FSM(name="mpu"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    pl = self.cmd.payload
                    m.d.sync += [ins.eq(pl), K.eq(pl.k + pl.rk), N.eq(pl.n + pl.rn),
                                 bt.eq(0), i.eq(0), j0.eq(0), c_off.eq(0),
                                 a_bt.eq(pl.a), b_bt.eq(pl.b), d_bt.eq(pl.dst),
                                 a_row.eq(pl.a), b_grp.eq(pl.b), d_row.eq(pl.dst),
                                 row_ptr.eq(pl.a), p.eq(0), e.eq(0), first.eq(1)]
                    m.next = "CHECK"
            with m.State("CHECK"):   # an empty MM (batch, m or N zero) completes at once
                m.d.comb += self.busy.eq(1)
                with m.If((ins.batch == 0) | (ins.m == 0) | (N == 0)):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.busy.eq(1)
                cur = e < count
                m.d.comb += r_req.eq(cur)
                with m.If(r_granted):
                    m.d.sync += [pend.eq(1), pend_p.eq(p), pend_e.eq(e), e.eq(e + 1)]
                with m.If(~cur | (r_granted & (e + 1 == count))):
                    m.d.sync += e.eq(0)
                    with m.If(p == L + 1):
                        m.next = "WAIT"
                    with m.Else():
                        m.d.sync += [p.eq(p + 1), row_ptr.eq(next_phase_ptr(p + 1))]
            with m.State("WAIT"):    # the last read's data land in the staging registers
                m.d.comb += self.busy.eq(1)
                m.next = "FIRE"
            with m.State("FIRE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~last_chunk | (inflight < _GROUPS_IN_FLIGHT)):
                    m.d.comb += fire.eq(1)
                    m.d.sync += [p.eq(0), e.eq(0), first.eq(0)]
                    m.next = "READ"
                    with m.If(~last_chunk):
                        m.d.sync += [c_off.eq(c_off + w), row_ptr.eq(a_row + c_off + w)]
                    with m.Elif(j0 + L < N):              # next group of the same row
                        m.d.sync += [c_off.eq(0), first.eq(1), j0.eq(j0 + L),
                                     b_grp.eq(b_grp + L * ins.ldb), row_ptr.eq(a_row)]
                    with m.Elif(i + 1 < ins.m):           # next row
                        m.d.sync += [c_off.eq(0), first.eq(1), j0.eq(0), i.eq(i + 1),
                                     b_grp.eq(b_bt), a_row.eq(a_row + ins.lda),
                                     d_row.eq(d_row + ins.ldc), row_ptr.eq(a_row + ins.lda)]
                    with m.Elif(bt + 1 < ins.batch):      # next matrix
                        nb_a, nb_b, nb_d = a_bt + ins.bsa, b_bt + ins.bsb, d_bt + ins.bsc
                        m.d.sync += [c_off.eq(0), first.eq(1), j0.eq(0), i.eq(0), bt.eq(bt + 1),
                                     a_bt.eq(nb_a), b_bt.eq(nb_b), d_bt.eq(nb_d),
                                     a_row.eq(nb_a), b_grp.eq(nb_b), d_row.eq(nb_d),
                                     row_ptr.eq(nb_a)]
                    with m.Else():
                        m.next = "DRAIN"
            with m.State("DRAIN"):   # every group's results stored
                m.d.comb += self.busy.eq(1)
                with m.If((inflight == 0) & ~fire):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
