"""NET's wide flow and the down-counters its flows share (fpgpt/hw/net.py, module docstring).

:class:`_WideFlow` is ALLGATHER's second ring direction: one transfer of ``count`` elements
read from the scratchpad and sent on a transmitter while as many received elements are written,
a ``G``-element group per line access, with its own reader, packer, unpacker and writer.
:class:`~fpgpt.hw.net.NetUnit` owns the line port, arbitrates it and starts the flow in SETUP.
:class:`_Down` is the down-counter with registered flags both use instead of compares with
``count``; :func:`_packer` the packer both flows build (NET's own with its narrow modes).
Split out of fpgpt/hw/net.py unchanged in logic (the packer in session 23: the Verilog differs
only in names, the Yosys resources and Fmax are the same).
"""

# No `from __future__ import annotations`: kept like fpgpt/hw/net.py.

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import fifo

from ..config import HardwareConfig
from ..geometry import ring_group_elements, ring_stream_bits
from .scratchpad import ELEMENT_BITS

_A = 32            # scratchpad address arithmetic (the ISA's addresses are 32 bits)
_READ_FIFO = 4     # reader FIFO depth (read data waiting for the packer / partial sum)


def _le_pow2(x, g: int):
    """``x <= g`` for an unsigned ``x`` and a power of two ``g``, without a carry chain: the
    bits above ``log2(g)`` are zero, or ``x == g``."""
    lg = g.bit_length() - 1
    return (x[lg:] == 0) | (x == g)


def _blocks(addr, n, lg: int):
    """``B(addr, n)``: the ``2**lg``-element aligned blocks that ``n`` elements at ``addr``
    touch."""
    return (addr[:lg] + n + ((1 << lg) - 1)) >> lg if lg else n


def _packer(m, K: int, G: int, W: int, pk, tready, narrow=None):
    """A flow's packer: each take (``pk.valid & pk.ready``) puts ``pk.gcnt`` elements of
    ``pk.gdata`` (a ``G``-aligned group) into the beat being built, or, with ``narrow = (wide,
    data, two)`` and ``wide`` low, one or two 16-bit elements of ``data``; a full beat, or one
    closed by ``pk.last``, moves to the ``W``-bit output register (byte keeps, unused slots 0)
    as ``tready`` frees it. Drives ``pk.ready``. Shared by NET's own flow (narrow and wide) and
    :class:`_WideFlow` (wide only). Returns the output register (``data``, ``keep``, ``valid``,
    ``last``) and ``idle``: nothing held."""
    lg = G.bit_length() - 1
    acc = [Signal(ELEMENT_BITS, name=f"acc{j}") for j in range(K)]
    acc_n = Signal(range(K + 1), name="acc_n")
    # acc_z: acc_n == 0, a register set with acc_n (the compare, a chain of LUT2, was in
    # front of the step's end: docs/rtl-clock.md "Session 22")
    acc_z = Signal(name="acc_z", init=1)
    acc_last, closed = Signal(name="acc_last"), Signal(name="closed")
    o_data, o_keep = Signal(W, name="o_data"), Signal(W // 8, name="o_keep")
    o_valid, o_last = Signal(name="o_valid"), Signal(name="o_last")
    out_free = ~o_valid | tready
    move = closed & out_free
    base = Mux(move, 0, acc_n)
    m.d.comb += pk.ready.eq(~closed | out_free)
    with m.If(move):
        m.d.sync += [o_valid.eq(1), o_data.eq(Cat(*acc)), o_last.eq(acc_last),
                     o_keep.eq(Cat(*[(j // 2) < acc_n for j in range(W // 8)]))]
    with m.Elif(o_valid & tready):
        m.d.sync += o_valid.eq(0)

    def group(j):                                   # base is a multiple of G
        with m.If((base >> lg) == j // G):
            m.d.sync += acc[j].eq(pk.gdata.word_select(j % G, ELEMENT_BITS))
        with m.Elif(base == 0):                     # a new beat: unused slots read 0
            m.d.sync += acc[j].eq(0)

    with m.If(pk.valid & pk.ready):
        for j in range(K):
            if narrow is None:
                group(j)
                continue
            wide, data, two = narrow
            with m.If(wide):
                group(j)
            with m.Elif(base == j):
                m.d.sync += acc[j].eq(data[:16])
            with m.Elif(two & (base + 1 == j)):
                m.d.sync += acc[j].eq(data[16:])
            with m.Elif(base == 0):
                m.d.sync += acc[j].eq(0)
        new_n = base + (pk.gcnt if narrow is None else Mux(narrow[0], pk.gcnt, 1 + narrow[2]))
        m.d.sync += [acc_n.eq(new_n), acc_z.eq(new_n[:len(acc_n)] == 0),
                     closed.eq((new_n == K) | pk.last), acc_last.eq(pk.last)]
    with m.Elif(move):
        m.d.sync += [acc_n.eq(0), acc_z.eq(1), closed.eq(0)]
    return SimpleNamespace(data=o_data, keep=o_keep, valid=o_valid, last=o_last,
                           idle=~o_valid & ~closed & acc_z)


def _realigner(m, en, rq, a_off, a_left, pk_ready, G: int):
    """A wide flow's reader side: the ``G``-aligned blocks popped from ``rq`` (each a line
    access's ``G`` elements) realigned into stream order by one block of ``hold`` and a shifter by
    ``a_off`` (the operand's offset in its first block), one ``G``-element group (fewer at the
    end: ``a_left``) a take while ``en`` and the packer is ready. Shared by NET's own flow and
    :class:`_WideFlow`. Returns ``go`` (a group is handed over), ``pop`` (``rq``'s read enable),
    ``data`` (the group, unused slots 0), ``cnt``, ``last`` and ``hold_v`` (cleared at a start)."""
    lg = G.bit_length() - 1
    GW = G * ELEMENT_BITS
    hold, hold_v = Signal(GW, name="hold"), Signal(name="hold_v")
    g_last = a_left.le
    g_cnt = Mux(g_last, a_left.v, G)[:lg + 1]
    g_next = (a_off + g_cnt) > G                 # the group's tail is in the next block
    g_win = Cat(hold, rq.r_data).bit_select(a_off * ELEMENT_BITS, GW) if lg else hold
    g_mask = Cat(*[Mux(i < g_cnt, 0xFFFF, 0)[:16] for i in range(G)])
    g_go = en & hold_v & a_left.nz & (~g_next | rq.r_rdy) & pk_ready
    g_load = en & ~hold_v & rq.r_rdy & a_left.nz
    with m.If(g_go):
        a_left.take(m)
        with m.If(rq.r_rdy & (g_next | ~g_last)):
            m.d.sync += hold.eq(rq.r_data)
        with m.Else():
            m.d.sync += hold_v.eq(0)
    with m.Elif(g_load):
        m.d.sync += [hold.eq(rq.r_data), hold_v.eq(1)]
    return SimpleNamespace(go=g_go, pop=(g_go & rq.r_rdy & (g_next | ~g_last)) | g_load,
                           data=g_win & g_mask, cnt=g_cnt, last=g_last, hold_v=hold_v)


class _Down:
    """A down-counter (``v``: what is left of a transfer) with its flags in registers: ``nz``
    (``v != 0``), ``le`` (``v <= g``) and ``one`` (``v == 1``), each computed from the counter's
    present value beside the next one, so that no handshake waits on a compare of a wide
    value (docs/rtl-clock.md: the NET block's critical paths were such compares). ``load``,
    ``dec`` (``v - 1``, ``v >= 1``) and ``take`` (``v - min(v, g)``) assign in the caller's
    ``m.If`` context; the flags no one reads are left to synthesis to remove."""

    def __init__(self, name: str, g: int, width: int = 33):
        self.g, self.width = g, width
        self.v = Signal(width, name=name)
        self.nz, self.one = Signal(name=f"{name}_nz"), Signal(name=f"{name}_one")
        self.le = Signal(name=f"{name}_le", init=1)

    def _set(self, m: Module, v, nz, le, one):
        m.d.sync += [self.v.eq(v), self.nz.eq(nz), self.le.eq(le), self.one.eq(one)]

    def load(self, m: Module, value, nz=None):
        """``v = value``; ``nz`` may be given when it is known more cheaply."""
        self._set(m, value, (value != 0) if nz is None else nz, _le_pow2(value, self.g),
                  value == 1)

    def dec(self, m: Module):
        x = (self.v - 1)[:self.width]
        self._set(m, x, ~self.one, _le_pow2(x, self.g), self.v == 2)

    def take(self, m: Module):
        x = (self.v - self.g)[:self.width]
        self._set(m, Mux(self.le, 0, x), ~self.le, self.le | _le_pow2(x, self.g),
                  ~self.le & (x == 1))


class _WideFlow(Elaboratable):
    """ALLGATHER's second direction (module docstring): one transfer of ``count`` elements read
    from ``S[rd:]`` and sent on a transmitter while ``count`` elements received on a receiver are
    written to ``S[wa:]``, a ``G``-element group per port access, as the wide path of
    :class:`NetUnit`'s own flows does (the same reader, packer, unpacker and writer, without
    ALLREDUCE's element path). :class:`NetUnit` owns the line port and arbitrates it.

    Control: ``start`` (one cycle) latches ``en``, ``rd``, ``wa``, ``count`` and clears the
    counters; ``stop`` clears ``en``; ``done`` is high once an enabled transfer has read, sent,
    received and written everything (at once when not enabled). Port: ``rreq``/``raddr`` (a
    G-aligned block) and ``rgo`` (the read is taken; its group is on ``rdata`` the next cycle),
    ``wreq``/``waddr``/``wblock``/``wlmask`` (G-aligned block, element write mask) and ``wgo``.
    Streams: ``tx_*`` (transmitter) and ``rx_*`` (receiver). ``error``: a one-cycle pulse when
    a received ``tlast`` disagrees with ``count``."""

    def __init__(self, hw: HardwareConfig):
        self._hw = hw
        W, G = ring_stream_bits(hw), ring_group_elements(hw)
        GW = G * ELEMENT_BITS
        self.start, self.stop, self.en = Signal(), Signal(), Signal()
        self.rd, self.wa, self.count = Signal(_A), Signal(_A), Signal(32)
        self.rreq, self.raddr, self.rgo = Signal(), Signal(_A), Signal()
        self.rdata = Signal(GW)
        self.wreq, self.waddr, self.wgo = Signal(), Signal(_A), Signal()
        self.wblock, self.wlmask = Signal(GW), Signal(G)
        self.tx_data, self.tx_keep = Signal(W), Signal(W // 8)
        self.tx_last, self.tx_valid, self.tx_ready = Signal(), Signal(), Signal()
        self.rx_data = Signal(W)
        self.rx_last, self.rx_valid, self.rx_ready = Signal(), Signal(), Signal()
        self.done, self.error = Signal(), Signal()

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        W = ring_stream_bits(hw)
        K = W // ELEMENT_BITS
        G = ring_group_elements(hw)
        lg = G.bit_length() - 1
        GW = G * ELEMENT_BITS
        en, rd, wa = Signal(name="en"), Signal(_A, name="rd"), Signal(_A, name="wa")

        # ---- packer: groups -> beats on tx --------------------------------------------------
        pk_valid, pk_ready, pk_last = Signal(), Signal(), Signal()
        pk_gdata, pk_gcnt = Signal(GW), Signal(range(G + 1))
        pk = SimpleNamespace(valid=pk_valid, ready=pk_ready, last=pk_last, gdata=pk_gdata,
                             gcnt=pk_gcnt)
        out = _packer(m, K, G, W, pk, self.tx_ready)
        m.d.comb += [self.tx_data.eq(out.data), self.tx_keep.eq(out.keep),
                     self.tx_last.eq(out.last), self.tx_valid.eq(out.valid)]
        pk_idle = out.idle

        # ---- unpacker: beats from rx -> groups ----------------------------------------------
        rb_data = Signal(W, name="rb_data")
        rb_valid, rb_last = Signal(name="rb_valid"), Signal(name="rb_last")
        rb_idx = Signal(range(K + 1))
        rx_take, rx_lastel, rx_need = Signal(), Signal(), Signal()
        rx_group = Signal(GW)
        m.d.comb += rx_group.eq(rb_data.word_select(rb_idx >> lg, GW) if K > G else rb_data[:GW])
        new_idx = rb_idx + G
        beat_end = (new_idx == K) | rx_lastel
        in_ready = Signal()
        m.d.comb += [in_ready.eq(rx_need & (~rb_valid | (rx_take & beat_end & ~rx_lastel))),
                     self.rx_ready.eq(in_ready),
                     self.error.eq(rx_take & beat_end & (rx_lastel != rb_last))]
        with m.If(rx_take):
            m.d.sync += rb_idx.eq(new_idx)
            with m.If(beat_end):
                m.d.sync += [rb_valid.eq(0), rb_idx.eq(0)]
        with m.If(in_ready & self.rx_valid):
            m.d.sync += [rb_valid.eq(1), rb_data.eq(self.rx_data), rb_last.eq(self.rx_last),
                         rb_idx.eq(0)]

        # ---- reader: the G-aligned blocks of S[rd : rd+count], realigned by `hold` ----------
        # Down-counters with registered flags (_Down) instead of compares with count: ``a_left``
        # = count - (elements handed to the packer), ``a_nblk`` = blocks still to read,
        # ``b_left`` = count - (elements written), ``b_nblk`` = blocks still to write.
        m.submodules.rq = rq = fifo.SyncFIFO(width=GW, depth=_READ_FIFO)
        a_iss = Signal(33, name="a_iss")
        a_left, a_nblk = _Down("a_left", G), _Down("a_nblk", G)
        pend = Signal(name="pend")
        a_off = rd[:lg] if lg else Const(0, 1)
        m.d.comb += [self.rreq.eq(en & a_nblk.nz & ((rq.level + pend) < _READ_FIFO)),
                     self.raddr.eq(((rd >> lg) + a_iss[:_A]) << lg)]
        with m.If(self.rgo):
            m.d.sync += a_iss.eq(a_iss + 1)
            a_nblk.dec(m)
        m.d.sync += pend.eq(self.rgo)
        m.d.comb += [rq.w_en.eq(pend), rq.w_data.eq(self.rdata)]
        g = _realigner(m, en, rq, a_off, a_left, pk_ready, G)
        a_more, hold_v = a_left.nz, g.hold_v
        m.d.comb += [rq.r_en.eq(g.pop), pk_valid.eq(g.go), pk_gdata.eq(g.data),
                     pk_gcnt.eq(g.cnt), pk_last.eq(g.last)]

        # ---- writer: the G-aligned blocks of S[wa : wa+count], from `bhold` and the group ---
        b_blk = Signal(33, name="b_blk")
        b_left, b_nblk = _Down("b_left", G), _Down("b_nblk", G)
        b_rem = Signal(34, name="b_rem")             # count + off - G*b_blk: lanes still due
        b_off = wa[:lg] if lg else Const(0, 1)
        bhold = Signal(GW, name="bhold")
        b_grp = b_left.nz                            # a group is still to come (else a spill)
        b_lastg = b_left.le
        b_cur = Mux(b_grp, rx_group, 0)
        b_sh = Signal(range(G + 1))
        m.d.comb += b_sh.eq(G - b_off)

        def first_ok(i):        # lane i of the first block is at or past the start
            if i == 0:
                return b_off == 0
            return Const(1, 1) if i >= G - 1 else b_off <= i
        m.d.comb += [
            self.wblock.eq(Cat(bhold, b_cur).bit_select(b_sh * ELEMENT_BITS, GW) if lg else b_cur),
            self.wlmask.eq(Cat(*[((b_blk != 0) | first_ok(i)) & (i < b_rem) for i in range(G)])),
            self.wreq.eq(en & b_nblk.nz & (~b_grp | rb_valid)),
            self.waddr.eq(((wa >> lg) + b_blk[:_A]) << lg),
            rx_take.eq(self.wgo & b_grp),
            rx_lastel.eq(b_lastg),
            rx_need.eq(en & b_grp),
        ]
        with m.If(self.wgo):
            m.d.sync += [b_blk.eq(b_blk + 1), b_rem.eq(b_rem - G)]
            b_nblk.dec(m)
            with m.If(b_grp):
                m.d.sync += bhold.eq(rx_group)
                b_left.take(m)
        m.d.comb += self.done.eq((~en | (~a_more & ~b_nblk.nz)) & pk_idle & ~pend)

        with m.If(self.start):
            # (a transfer of count > 0 touches at least one block; count = 0 never starts)
            m.d.sync += [en.eq(self.en), rd.eq(self.rd), wa.eq(self.wa),
                         a_iss.eq(0), b_blk.eq(0), hold_v.eq(0),
                         b_rem.eq(self.count + (self.wa[:lg] if lg else 0))]
            a_left.load(m, self.count)
            b_left.load(m, self.count)
            a_nblk.load(m, _blocks(self.rd, self.count, lg), nz=self.count != 0)
            b_nblk.load(m, _blocks(self.wa, self.count, lg), nz=self.count != 0)
        with m.Elif(self.stop):
            m.d.sync += en.eq(0)
        return m
