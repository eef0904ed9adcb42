"""The DMA engine: captured LOAD / STORE / GATHER / STR against HBM over AXI4 and the scratchpad.

HBM address mapping (docs/execution.md: byte ``a`` lives in channel ``(a // G) % C`` for
``G = hbm.interleave_bytes`` and ``C = hbm.channels``). Each channel has its own AXI4 master port
``m_axi{k}`` that addresses only that channel's memory, so HBM byte ``a`` is byte

    local(a) = (a // (G*C)) * G + a % G

of port ``(a // G) % C``, plus ``data_base`` (one base added on every port, where a Vitis
kernel's buffer of that pseudo-channel starts). :func:`channel_address` is that mapping.

How a transfer runs (one instruction at a time, in order):

- The *address generator* walks the instruction's runs of contiguous HBM bytes, in the order of
  the ISA's loop nest: a LOAD/STORE row (``cols + R[rc]`` elements) or, transposed, an HBM
  column (``rows + R[rr]`` elements, whose scratchpad addresses step by ``sstride``); a GATHER
  row after its index has been read. It cuts each run at interleave-granule boundaries into
  *pieces* (one channel, one AXI burst, at most ``G`` bytes, never across 4 KiB) and pushes them
  into a FIFO of ``outstanding`` entries; for reads it issues the burst's AR at the same time,
  so up to ``outstanding`` bursts are in flight over all channels.
- The *read side* pops pieces in order and takes their R beats from the piece's channel only
  (so every channel's in-order R data arrive in the global element order), writing one element
  per cycle into the scratchpad.
- The *write side* pops pieces in order, sends the AW, reads one element per cycle from the
  scratchpad (read data one cycle later), packs them into beats with byte strobes and sends W;
  the instruction completes when every B response is back.

Limits of this version (stated, not hidden): scratchpad traffic is one element (2 bytes) per
cycle, so a transfer moves at most 2 bytes/cycle whatever the number of channels (the timing
model's DMA streams ``channels × port_bits/8`` bytes/cycle); one instruction is in flight at a
time. HBM addresses of FP16 data must be even and of int32 data (GATHER indices, STR) multiples
of 4, as the compiler emits them; other alignments give undefined data.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..isa.table import INSTRUCTIONS, Kind, Unit
from .decoder import Opcode, field_shape
from .scratchpad import port_signature

__all__ = ["captured_layout", "axi4_signature", "channel_address", "DMA", "AXI_ADDR_BITS"]

#: Address width of every AXI4 master port (Vitis kernels use 64-bit buffer addresses).
AXI_ADDR_BITS = 64
_HBM_BITS = 48          # internal HBM byte address arithmetic (the ISA's addresses are 40 bits)
_COUNT_BITS = 34        # rows + R[rr] and friends (16-bit field + 32-bit register)
_AXI_4K = 4096          # an AXI burst may not cross a 4 KiB boundary
_AXI_MAX_BEATS = 256


def captured_layout(unit: Unit) -> data.StructLayout:
    """The instruction as ``unit``'s queue holds it: ``op`` plus the union of the fields of its
    instructions, by name, register fields (``Kind.REG``) widened to the 32-bit register value
    captured at dispatch. Fields an instruction lacks are zero."""
    members: dict = {"op": Opcode}
    for d in INSTRUCTIONS:
        if d.unit is not unit:
            continue
        for f in d.fields:
            shape = unsigned(32) if f.kind is Kind.REG else field_shape(f)
            if members.get(f.name, shape) != shape:
                raise ValueError(f"{unit.name} field {f.name!r} has two shapes in the ISA table; "
                                 "give it one width")
            members[f.name] = shape
    return data.StructLayout(members)


def axi4_signature(addr_bits: int, data_bits: int, id_bits: int = 1) -> wiring.Signature:
    """An AXI4 master port with AMBA member names (``awaddr``, ``awvalid`` ...), flat, so that
    Amaranth names the Verilog ports ``<port>__awaddr`` (``Out`` = driven by the master)."""
    m = {}
    for ch in ("aw", "ar"):
        m.update({f"{ch}id": Out(id_bits), f"{ch}addr": Out(addr_bits), f"{ch}len": Out(8),
                  f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}valid": Out(1),
                  f"{ch}ready": In(1)})
    m.update({"wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1),
              "wvalid": Out(1), "wready": In(1),
              "bid": In(id_bits), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
              "rid": In(id_bits), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1),
              "rvalid": In(1), "rready": Out(1)})
    return wiring.Signature(m)


def channel_address(hw: HardwareConfig, a: int) -> tuple[int, int]:
    """``(channel, byte offset in that channel's memory)`` of HBM byte ``a`` (module docstring)."""
    g, c = hw.hbm.interleave_bytes, hw.hbm.channels
    return (a // g) % c, (a // (g * c)) * g + a % g


def _log2(x: int) -> int:
    return x.bit_length() - 1


class DMA(wiring.Component):
    """DMA unit of one device: executes captured DMA instructions one at a time.

    Parameters
    ----------
    hw : HardwareConfig
        ``hbm.channels`` (a power of two) AXI4 ports of ``hbm.port_bits``; ``interleave_bytes``
        at most 4 KiB and 256 beats (one burst per piece).
    outstanding : int
        Pieces (AXI bursts) in flight at most.

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
    sram : Out(scratchpad.port_signature(hw))
    m_axi0 ... m_axi{channels-1} : Out(axi4_signature(64, hbm.port_bits))
    """

    def __init__(self, *, hw: HardwareConfig, outstanding: int = 8):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        h = hw.hbm
        if h.channels & (h.channels - 1):
            raise ValueError(f"hbm.channels must be a power of two for the RTL DMA, not {h.channels!r}")
        beat = h.port_bits // 8
        if h.interleave_bytes > _AXI_4K or h.interleave_bytes // beat > _AXI_MAX_BEATS:
            raise ValueError(f"hbm.interleave_bytes={h.interleave_bytes} must be at most 4096 and "
                             f"{_AXI_MAX_BEATS} beats of {beat} bytes (one AXI burst per granule)")
        if not isinstance(outstanding, int) or outstanding < 1:
            raise ValueError(f"outstanding must be a positive integer, not {outstanding!r}")
        self._hw = hw
        self._outstanding = outstanding
        members = {
            "cmd": In(stream.Signature(captured_layout(Unit.DMA))),
            "done": Out(1), "busy": Out(1), "data_base": In(AXI_ADDR_BITS),
            "sram": Out(port_signature(hw)),
        }
        for k in range(h.channels):
            members[f"m_axi{k}"] = Out(axi4_signature(AXI_ADDR_BITS, h.port_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        h = self._hw.hbm
        C, B, G = h.channels, h.port_bits // 8, h.interleave_bytes
        LC, LB, LG = _log2(C), _log2(B), _log2(G)
        axi = [getattr(self, f"m_axi{k}") for k in range(C)]

        # ---- the instruction, latched ------------------------------------------------------
        c = Signal(captured_layout(Unit.DMA))
        is_load, is_store = c.op == Opcode.LOAD, c.op == Opcode.STORE
        is_gather, is_str = c.op == Opcode.GATHER, c.op == Opcode.STR
        is_write = is_store | is_str

        # Loop nest: batch b < nbatch, run j < nruns, element i < n (per run); a run is 2n
        # contiguous HBM bytes; scratchpad steps: estep per element, rstep per run.
        nbatch = Signal(8)
        nruns, n = Signal(_COUNT_BITS), Signal(_COUNT_BITS)
        estep, rstep = Signal(32), Signal(32)

        # ---- piece FIFO: (channel, byte offset in the first beat, elements, is index) --------
        piece = data.StructLayout({"ch": unsigned(max(1, LC)), "off": unsigned(max(1, LB)),
                                   "nelem": unsigned(LG + 1), "idx": unsigned(1)})
        m.submodules.pieces = q = fifo.SyncFIFOBuffered(width=piece.size, depth=self._outstanding)
        q_in = data.View(piece, q.w_data)
        q_out = data.View(piece, q.r_data)

        # ---- address generator -------------------------------------------------------------
        hb, hj, hp = Signal(_HBM_BITS), Signal(_HBM_BITS), Signal(_HBM_BITS)   # batch, run, piece
        rem = Signal(_COUNT_BITS + 1)                    # bytes left in the run
        b, j = Signal(8), Signal(_COUNT_BITS)
        ia = Signal(_HBM_BITS)                           # next GATHER index address
        t_valid = Signal()                               # read side: index t arrived
        t_val = Signal(32)
        drained = Signal()                               # nothing left in flight

        def local(addr):
            """Beat-aligned byte address in the channel's own memory, plus data_base."""
            off = Cat(Const(0, LB), addr[LB:LG], addr[LG + LC:])
            return (self.data_base + off)[:AXI_ADDR_BITS]

        def channel(addr):
            return addr[LG:LG + LC] if LC else Const(0, 1)

        room = (G - hp[:LG])[:LG + 1]
        plen = Mux(rem < room, rem, room)[:LG + 1]       # bytes of this piece
        beats = ((hp[:LB] + plen + (B - 1)) >> LB)       # beats of its burst

        def issue_ar(addr, nbeats, fire):
            for k, p in enumerate(axi):
                m.d.comb += [p.araddr.eq(local(addr)), p.arlen.eq(nbeats - 1), p.arsize.eq(LB),
                             p.arburst.eq(1)]
            sel = Array(p.arvalid for p in axi)[channel(addr)]
            m.d.comb += sel.eq(q.w_rdy)
            ready = Array(p.arready for p in axi)[channel(addr)]
            m.d.comb += fire.eq(q.w_rdy & ready)

        fire = Signal()

        m.d.comb += self.cmd.ready.eq(0)
        with m.FSM(name="ag"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += c.eq(self.cmd.payload)
                    m.next = "SETUP"
            with m.State("SETUP"):
                rows_e = (c.rows + c.rr)[:_COUNT_BITS]
                cols_e = (c.cols + c.rc)[:_COUNT_BITS]
                # Multiplication by the row offset happens once per instruction.
                hstart = Mux(c.transpose, c.hbm + 2 * c.ra, c.hbm + c.ra * c.hstride)[:_HBM_BITS]
                with m.If(c.transpose & ~is_gather):
                    m.d.sync += [nruns.eq(cols_e), n.eq(rows_e), estep.eq(c.sstride), rstep.eq(1)]
                with m.Else():
                    m.d.sync += [nruns.eq(rows_e), n.eq(Mux(is_gather, c.cols, cols_e)),
                                 estep.eq(1), rstep.eq(c.sstride)]
                rows_n = Mux(c.transpose & ~is_gather, cols_e, rows_e)
                elems = Mux(c.transpose & ~is_gather, rows_e, Mux(is_gather, c.cols, cols_e))
                m.d.sync += [nbatch.eq(Mux(is_gather, 1, c.batch)), b.eq(0), j.eq(0),
                             hb.eq(hstart), hj.eq(hstart), hp.eq(hstart), rem.eq(2 * elems),
                             ia.eq(c.idx + 4 * c.ra)]
                empty = (rows_n == 0) | (elems == 0) | (~is_gather & (c.batch == 0))
                with m.If(is_str):
                    m.d.sync += [hp.eq((c.hbm + 4 * c.ra)[:_HBM_BITS]), rem.eq(4)]
                    m.next = "STR"
                with m.Elif(empty):
                    m.next = "FINISH"
                with m.Elif(is_gather):
                    m.next = "INDEX"
                with m.Else():
                    m.next = "PIECE"
            with m.State("PIECE"):
                m.d.comb += [q_in.ch.eq(channel(hp)), q_in.off.eq(hp[:LB]),
                             q_in.nelem.eq(plen >> 1), q_in.idx.eq(0)]
                with m.If(is_write):
                    m.d.comb += fire.eq(q.w_rdy)
                with m.Else():
                    issue_ar(hp, beats, fire)
                m.d.comb += q.w_en.eq(fire)
                with m.If(fire):
                    m.d.sync += [hp.eq(hp + plen), rem.eq(rem - plen)]
                    # After the last piece of a run: the next run, the next batch, or the end.
                    with m.If(rem == plen):
                        with m.If(j + 1 == nruns):
                            with m.If(b + 1 == nbatch):
                                m.next = "FINISH"
                            with m.Else():
                                m.d.sync += [b.eq(b + 1), j.eq(0), hb.eq(hb + c.hbatch),
                                             hj.eq(hb + c.hbatch), hp.eq(hb + c.hbatch), rem.eq(2 * n)]
                        with m.Else():
                            m.d.sync += [j.eq(j + 1), hj.eq(hj + c.hstride), hp.eq(hj + c.hstride),
                                         rem.eq(2 * n)]
                            with m.If(is_gather):
                                m.next = "INDEX"

            with m.State("INDEX"):
                m.d.comb += [q_in.ch.eq(channel(ia)), q_in.off.eq(ia[:LB]), q_in.nelem.eq(2),
                             q_in.idx.eq(1)]
                issue_ar(ia, 1, fire)
                m.d.comb += q.w_en.eq(fire)
                with m.If(fire):
                    m.d.sync += ia.eq(ia + 4)
                    m.next = "INDEX_WAIT"
            with m.State("INDEX_WAIT"):
                with m.If(t_valid):
                    row = (c.hbm + t_val.as_signed() * c.hstride.as_unsigned())[:_HBM_BITS]
                    m.d.sync += [hp.eq(row), rem.eq(2 * n)]
                    m.next = "PIECE"
            with m.State("STR"):
                m.d.comb += [q_in.ch.eq(channel(hp)), q_in.off.eq(hp[:LB]), q_in.nelem.eq(2),
                             q_in.idx.eq(0), fire.eq(q.w_rdy), q.w_en.eq(q.w_rdy)]
                with m.If(fire):
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(drained):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"


        # ---- scratchpad element addresses, in the same loop order --------------------------
        sb, sj, s = Signal(32), Signal(32), Signal(32)
        ei, ej = Signal(_COUNT_BITS), Signal(_COUNT_BITS)
        advance = Signal()
        with m.If(self.cmd.valid & self.cmd.ready):
            p = data.View(captured_layout(Unit.DMA), self.cmd.payload)
            m.d.sync += [sb.eq(p.sram), sj.eq(p.sram), s.eq(p.sram), ei.eq(0), ej.eq(0)]
        with m.Elif(advance):
            with m.If(ei + 1 == n):
                m.d.sync += ei.eq(0)
                with m.If(ej + 1 == nruns):
                    m.d.sync += [ej.eq(0), sb.eq(sb + c.sbatch), sj.eq(sb + c.sbatch),
                                 s.eq(sb + c.sbatch)]
                with m.Else():
                    m.d.sync += [ej.eq(ej + 1), sj.eq(sj + rstep), s.eq(sj + rstep)]
            with m.Else():
                m.d.sync += [ei.eq(ei + 1), s.eq(s + estep)]
        m.d.comb += self.sram.addr.eq(s)

        # ---- read side (LOAD, GATHER) ------------------------------------------------------
        cur = Signal(piece)
        pos = Signal(LB + 1)                 # byte position in the current beat
        left = Signal(LG + 1)                # elements left in the piece
        r_busy = Signal()
        rvalid = Array(p.rvalid for p in axi)[cur.ch]
        rdata = Array(p.rdata for p in axi)[cur.ch]
        take_beat = Signal()
        for k, p in enumerate(axi):
            m.d.comb += p.rready.eq(take_beat & (cur.ch == k))
        elem = rdata.word_select(pos[1:LB], 16) if LB > 1 else rdata[:16]
        word = rdata.word_select(pos[2:LB], 32) if LB > 2 else rdata[:32]
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
                        m.d.sync += [t_valid.eq(1), t_val.eq(word)]
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.sram.we.eq(rvalid), self.sram.wdata.eq(elem)]
                    with m.If(rvalid & self.sram.grant):
                        m.d.comb += [advance.eq(1),
                                     take_beat.eq((pos == B - 2) | (left == 1))]
                        m.d.sync += [pos.eq(Mux(pos == B - 2, 0, pos + 2)), left.eq(left - 1)]
                        with m.If(left == 1):
                            m.next = "IDLE"
        with m.If(t_valid):
            m.d.sync += t_valid.eq(0)

        # ---- write side (STORE, STR) -------------------------------------------------------
        wbuf = Signal(8 * B)
        wstrb = Signal(B)
        pend = Signal()                      # a scratchpad read was granted last cycle
        ppos = Signal(LB + 1)                # its byte position in the beat
        beat_issued = Signal()               # every element of the current beat was requested
        aw_count = Signal(16)                # bursts without a B response yet
        aw_fire = Signal()
        w_busy = Signal()
        for k, p in enumerate(axi):
            m.d.comb += [p.awsize.eq(LB),
                         p.awburst.eq(1), p.wdata.eq(wbuf), p.wstrb.eq(wstrb), p.bready.eq(1)]
        waddr = Signal(_HBM_BITS)            # the piece's HBM address (for AW)
        wbeats = Signal(LG + 1)
        for p in axi:
            m.d.comb += [p.awaddr.eq(local(waddr)), p.awlen.eq(wbeats - 1)]
        awready = Array(p.awready for p in axi)[cur.ch]
        wready = Array(p.wready for p in axi)[cur.ch]
        # The piece's HBM address, for AW, travels in a FIFO beside the piece FIFO.
        m.submodules.waddrs = wq = fifo.SyncFIFOBuffered(width=_HBM_BITS, depth=self._outstanding)
        m.d.comb += [wq.w_data.eq(hp), wq.w_en.eq(q.w_en & is_write)]
        nbeats_of = ((q_out.off + (q_out.nelem << 1) + (B - 1)) >> LB)
        with m.FSM(name="wr"):
            with m.State("IDLE"):
                with m.If(q.r_rdy & is_write):
                    m.d.comb += [q.r_en.eq(1), wq.r_en.eq(1)]
                    m.d.sync += [cur.eq(q_out), pos.eq(q_out.off), left.eq(q_out.nelem),
                                 waddr.eq(wq.r_data), wbeats.eq(nbeats_of),
                                 wbuf.eq(0), wstrb.eq(0), beat_issued.eq(0), pend.eq(0)]
                    m.next = "AW"
            with m.State("AW"):
                m.d.comb += w_busy.eq(1)
                for k, p in enumerate(axi):
                    m.d.comb += p.awvalid.eq(cur.ch == k)
                with m.If(awready):
                    m.d.comb += aw_fire.eq(1)
                    with m.If(is_str):
                        m.d.sync += [wbuf.word_select(cur.off[2:LB] if LB > 2 else 0, 32).eq(c.rs),
                                     wstrb.word_select(cur.off[2:LB] if LB > 2 else 0, 4).eq(0xF),
                                     left.eq(0)]
                        m.next = "SEND"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += w_busy.eq(1)
                # Capture the element requested last cycle.
                with m.If(pend):
                    m.d.sync += [wbuf.word_select(ppos[1:LB], 16).eq(self.sram.rdata),
                                 wstrb.word_select(ppos[1:LB], 2).eq(0b11)]
                # Request the next element of this beat.
                want = ~beat_issued & (left != 0)
                m.d.comb += self.sram.re.eq(want)
                granted = want & self.sram.grant
                m.d.sync += [pend.eq(granted), ppos.eq(pos)]
                with m.If(granted):
                    m.d.comb += advance.eq(1)
                    m.d.sync += [pos.eq(Mux(pos == B - 2, 0, pos + 2)), left.eq(left - 1)]
                    with m.If((pos == B - 2) | (left == 1)):
                        m.d.sync += beat_issued.eq(1)
                with m.If(beat_issued & pend):
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += w_busy.eq(1)
                for k, p in enumerate(axi):
                    m.d.comb += [p.wvalid.eq(cur.ch == k), p.wlast.eq(left == 0)]
                with m.If(wready):
                    m.d.sync += [wbuf.eq(0), wstrb.eq(0), beat_issued.eq(0), pend.eq(0)]
                    with m.If(left == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
        bcount = sum((p.bvalid for p in axi), Const(0, LC + 1))
        m.d.sync += aw_count.eq(aw_count + aw_fire - bcount)

        # ---- completion --------------------------------------------------------------------
        m.d.comb += drained.eq((q.level == 0) & ~r_busy & ~w_busy & (aw_count == 0) & ~aw_fire)
        m.d.comb += self.busy.eq(~self.cmd.ready)
        return m
