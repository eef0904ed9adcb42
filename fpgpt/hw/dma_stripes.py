"""The DMA's stripe path, its data movers (fpgpt/hw/dma.py has the address generator that
queues their segments and the module docstring that describes the path): the *stripe reader*
(LOAD, GATHER rows) writes one stripe a cycle into the scratchpad with one masked line write,
and the *stripe writer* (STORE) reads one line a cycle into the stripe register and sends every
channel's beat from it. Split out of :class:`~fpgpt.hw.dma.DMA`'s ``elaborate``, statement for
statement, so that the generated Verilog is unchanged."""

# No `from __future__ import annotations`: kept like fpgpt/hw/dma.py.
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Mux, Signal, unsigned
from amaranth.lib import data

from .flag_fifo import FlagFIFO

__all__ = ["stripe_reader", "stripe_writer"]


def stripe_reader(m, line, g):
    """The stripe reader, on ``g`` (the DMA's geometry and the signals it shares with the
    address generator). Returns what the line port and the writer use: the line port's
    stripe-path drive (``f_*``) and the ``need_of`` / ``mask_of`` builders."""
    seg, C, B, ES, LS, CE = g.seg, g.C, g.B, g.ES, g.LS, g.CE
    sq, sq_out, is_write, axi, rd_act, fast_rr = (g.sq, g.sq_out, g.is_write, g.axi, g.rd_act,
                                                  g.fast_rr)
    # ---- stripe reader (LOAD, GATHER rows): one stripe per cycle, one masked line write --
    # need_of / mask_of give named Signals, assigned unconditionally (so called outside any
    # If/FSM state): indexing an unnamed Cat of ES (1,024 on u280) expressions recomputes
    # every operand's shape, which made the DMA's elaboration take minutes.
    def need_of(lo, hi, first, last, name):
        """Channels holding elements of a stripe (a run's first/last stripe is partial)."""
        out = Signal(C, name=name)
        m.d.comb += out.eq(Cat(*[(~first | ((k + 1) * (B // 2) > lo))
                                 & (~last | (k * (B // 2) < hi)) for k in range(C)]))
        return out

    def mask_of(lo, hi, first, last, name):
        """The stripe's elements that belong to the run."""
        out = Signal(ES, name=name)
        m.d.comb += out.eq(Cat(*[(~first | (e >= lo)) & (~last | (e < hi))
                                 for e in range(ES)]))
        return out

    fc = Signal(seg)
    x = Signal(LS + 1)
    f_chunk, f_we, f_re, f_mask = Signal(32), Signal(), Signal(), Signal(ES)
    f_line = Signal()                    # the stripe path drives the line port this cycle
    f_data = Cat(*[p.rdata for p in axi])          # the stripe's ES elements, in order
    x_last = Signal()                    # x + 1 == fc.n, registered one stripe ahead
    r_first, r_last = x == 0, x_last
    # The channels the stripe needs, registered a stripe ahead like x_last (in front of the
    # AND over the channels' RVALID they were the reader's longest path): the next
    # segment's first stripe, or this segment's next.
    need = Signal(C)
    n_need = need_of(sq_out.lo, sq_out.hi, Const(1), sq_out.n == 1, "r_need_seg")
    x_need = need_of(fc.lo, fc.hi, Const(0), x + 2 == fc.n, "r_need_next")
    r_mask = mask_of(fc.lo, fc.hi, r_first, r_last, "r_mask")
    with m.If(~is_write):
        with m.FSM(name="stripes"):
            with m.State("IDLE"):
                with m.If(sq.r_rdy):
                    m.d.comb += sq.r_en.eq(1)
                    m.d.sync += [fc.eq(sq_out), x.eq(0), x_last.eq(sq_out.n == 1),
                                 need.eq(n_need)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [rd_act.eq(1), f_line.eq(1)]
                last = r_last
                allv = (need & ~Cat(*[p.rvalid for p in axi])) == 0
                m.d.comb += [f_mask.eq(r_mask), f_we.eq(allv),
                             f_chunk.eq(fc.chunk + x * (ES // CE))]
                with m.If(allv & line.grant):
                    m.d.comb += fast_rr.eq(need)
                    m.d.sync += [x.eq(x + 1), x_last.eq(x + 2 == fc.n), need.eq(x_need)]
                    with m.If(last):
                        with m.If(sq.r_rdy):        # the next segment without a bubble
                            m.d.comb += sq.r_en.eq(1)
                            m.d.sync += [fc.eq(sq_out), x.eq(0), x_last.eq(sq_out.n == 1),
                                         need.eq(n_need)]
                        with m.Else():
                            m.next = "IDLE"
    return SimpleNamespace(f_chunk=f_chunk, f_we=f_we, f_mask=f_mask, f_line=f_line,
                           f_data=f_data, need_of=need_of, mask_of=mask_of)


def stripe_writer(m, line, cmd, g, need_of, mask_of):
    """The stripe writer, on ``g`` as :func:`stripe_reader`. Returns what the AXI write
    channels and the line port use: the stripe register (``hold``, ``hv``, ``hm``,
    ``w_strb``) and the read it requests (``sel``, ``tx``, ``w_req``)."""
    seg, C, B, ES, LS, LES, SB = g.seg, g.C, g.B, g.ES, g.LS, g.LES, g.SB
    sq, sq_out, is_write, fmode, axi, rd_act, f_busy = (g.sq, g.sq_out, g.is_write, g.fmode,
                                                        g.axi, g.rd_act, g.f_busy)
    # ---- stripe writer (STORE): one line read per cycle into the stripe register ---------
    # wfc/wx: the segment and the stripe to read next; fl: a read granted last cycle (its
    # data are on line.rdata now); hold/hv: the stripe register and its channels still to
    # send. A read whose data find hv not emptied this cycle is dropped and repeated.
    wfc = Signal(seg)
    wx = Signal(LS + 1)
    wact = Signal()                      # wfc holds a segment
    stripe = data.StructLayout({"x": unsigned(LS + 1), "lo": unsigned(LES + 1),
                                "hi": unsigned(LES + 1), "need": unsigned(C),
                                "wlast": unsigned(C)})
    fl = Signal()
    flm = Signal(stripe)
    hold = Signal(8 * SB)
    hv = Signal(C)
    hm = Signal(stripe)
    wready_v = Cat(*[p.wready for p in axi])
    hold_free = (hv & ~wready_v) == 0
    capture = fl & hold_free
    m.d.sync += hv.eq(hv & ~wready_v)
    # The stripe's write mask, a register loaded with hm from flm's bounds: the compares of
    # the stripe's element indices with hm.lo / hm.hi in front of WSTRB were 11 LUT levels,
    # one of the DMA's 205.0 MHz paths on u280 (docs/rtl-clock.md, "Session 22"). hm changes
    # only here, so w_mask always equals mask_of(hm.lo, hm.hi).
    f_mask = mask_of(flm.lo, flm.hi, Const(1), Const(1), "w_mask_next")
    w_mask = Signal(ES, name="w_mask")
    with m.If(capture):
        m.d.sync += [hold.eq(line.rdata[:8 * SB]), hv.eq(flm.need), hm.eq(flm),
                     w_mask.eq(f_mask)]
    rewind = fl & ~capture
    # The stripe to read when none is repeated (nsel, ntx: this segment's next or the next
    # segment's first) and what flm must then hold for it, from registers alone; a
    # repeated read is the stripe flm already describes. So the AND over the channels'
    # WREADY (hold_free, rewind) only picks between the two at the end (u280: 32 channels;
    # in front of the stripe's compares it was the DMA's longest path, docs/rtl-clock.md).
    nsel = Signal(seg)
    ntx = Signal(LS + 1)
    n_cont = Signal()                    # wfc has stripes left to read
    m.d.comb += n_cont.eq(wact & (wx != wfc.n))
    with m.If(n_cont):
        m.d.comb += [nsel.eq(wfc), ntx.eq(wx)]
    with m.Else():
        m.d.comb += [nsel.eq(sq_out), ntx.eq(0)]
    sel = Signal(seg)                    # the stripe read this cycle: its segment and index
    tx = Signal(LS + 1)
    w_req = Signal()
    pop = Signal()
    with m.If(is_write & fmode):
        with m.If(rewind):
            m.d.comb += [sel.eq(wfc), tx.eq(flm.x), w_req.eq(1)]
        with m.Elif(n_cont):
            m.d.comb += [sel.eq(wfc), tx.eq(wx), w_req.eq(1)]
        with m.Elif(sq.r_rdy):
            m.d.comb += [sel.eq(sq_out), tx.eq(0), w_req.eq(1), pop.eq(1)]
            m.d.sync += [wfc.eq(sq_out), wact.eq(1)]
    # The writer's pop comes last of the segment FIFO's inputs (behind the AND over the
    # channels' WREADY in ``rewind``): FlagFIFO computes its next state both ways and
    # picks with it (the AND, the writer's decision and the FIFO's level were 12 LUT
    # levels, the DMA's critical path on u280, docs/rtl-clock.md).
    if isinstance(sq, FlagFIFO):
        m.d.comb += sq.r_en_late.eq(pop)
    else:
        with m.If(pop):
            m.d.comb += sq.r_en.eq(1)
    wfirst, wlast_s = ntx == 0, ntx + 1 == nsel.n
    lo_e, hi_e = Mux(wfirst, nsel.lo, 0), Mux(wlast_s, nsel.hi, ES)
    w_need = need_of(nsel.lo, nsel.hi, wfirst, wlast_s, "w_need")
    # Channel k's burst ends at its last beat of the segment: the last stripe, or the one
    # before where the run's end leaves channel k out of the last.
    w_wl = Cat(*[w_need[k] & (wlast_s | ((ntx + 2 == nsel.n) & ~(k * (B // 2) < nsel.hi)))
                 for k in range(C)])
    granted_w = w_req & line.grant
    m.d.sync += fl.eq(granted_w)
    with m.If(granted_w):
        m.d.sync += wx.eq(tx + 1)
        with m.If(~rewind):
            m.d.sync += [flm.x.eq(ntx), flm.lo.eq(lo_e), flm.hi.eq(hi_e),
                         flm.need.eq(w_need), flm.wlast.eq(w_wl)]
    with m.Elif(w_req):
        m.d.sync += wx.eq(tx)
    with m.If(cmd.valid & cmd.ready):
        m.d.sync += wact.eq(0)
    w_strb = Signal(2 * ES)
    m.d.comb += w_strb.eq(Cat(*[Cat(w_mask[e], w_mask[e]) for e in range(ES)]))
    w_fbusy = fl | (hv != 0) | (wact & (wx != wfc.n))
    m.d.comb += f_busy.eq(rd_act | w_fbusy)
    return SimpleNamespace(hold=hold, hv=hv, hm=hm, w_strb=w_strb, sel=sel, tx=tx, w_req=w_req)
