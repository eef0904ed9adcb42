"""Program loader: copies a program image from HBM into the core's instruction memory.

The host writes the program image (:meth:`fpgpt.isa.Program.image`: every stream's instruction
words back to back) to HBM, gives its byte address (``prog_base``, 64-byte aligned) and length in
words (``prog_len``) on the control slave, and starts the core. Before the first run after
either register changes, the loader reads the image on its own AXI4 read port (``m_axi_prog``,
one ``WORD_BITS``-bit instruction per beat) into the instruction memory; later starts run the
loaded program at once. The dispatcher then fetches one word per cycle from the on-chip memory
(docs/execution.md), so no run waits on HBM latency for instructions.

AXI: INCR bursts of ``WORD_BYTES``-byte beats, never crossing a 4 KiB boundary (AMBA AXI4
A3.4.1), one burst in flight; the write channels are tied off.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..isa.table import WORD_BITS, WORD_BYTES
from .axi import AXI_ADDR_BITS, axi4_signature

__all__ = ["ProgramLoader", "BURST_BOUNDARY"]

#: AXI4: a burst must not cross a 4 KiB address boundary (AMBA AXI4 spec, A3.4.1).
BURST_BOUNDARY = 4096
_BEATS_PER_BOUNDARY = BURST_BOUNDARY // WORD_BYTES
_SIZE = WORD_BYTES.bit_length() - 1      # AxSIZE: log2(bytes per beat)


class ProgramLoader(wiring.Component):
    """Reads ``count`` instruction words at HBM byte ``base`` into the instruction memory.

    Parameters
    ----------
    pc_bits : int
        The instruction memory holds ``2**pc_bits`` words; a longer ``count`` sets ``too_long``
        and loads nothing.

    Ports
    -----
    m_axi : Out(dma.axi4_signature(64, WORD_BITS))  (read channels used)
    go : In(1)          start loading (while not busy)
    base : In(64)       byte address of word 0 (the low 6 bits are ignored)
    count : In(32)      words to load
    busy : Out(1)
    done : Out(1)       one-cycle pulse: the last word is written (or nothing was to load)
    too_long : Out(1)   the last ``go`` asked for more words than the memory holds
    we, waddr, wdata : Out   the instruction memory's write port
    """

    def __init__(self, *, pc_bits: int):
        if not isinstance(pc_bits, int) or not 1 <= pc_bits <= 24:
            raise ValueError(f"pc_bits must be an integer in 1..24, not {pc_bits!r}")
        self._pc_bits = pc_bits
        super().__init__({
            "m_axi": Out(axi4_signature(AXI_ADDR_BITS, WORD_BITS)),
            "go": In(1), "base": In(64), "count": In(32), "busy": Out(1), "done": Out(1),
            "too_long": Out(1),
            "we": Out(1), "waddr": Out(pc_bits), "wdata": Out(WORD_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        ax = self.m_axi
        addr = Signal(AXI_ADDR_BITS)
        left = Signal(32)
        idx = Signal(self._pc_bits + 1)
        beats = Signal(range(_BEATS_PER_BOUNDARY + 1))
        to_boundary = _BEATS_PER_BOUNDARY - addr[_SIZE:_SIZE + 6]
        m.d.comb += [
            ax.awvalid.eq(0), ax.wvalid.eq(0), ax.bready.eq(1),
            ax.arsize.eq(_SIZE), ax.arburst.eq(1), ax.arid.eq(0),
            ax.araddr.eq(addr), ax.arlen.eq(beats - 1),
            self.waddr.eq(idx), self.wdata.eq(ax.rdata),
            beats.eq(to_boundary),
        ]
        with m.If(left < to_boundary):
            m.d.comb += beats.eq(left)

        with m.FSM(name="load"):
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [addr.eq(self.base & ~(WORD_BYTES - 1)), left.eq(self.count),
                                 idx.eq(0), self.too_long.eq(0)]
                    with m.If(self.count > (1 << self._pc_bits)):
                        m.d.sync += self.too_long.eq(1)
                        m.next = "DONE"
                    with m.Elif(self.count == 0):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "AR"
            with m.State("AR"):
                m.d.comb += [self.busy.eq(1), ax.arvalid.eq(1)]
                with m.If(ax.arready):
                    m.next = "R"
            with m.State("R"):
                m.d.comb += [self.busy.eq(1), ax.rready.eq(1)]
                with m.If(ax.rvalid):
                    m.d.comb += self.we.eq(1)
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(ax.rlast):
                        m.d.sync += [left.eq(left - beats), addr.eq(addr + (beats << _SIZE))]
                        with m.If(left == beats):
                            m.next = "DONE"
                        with m.Else():
                            m.next = "AR"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m
