"""A synchronous FIFO whose level is a thermometer code, for paths where a level adder is too slow."""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["FlagFIFO"]


class FlagFIFO(wiring.Component):
    """``amaranth.lib.fifo.SyncFIFOBuffered(width, depth)``, cycle for cycle (the same ports,
    the same ``w_rdy`` / ``r_rdy`` / ``r_data`` in every cycle), but with the inner level kept
    as a thermometer code (bit ``i``: more than ``i`` entries) instead of a binary count, and
    ``empty`` (``level == 0``) in place of ``level``. So that every register after ``w_en`` and
    ``r_en`` is one or two LUTs away from them: the library FIFO adds ±1 to its level behind them
    (a carry chain), and on u280 both come from an AND over 32 channels' handshakes (the
    stripe reader's RVALID, the writer's WREADY, FRUN's AR/AW ready), which into that adder
    was the DMA's critical path (docs/rtl-clock.md). ``depth`` at least 2."""

    def __init__(self, width: int, depth: int):
        if depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({"w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
                          "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
                          "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        di = self.depth - 1                              # the inner storage; r_data is the last
        t = Signal(di)                                   # thermometer: t[i] = inner level > i
        m.d.comb += [self.w_rdy.eq(~t[di - 1]), self.empty.eq(~t[0] & ~self.r_rdy)]
        do_write = self.w_rdy & self.w_en
        do_read = t[0] & (~self.r_rdy | self.r_en)       # inner -> the output register
        m.submodules.storage = storage = Memory(shape=self.width, depth=di, init=[])
        w_port, r_port = storage.write_port(), storage.read_port(domain="sync")
        produce, consume = Signal(range(di)), Signal(range(di))

        def incr(p):
            return Mux(p == di - 1, 0, p + 1)[:len(p)] if di > 1 else p

        m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(do_write),
                     r_port.addr.eq(consume), r_port.en.eq(do_read), self.r_data.eq(r_port.data)]
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        with m.If(do_read):
            m.d.sync += consume.eq(incr(consume))
        with m.If(do_write & ~do_read):
            m.d.sync += t.eq(Cat(Const(1), t[:di - 1]) if di > 1 else 1)
        with m.If(do_read & ~do_write):
            m.d.sync += t.eq(t[1:] if di > 1 else 0)
        with m.If(do_read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        return m
