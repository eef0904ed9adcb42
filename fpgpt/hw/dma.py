"""The DMA engine: captured LOAD / STORE / GATHER / STR against HBM over AXI4 and the scratchpad.

HBM address mapping (docs/execution.md: byte ``a`` lives in channel ``(a // G) % C`` for
``G = hbm.interleave_bytes`` and ``C = hbm.channels``). Each channel has its own AXI4 master port
``m_axi{k}`` that addresses only that channel's memory, so HBM byte ``a`` is byte

    local(a) = (a // (G*C)) * G + a % G

of port ``(a // G) % C``, plus ``data_base`` (one base added on every port, where a Vitis
kernel's buffer of that pseudo-channel starts). :func:`channel_address` is that mapping.
It, :func:`dma_path` and the exact cycle formula :func:`engine_cycles` live in
fpgpt/hw/dma_model.py (the engine's behaviour in Python) and are re-exported here. This module
builds the instruction's address generator, the element path's read side and the line port;
the stripe path's reader and writer are in fpgpt/hw/dma_stripes.py, the element path's write
side in fpgpt/hw/dma_element.py (split out statement for statement: the same Verilog, the same
synthesis cache keys, ``fpgpt.sweep.clock.block_cache_key``).

Two paths, chosen per instruction when it starts (:func:`dma_path` says which, in Python):

*Stripe path* (the fast one). Where ``G`` is one AXI beat (``B = hbm.port_bits/8`` bytes), the
channels' beats at one channel-local beat address ``s`` are the ``C·B`` consecutive HBM bytes
``[s·C·B, (s+1)·C·B)``: a *stripe* of ``E = C·B/2`` elements (tiny 16, u280 with ``G = 64``:
1024 = one scratchpad line). When every row of a transfer starts at an HBM element address
congruent to its scratchpad address modulo the chunk ``Cs = mpu.width`` (the *alignment
rule*, :func:`dma_path`), a stripe lands at a chunk-aligned scratchpad address and moves as ONE
masked line access, with no element shifting at all:

- the address generator cuts each run (a row; the whole instruction is rows × batches of runs)
  into *segments* of at most ``S = min(256, 4096/B)`` stripes, aligned to ``S`` (an AXI burst
  never exceeds 256 beats nor crosses 4 KiB), and issues, in ONE cycle, every participating
  channel's burst of the segment (channel ``k``'s beats of stripes ``first_k .. last_k``), AR for
  loads and AW for stores; it queues the segment (``outstanding`` segments at most);
- loads: the *stripe reader* takes one stripe per cycle (when every channel it needs has
  ``rvalid``) and writes it with one masked line write (the mask cuts a run's partial first
  and last stripes);
- stores: the *stripe writer* reads one line per cycle, holds it in a stripe register and sends
  every channel's beat from it (byte strobes cut partial stripes); a line read whose data find
  the register still busy (W back-pressure) is dropped and repeated, so the register is the only
  buffer and an ideal memory sees one stripe per cycle;
- GATHER reads each row's index through the element path (below), then the row by stripes;
  one row at a time (an index read waits for the previous row's data).

*Element path* (everything else: transposed transfers, rows breaking the alignment rule, STR,
GATHER indices, any ``hw`` whose interleave is not one beat). It cuts each run at
interleave-granule boundaries into *pieces* (one channel, one AXI burst, at most ``G`` bytes)
and moves one element per cycle through the line port: the read side pops pieces in order and
takes their R beats from the piece's channel only (so every channel's in-order R data arrive in
the global element order); the write side is a pipeline that overlaps consecutive pieces:
AWs go out ahead of the data (bursts without a B response at most ``outstanding``), one
element is requested per cycle, the next piece's first right after the previous piece's last,
and packed beats (byte strobes) leave back to back, so a piece of ``k`` elements costs ``k``
cycles, one element (a transposed STORE's piece) one cycle. The instruction completes when
every B response is back.

:func:`engine_cycles` is the exact cycle count of both paths for an ideal memory (module-level
docstring there). One instruction is in flight at a time. HBM addresses of FP16 data must be
even and of int32 data (GATHER indices, STR) multiples of 4, as the compiler emits them; other
alignments give undefined data.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
import math
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..geometry import stripes_ok
from ..isa.table import Unit
from .axi import AXI_4K_BYTES, AXI_ADDR_BITS, AXI_MAX_BEATS, axi4_signature
from .decoder import Opcode, captured_layout
from .dma_element import element_writer
from .dma_model import channel_address, dma_path, engine_cycles
from .dma_stripes import stripe_reader, stripe_writer
from .flag_fifo import buffered_fifo
from .scratchpad import chunk_elements, line_elements, line_signature

__all__ = ["channel_address", "DMA", "default_outstanding", "stripes_ok", "dma_path",
           "engine_cycles"]

_HBM_BITS = 48          # internal HBM byte address arithmetic (the ISA's addresses are 40 bits)
_COUNT_BITS = 34        # rows + R[rr] and friends (16-bit field + 32-bit register)


def default_outstanding(hw: HardwareConfig) -> int:
    """Segments/pieces in flight the DMA is built with: the smallest power of two, at least 8,
    above ``hbm.latency_ns`` in core cycles plus the two cycles of the DMA's own request path, so
    that a transfer whose rows are one stripe each (a u280 weight tile: 1,024 FP16 per row)
    still streams a stripe per cycle (u280: 110 ns at 300 MHz = 33 cycles -> 64)."""
    need = math.ceil(hw.hbm.latency_ns * hw.clock_mhz / 1e3) + 2
    n = 8
    while n <= need:
        n *= 2
    return n


def _log2(x: int) -> int:
    return x.bit_length() - 1


def _popcount(bits):
    """The number of set bits, as a balanced tree of adds."""
    vals = list(bits)
    while len(vals) > 1:
        vals = [vals[i] + vals[i + 1] if i + 1 < len(vals) else vals[i]
                for i in range(0, len(vals), 2)]
    return vals[0]


#: Stripes of a segment at most: an AXI burst has at most 256 beats and never crosses 4 KiB.
def _segment_stripes(hw: HardwareConfig) -> int:
    return min(AXI_MAX_BEATS, AXI_4K_BYTES // (hw.hbm.port_bits // 8))


class DMA(wiring.Component):
    """DMA unit of one device: executes captured DMA instructions one at a time.

    Parameters
    ----------
    hw : HardwareConfig
        ``hbm.channels`` (a power of two) AXI4 ports of ``hbm.port_bits``; ``interleave_bytes``
        at most 4 KiB and 256 beats (one burst per piece).
    outstanding : int, optional
        Pieces (element path) or segments (stripe path) in flight at most. The stripe path
        never starves an ideal memory while ``outstanding > latency`` (AR to first R, cycles);
        an element STORE's bursts awaiting B are bounded by it too, and stream one element per
        cycle while ``outstanding >= latency + 2`` (last W to B, cycles; :func:`engine_cycles`);
        default :func:`default_outstanding` (8 on tiny, 64 on u280).

    Ports
    -----
    cmd : In(stream.Signature(captured_layout(Unit.DMA)))
        The next instruction; taken when the unit is idle.
    done : Out(1)
        One-cycle pulse when an instruction has completed (its data are in the scratchpad, or
        every write to HBM is acknowledged).
    busy : Out(1)
    data_base : In(64)
        Added to every AXI address.
    line : Out(scratchpad.line_signature(hw))
    m_axi0 ... m_axi{channels-1} : Out(axi4_signature(64, hbm.port_bits))
    """

    def __init__(self, *, hw: HardwareConfig, outstanding: int | None = None):
        if outstanding is None and isinstance(hw, HardwareConfig):
            outstanding = default_outstanding(hw)
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        h = hw.hbm
        if h.channels & (h.channels - 1):
            raise ValueError(f"hbm.channels must be a power of two for the RTL DMA, not {h.channels!r}")
        beat = h.port_bits // 8
        if h.interleave_bytes > AXI_4K_BYTES or h.interleave_bytes // beat > AXI_MAX_BEATS:
            raise ValueError(f"hbm.interleave_bytes={h.interleave_bytes} must be at most 4096 and "
                             f"{AXI_MAX_BEATS} beats of {beat} bytes (one AXI burst per granule)")
        if not isinstance(outstanding, int) or outstanding < 1:
            raise ValueError(f"outstanding must be a positive integer, not {outstanding!r}")
        self._hw = hw
        self._outstanding = outstanding
        self.stripes = stripes_ok(hw)
        members = {
            "cmd": In(stream.Signature(captured_layout(Unit.DMA))),
            "done": Out(1), "busy": Out(1), "data_base": In(AXI_ADDR_BITS),
            "line": Out(line_signature(hw)),
        }
        for k in range(h.channels):
            members[f"m_axi{k}"] = Out(axi4_signature(AXI_ADDR_BITS, h.port_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        h = hw.hbm
        C, B, G = h.channels, h.port_bits // 8, h.interleave_bytes
        LC, LB, LG = _log2(C), _log2(B), _log2(G)
        axi = [getattr(self, f"m_axi{k}") for k in range(C)]
        CE, P = chunk_elements(hw), line_elements(hw)
        LCE = _log2(CE)

        # The element path's scratchpad access (one element per grant), carried on the line port.
        # Separate signals, not one struct: Verilator would see a loop through grant and re.
        el = SimpleNamespace(re=Signal(name="el_re"), we=Signal(name="el_we"),
                             wdata=Signal(16, name="el_wdata"), rdata=Signal(16, name="el_rdata"),
                             grant=Signal(name="el_grant"))

        # ---- the instruction, latched ------------------------------------------------------
        c = Signal(captured_layout(Unit.DMA))
        is_load, is_store = c.op == Opcode.LOAD, c.op == Opcode.STORE
        # Registers loaded with c (the op's decode is not in front of the paths that use them).
        is_gather, is_str = Signal(name="is_gather"), Signal(name="is_str")
        is_write = Signal(name="is_write")               # STORE or STR
        fmode = Signal()                 # this instruction takes the stripe path

        # Loop nest: batch b < nbatch, run j < nruns, element i < n (per run); a run is 2n
        # contiguous HBM bytes; scratchpad steps: estep per element, rstep per run.
        n = Signal(_COUNT_BITS)
        estep, rstep = Signal(32), Signal(32)

        # ---- piece FIFO: (channel, byte offset in the first beat, elements, is index) --------
        piece = data.StructLayout({"ch": unsigned(max(1, LC)), "off": unsigned(max(1, LB)),
                                   "nelem": unsigned(LG + 1), "idx": unsigned(1)})
        # (a thermometer level where it can be, FlagFIFO: the library FIFO's level adder,
        # behind the element path's issue into the write-address FIFO, was 196.3 MHz on u280
        # once the stripe path's paths were cut, docs/rtl-clock.md "Session 23")
        q, q_empty = buffered_fifo(piece.size, self._outstanding)
        m.submodules.pieces = q
        q_in = data.View(piece, q.w_data)
        q_out = data.View(piece, q.r_data)

        # ---- address generator -------------------------------------------------------------
        hb, hj, hp = Signal(_HBM_BITS), Signal(_HBM_BITS), Signal(_HBM_BITS)   # batch, run, piece
        rem = Signal(_COUNT_BITS + 1)                    # bytes left in the run
        # Run and batch counters count down, each with its "last" flag registered beside it
        # (set from the count one step ahead), so that the end-of-run decision is a flag,
        # not a 34-bit ``j + 1 == nruns`` compare in front of the address muxes (the DMA's
        # critical path before: 23 LUT levels, docs/rtl-clock.md).
        def countdown(name, bits):
            left, last = Signal(bits, name=f"{name}_left"), Signal(name=f"{name}_last")
            return SimpleNamespace(
                left=left, last=last,
                load=lambda total: [left.eq(total - 1), last.eq(total == 1)],
                reload=lambda m1, one: [left.eq(m1), last.eq(one)],
                step=lambda: [left.eq(left - 1), last.eq(left == 1)])
        jc, bc = countdown("j", _COUNT_BITS), countdown("b", 8)
        ec, rc = countdown("ei", _COUNT_BITS), countdown("ej", _COUNT_BITS)   # scratchpad side
        nruns_m1, n_m1 = Signal(_COUNT_BITS), Signal(_COUNT_BITS)   # nruns - 1, n - 1
        nruns_one, n_one = Signal(), Signal()                       # nruns == 1, n == 1
        ia = Signal(_HBM_BITS)                           # next GATHER index address
        t_valid = Signal()                               # t_off holds the row's offset (pulse)
        # The address products, each made the cycle before it is used, into a register (a
        # DSP48E2 multiply then an adder chain in one cycle was the next limit): ra_off =
        # ra·hstride as the command is taken (SETUP adds it), t_off = index·hstride two cycles
        # after the index word arrives (INDEX_WAIT adds it). The index word is registered
        # first (t_word): on u280 it is selected from 32 channels' 512-bit beats (9 LUT levels),
        # which in front of the multiply was the DMA's critical path (docs/rtl-clock.md). That
        # register and the product's second one (t_prod, below) are a cycle per GATHER row each
        # (engine_cycles: 2·Lr + 6, 2·Lr + 5).
        t_word, t_pend = Signal(32), Signal()            # the index word, arrived last cycle
        t_off = Signal(_HBM_BITS)
        ra_off = Signal(_HBM_BITS)
        drained = Signal()                               # nothing left in flight
        r_busy = Signal()                                # element read side: a piece open

        def local(addr):
            """Beat-aligned byte address in the channel's own memory, plus data_base."""
            off = Cat(Const(0, LB), addr[LB:LG], addr[LG + LC:])
            return (self.data_base + off)[:AXI_ADDR_BITS]

        def channel(addr):
            return addr[LG:LG + LC] if LC else Const(0, 1)

        # Bytes from ``hp`` to its granule's end, a register kept beside ``hp`` (each load of
        # ``hp`` loads it from the new address's low bits, added on their own), so that the
        # piece loop is ``min(rem, room)`` -> ``hp + plen`` without the subtraction in front
        # (the DMA's critical path at 187.3 MHz on u280: docs/rtl-clock.md).
        room = Signal(LG + 1)

        def lo_add(x, y):
            return (x[:LG] + y[:LG])[:LG]

        def set_hp(x, lo):
            """``hp <= x`` and ``room`` from ``lo``, ``x``'s low ``LG`` bits."""
            return [hp.eq(x), room.eq((G - lo)[:LG + 1])]

        plen = Mux(rem < room, rem, room)[:LG + 1]       # bytes of this piece
        beats = ((hp[:LB] + plen + (B - 1)) >> LB)       # beats of its burst

        # AR and AW address/length per channel: the element path (one channel) or the
        # stripe path's segment (every channel its own burst).
        ar_addr = [Signal(AXI_ADDR_BITS) for _ in range(C)]
        ar_len = [Signal(8) for _ in range(C)]
        e_arvalid = Signal(C)
        f_avalid = Signal(C)                             # stripe path: AR/AW valid per channel
        for k, p in enumerate(axi):
            m.d.comb += [p.araddr.eq(ar_addr[k]), p.arlen.eq(ar_len[k]), p.arsize.eq(LB),
                         p.arburst.eq(1), p.arvalid.eq(e_arvalid[k] | (f_avalid[k] & ~is_write))]

        def issue_ar(addr, nbeats, fire):
            for k in range(C):
                m.d.comb += [ar_addr[k].eq(local(addr)), ar_len[k].eq(nbeats - 1)]
            m.d.comb += e_arvalid.eq(Mux(q.w_rdy, 1 << channel(addr), 0))
            ready = Array(p.arready for p in axi)[channel(addr)]
            m.d.comb += fire.eq(q.w_rdy & ready)

        fire = Signal()
        aw_room = Signal()                               # the write side's AW FIFO has room

        # ---- stripe path: state and the segment FIFO ----------------------------------------
        SB = C * B                                       # bytes of a stripe
        LSB, ES = _log2(SB), SB // 2                     # ES: elements of a stripe
        NSEG = _segment_stripes(hw)
        LS = _log2(NSEG)
        LES = _log2(ES)
        seg = data.StructLayout({"chunk": unsigned(32), "n": unsigned(LS + 1),
                                 "lo": unsigned(LES + 1), "hi": unsigned(LES + 1)})
        # The segment FIFO: SyncFIFOBuffered's behaviour, its level a thermometer code
        # (FlagFIFO; the library FIFO's level adder behind the channels' AND limited u280).
        sq, sq_none = buffered_fifo(seg.size, self._outstanding)
        m.submodules.segs = sq
        sq_empty = Signal(name="sq_empty")
        m.d.comb += sq_empty.eq(sq_none)
        sq_in, sq_out = data.View(seg, sq.w_data), data.View(seg, sq.r_data)
        st = Signal(_HBM_BITS - LSB)                     # next stripe of the run to request
        # The run's last byte, kept beside its start (hj, hb) so that FRUN reads the run's
        # last stripe from a register instead of adding ``hj + 2n - 1`` in front of its
        # compares: h1m1 = hj + 2n - 1, hb1m1 = hb + 2n - 1.
        h1m1, hb1m1 = Signal(_HBM_BITS), Signal(_HBM_BITS)
        seg_first = Signal()                             # st is the run's first stripe
        fsb, fsj = Signal(32), Signal(32)                # scratchpad: batch base, run start
        # Each channel's stripe-path AR (AW) queue, two entries (its first stripe, its burst
        # length), which the channel drains on its own; a segment's requests go in all at once
        # as it is queued, passing straight to the channel when its queue is empty. So queueing
        # a segment waits on a register (q_room: every queue has room), not on an AND over the
        # 32 channels' readys in front of the state and the run counters (205.0 MHz on u280,
        # docs/rtl-clock.md "Session 23"). With channels that take a request at once, as the
        # engine's cycle formula assumes, every request leaves in the cycle it did before.
        FW = _HBM_BITS - LSB
        aq_v = [[Signal(name=f"aq{k}_v{i}") for i in range(2)] for k in range(C)]
        aq_f = [[Signal(FW, name=f"aq{k}_f{i}") for i in range(2)] for k in range(C)]
        aq_l = [[Signal(8, name=f"aq{k}_l{i}") for i in range(2)] for k in range(C)]
        q_room = Signal(name="q_room", init=1)           # no queue holds two requests
        f_push = Signal()                                # a segment is queued this cycle
        f_leave, f_index = Signal(name="f_leave"), Signal(name="f_index")   # FRUN's exit, next
        fast = Signal()
        fast_rr = Signal(C)
        f_busy = Signal()                                # the stripe reader/writer has work
        rd_act = Signal()                                # the stripe reader has a segment
        f_aw = Signal(C)                                 # stripe path AWs accepted this cycle

        # FRUN's segment, decided a cycle ahead: whether it is the run's last (d_last), its
        # stripes less one (d_span), and per channel whether the run's start (d_df) or end
        # (d_dl) takes that channel's first or last beat off it and whether the channel has a
        # beat in it at all (d_inv). FRUN queues the segment and puts every needed channel's
        # burst into that channel's AR (AW) queue in one cycle (aq_*, below; until session 23
        # it waited for all 32 channels to accept); with these decisions computed in front of
        # the channels' 32-input AND (u280) the AND, the segment FIFO's write and the run
        # counters made one path (7.68 ns, docs/rtl-clock.md). Now they are registers, loaded as the segment
        # before is queued (the next segment of the run, or the next run's first) or as a run
        # begins (SETUP, INDEX_WAIT), so no cycle moves. A run's first segment is computed from
        # the low LL bits of its first byte alone: it is the run's last too when those plus
        # nm1 = 2n - 1 (the run's last byte from its first) do not carry out of the segment.
        LL = LSB + LS                                    # byte address bits within a segment
        nm1 = Signal(_COUNT_BITS + 2)                    # 2n - 1 (the stripe path's runs)
        nm1_big = Signal()                               # 2n - 1 >= a segment: never one segment
        d_last, d_span = Signal(), Signal(LS)
        d_df, d_dl, d_inv = Signal(C), Signal(C), Signal(C)
        lo_src = Signal(LL)                              # the low bits of the next run's start
        # Registers so that no adder sits in front of the decisions (each was in front of
        # d_inv at 194-201 MHz on u280 in session 22's tries, docs/rtl-clock.md): the low bits
        # of the instruction's first run start (lo_first, from IDLE), of the next run's
        # (lo_run = hj + hstride) and of the next batch's (lo_batch = hb + hbatch); and
        # whether the run's next segment is its last (a_last_r), from the segments left after
        # st's (segs_m1 = se[LS:] - st[LS:]), set as a run's first segment is loaded (from
        # r_sum's carry and nm1's high bits) and counted down as each segment is queued.
        lo_first = Signal(LL, name="lo_first")
        lo_run, lo_batch = Signal(LL, name="lo_run"), Signal(LL, name="lo_batch")
        segs_m1 = Signal(len(st) - LS, name="segs_m1")
        a_last_r = Signal(name="a_last_r")
        nm1_h1 = Signal(name="nm1_h1")                  # nm1 >> LL == 1
        se = h1m1[LSB:_HBM_BITS]                         # the run's last stripe

        def desc(name, last, span, df, dl, inv):
            v = SimpleNamespace(last=Signal(name=f"{name}_last"),
                                span=Signal(LS, name=f"{name}_span"),
                                df=Signal(C, name=f"{name}_df"), dl=Signal(C, name=f"{name}_dl"),
                                inv=Signal(C, name=f"{name}_inv"))
            m.d.comb += [v.last.eq(last), v.span.eq(span), v.df.eq(df), v.dl.eq(dl), v.inv.eq(inv)]
            return v

        def load(v):
            return [d_last.eq(v.last), d_span.eq(v.span), d_df.eq(v.df), d_dl.eq(v.dl),
                    d_inv.eq(v.inv), *v.segs]

        def after(k, e):
            """Channel k's beat of the run's last stripe lies after its last byte e."""
            return Const(0) if k == 0 else (k * B > e)

        # A run's first segment, from lo_src: the run starts lo_src[:LSB] bytes into its first
        # stripe, ends at byte e of the segment if it ends in it (r_last).
        r_sum = lo_src + nm1[:LL]
        r_last = Signal(name="run_last")
        m.d.comb += r_last.eq(~nm1_big & ~r_sum[LL])
        r_e = r_sum[:LL]
        r_df = Cat(*[(k + 1) * B <= lo_src[:LSB] for k in range(C)])
        r_dl = Cat(*[r_last & after(k, r_e[:LSB]) for k in range(C)])
        r_span = Signal(LS, name="run_span")
        m.d.comb += r_span.eq((Mux(r_last, r_e[LSB:], NSEG - 1) - lo_src[LSB:])[:LS])
        d_run = desc("drun", r_last, r_span, r_df, r_dl,
                     Cat(*[(r_df[k] + r_dl[k]) <= r_span for k in range(C)]))
        d_run.segs = [segs_m1.eq(nm1[LL:] + r_sum[LL]),
                      a_last_r.eq(Mux(r_sum[LL], ~nm1_big, nm1_h1))]
        # The run's next segment (aligned: it starts at its first stripe's first byte).
        a_last = a_last_r                                # se[LS:] == st[LS:] + 1
        a_span = Mux(a_last, se[:LS], NSEG - 1)
        a_dl = Cat(*[a_last & after(k, h1m1[:LSB]) for k in range(C)])
        a_more = a_span != 0                             # more than one stripe: every channel
        d_seg = desc("dseg", a_last, a_span, Const(0, C), a_dl,
                     Cat(*[~a_dl[k] | a_more for k in range(C)]))
        d_seg.segs = [segs_m1.eq(segs_m1 - 1), a_last_r.eq(segs_m1 == 2)]

        m.d.comb += self.cmd.ready.eq(0)
        with m.FSM(name="ag"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    pl = data.View(captured_layout(Unit.DMA), self.cmd.payload)
                    # 2n - 1 of the stripe path's runs (a row: never transposed).
                    pe = Mux(pl.op == Opcode.GATHER, pl.cols, pl.cols + pl.rc)
                    # the first run's start, low bits (the stripe path: never transposed)
                    lo1 = Mux(pl.op == Opcode.GATHER, pl.hbm,
                              pl.hbm + (pl.ra[:LL] * pl.hstride[:LL])[:LL])[:LL]
                    m.d.sync += [c.eq(self.cmd.payload), ra_off.eq(pl.ra * pl.hstride),
                                 lo_first.eq(lo1), nm1_h1.eq(((2 * pe - 1) >> LL) == 1),
                                 is_gather.eq(pl.op == Opcode.GATHER),
                                 is_str.eq(pl.op == Opcode.STR),
                                 is_write.eq((pl.op == Opcode.STORE) | (pl.op == Opcode.STR)),
                                 nm1.eq(2 * pe - 1), nm1_big.eq(pe > (1 << (LL - 1)))]
                    m.next = "SETUP"
            with m.State("SETUP"):
                rows_e = (c.rows + c.rr)[:_COUNT_BITS]
                cols_e = (c.cols + c.rc)[:_COUNT_BITS]
                # Multiplication by the row offset happens once per instruction.
                hstart = Mux(c.transpose & ~is_gather, c.hbm + 2 * c.ra,
                             Mux(is_gather, c.hbm, c.hbm + ra_off))[:_HBM_BITS]
                hstart_lo = Mux(c.transpose & ~is_gather, lo_add(c.hbm, 2 * c.ra),
                                Mux(is_gather, c.hbm[:LG], lo_add(c.hbm, ra_off)))
                with m.If(c.transpose & ~is_gather):
                    m.d.sync += [n.eq(rows_e), estep.eq(c.sstride), rstep.eq(1)]
                with m.Else():
                    m.d.sync += [n.eq(Mux(is_gather, c.cols, cols_e)),
                                 estep.eq(1), rstep.eq(c.sstride)]
                rows_n = Mux(c.transpose & ~is_gather, cols_e, rows_e)
                elems = Mux(c.transpose & ~is_gather, rows_e, Mux(is_gather, c.cols, cols_e))
                nb = Mux(is_gather, 1, c.batch)
                # hstart + 2·elems - 1, the product added last (its adder in parallel).
                hend = (c.hbm + 2 * elems - 1)[:_HBM_BITS]
                hlast = Mux(c.transpose & ~is_gather, hend + 2 * c.ra,
                            Mux(is_gather, hend, hend + ra_off))[:_HBM_BITS]
                m.d.sync += [h1m1.eq(hlast), hb1m1.eq(hlast), seg_first.eq(1)]
                # FRUN's first segment (the stripe path: never transposed).
                m.d.comb += lo_src.eq(lo_first)
                m.d.sync += load(d_run)
                m.d.sync += [lo_run.eq((lo_first + c.hstride[:LL])[:LL]),
                             lo_batch.eq((lo_first + c.hbatch[:LL])[:LL])]
                m.d.sync += [*jc.load(rows_n), *bc.load(nb),
                             nruns_m1.eq(rows_n - 1), nruns_one.eq(rows_n == 1),
                             n_m1.eq(elems - 1), n_one.eq(elems == 1),
                             *ec.load(elems), *rc.load(rows_n),
                             hb.eq(hstart), hj.eq(hstart), *set_hp(hstart, hstart_lo),
                             rem.eq(2 * elems),
                             st.eq(hstart >> LSB), fsb.eq(c.sram), fsj.eq(c.sram),
                             ia.eq(c.idx + 4 * c.ra)]
                if self.stripes:
                    # The alignment rule (dma_path): congruent modulo the chunk.
                    def same(x, y):
                        return (x[1:1 + LCE] == y[:LCE]) if LCE else Const(1)
                    zero = (lambda v: v[:LCE] == 0) if LCE else (lambda v: Const(1))
                    ls = ((is_load | is_store) & ~c.transpose & ~hstart[0] & ~c.hstride[0]
                          & same(hstart, c.sram) & same(c.hstride, c.sstride)
                          & ((c.batch <= 1) | (~c.hbatch[0] & same(c.hbatch, c.sbatch))))
                    g = (is_gather & ~c.hbm[0] & ~c.hstride[0] & same(c.hbm, c.sram)
                         & zero(c.hstride[1:]) & zero(c.sstride))
                    m.d.comb += fast.eq(ls | g)
                m.d.sync += fmode.eq(fast)
                empty = (rows_n == 0) | (elems == 0) | (~is_gather & (c.batch == 0))
                with m.If(is_str):
                    m.d.sync += [*set_hp((c.hbm + 4 * c.ra)[:_HBM_BITS], lo_add(c.hbm, 4 * c.ra)),
                                 rem.eq(4), fmode.eq(0)]
                    m.next = "STR"
                with m.Elif(empty):
                    m.next = "FINISH"
                with m.Elif(is_gather):
                    m.next = "INDEX"
                with m.Elif(fast):
                    m.next = "FRUN"
                with m.Else():
                    m.next = "PIECE"
            with m.State("PIECE"):
                m.d.comb += [q_in.ch.eq(channel(hp)), q_in.off.eq(hp[:LB]),
                             q_in.nelem.eq(plen >> 1), q_in.idx.eq(0)]
                with m.If(is_write):
                    m.d.comb += fire.eq(q.w_rdy & aw_room)
                with m.Else():
                    issue_ar(hp, beats, fire)
                m.d.comb += q.w_en.eq(fire)
                with m.If(fire):
                    # (a piece that leaves the run open ends at its granule's end)
                    m.d.sync += [hp.eq(hp + plen), room.eq(G), rem.eq(rem - plen)]
                    # After the last piece of a run: the next run, the next batch, or the end.
                    with m.If(rem == plen):
                        with m.If(jc.last):
                            with m.If(bc.last):
                                m.next = "FINISH"
                            with m.Else():
                                m.d.sync += [*bc.step(), *jc.reload(nruns_m1, nruns_one),
                                             hb.eq(hb + c.hbatch),
                                             hj.eq(hb + c.hbatch),
                                             *set_hp(hb + c.hbatch, lo_add(hb, c.hbatch)),
                                             rem.eq(2 * n)]
                        with m.Else():
                            m.d.sync += [*jc.step(), hj.eq(hj + c.hstride),
                                         *set_hp(hj + c.hstride, lo_add(hj, c.hstride)),
                                         rem.eq(2 * n)]
                            with m.If(is_gather):
                                m.next = "INDEX"

            with m.State("FRUN"):
                # Leaving FRUN (the last run's last segment queued) takes a cycle of its own,
                # decided as that segment is pushed (session 22: the AND over the channels'
                # readys then no longer reached the state register; since the request queues
                # there is no such AND, and the cycle stays because the 210.1 MHz the block
                # was timed at is with it, docs/rtl-clock.md "Session 23"). FINISH and INDEX
                # wait for the segment's data first, so no instruction takes longer.
                with m.If(f_leave):
                    m.d.sync += f_leave.eq(0)
                    with m.If(f_index):
                        m.next = "INDEX"
                    with m.Else():
                        m.next = "FINISH"
                with m.Else():
                    # One segment of the run: every channel's AR (AW) for its beats of stripes
                    # st..st + d_span, into the channels' queues (below) in one cycle. The
                    # decisions are registers (d_*, above), and so is the room (q_room).
                    cap = st | (NSEG - 1)
                    seg_last, span = d_last, d_span
                    lo_b = hj[:LSB]                       # run start's byte in its stripe
                    hi_b = (h1m1[:LSB] + 1)[:LSB + 1]     # bytes of the run in its last stripe
                    push = Signal()
                    m.d.comb += [push.eq(sq.w_rdy & q_room), f_push.eq(push)]
                    first_elem = (fsj + ((st << LSB) >> 1) - (hj >> 1))[:32]
                    m.d.comb += [sq_in.chunk.eq(first_elem >> LCE), sq_in.n.eq(span + 1),
                                 sq_in.lo.eq(Mux(seg_first, lo_b >> 1, 0)),
                                 sq_in.hi.eq(Mux(seg_last, hi_b >> 1, ES)),
                                 # the next run's start (the next batch's after the batch's last)
                                 lo_src.eq(Mux(jc.last, lo_batch, lo_run))]
                    with m.If(push):
                        m.d.comb += sq.w_en.eq(1)
                        m.d.sync += [st.eq(cap + 1), seg_first.eq(0)]
                        with m.If(seg_last):        # the run's last segment: next run or batch
                            m.d.sync += load(d_run)
                            with m.If(jc.last):
                                with m.If(bc.last):
                                    m.d.sync += [f_leave.eq(1), f_index.eq(0)]
                                with m.Else():
                                    nh = (hb + c.hbatch)[:_HBM_BITS]
                                    nh1 = (hb1m1 + c.hbatch)[:_HBM_BITS]
                                    m.d.sync += [*bc.step(), *jc.reload(nruns_m1, nruns_one),
                                                 hb.eq(nh), hj.eq(nh), hb1m1.eq(nh1), h1m1.eq(nh1),
                                                 lo_batch.eq((lo_batch + c.hbatch[:LL])[:LL]),
                                                 lo_run.eq((lo_batch + c.hstride[:LL])[:LL]),
                                                 st.eq(nh >> LSB), seg_first.eq(1),
                                                 fsb.eq(fsb + c.sbatch), fsj.eq(fsb + c.sbatch)]
                            with m.Else():
                                nh = (hj + c.hstride)[:_HBM_BITS]
                                m.d.sync += [*jc.step(), hj.eq(nh), st.eq(nh >> LSB),
                                             lo_run.eq((lo_run + c.hstride[:LL])[:LL]),
                                             h1m1.eq(h1m1 + c.hstride), seg_first.eq(1),
                                             fsj.eq(fsj + c.sstride)]
                                with m.If(is_gather):
                                    m.d.sync += [f_leave.eq(1), f_index.eq(1)]
                        with m.Else():
                            m.d.sync += load(d_seg)

            with m.State("INDEX"):
                # The previous row's beats are all taken first: on the stripe path the index
                # beat follows them on its channel; on both, a row then costs the same
                # whatever the latency (engine_cycles: two latencies per row). (The stripe
                # writer is idle in a GATHER: the STORE before it drained, so rd_act, not
                # f_busy, which would put the writer's compares in front of the AR.)
                ok = q_empty & ~r_busy & sq_empty & ~rd_act
                m.d.comb += [q_in.ch.eq(channel(ia)), q_in.off.eq(ia[:LB]), q_in.nelem.eq(2),
                             q_in.idx.eq(1)]
                with m.If(ok):
                    issue_ar(ia, 1, fire)
                m.d.comb += q.w_en.eq(fire)
                with m.If(fire):
                    m.d.sync += ia.eq(ia + 4)
                    m.next = "INDEX_WAIT"
            with m.State("INDEX_WAIT"):
                m.d.comb += lo_src.eq((c.hbm + t_off)[:LL])
                with m.If(t_valid):
                    off = t_off
                    row = (c.hbm + off)[:_HBM_BITS]
                    m.d.sync += [*set_hp(row, lo_add(c.hbm, off)), hj.eq(row), st.eq(row >> LSB),
                                 rem.eq(2 * n),
                                 h1m1.eq(hb1m1 + off), seg_first.eq(1), *load(d_run)]
                    with m.If(fmode):
                        m.next = "FRUN"
                    with m.Else():
                        m.next = "PIECE"
            with m.State("STR"):
                m.d.comb += [q_in.ch.eq(channel(hp)), q_in.off.eq(hp[:LB]), q_in.nelem.eq(2),
                             q_in.idx.eq(0), fire.eq(q.w_rdy & aw_room), q.w_en.eq(fire)]
                with m.If(fire):
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(drained):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # ---- the stripe path's per-channel AR (AW) queues (see aq_v above) ----------------
        # A request of the segment being queued passes straight to its channel when the queue
        # is empty; a request the channel does not take at once waits in the queue. q_room is
        # "no queue holds two requests" for the next cycle, so that the next segment fits.
        full_next = []
        for k, p in enumerate(axi):
            df, dl = d_df[k], d_dl[k]
            inc_v = f_push & d_inv[k]
            inc_f = (st + df)[:FW]
            inc_l = (d_span - df - dl)[:8]
            v0, v1 = aq_v[k]
            out_f, out_l = Mux(v0, aq_f[k][0], inc_f), Mux(v0, aq_l[k][0], inc_l)
            ready = Mux(is_write, p.awready, p.arready)
            with m.If(v0 | inc_v):
                m.d.comb += [ar_addr[k].eq((self.data_base + (out_f << LB))[:AXI_ADDR_BITS]),
                             ar_len[k].eq(out_l), f_avalid[k].eq(1)]
            take = (v0 | inc_v) & ready
            with m.If(take & is_write):
                m.d.comb += f_aw[k].eq(1)
            pop = v0 & ready                              # the head leaves
            enq = inc_v & (v0 | ~ready)                   # the new request waits
            # after the pop, the entries shift down; the new request takes the first free one
            n0_v = Mux(pop, v1, v0)
            n1_v = Mux(pop, 0, v1)
            with m.If(pop):
                m.d.sync += [aq_f[k][0].eq(aq_f[k][1]), aq_l[k][0].eq(aq_l[k][1])]
            with m.If(enq):
                with m.If(n0_v):
                    m.d.sync += [aq_f[k][1].eq(inc_f), aq_l[k][1].eq(inc_l)]
                with m.Else():
                    m.d.sync += [aq_f[k][0].eq(inc_f), aq_l[k][0].eq(inc_l)]
            m.d.sync += [v0.eq(n0_v | enq), v1.eq(n1_v | (enq & n0_v))]
            full_next.append(n1_v | (enq & n0_v))
        m.d.sync += q_room.eq(~Cat(*full_next).any())
        aq_empty = ~Cat(*[aq_v[k][0] for k in range(C)]).any()

        # ---- scratchpad element addresses, in the same loop order --------------------------
        sb, sj, s = Signal(32), Signal(32), Signal(32)
        # Element and run counters of this loop: countdowns loaded in SETUP (no element
        # moves before it), flags as above. An element's advance is applied a cycle late
        # (adv_r), and the address in use (s_use) is the next one while it is pending: the
        # counters' update then no longer follows the element path's grant, which (behind
        # the W channel's 32:1 WREADY select on u280) was one of the DMA's 205.0 MHz paths
        # (docs/rtl-clock.md, "Session 23"). Two advances in a row still see each other:
        # s_use is s with every advance up to last cycle's.
        advance = Signal()
        adv_r = Signal(name="adv_r")
        m.d.sync += adv_r.eq(advance)
        s_next = Signal(32, name="s_next")
        m.d.comb += s_next.eq(Mux(ec.last, Mux(rc.last, sb + c.sbatch, sj + rstep), s + estep))
        s_use = Signal(32, name="s_use")
        m.d.comb += s_use.eq(Mux(adv_r, s_next, s))
        with m.If(self.cmd.valid & self.cmd.ready):
            p = data.View(captured_layout(Unit.DMA), self.cmd.payload)
            m.d.sync += [sb.eq(p.sram), sj.eq(p.sram), s.eq(p.sram)]
        with m.Elif(adv_r):
            m.d.sync += s.eq(s_next)
            with m.If(ec.last):
                m.d.sync += ec.reload(n_m1, n_one)
                with m.If(rc.last):
                    m.d.sync += [*rc.reload(nruns_m1, nruns_one), sb.eq(sb + c.sbatch),
                                 sj.eq(sb + c.sbatch)]
                with m.Else():
                    m.d.sync += [*rc.step(), sj.eq(sj + rstep)]
            with m.Else():
                m.d.sync += ec.step()

        # ---- read side (LOAD, GATHER) ------------------------------------------------------
        cur = Signal(piece)
        pos = Signal(LB + 1)                 # byte position in the current beat
        left = Signal(LG + 1)                # elements left in the piece
        rvalid = Array(p.rvalid for p in axi)[cur.ch]
        rdata = Array(p.rdata for p in axi)[cur.ch]
        take_beat = Signal()
        for k, p in enumerate(axi):
            m.d.comb += p.rready.eq((take_beat & (cur.ch == k)) | fast_rr[k])
        elem = rdata.word_select(pos[1:LB], 16) if LB > 1 else rdata[:16]
        word = rdata.word_select(pos[2:LB], 32) if LB > 2 else rdata[:32]
        m.d.sync += t_pend.eq(0)             # a one-cycle pulse (set below as the index arrives)
        with m.FSM(name="rd"):
            with m.State("IDLE"):
                with m.If(q.r_rdy & ~is_write):
                    m.d.comb += q.r_en.eq(1)
                    m.d.sync += [cur.eq(q_out), pos.eq(q_out.off), left.eq(q_out.nelem)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += r_busy.eq(1)
                with m.If(cur.idx):
                    with m.If(rvalid):
                        m.d.comb += take_beat.eq(1)
                        m.d.sync += [t_pend.eq(1), t_word.eq(word)]
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += [el.we.eq(rvalid), el.wdata.eq(elem)]
                    with m.If(rvalid & el.grant):
                        m.d.comb += [advance.eq(1),
                                     take_beat.eq((pos == B - 2) | (left == 1))]
                        m.d.sync += [pos.eq(Mux(pos == B - 2, 0, pos + 2)), left.eq(left - 1)]
                        with m.If(left == 1):
                            m.next = "IDLE"
        # The product goes through two registers, ``t_prod`` and ``t_off``, a plain chain that
        # retiming may spread the multiply and its adder chain over (one DSP48E2 and 5 CARRY8
        # in one cycle was the u280 DMA's critical path at 210.1 MHz, docs/rtl-clock.md
        # "Session 24"): one more cycle per GATHER row (engine_cycles).
        t_prod, t_prod_valid = Signal(_HBM_BITS), Signal()
        with m.If(t_pend):
            m.d.sync += t_prod.eq(t_word.as_signed() * c.hstride.as_unsigned())
        m.d.sync += [t_off.eq(t_prod), t_prod_valid.eq(t_pend), t_valid.eq(t_prod_valid)]

        # ---- write side (STORE, STR): fpgpt/hw/dma_element.py --------------------------------
        g = SimpleNamespace(C=C, B=B, LB=LB, LC=LC, LG=LG, HBM_BITS=_HBM_BITS, c=c, q=q,
                            q_in=q_in, q_out=q_out, hp=hp, el=el, is_write=is_write,
                            is_str=is_str, aw_room=aw_room, advance=advance, axi=axi,
                            channel=channel)
        ew = element_writer(m, g, self._outstanding)
        aw_count, aw_now, aw_fire, w_busy = ew.aw_count, ew.aw_now, ew.aw_fire, ew.w_busy
        e_awvalid, e_wvalid, e_wlast = ew.e_awvalid, ew.e_wvalid, ew.e_wlast
        waddr, wbeats, wbuf, wstrb = ew.waddr, ew.wbeats, ew.wbuf, ew.wstrb

        # ---- stripe reader and writer: fpgpt/hw/dma_stripes.py ----------------------------
        g = SimpleNamespace(seg=seg, C=C, B=B, ES=ES, LS=LS, LES=LES, SB=SB, CE=CE, sq=sq,
                            sq_out=sq_out, is_write=is_write, fmode=fmode, axi=axi,
                            rd_act=rd_act, fast_rr=fast_rr, f_busy=f_busy)
        rd = stripe_reader(m, self.line, g)
        f_chunk, f_we, f_mask, f_line, f_data = rd.f_chunk, rd.f_we, rd.f_mask, rd.f_line, rd.f_data
        wr = stripe_writer(m, self.line, self.cmd, g, rd.need_of, rd.mask_of)
        hold, hv, hm, w_strb = wr.hold, wr.hv, wr.hm, wr.w_strb
        sel, tx, w_req = wr.sel, wr.tx, wr.w_req

        # ---- AXI write channels: the element path's one beat, or the stripe register ---------
        for k, p in enumerate(axi):
            m.d.comb += [p.awsize.eq(LB), p.awburst.eq(1), p.bready.eq(1)]
            with m.If(fmode):
                m.d.comb += [p.awaddr.eq(ar_addr[k]), p.awlen.eq(ar_len[k]),
                             p.awvalid.eq(f_avalid[k] & is_write),
                             p.wdata.eq(hold[8 * B * k:8 * B * (k + 1)]),
                             p.wstrb.eq(w_strb[B * k:B * (k + 1)]), p.wlast.eq(hm.wlast[k]),
                             p.wvalid.eq(hv[k])]
            with m.Else():
                m.d.comb += [p.awaddr.eq(local(waddr)), p.awlen.eq(wbeats - 1),
                             p.awvalid.eq(e_awvalid[k]), p.wdata.eq(wbuf), p.wstrb.eq(wstrb),
                             p.wlast.eq(e_wlast), p.wvalid.eq(e_wvalid[k])]
        # Counted as they are registered (the population counts of 32 channels were in front
        # of aw_now's adder and compare, u280's next path, docs/rtl-clock.md). The stripe
        # path's AWs are registered first and counted the cycle after (FRUN's issue logic and
        # the count's adder tree behind it were u280's next path): ``drained`` waits for
        # ``f_aw_r`` too, and nothing else reads ``aw_now`` in the stripe path.
        bcount, afire, aw_fire_r = Signal(LC + 1), Signal(LC + 1), Signal()
        f_aw_r = Signal(C, name="f_aw_r")
        m.d.sync += [bcount.eq(_popcount([p.bvalid for p in axi])),
                     f_aw_r.eq(f_aw), afire.eq(_popcount([f_aw_r[k] for k in range(C)])),
                     aw_fire_r.eq(aw_fire)]
        m.d.comb += aw_now.eq(aw_count + aw_fire_r + afire - bcount)
        m.d.sync += aw_count.eq(aw_now)

        # ---- the line port: the stripe path, or the element path as one-element lines --------
        e_r = Signal(max(1, LCE))
        w_chunk = (sel.chunk + tx * (ES // CE))[:32]
        with m.If(f_line):
            m.d.comb += [self.line.chunk.eq(f_chunk), self.line.we.eq(f_we),
                         self.line.wdata.eq(f_data), self.line.wmask.eq(f_mask)]
        with m.Elif(is_write & fmode):
            m.d.comb += [self.line.chunk.eq(w_chunk), self.line.re.eq(w_req)]
        with m.Else():
            m.d.comb += [self.line.chunk.eq(s_use >> LCE), self.line.re.eq(el.re),
                         self.line.we.eq(el.we), self.line.wdata.eq(Cat(*[el.wdata] * P)),
                         self.line.wmask.eq(Const(1, P) << (s_use[:LCE] if LCE else 0)),
                         el.grant.eq(self.line.grant)]
            with m.If(el.re & self.line.grant):
                m.d.sync += e_r.eq(s_use[:LCE] if LCE else 0)
        m.d.comb += el.rdata.eq(self.line.rdata.word_select(e_r, 16) if LCE
                                else self.line.rdata[:16])

        # ---- completion --------------------------------------------------------------------
        m.d.comb += drained.eq(q_empty & aq_empty & ~r_busy & ~w_busy & (aw_now == 0) & ~aw_fire
                               & (f_aw == 0) & (f_aw_r == 0) & sq_empty & ~f_busy)
        m.d.comb += self.busy.eq(~self.cmd.ready)
        return m
