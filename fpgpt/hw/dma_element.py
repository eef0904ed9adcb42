"""The DMA's element path, its write side (STORE, STR): AW, request and capture stages that
move one element a cycle from the scratchpad's line port into packed AXI beats (fpgpt/hw/dma.py,
module docstring, "Element path"; its read side stays beside the address generator, which it
shares a FIFO and the GATHER index with). Split out of :class:`~fpgpt.hw.dma.DMA`'s
``elaborate``, statement for statement, so that the generated Verilog is unchanged."""

# No `from __future__ import annotations`: kept like fpgpt/hw/dma.py.
from types import SimpleNamespace

from amaranth.hdl import Array, Mux, Signal, unsigned
from amaranth.lib import data

from .flag_fifo import buffered_fifo

__all__ = ["element_writer"]


def element_writer(m, g, outstanding):
    """The element path's write side on ``g`` (the DMA's geometry, the captured instruction
    ``c``, the piece FIFO ``q`` and the signals shared with the address generator and the line
    port). Returns what the AXI write channels, the in-flight count and completion use."""
    C, B, LB, LC, LG, HBM_BITS = g.C, g.B, g.LB, g.LC, g.LG, g.HBM_BITS
    c, q, q_in, q_out, hp, el = g.c, g.q, g.q_in, g.q_out, g.hp, g.el
    is_write, is_str, aw_room, advance, axi, channel = (g.is_write, g.is_str, g.aw_room,
                                                         g.advance, g.axi, g.channel)
    # ---- write side (STORE, STR) -------------------------------------------------------
    # Three decoupled stages, so that consecutive pieces overlap and an ideal memory takes
    # one element per cycle (with one-element pieces, one burst per cycle):
    # - AW: pops the piece's address from wq and issues its AW as soon as the channel
    #   takes it, ahead of the data (AXI lets AW and W come in either order); bursts without
    #   a B response stay below ``outstanding``;
    # - request: pops pieces from q and asks the line port for one element per cycle, the
    #   next piece's first element right after the previous piece's last;
    # - capture: the element granted last cycle (the scratchpad's read is registered) goes
    #   into the beat being assembled (abuf); a complete beat moves to the W register
    #   (wbuf, so beats leave back to back) or, while W is stalled, waits in abuf (afull).
    # A request is made only when its data will find room next cycle, so a granted read is
    # never dropped and the scratchpad's refusals only stall the request stage.
    # Bursts without a B response: aw_now. The AWs issued and the B responses taken are
    # registered as they happen and counted a cycle later (aw_count is the count as of
    # last cycle, aw_now adds last cycle's events): no population count of the channels'
    # AW fires and BVALIDs sits behind the stripe path's issue logic (u280: 32 channels,
    # the DMA's critical path before, docs/rtl-clock.md).
    aw_count = Signal(16)
    aw_now = Signal(16)
    aw_fire = Signal()
    w_busy = Signal()
    e_awvalid = Signal(C)
    e_wvalid = Signal(C)
    e_wlast = Signal()
    wpiece = data.StructLayout({"addr": unsigned(HBM_BITS), "nelem": unsigned(LG + 1)})
    # (a thermometer level where it can be: the library FIFO's level adder, behind the
    # piece issue, was u280's next path once the segment FIFO's was gone)
    wq, wq_empty = buffered_fifo(wpiece.size, outstanding)
    m.submodules.waddrs = wq
    wq_in, wq_out = data.View(wpiece, wq.w_data), data.View(wpiece, wq.r_data)
    m.d.comb += [wq_in.addr.eq(hp), wq_in.nelem.eq(q_in.nelem),
                 wq.w_en.eq(q.w_en & is_write), aw_room.eq(wq.w_rdy)]
    waddr = Signal(HBM_BITS)            # the AW stage's piece: HBM address and beats
    wbeats = Signal(LG + 1)
    aw_ch = Signal(max(1, LC))
    m.d.comb += [waddr.eq(wq_out.addr), aw_ch.eq(channel(waddr)),
                 wbeats.eq((waddr[:LB] + (wq_out.nelem << 1) + (B - 1)) >> LB)]
    awready = Array(p.awready for p in axi)[aw_ch]
    # aw_count only falls while an AW waits, so AWVALID, once raised, stays until taken.
    aw_go = is_write & wq.r_rdy & (aw_now < outstanding)
    m.d.comb += e_awvalid.eq(Mux(aw_go, 1 << aw_ch, 0))
    with m.If(aw_go & awready):
        m.d.comb += [aw_fire.eq(1), wq.r_en.eq(1)]

    # Request stage: the open piece (channel, byte position in its beat, elements left).
    wopen = Signal()
    wch, wpos, wleft = Signal(max(1, LC)), Signal(LB + 1), Signal(LG + 1)
    # Capture stage: the element granted last cycle, where it goes and what it ends.
    pend, pend_end, pend_last = Signal(), Signal(), Signal()
    ppos, pch = Signal(LB + 1), Signal(max(1, LC))
    abuf, astrb = Signal(8 * B), Signal(B)           # the beat being assembled
    afull = Signal()                                 # abuf: a complete beat W cannot take
    alast, ach = Signal(), Signal(max(1, LC))
    wbuf, wstrb = Signal(8 * B), Signal(B)           # the W register
    wvalid_r, wlast_r, wch_o = Signal(), Signal(), Signal(max(1, LC))
    wready = Array(p.wready for p in axi)[wch_o]
    o_free = Signal()                                # the W register is free next cycle
    m.d.comb += o_free.eq(~wvalid_r | wready)
    # The request's data arrive next cycle; they need abuf not to hold a waiting beat then.
    req_ok = ~((afull | (pend & pend_end)) & ~o_free)
    # With no piece open, the next one is taken from the FIFO and its first element
    # requested in the same cycle (STR's piece is one 32-bit word from the register).
    use_q = Signal()
    rch, rpos, rleft = Signal(max(1, LC)), Signal(LB + 1), Signal(LG + 1)
    m.d.comb += use_q.eq(is_write & ~wopen & q.r_rdy)
    with m.If(wopen):
        m.d.comb += [rch.eq(wch), rpos.eq(wpos), rleft.eq(wleft)]
    with m.Else():
        m.d.comb += [rch.eq(q_out.ch), rpos.eq(q_out.off),
                     rleft.eq(Mux(is_str, 1, q_out.nelem))]
    want = Signal()
    granted = Signal()
    m.d.comb += [want.eq((wopen | use_q) & req_ok), granted.eq(want & (is_str | el.grant))]
    with m.If(~is_str):
        m.d.comb += el.re.eq(want)
    with m.If(use_q):
        m.d.comb += q.r_en.eq(1)
        m.d.sync += [wopen.eq(1), wch.eq(rch), wpos.eq(rpos), wleft.eq(rleft)]
    m.d.sync += pend.eq(granted)
    with m.If(granted):
        m.d.comb += advance.eq(~is_str)
        m.d.sync += [ppos.eq(rpos), pend_end.eq((rpos == B - 2) | (rleft == 1)),
                     pend_last.eq(rleft == 1), pch.eq(rch), wleft.eq(rleft - 1),
                     wpos.eq(Mux(rpos == B - 2, 0, rpos + 2))]
        with m.If(rleft == 1):
            m.d.sync += wopen.eq(0)

    merged, mstrb = Signal(8 * B), Signal(B)         # abuf with the arriving element
    m.d.comb += [merged.eq(abuf), mstrb.eq(astrb)]
    with m.If(is_str):
        wsel = ppos[2:LB] if LB > 2 else 0
        m.d.comb += [merged.word_select(wsel, 32).eq(c.rs), mstrb.word_select(wsel, 4).eq(0xF)]
    with m.Else():
        m.d.comb += [merged.word_select(ppos[1:LB], 16).eq(el.rdata),
                     mstrb.word_select(ppos[1:LB], 2).eq(0b11)]
    with m.If(o_free):
        m.d.sync += wvalid_r.eq(0)
    with m.If(afull):
        with m.If(o_free):
            m.d.sync += [wbuf.eq(abuf), wstrb.eq(astrb), wlast_r.eq(alast), wch_o.eq(ach),
                         wvalid_r.eq(1), afull.eq(0), abuf.eq(0), astrb.eq(0)]
    with m.Elif(pend):
        with m.If(pend_end & o_free):
            m.d.sync += [wbuf.eq(merged), wstrb.eq(mstrb), wlast_r.eq(pend_last),
                         wch_o.eq(pch), wvalid_r.eq(1), abuf.eq(0), astrb.eq(0)]
        with m.Else():
            m.d.sync += [abuf.eq(merged), astrb.eq(mstrb), afull.eq(pend_end),
                         alast.eq(pend_last), ach.eq(pch)]
    m.d.comb += [e_wvalid.eq(Mux(wvalid_r, 1 << wch_o, 0)), e_wlast.eq(wlast_r),
                 w_busy.eq(wopen | pend | afull | wvalid_r | ~wq_empty)]
    return SimpleNamespace(aw_count=aw_count, aw_now=aw_now, aw_fire=aw_fire, w_busy=w_busy,
                           e_awvalid=e_awvalid, e_wvalid=e_wvalid, e_wlast=e_wlast,
                           waddr=waddr, wbeats=wbeats, wbuf=wbuf, wstrb=wstrb)
