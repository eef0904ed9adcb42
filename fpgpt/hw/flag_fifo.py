"""A synchronous FIFO whose level is a thermometer code, for paths where a level adder is too slow."""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["FlagFIFO", "buffered_fifo"]


class FlagFIFO(wiring.Component):
    """``amaranth.lib.fifo.SyncFIFOBuffered(width, depth)``, cycle for cycle (the same ports,
    the same ``w_rdy`` / ``r_rdy`` / ``r_data`` in every cycle), but with the inner level kept
    as a thermometer code (bit ``i``: more than ``i`` entries) instead of a binary count, and
    ``empty`` (``level == 0``) in place of ``level``. So that every register after ``w_en`` and
    ``r_en`` is one or two LUTs away from them: the library FIFO adds ±1 to its level behind them
    (a carry chain), and on u280 both come from an AND over 32 channels' handshakes (the
    stripe reader's RVALID, the writer's WREADY, FRUN's AR/AW ready), which into that adder
    was the DMA's critical path (docs/rtl-clock.md). ``depth`` at least 2.

    ``r_en_late`` is a second read enable (the read is ``r_en | r_en_late``) for a signal that
    arrives late in the cycle: every register's next value is computed for both of its values
    from the other inputs, and it only selects between the two at the end (one LUT level after
    it, where ``r_en`` has two; the DMA's stripe writer pops through it, behind its AND over the
    channels' WREADY)."""

    def __init__(self, width: int, depth: int):
        if depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({"w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
                          "r_data": Out(width), "r_en": In(1), "r_en_late": In(1),
                          "r_rdy": Out(1), "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        di = self.depth - 1                              # the inner storage; r_data is the last
        t = Signal(di)                                   # thermometer: t[i] = inner level > i
        m.d.comb += [self.w_rdy.eq(~t[di - 1]), self.empty.eq(~t[0] & ~self.r_rdy)]
        do_write = self.w_rdy & self.w_en
        m.submodules.storage = storage = Memory(shape=self.width, depth=di, init=[])
        w_port, r_port = storage.write_port(), storage.read_port(domain="sync")
        produce, consume = Signal(range(di)), Signal(range(di))

        def incr(p):
            return Mux(p == di - 1, 0, p + 1)[:len(p)] if di > 1 else p

        def after(r_en):
            """(inner -> output register, and the next t, consume, r_rdy) for a read enable."""
            do_read = t[0] & (~self.r_rdy | r_en)
            t_n = Mux(do_write & ~do_read, Cat(Const(1), t[:di - 1]) if di > 1 else Const(1, 1),
                      Mux(do_read & ~do_write, t[1:] if di > 1 else Const(0, 1), t))
            return (do_read, t_n, Mux(do_read, incr(consume), consume),
                    Mux(do_read, 1, Mux(r_en, 0, self.r_rdy)))

        def named(values, tag):
            out = [Signal(len(v), name=f"{n}_{tag}")
                   for n, v in zip(("rd", "t", "consume", "r_rdy"), values)]
            m.d.comb += [o.eq(v) for o, v in zip(out, values)]
            return out

        early, late = named(after(self.r_en), "early"), named(after(1), "late")
        do_read, t_n, consume_n, r_rdy_n = (Mux(self.r_en_late, b, a)
                                            for a, b in zip(early, late))
        m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(do_write),
                     r_port.addr.eq(consume), r_port.en.eq(do_read), self.r_data.eq(r_port.data)]
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        m.d.sync += [t.eq(t_n), consume.eq(consume_n), self.r_rdy.eq(r_rdy_n)]
        return m


def buffered_fifo(width: int, depth: int):
    """``(fifo, empty)``: a FIFO with ``SyncFIFOBuffered(width, depth)``'s behaviour, a
    :class:`FlagFIFO` where it can be (``depth`` at least 2; the library FIFO for one entry),
    and the expression that says it holds nothing."""
    if depth >= 2:
        f = FlagFIFO(width, depth)
        return f, f.empty
    f = fifo.SyncFIFOBuffered(width=width, depth=depth)
    return f, f.level == 0
