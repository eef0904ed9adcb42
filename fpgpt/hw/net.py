"""The NET unit: SEND / RECV / ALLGATHER / ALLREDUCE over AXI4-Stream ring ports.

Ring wiring (what the system around the cards must connect): device ``d``'s ``tx_next`` drives
device ``(d+1) % D``'s ``rx_prev`` (the *ring direction*), and device ``d``'s ``tx_prev`` drives
device ``(d-1) % D``'s ``rx_next`` (the reverse direction).

Direction convention of SEND / RECV (the ISA field ``prev`` names the direction the data
travel, the same on both ends): ``SEND prev=0`` on device ``d`` sends on ``tx_next`` and pairs
with ``RECV prev=0`` on device ``d+1``, which receives on ``rx_prev``; ``SEND prev=1`` on ``d``
sends on ``tx_prev`` and pairs with ``RECV prev=1`` on ``d-1``, which receives on ``rx_next``.
A SEND and its RECV must have the same ``count``. ``count = 0`` moves nothing (no beat).

Beats: ``tdata`` is :func:`stream_bits` wide and carries 16-bit *slots*, LSB first; FP16
elements take one slot, the FP32 partial sums of ALLREDUCE two (low half first, never split
across beats). Every transfer (a SEND, one ALLGATHER step, one ALLREDUCE phase) starts in a
fresh beat and ends with ``tlast``; ``tkeep`` marks the bytes of the filled slots (only the last
beat of a transfer is partial). The receiver knows the count from its instruction; a beat whose
``tlast`` disagrees with it sets the sticky ``error`` output (the data are still taken).

Collectives (``D`` = ``device_count``, ``d`` = ``device_index``; ``D = 1`` or ``count = 0``:
complete at once without touching memory):

- ALLGATHER: ``D-1`` steps; in step ``s`` device ``d`` sends chunk ``(d-s) mod D`` on
  ``tx_next`` while receiving chunk ``(d-s-1) mod D`` on ``rx_prev`` (chunk ``c`` lives at
  ``S[sram + c*count : +count]``). The sending and receiving run concurrently (a device that
  only sent would deadlock the ring); a step ends when both are done and the last beat has left.
- ALLREDUCE (the numerics contract ``numerics.allreduce_sum``: ``f16(((+0 + f32(S_0)) +
  f32(S_1)) + ... )`` in device order): phase 1 is a chain of FP32 partial sums on
  ``tx_next``: device 0 sends ``+0 + f32(S_0[i])``, device ``0 < d < D-1`` receives ``p`` and
  sends ``p + f32(S_d[i])``, device ``D-1`` writes ``f16(p + f32(S_{D-1}[i]))`` into its
  scratchpad. Phase 2 passes the FP16 result on along the ring: ``D-1`` sends it to 0, devices
  ``0 .. D-3`` store it and forward each element, ``D-2`` stores it. Both phase chains end at a
  device that only receives, so neither can deadlock.

Datapath: one scratchpad element per cycle (the port's rate) shared by a *reader* (reads,
1-cycle latency, into a 4-entry FIFO; then an FP16 pass-through, or f32 conversion + FP32 add
of the received partial sum, then the transmit packer or, rounded to FP16, a write-back) and a
*writer* (received FP16 elements into the scratchpad, optionally forwarded to the packer);
writes take the port before reads. The FP16->FP32, FP32 add and FP32->FP16 are the
combinational ``fplogic`` builders (no pipeline registers in this version: a long path).

Cycle cost, measured (tests/rtl/test_hw_net.py ``test_cycle_cost``: 64-bit ``tdata``, an idle
ring (links and scratchpad grant always ready), every device given its instruction in the same
cycle; cycles from ``cmd`` accepted to ``done``, the slowest device for the collectives):

==================  ====  ====  ====  ====
count n             1     4     16    64
==================  ====  ====  ====  ====
SEND                8     11    23    71      (n + 7)
RECV (paired)       9     15    27    75
ALLGATHER, D=2      9     15    35    131     (about (D-1)(2n + 3))
ALLGATHER, D=3      17    29    69    261
ALLREDUCE, D=2      17    27    63    207     (3n + 10D - 5 for n >= 4)
ALLREDUCE, D=3      23    37    73    217
==================  ====  ====  ====  ====

The rate is the scratchpad port's one element per cycle, not the link's: an ALLGATHER step
reads and writes ``count`` elements each (2n port cycles), device ``D-1`` of an ALLREDUCE reads,
writes back and re-reads (3n). ``fpgpt.sim.costs.net_cycles`` charges the link rate instead
(and a reduce-scatter all-reduce); a wider scratchpad port would close that gap.
``count = 0``, ``D = 1`` collectives and a bad ``device_index``: done 1 cycle after ``cmd``.
SEND/RECV on ``D = 1`` are not special-cased: they use the ports like on a ring (the compiler
does not emit them for one device; the executor rejects them).
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..geometry import ring_stream_bits
from ..isa.table import Unit
from .decoder import Opcode
from .dma import captured_layout
from .fplogic import build_f16_to_f32, build_f32_add, build_f32_to_f16
from .scratchpad import ELEMENT_BITS, addr_bits, port_signature

__all__ = ["NetUnit", "axis_signature", "stream_bits", "engine_cycles", "STREAM_MIN_BITS",
           "STREAM_MAX_BITS"]

#: Narrowest ``tdata``: one FP32 partial sum (two slots) fits one beat.
STREAM_MIN_BITS = 32
#: Widest ``tdata``: the user interface of a 100G MAC / Aurora core (CMAC: 512 bits).
STREAM_MAX_BITS = 512
_A = 32            # scratchpad address arithmetic (the ISA's addresses are 32 bits)
_READ_FIFO = 4     # reader FIFO depth (read data waiting for the packer / partial sum)

def stream_bits(hw: HardwareConfig) -> int:
    """``tdata`` width of the ring ports for ``hw`` (:func:`fpgpt.geometry.ring_stream_bits`).

    The smallest power of two that carries the link's payload rate
    (``hw.link.payload_bytes_per_s``) in one core cycle (``hw.clock_mhz``), at least
    :data:`STREAM_MIN_BITS` and at most :data:`STREAM_MAX_BITS`.
    """
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    return ring_stream_bits(hw)


def engine_cycles(hw: HardwareConfig, op: str, f: dict, *, devices: "int | None" = None) -> int:
    """The unit's own cycles for one NET instruction on an idle ring (module docstring's table:
    links of zero latency, scratchpad grant and ``tready`` always high, every device given its
    instruction in the same cycle; ``cmd`` accepted to ``done``, the slowest device).

    ``f``: captured fields (``count``); ``devices``: the ring's size (default ``hw.devices``);
    ``K`` = slots per beat (:func:`stream_bits` / 16). One element per port cycle:

    - SEND ``n + 7`` while the transfer fits one beat, else ``K·⌈n/K⌉ + 7`` (the receiver takes
      a beat per ``K`` cycles and the last beat leaves when it is taken);
    - RECV (paired) ``n + 7 + min(n, K)``;
    - ALLGATHER ``1 + (D-1)(2n + 6)``: an upper bound, exact for ``n <= K`` and for
      ``n mod K = 1``, ``n > 2K``, at most 4 cycles per step above the RTL otherwise (reads and
      writes share the port, writes first, and their interleaving depends on ``n mod K``);
    - ALLREDUCE ``3n + 10D - 5 + (n mod 2)`` (exact for ``n >= 4``, above the RTL for smaller);
    - ``n = 0``, ``D = 1`` collectives: 1.

    ``fpgpt.sim.costs.net_engine_cycles`` is the same formula (the simulator may not import the
    RTL); tests/rtl/test_hw_calibration.py checks that they agree and that this equals
    ``test_cycle_cost``'s measured cycles where it states exactness.
    """
    d = hw.devices if devices is None else devices
    n = int(f["count"])
    k = stream_bits(hw) // ELEMENT_BITS
    if op in ("ALLGATHER", "ALLREDUCE") and (n == 0 or d <= 1):
        return 1
    if op == "SEND":
        return n + 7 if n <= k else k * -(-n // k) + 7
    if op == "RECV":
        return n + 7 + min(n, k)
    if op == "ALLGATHER":
        return 1 + (d - 1) * (2 * n + 6)
    if op == "ALLREDUCE":
        return 3 * n + 10 * d - 5 + n % 2
    raise ValueError(f"{op!r} is not a NET instruction")


def axis_signature(hw: HardwareConfig) -> wiring.Signature:
    """An AXI4-Stream transmitter port (``Out`` = driven by the transmitter) with AMBA member
    names, flat, so that Amaranth names the Verilog ports ``<port>__tdata`` and friends."""
    w = stream_bits(hw)
    return wiring.Signature({"tdata": Out(w), "tkeep": Out(w // 8), "tlast": Out(1),
                             "tvalid": Out(1), "tready": In(1)})


class NetUnit(wiring.Component):
    """Executes captured NET instructions, one at a time, in order (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
        The scratchpad size and the link (for :func:`stream_bits`).

    Ports
    -----
    cmd : In(stream.Signature(captured_layout(Unit.NET)))
        The next NET instruction; taken when the unit is idle.
    done : Out(1)
        One-cycle pulse per completed instruction.
    busy : Out(1)
    error : Out(1)
        Sticky: a received ``tlast`` disagreed with the instruction's count, or an instruction
        ran with ``device_index >= device_count`` (it then completes at once, doing nothing).
    sram : Out(scratchpad.port_signature(hw))
    device_index, device_count : In(8)
        This device's place on the ring and the ring's size (1 on one card).
    tx_next, tx_prev : Out(axis_signature(hw))
    rx_prev, rx_next : In(axis_signature(hw))
    """

    def __init__(self, *, hw: HardwareConfig):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        self._hw = hw
        axis = axis_signature(hw)
        super().__init__({
            "cmd": In(stream.Signature(captured_layout(Unit.NET))),
            "done": Out(1), "busy": Out(1), "error": Out(1),
            "sram": Out(port_signature(hw)),
            "device_index": In(8), "device_count": In(8),
            "tx_next": Out(axis), "tx_prev": Out(axis),
            "rx_prev": In(axis), "rx_next": In(axis),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        W = stream_bits(hw)
        K = W // ELEMENT_BITS                      # slots per beat
        ins = Signal(captured_layout(Unit.NET))
        dev, ndev = self.device_index, self.device_count

        # ---- step configuration (latched in SETUP) ------------------------------------------
        a_en, a_comb, a_tx32, a_wr = Signal(), Signal(), Signal(), Signal()
        a_rd, a_wa = Signal(_A), Signal(_A)
        b_en, b_fwd, b_wa = Signal(), Signal(), Signal(_A)
        tx_rev, rx_rev, rx32 = Signal(), Signal(), Signal()
        count = Signal(32)
        step, nsteps = Signal(8), Signal(8)

        # ---- packer: slots -> beats on tx_next / tx_prev -------------------------------------
        pk_valid, pk_ready, pk_two, pk_last = Signal(), Signal(), Signal(), Signal()
        pk_data = Signal(32)
        acc = [Signal(ELEMENT_BITS, name=f"acc{j}") for j in range(K)]
        acc_n = Signal(range(K + 1))
        acc_last, closed = Signal(), Signal()
        o_data, o_keep = Signal(W), Signal(W // 8)
        o_valid, o_last = Signal(), Signal()
        tready = Mux(tx_rev, self.tx_prev.tready, self.tx_next.tready)
        for port, sel in ((self.tx_next, ~tx_rev), (self.tx_prev, tx_rev)):
            m.d.comb += [port.tdata.eq(o_data), port.tkeep.eq(o_keep), port.tlast.eq(o_last),
                         port.tvalid.eq(o_valid & sel)]
        out_free = ~o_valid | tready
        move = closed & out_free
        base = Mux(move, 0, acc_n)
        m.d.comb += pk_ready.eq(~closed | out_free)
        pk_take = pk_valid & pk_ready
        with m.If(move):
            m.d.sync += [o_valid.eq(1), o_data.eq(Cat(*acc)), o_last.eq(acc_last),
                         o_keep.eq(Cat(*[(j // 2) < acc_n for j in range(W // 8)]))]
        with m.Elif(o_valid & tready):
            m.d.sync += o_valid.eq(0)
        with m.If(pk_take):
            for j in range(K):
                with m.If(base == j):
                    m.d.sync += acc[j].eq(pk_data[:16])
                with m.Elif(pk_two & (base + 1 == j)):
                    m.d.sync += acc[j].eq(pk_data[16:])
                with m.Elif(base == 0):     # a new beat: unused slots read 0
                    m.d.sync += acc[j].eq(0)
            new_n = base + 1 + pk_two
            m.d.sync += [acc_n.eq(new_n), closed.eq((new_n == K) | pk_last),
                         acc_last.eq(pk_last)]
        with m.Elif(move):
            m.d.sync += [acc_n.eq(0), closed.eq(0)]
        pk_idle = ~o_valid & ~closed & (acc_n == 0)

        # ---- unpacker: beats from rx_prev / rx_next -> slots ---------------------------------
        rb_data, rb_valid, rb_last = Signal(W), Signal(), Signal()
        rb_idx = Signal(range(K + 1))
        rx_valid, rx_take, rx_lastel, rx_need = Signal(), Signal(), Signal(), Signal()
        rx_data = Signal(32)
        m.d.comb += [rx_valid.eq(rb_valid),
                     rx_data.eq(Mux(rx32, rb_data.word_select(rb_idx[1:], 32),
                                    rb_data.word_select(rb_idx, 16)))]
        new_idx = rb_idx + 1 + rx32
        beat_end = (new_idx == K) | rx_lastel
        in_valid = Mux(rx_rev, self.rx_next.tvalid, self.rx_prev.tvalid)
        in_data = Mux(rx_rev, self.rx_next.tdata, self.rx_prev.tdata)
        in_last = Mux(rx_rev, self.rx_next.tlast, self.rx_prev.tlast)
        in_ready = Signal()
        m.d.comb += [in_ready.eq(rx_need & (~rb_valid | (rx_take & beat_end & ~rx_lastel))),
                     self.rx_prev.tready.eq(in_ready & ~rx_rev),
                     self.rx_next.tready.eq(in_ready & rx_rev)]
        with m.If(rx_take):
            m.d.sync += rb_idx.eq(new_idx)
            with m.If(beat_end):
                m.d.sync += [rb_valid.eq(0), rb_idx.eq(0)]
                with m.If(rx_lastel != rb_last):
                    m.d.sync += self.error.eq(1)
        with m.If(in_ready & in_valid):
            m.d.sync += [rb_valid.eq(1), rb_data.eq(in_data), rb_last.eq(in_last), rb_idx.eq(0)]

        # ---- reader (flow A): S -> [+ partial sum] -> packer or write-back --------------------
        m.submodules.rq = rq = fifo.SyncFIFO(width=ELEMENT_BITS, depth=_READ_FIFO)
        a_iss, a_out = Signal(32), Signal(32)
        pend = Signal()
        a_rreq = a_en & (a_iss < count) & ((rq.level + pend) < _READ_FIFO)
        h = build_f16_to_f32(m, rq.r_data, "net_h2f")
        ssum = build_f32_add(m, Mux(a_comb, rx_data, 0), h, "net_add")
        r16 = build_f32_to_f16(m, ssum, "net_f2h")
        a_have = a_en & rq.r_rdy & (~a_comb | rx_valid)
        a_wreq = a_have & a_wr
        a_lastel = a_out == count - 1

        # ---- writer (flow B): received FP16 -> S [and forward] -------------------------------
        b_n = Signal(32)
        b_req = b_en & (b_n < count) & rx_valid & (~b_fwd | pk_ready)
        b_lastel = b_n == count - 1

        # ---- the scratchpad port: writes first, then reads ----------------------------------
        grant = self.sram.grant
        b_go = b_req & grant
        a_wgo = a_wreq & ~b_req & grant
        a_rgo = a_rreq & ~b_req & ~a_wreq & grant
        m.d.comb += [
            self.sram.we.eq(b_req | a_wreq),
            self.sram.re.eq(a_rreq & ~b_req & ~a_wreq),
            self.sram.wdata.eq(Mux(b_req, rx_data[:16], r16)),
            self.sram.addr.eq(Mux(b_req, b_wa + b_n, Mux(a_wreq, a_wa + a_out, a_rd + a_iss))
                              [:addr_bits(hw)]),
        ]
        m.d.sync += pend.eq(a_rgo)
        m.d.comb += [rq.w_en.eq(pend), rq.w_data.eq(self.sram.rdata)]
        with m.If(a_rgo):
            m.d.sync += a_iss.eq(a_iss + 1)

        a_go = Signal()
        m.d.comb += a_go.eq(a_have & Mux(a_wr, a_wgo, pk_ready))
        with m.If(a_go):
            m.d.sync += a_out.eq(a_out + 1)
        with m.If(b_go):
            m.d.sync += b_n.eq(b_n + 1)
        m.d.comb += [
            rq.r_en.eq(a_go),
            pk_valid.eq((a_have & ~a_wr & pk_ready) | (b_go & b_fwd)),
            pk_data.eq(Mux(b_fwd, rx_data[:16], Mux(a_tx32, ssum, rq.r_data))),
            pk_two.eq(~b_fwd & a_tx32),
            pk_last.eq(Mux(b_fwd, b_lastel, a_lastel)),
            rx_take.eq((a_go & a_comb) | b_go),
            rx_lastel.eq(Mux(b_en, b_lastel, a_lastel)),
            rx_need.eq((b_en & (b_n < count)) | (a_en & a_comb & (a_out < count))),
        ]
        step_done = (~a_en | (a_out == count)) & (~b_en | (b_n == count)) & pk_idle & ~pend

        # ---- step plan --------------------------------------------------------------------
        op = ins.op
        is_send, is_recv = op == Opcode.SEND, op == Opcode.RECV
        is_ag, is_ar = op == Opcode.ALLGATHER, op == Opcode.ALLREDUCE
        first_dev, last_dev = dev == 0, dev == ndev - 1
        t1 = Signal(9)
        t2 = Signal(9)
        # chunk indices (d - s) mod D and (d - s - 1) mod D (one wrap suffices: s <= D-2)
        m.d.comb += [t1.eq(dev - step), t2.eq(dev - step - 1)]
        c_tx = Mux(t1[8], t1 + ndev, t1)[:8]
        c_rx = Mux(t2[8], t2 + ndev, t2)[:8]

        def setup():
            s = ins.sram
            stmts = [a_iss.eq(0), a_out.eq(0), b_n.eq(0), count.eq(ins.count),
                     a_en.eq(0), a_comb.eq(0), a_tx32.eq(0), a_wr.eq(0), a_rd.eq(s), a_wa.eq(s),
                     b_en.eq(0), b_fwd.eq(0), b_wa.eq(s), tx_rev.eq(0), rx_rev.eq(0),
                     rx32.eq(0)]
            m.d.sync += stmts
            with m.If(is_send):
                m.d.sync += [a_en.eq(1), tx_rev.eq(ins.prev)]
            with m.Elif(is_recv):
                m.d.sync += [b_en.eq(1), rx_rev.eq(ins.prev)]
            with m.Elif(is_ag):
                m.d.sync += [a_en.eq(1), a_rd.eq(s + c_tx * ins.count),
                             b_en.eq(1), b_wa.eq(s + c_rx * ins.count)]
            with m.Elif(is_ar & (step == 0)):       # phase 1: FP32 partial sums, 0 -> D-1
                m.d.sync += [a_en.eq(1), a_comb.eq(~first_dev), rx32.eq(1),
                             a_tx32.eq(~last_dev), a_wr.eq(last_dev)]
            with m.Elif(is_ar):                     # phase 2: the FP16 result, D-1 -> D-2
                with m.If(last_dev):
                    m.d.sync += a_en.eq(1)
                with m.Else():
                    m.d.sync += [b_en.eq(1), b_fwd.eq(dev != ndev - 2)]

        # ---- sequencer ----------------------------------------------------------------------
        m.d.comb += self.cmd.ready.eq(0)
        with m.FSM(name="net"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [ins.eq(self.cmd.payload), step.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                bad = dev >= ndev
                with m.If(bad):
                    m.d.sync += self.error.eq(1)
                with m.If(bad | (ins.count == 0) | ((ndev == 1) & ~is_send & ~is_recv)):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += nsteps.eq(Mux(is_ag, ndev - 1, Mux(is_ar, 2, 1)))
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                setup()
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(step_done):
                    m.d.sync += [a_en.eq(0), b_en.eq(0), step.eq(step + 1)]
                    with m.If(step + 1 == nsteps):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "SETUP"
        return m
