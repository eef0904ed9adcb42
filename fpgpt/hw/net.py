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

- ALLGATHER: both ring directions, ``ceil((D-1)/2)`` = ``floor(D/2)`` steps; in step ``s``
  device ``d`` sends chunk ``(d-s) mod D`` on ``tx_next`` while receiving chunk
  ``(d-s-1) mod D`` on ``rx_prev`` and, while ``s < floor((D-1)/2)``, at the same time sends
  chunk ``(d+s) mod D`` on ``tx_prev`` while receiving ``(d+s+1) mod D`` on ``rx_next`` (chunk
  ``c`` lives at ``S[sram + c*count : +count]``; on 2 devices one step on ``tx_next``, as a
  one-direction ring). The sending and receiving run concurrently (a device that only sent
  would deadlock the ring); a step ends when every transfer is done and the last beat has left.
- ALLREDUCE (the numerics contract ``numerics.allreduce_sum``: ``f16(((+0 + f32(S_0)) +
  f32(S_1)) + ... )`` in device order): phase 1 is a chain of FP32 partial sums on
  ``tx_next``: device 0 sends ``+0 + f32(S_0[i])``, device ``0 < d < D-1`` receives ``p`` and
  sends ``p + f32(S_d[i])``, device ``D-1`` writes ``f16(p + f32(S_{D-1}[i]))`` into its
  scratchpad. Phase 2 passes the FP16 result on along the ring: ``D-1`` sends it to 0, devices
  ``0 .. D-3`` store it and forward each element, ``D-2`` stores it. Both phase chains end at a
  device that only receives, so neither can deadlock.

Datapath (the scratchpad's line port, fpgpt/hw/scratchpad.py ``line_signature``). SEND, RECV
and ALLGATHER move a *group* of ``G`` = :func:`group_elements` elements per port access: a
beat's slots (``stream_bits / 16``) or a line (``P = C·NB``), whichever is fewer (u280: a
512-bit beat, 32 elements = 64 bytes per cycle at 300 MHz, above the link's 40.4 payload bytes
per cycle; tiny: 32 elements, a beat and a line). The protocol on the ring ports is unchanged
(slots LSB first, every transfer starts in a fresh beat, only its last beat is partial), so
the two ends of a transfer may have any alignment:

- the *reader* reads the ``G``-aligned blocks of ``S`` its operand touches
  (``B(a, n) = ⌈(a mod G + n)/G⌉`` line accesses; a block lies in one line access because
  ``G`` divides ``C`` or ``C`` divides ``G``), through a 4-entry FIFO, and a realigner (a
  one-block ``hold`` register and a ``G``-element shifter by ``a mod G``) hands the packer
  group ``j`` = elements ``jG .. jG+G-1`` of the transfer, one per cycle;
- the *writer* writes the ``G``-aligned blocks of its destination, each from the previous
  received group and the current one (a shifter by ``G - b mod G``) with an element write
  mask (the first and last blocks partial), one per cycle, plus a last block when the tail
  spills past the last group's block.

ALLGATHER's second direction (``tx_prev`` / ``rx_next``) is a second copy of the wide reader,
packer, unpacker and writer (:class:`_WideFlow`, fpgpt/hw/net_flow.py, a submodule; no element
path) with its own chunk offsets (``c·count`` products registered like the first
direction's). The line port serves them all: writes before reads (this flow's writer, then the
second direction's, then ALLREDUCE's write-back), then this flow's reads, then the second
direction's.

Writes take the port before reads. ALLREDUCE (FP32 partial sums in device order; the compiler
never emits it) keeps one element per port cycle through the same line port: a *reader*
(element reads, 1-cycle latency, the FIFO; then an FP16 pass-through, or, in phase 1, the
pipeline below, then the packer or a write-back) and a *writer* (received FP16 elements,
optionally forwarded). Phase 1's pipeline (:func:`pipe_depth` registers: 10 on u280, tiny and
u55c, 15 on dfx) registers the read queue's output and the received partial sum, converts
FP16 -> FP32 into a register, adds through the combinational ``fplogic`` adder followed by
:func:`pipe_add_stages` registers (a plain chain: synthesis retiming spreads the adder over
them, and the Fmax estimate credits them, docs/rtl-clock.md), rounds FP32 -> FP16 into
``_F2H_STAGES`` registers (the FP32 sum carried beside them for the packer), and stalls as a
whole while its output waits for the packer or the write port. It adds latency, not cycles
per element: the bits are ``numerics.allreduce_sum``'s, as before.

Cycle cost, measured (tests/rtl/test_hw_net.py ``test_cycle_cost``: 64-bit ``tdata`` (``G`` =
4), operands at ``sram = 0``, an idle ring (links of zero latency, scratchpad grant always
ready), every device given its instruction in the same cycle; cycles from ``cmd`` accepted to
``done``, the slowest device for the collectives). :func:`engine_cycles` is the closed form
(exact for SEND and RECV; an ALLGATHER at most 3 cycles per step above the RTL on 2 devices, at
most 6 per step on 3 to 6, an ALLREDUCE at most 16):

==================  ====  ====  ====  ====
count n             1     4     16    64
==================  ====  ====  ====  ====
SEND                9     9     12    24      (8 + ⌈n/G⌉)
RECV (paired)       10    10    13    25      (9 + B(sram, n))
ALLGATHER, D=2      10    10    13    37      (about 1 + (D-1)(2n/G + 5))
ALLGATHER, D=3      11    11    23    71      (one step, both directions)
ALLGATHER, D=4      20    20    35    107     (two steps, the second on tx_next only)
ALLREDUCE, D=2      37    47    83    227     (at most 3n + (10 + pipe_depth)D - 4)
ALLREDUCE, D=3      53    67    103   247
==================  ====  ====  ====  ====

ALLREDUCE before its pipeline (the FP16 -> FP32 -> add -> FP16 in one cycle): 17, 27, 63, 207
(D=2) and 23, 37, 73, 217 (D=3), exactly ``3n + 10D - 5`` for ``n >= 4``; each device's phase 1
now adds the pipeline's depth (10 since session 14's ``vpu.add_latency`` 6; 15 with 11: 47,
57, 81, 228 and 68, 82, 106, 253) to the chain.

With one direction (``D-1`` steps, before 2026-12-06) the ALLGATHER rows were 19, 19, 25, 73
(D=3) and 28, 28, 37, 109 (D=4). Before the groups (one element per port cycle for every op)
SEND of 64 took 71 cycles and a 3-device ALLGATHER of 64 261. The timing model
(``fpgpt.sim.costs.net_cycles``) charges, per
hop, the later of this unit's work and the link's (latency, payload rate, packets):
docs/multi-device.md, "The NET unit's rate". ``count = 0``, ``D = 1`` collectives and a bad
``device_index``: done 1 cycle after ``cmd``. SEND/RECV on ``D = 1`` are not special-cased:
they use the ports like on a ring (the compiler does not emit them for one device; the
executor rejects them).
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..geometry import (chunk_elements, line_elements, net_allreduce_add_stages, net_allreduce_pipe,
                        ring_group_elements, ring_stream_bits)
from ..isa.table import Unit
from .decoder import Opcode
from .decoder import captured_layout
from .fplogic import build_f16_to_f32, build_f32_add, build_f32_to_f16
from .net_flow import _A, _READ_FIFO, _blocks, _Down, _packer, _realigner, _WideFlow
from .scratchpad import ELEMENT_BITS, line_signature

__all__ = ["NetUnit", "axis_signature", "stream_bits", "group_elements", "engine_cycles",
           "pipe_add_stages", "pipe_depth",
           "STREAM_MIN_BITS", "STREAM_MAX_BITS"]

#: Narrowest ``tdata``: one FP32 partial sum (two slots) fits one beat.
STREAM_MIN_BITS = 32
#: Widest ``tdata``: the user interface of a 100G MAC / Aurora core (CMAC: 512 bits).
STREAM_MAX_BITS = 512
#: Registers after ALLREDUCE's FP32 -> FP16 rounding: ``f32_to_f16`` is 5.11 ns
#: (docs/rtl-clock.md, measured), 5.9 ns between two registers, so two stages of about 2.9 ns
#: once retimed, under a DSP48E2 cell between registers (3.04 ns).
_F2H_STAGES = 2          # the rounding's registers: the last 2 of geometry.net_allreduce_pipe


#: Registers after ALLREDUCE's adder, and of its whole phase-1 pipeline (fpgpt.geometry: the
#: timing model charges the same figures).
pipe_add_stages = net_allreduce_add_stages
pipe_depth = net_allreduce_pipe


def _delay(m: Module, value, cycles: int, en, name: str):
    """``value`` through ``cycles`` registers that advance together while ``en`` (a plain
    chain: each register drives only the next, which the Fmax estimate credits as retimable)."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i}")
        with m.If(en):
            m.d.sync += reg.eq(value)
        value = reg
    return value

def stream_bits(hw: HardwareConfig) -> int:
    """``tdata`` width of the ring ports for ``hw`` (:func:`fpgpt.geometry.ring_stream_bits`).

    The smallest power of two that carries the link's payload rate
    (``hw.link.payload_bytes_per_s``) in one core cycle (``hw.clock_mhz``), at least
    :data:`STREAM_MIN_BITS` and at most :data:`STREAM_MAX_BITS`.
    """
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    return ring_stream_bits(hw)


def group_elements(hw: HardwareConfig) -> int:
    """``G``: elements one wide access moves (:func:`fpgpt.geometry.ring_group_elements`): a
    beat's slots or a scratchpad line, whichever is fewer."""
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    return ring_group_elements(hw)


def engine_cycles(hw: HardwareConfig, op: str, f: dict, *, devices: "int | None" = None) -> int:
    """The unit's own cycles for one NET instruction on an idle ring (module docstring's table:
    links of zero latency, scratchpad grant and ``tready`` always high, every device given its
    instruction in the same cycle; ``cmd`` accepted to ``done``, the slowest device).

    ``f``: captured fields (``count``, ``sram``); ``devices``: the ring's size (default
    ``hw.devices``); ``G`` = :func:`group_elements`. SEND, RECV and ALLGATHER move a group per
    port access: a transfer of ``n`` elements at ``a`` reads (or writes) the
    ``B(a, n) = ⌈(a mod G + n)/G⌉`` G-aligned blocks it touches.

    - SEND ``8 + ⌈n/G⌉`` (its reads run ahead of the packer, so the alignment costs nothing);
    - RECV (paired) ``9 + B(sram, n)``;
    - ALLGATHER ``1 + Σ_s max_d (step cost)`` over its ``floor(D/2)`` steps ``s`` and the
      devices ``d``, with ``B`` of chunk ``c`` = ``B(sram + c·n, n)``: a step with both
      directions (``s < floor((D-1)/2)``) ``R_f + W_f + R_b + W_b + 8``, the blocks of chunks
      ``(d-s)``, ``(d-s-1)``, ``(d+s)`` and ``(d+s+1)`` (mod ``D``) that ``d`` reads and writes
      on the one port; a step on ``tx_next`` alone ``max(W + 8, R + W + 6)`` on 2 devices
      (exact for one-block chunks, at most 3 cycles above the RTL otherwise: how reads and
      writes interleave depends on the offsets) and that plus 2 after a step with both
      directions. An upper bound, at most 6 cycles per step above the RTL (measured for ``D`` =
      3..6, 64- and 512-bit ``tdata``, and ``D`` = 3, 4 at 32 bits, random offsets and counts);
    - ALLREDUCE (one element per port cycle, phase 1 through the :func:`pipe_depth`-register
      pipeline on every device) ``3n + (10 + pipe_depth)·D - 4``: an upper bound, 0 to 16
      cycles above the RTL (how the pipeline's stalls meet the packer's beats and the port's
      writes-first order varies with ``n``; measured for ``D`` = 2..4, ``n`` = 1..64);
    - ``n = 0``, ``D = 1`` collectives: 1.

    ``fpgpt.sim.costs.net_engine_cycles`` is the same formula (the simulator may not import the
    RTL); tests/rtl/test_hw_calibration.py checks that they agree, and test_hw_net.py
    ``test_cycle_cost`` compares this with the RTL's cycles.
    """
    d = hw.devices if devices is None else devices
    n, a = int(f["count"]), int(f.get("sram", 0))
    g = group_elements(hw)

    def blocks(x: int) -> int:
        return (x % g + n + g - 1) // g

    if op in ("ALLGATHER", "ALLREDUCE") and (n == 0 or d <= 1):
        return 1
    if op == "SEND":
        return 8 + -(-n // g)
    if op == "RECV":
        return 9 + blocks(a)
    if op == "ALLGATHER":
        total = 1
        for s in range(d // 2):
            worst = 0
            for i in range(d):
                r, w = blocks(a + ((i - s) % d) * n), blocks(a + ((i - s - 1) % d) * n)
                if s < (d - 1) // 2:        # both directions: the port's four transfers
                    worst = max(worst, r + w + blocks(a + ((i + s) % d) * n)
                                + blocks(a + ((i + s + 1) % d) * n) + 8)
                else:                       # tx_next only (the last step when D-1 is odd)
                    worst = max(worst, max(w + 8, r + w + 6) + (2 if d > 2 else 0))
            total += worst
        return total
    if op == "ALLREDUCE":
        return 3 * n + (10 + pipe_depth(hw)) * d - 4
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
    line : Out(scratchpad.line_signature(hw))
        The NET unit's scratchpad port (line accesses; element accesses for ALLREDUCE).
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
            "line": Out(line_signature(hw)),
            "device_index": In(8), "device_count": In(8),
            "tx_next": Out(axis), "tx_prev": Out(axis),
            "rx_prev": In(axis), "rx_next": In(axis),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        W = stream_bits(hw)
        K = W // ELEMENT_BITS                      # slots per beat
        G = group_elements(hw)                     # elements per wide access (a group)
        P, C = line_elements(hw), chunk_elements(hw)
        lg, lc = G.bit_length() - 1, C.bit_length() - 1
        GW = G * ELEMENT_BITS
        ins = Signal(captured_layout(Unit.NET))
        dev, ndev = self.device_index, self.device_count
        line = self.line

        # ---- step configuration (latched in SETUP) ------------------------------------------
        wide = Signal()                            # SEND / RECV / ALLGATHER: a group per access
        a_en, a_comb = Signal(name="a_en"), Signal(name="a_comb")
        a_tx32, a_wr = Signal(name="a_tx32"), Signal(name="a_wr")
        a_rd, a_wa = Signal(_A, name="a_rd"), Signal(_A, name="a_wa")
        b_en, b_fwd, b_wa = Signal(name="b_en"), Signal(name="b_fwd"), Signal(_A, name="b_wa")
        tx_rev, rx_rev, rx32 = Signal(name="tx_rev"), Signal(name="rx_rev"), Signal(name="rx32")
        step, nsteps = Signal(8, name="step"), Signal(8, name="nsteps")

        # ---- packer: slots (one, two, or a group of G) -> beats on tx_next / tx_prev ---------
        pk_valid, pk_ready = Signal(name="pk_valid"), Signal(name="pk_ready")
        pk_two, pk_last = Signal(name="pk_two"), Signal(name="pk_last")
        pk_data = Signal(32)
        pk_gdata, pk_gcnt = Signal(GW, name="pk_gdata"), Signal(range(G + 1), name="pk_gcnt")
        pk = SimpleNamespace(valid=pk_valid, ready=pk_ready, last=pk_last, gdata=pk_gdata,
                             gcnt=pk_gcnt)
        out = _packer(m, K, G, W, pk, Mux(tx_rev, self.tx_prev.tready, self.tx_next.tready),
                      narrow=(wide, pk_data, pk_two))
        o_data, o_keep, o_valid, o_last, pk_idle = out.data, out.keep, out.valid, out.last, out.idle
        # ALLGATHER's second direction (tx_prev / rx_next), its own reader, packer, unpacker and
        # writer; it shares the line port. The ports are its own except when this flow's
        # SEND or RECV uses the reverse direction (never in the same instruction).
        m.submodules.rev = rev = _WideFlow(hw)
        m.d.comb += [self.tx_next.tdata.eq(o_data), self.tx_next.tkeep.eq(o_keep),
                     self.tx_next.tlast.eq(o_last), self.tx_next.tvalid.eq(o_valid & ~tx_rev),
                     self.tx_prev.tdata.eq(Mux(tx_rev, o_data, rev.tx_data)),
                     self.tx_prev.tkeep.eq(Mux(tx_rev, o_keep, rev.tx_keep)),
                     self.tx_prev.tlast.eq(Mux(tx_rev, o_last, rev.tx_last)),
                     self.tx_prev.tvalid.eq((o_valid & tx_rev) | rev.tx_valid),
                     rev.tx_ready.eq(self.tx_prev.tready),
                     rev.rx_data.eq(self.rx_next.tdata), rev.rx_last.eq(self.rx_next.tlast),
                     rev.rx_valid.eq(self.rx_next.tvalid)]

        # ---- unpacker: beats from rx_prev / rx_next -> slots (or groups) ---------------------
        rb_data = Signal(W, name="rb_data")
        rb_valid, rb_last = Signal(name="rb_valid"), Signal(name="rb_last")
        rb_idx = Signal(range(K + 1))
        rx_valid, rx_take = Signal(name="rx_valid"), Signal(name="rx_take")
        rx_lastel, rx_need = Signal(name="rx_lastel"), Signal(name="rx_need")
        rx_data = Signal(32)
        rx_group = Signal(GW)
        m.d.comb += [rx_valid.eq(rb_valid),
                     rx_data.eq(Mux(rx32, rb_data.word_select(rb_idx[1:], 32),
                                    rb_data.word_select(rb_idx, 16))),
                     rx_group.eq(rb_data.word_select(rb_idx >> lg, GW) if K > G
                                 else rb_data[:GW])]
        new_idx = rb_idx + Mux(wide, G, 1 + rx32)
        beat_end = (new_idx == K) | rx_lastel
        in_valid = Mux(rx_rev, self.rx_next.tvalid, self.rx_prev.tvalid)
        in_data = Mux(rx_rev, self.rx_next.tdata, self.rx_prev.tdata)
        in_last = Mux(rx_rev, self.rx_next.tlast, self.rx_prev.tlast)
        in_ready = Signal()
        m.d.comb += [in_ready.eq(rx_need & (~rb_valid | (rx_take & beat_end & ~rx_lastel))),
                     self.rx_prev.tready.eq(in_ready & ~rx_rev),
                     self.rx_next.tready.eq((in_ready & rx_rev) | rev.rx_ready)]
        with m.If(rx_take):
            m.d.sync += rb_idx.eq(new_idx)
            with m.If(beat_end):
                m.d.sync += [rb_valid.eq(0), rb_idx.eq(0)]
                with m.If(rx_lastel != rb_last):
                    m.d.sync += self.error.eq(1)
        with m.If(rev.error):
            m.d.sync += self.error.eq(1)
        with m.If(in_ready & in_valid):
            m.d.sync += [rb_valid.eq(1), rb_data.eq(in_data), rb_last.eq(in_last), rb_idx.eq(0)]

        # ---- reader (flow A): S -> [+ partial sum] -> packer or write-back --------------------
        # Narrow (ALLREDUCE): element a_iss of the operand; wide: the G-aligned block a_iss of
        # the blocks the operand touches, realigned into stream order by `hold`.
        m.submodules.rq = rq = fifo.SyncFIFO(width=GW, depth=_READ_FIFO)
        # Down-counters with registered flags (_Down: no compare with count in the handshakes,
        # docs/rtl-clock.md): ``a_left`` = count - a_out, ``a_nrd`` the accesses the reader has
        # still to issue (the blocks its operand touches, or count elements), ``b_left`` =
        # count - b_n, ``b_nblk`` the writer's blocks still to write; loaded in SETUP.
        a_iss, a_out = Signal(33, name="a_iss"), Signal(33, name="a_out")
        a_left, a_nrd = _Down("a_left", G), _Down("a_nrd", G)
        pend = Signal()
        a_off = a_rd[:lg] if lg else Const(0, 1)
        a_rreq = a_en & a_nrd.nz & ((rq.level + pend) < _READ_FIFO)
        # Narrow, phase 1 of ALLREDUCE (``a_pipe``): the element and the received partial sum
        # enter a pipeline (``p_in``) that stalls as a whole (``p_adv``) while its output waits:
        #   x0/p0 (the read queue's output and the partial sum, registered) -> f16_to_f32 ->
        #   h1/p1 -> f32_add -> ``add_stages`` registers (a plain chain, so that retiming spreads
        #   the adder over them: docs/rtl-clock.md) -> f32_to_f16 -> ``_F2H_STAGES`` registers,
        #   the FP32 sum carried beside them; its output ``o_v`` goes to the packer (``a_tx32``)
        #   or is written back (``a_wr``). ``a_in`` counts the elements still to enter (down),
        #   ``a_out`` those out.
        # Else (phase 2 on device D-1: the FP16 result sent on) the read queue feeds the packer.
        A = pipe_add_stages(hw)
        a_in = _Down("a_in", G)
        a_pipe = a_tx32 | a_wr
        q_have = a_en & ~wide & rq.r_rdy & (~a_comb | rx_valid)
        p_adv, p_in = Signal(name="p_adv"), Signal(name="p_in")
        nv = pipe_depth(hw)
        pv = [Signal(name=f"net_v{i}") for i in range(nv)]
        x0, p0 = Signal(16, name="net_x0"), Signal(32, name="net_p0")
        h1, p1 = Signal(32, name="net_h1"), Signal(32, name="net_p1")
        h = build_f16_to_f32(m, x0, "net_h2f")       # (a builder's comb logic: not in an If)
        with m.If(p_adv):
            m.d.sync += [pv[0].eq(p_in), x0.eq(rq.r_data[:16]), p0.eq(Mux(a_comb, rx_data, 0)),
                         h1.eq(h), p1.eq(p0)]
            m.d.sync += [pv[i + 1].eq(pv[i]) for i in range(nv - 1)]
        s_chain = _delay(m, build_f32_add(m, p1, h1, "net_add"), A, p_adv, "net_sum")
        r16 = build_f32_to_f16(m, s_chain, "net_f2h")
        r_out = _delay(m, r16, _F2H_STAGES, p_adv, "net_r16")
        s_out = _delay(m, s_chain, _F2H_STAGES, p_adv, "net_s32")
        o_v = pv[-1]
        a_have = Mux(a_pipe, o_v, q_have)
        a_wreq = a_have & a_wr
        a_lastel = a_left.one
        a_more = a_left.nz
        # wide: group j of the stream = elements off..off+G-1 of blocks j, j+1
        g = _realigner(m, a_en & wide, rq, a_off, a_left, pk_ready, G)
        g_go, g_pop, g_cnt, g_last, hold_v = g.go, g.pop, g.cnt, g.last, g.hold_v
        with m.If(g_go):
            m.d.sync += a_out.eq(a_out + g_cnt)

        # ---- writer (flow B): received FP16 -> S [and forward] -------------------------------
        # Narrow: element b_n; wide: the G-aligned block b_blk of the destination, from the
        # previous group (`bhold`) and the one received now (none for a last spilled block).
        b_n, b_blk = Signal(33, name="b_n"), Signal(33, name="b_blk")
        b_left, b_nblk = _Down("b_left", G), _Down("b_nblk", G)
        b_rem = Signal(34)                           # count + off - G*b_blk: lanes still due
        b_off = b_wa[:lg] if lg else Const(0, 1)
        bhold = Signal(GW)
        b_req = Signal()
        b_grp = b_left.nz                            # a group is still to come (else a spill)
        b_lastg = b_left.le
        wb_cnt = Mux(b_lastg, b_left.v, G)[:lg + 1]
        b_cur = Mux(b_grp, rx_group, 0)
        b_sh = Signal(range(G + 1))
        m.d.comb += b_sh.eq(G - b_off)
        b_block = Cat(bhold, b_cur).bit_select(b_sh * ELEMENT_BITS, GW) if lg else b_cur
        def first_ok(i):        # lane i of the first block is at or past the start (no
            if i == 0:          # comparison that is constant: Verilator's CMPCONST)
                return b_off == 0
            return Const(1, 1) if i >= G - 1 else b_off <= i
        b_lmask = Cat(*[((b_blk != 0) | first_ok(i)) & (i < b_rem) for i in range(G)])
        # b_pri: b_req without the packer's readiness, from registers. It orders the line port's
        # users: b_req differs from it only while this flow forwards (ALLREDUCE's phase 2),
        # when neither the reader nor the reverse flow runs, so the order is the same; the
        # packer's o_valid / pk_ready -> b_req -> the reverse flow's grant and counters was the
        # unit's 11-LUT path on u280 (docs/rtl-clock.md "Session 22")
        b_pri = Signal()
        m.d.comb += [b_pri.eq(Mux(wide, b_en & b_nblk.nz & (~b_grp | rx_valid),
                                  b_en & b_grp & rx_valid)),
                     b_req.eq(b_pri & (wide | ~b_fwd | pk_ready))]
        b_lastel = b_left.one

        # ---- the scratchpad line port: writes first (this flow's, the reverse flow's), then
        # reads (this flow's, the reverse flow's) ------------------------------------------------
        grant = line.grant
        b_go = b_req & grant
        m.d.comb += rev.wgo.eq(rev.wreq & ~b_pri & grant)
        a_wgo = a_wreq & ~b_pri & ~rev.wreq & grant
        wr = b_pri | rev.wreq | a_wreq
        a_rgo = a_rreq & ~wr & grant
        m.d.comb += rev.rgo.eq(rev.rreq & ~a_rreq & ~wr & grant)
        w_addr = Signal(_A)
        r_addr = Signal(_A)
        m.d.comb += [
            w_addr.eq(Mux(b_req, Mux(wide, ((b_wa >> lg) + b_blk[:_A]) << lg, b_wa + b_n),
                          Mux(rev.wreq, rev.waddr, a_wa + a_out))),
            r_addr.eq(Mux(a_rreq, Mux(wide, ((a_rd >> lg) + a_iss[:_A]) << lg, a_rd + a_iss),
                          rev.raddr)),
        ]
        addr = Mux(wr, w_addr, r_addr)
        wd16 = Mux(b_req, rx_data[:16], r_out)
        # Both writes land in the line's first max(C, G) elements: a G-element block (the
        # group, or the element repeated) repeated along the line, and a mask of that width.
        w_sub = w_addr[lg:lc] if G < C else Const(0, 1)
        mw = max(C, G)
        g_wmask, e_wmask = Signal(mw, name="g_wmask"), Signal(mw, name="e_wmask")
        w_blk = Signal(GW)
        l_mask = Mux(b_req, b_lmask, rev.wlmask)
        g_w = (b_req & wide) | (~b_req & rev.wreq)      # a group block (else an element)
        m.d.comb += [g_wmask.eq(l_mask << (w_sub * G) if G < C else l_mask),
                     e_wmask.eq(Const(1, mw) << w_addr[:lc] if lc else Const(1, mw)),
                     w_blk.eq(Mux(b_req & wide, b_block,
                                  Mux(rev.wreq, rev.wblock, Cat(*[wd16] * G))))]
        m.d.comb += [
            line.we.eq(b_req | rev.wreq | a_wreq),     # (wr, less a blocked forward)
            line.re.eq((a_rreq | rev.rreq) & ~wr),
            line.chunk.eq((addr >> lc)[:len(line.chunk)]),
            line.wdata.eq(Cat(*[w_blk] * (P // G))),
            line.wmask.eq(Mux(g_w, g_wmask, e_wmask)),
        ]
        # read data: select the element, or the group, the access asked for
        sel_r = Signal(max(1, lc))
        with m.If(a_rgo | rev.rgo):
            m.d.sync += sel_r.eq(r_addr[:lc] if lc else 0)
        rd_el = line.rdata.word_select(sel_r, ELEMENT_BITS) if lc else line.rdata[:16]
        rd_grp = line.rdata.word_select(sel_r[lg:], GW) if G < C else line.rdata[:GW]
        m.d.sync += pend.eq(a_rgo)
        m.d.comb += [rq.w_en.eq(pend), rq.w_data.eq(Mux(wide, rd_grp, rd_el)),
                     rev.rdata.eq(rd_grp)]
        with m.If(a_rgo):
            m.d.sync += a_iss.eq(a_iss + 1)
            a_nrd.dec(m)

        a_go = Signal()
        m.d.comb += [a_go.eq(a_have & Mux(a_wr, a_wgo, pk_ready)),
                     p_adv.eq(~o_v | a_go),
                     p_in.eq(a_pipe & q_have & p_adv)]
        with m.If(a_go):
            m.d.sync += a_out.eq(a_out + 1)
            a_left.dec(m)
        with m.If(p_in):
            a_in.dec(m)
        with m.If(b_go):
            with m.If(wide):
                m.d.sync += [b_blk.eq(b_blk + 1), b_rem.eq(b_rem - G)]
                b_nblk.dec(m)
                with m.If(b_grp):
                    m.d.sync += [b_n.eq(b_n + wb_cnt), bhold.eq(rx_group)]
                    b_left.take(m)
            with m.Else():
                m.d.sync += b_n.eq(b_n + 1)
                b_left.dec(m)
        m.d.comb += [
            rq.r_en.eq(Mux(wide, g_pop, Mux(a_pipe, p_in, a_go))),
            pk_valid.eq(Mux(wide, g_go, (a_have & ~a_wr & pk_ready) | (b_go & b_fwd))),
            pk_data.eq(Mux(b_fwd, rx_data[:16], Mux(a_tx32, s_out, rq.r_data[:16]))),
            pk_gdata.eq(g.data),
            pk_gcnt.eq(g_cnt),
            pk_two.eq(~b_fwd & a_tx32),
            pk_last.eq(Mux(wide, g_last, Mux(b_fwd, b_lastel, a_lastel))),
            rx_take.eq(Mux(wide, b_go & b_grp, (p_in & a_comb) | b_go)),
            rx_lastel.eq(Mux(wide, b_lastg, Mux(b_en, b_lastel, a_in.one))),
            rx_need.eq((b_en & b_grp) | (a_en & a_comb & a_in.nz)),
        ]
        step_done = ((~a_en | ~a_more) & (~b_en | Mux(wide, ~b_nblk.nz, ~b_grp))
                     & pk_idle & ~pend & rev.done)

        # ---- step plan --------------------------------------------------------------------
        op = ins.op
        is_send, is_recv = op == Opcode.SEND, op == Opcode.RECV
        is_ag, is_ar = op == Opcode.ALLGATHER, op == Opcode.ALLREDUCE
        # The same decoded into registers every cycle: ``ins`` is loaded as CHECK starts, so
        # from SETUP on they equal the compares (setup() uses them; CHECK the compares).
        # The op's compare in front of SETUP's loads of the reverse flow's counters was the
        # unit's 11-LUT path on u280 (docs/rtl-clock.md "Session 22").
        r_send, r_recv = Signal(name="is_send_r"), Signal(name="is_recv_r")
        r_ag, r_ar = Signal(name="is_ag_r"), Signal(name="is_ar_r")
        m.d.sync += [r_send.eq(is_send), r_recv.eq(is_recv), r_ag.eq(is_ag), r_ar.eq(is_ar)]
        first_dev, last_dev = dev == 0, dev == ndev - 1
        # ALLGATHER's chunk indices (d - s) mod D and (d - s - 1) mod D of the step SETUP starts
        # next, in registers: d and (d - 1) mod D while IDLE, each stepped down by one (mod D)
        # in SETUP. Their products with count are registered every cycle, so SETUP only adds
        # them: a product is ready the cycle after its index (CHECK, or RUN's first cycle).
        # (Deriving the indices from the state and ``step + 1`` in front of the multiplier was
        # the block's critical path, docs/rtl-clock.md.)
        def down(c):                                 # (c - 1) mod D, c < D
            return Mux(c == 0, ndev - 1, c - 1)[:8]
        c_tx, c_rx = Signal(8, name="net_c_tx"), Signal(8, name="net_c_rx")
        tx_off, rx_off = Signal(_A, name="net_tx_off"), Signal(_A, name="net_rx_off")
        m.d.sync += [tx_off.eq(c_tx * ins.count), rx_off.eq(c_rx * ins.count)]
        # The second direction's chunks, (d + s) mod D sent and (d + s + 1) mod D received, the
        # same way: d and (d + 1) mod D while IDLE, stepped up by one in SETUP, products
        # registered. ``nrev`` = floor((D-1)/2): the steps that use both directions.
        def up(c):                                   # (c + 1) mod D, c < D
            return Mux(c == ndev - 1, 0, c + 1)[:8]
        c_tx2, c_rx2 = Signal(8, name="net_c_tx2"), Signal(8, name="net_c_rx2")
        tx2_off, rx2_off = Signal(_A, name="net_tx2_off"), Signal(_A, name="net_rx2_off")
        m.d.sync += [tx2_off.eq(c_tx2 * ins.count), rx2_off.eq(c_rx2 * ins.count)]
        nrev = Signal(8, name="nrev")

        # The reverse flow's start values, driven in every state (it reads them only on
        # ``start``), so that SETUP's decode gates only the load, not the values.
        m.d.comb += [rev.en.eq(step < nrev), rev.rd.eq(ins.sram + tx2_off),
                     rev.wa.eq(ins.sram + rx2_off), rev.count.eq(ins.count)]

        def setup():
            is_send, is_recv, is_ag, is_ar = r_send, r_recv, r_ag, r_ar
            s = ins.sram
            stmts = [a_iss.eq(0), a_out.eq(0), b_n.eq(0), b_blk.eq(0),
                     a_en.eq(0), a_comb.eq(0), a_tx32.eq(0), a_wr.eq(0), a_rd.eq(s), a_wa.eq(s),
                     b_en.eq(0), b_fwd.eq(0), b_wa.eq(s), tx_rev.eq(0), rx_rev.eq(0),
                     rx32.eq(0), hold_v.eq(0), wide.eq(~is_ar),
                     b_rem.eq(ins.count + (s[:lg] if lg else 0))]
            m.d.sync += stmts
            # (count > 0 here: an operand touches at least one block)
            n, nz = ins.count, ins.count != 0
            for c in (a_in, a_left, b_left):
                c.load(m, n)
            a_nrd.load(m, Mux(is_ar, n, _blocks(s, n, lg)), nz=nz)
            b_nblk.load(m, _blocks(s, n, lg), nz=nz)
            with m.If(is_send):
                m.d.sync += [a_en.eq(1), tx_rev.eq(ins.prev)]
            with m.Elif(is_recv):
                m.d.sync += [b_en.eq(1), rx_rev.eq(ins.prev)]
            with m.Elif(is_ag):
                m.d.sync += [c_tx.eq(down(c_tx)), c_rx.eq(down(c_rx)),
                             c_tx2.eq(up(c_tx2)), c_rx2.eq(up(c_rx2))]
                m.d.comb += rev.start.eq(1)
                b_start = (s + rx_off)[:_A]
                a_start = (s + tx_off)[:_A]
                m.d.sync += [a_en.eq(1), a_rd.eq(a_start), b_en.eq(1), b_wa.eq(b_start),
                             b_rem.eq(ins.count + (b_start[:lg] if lg else 0))]
                a_nrd.load(m, _blocks(a_start, n, lg), nz=nz)
                b_nblk.load(m, _blocks(b_start, n, lg), nz=nz)
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
                m.d.sync += [c_tx.eq(dev), c_rx.eq(down(dev)), c_tx2.eq(dev), c_rx2.eq(up(dev))]
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
                    m.d.sync += [nsteps.eq(Mux(is_ag, ndev >> 1, Mux(is_ar, 2, 1))),
                                 nrev.eq((ndev - 1) >> 1)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                setup()
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(step_done):
                    m.d.sync += [a_en.eq(0), b_en.eq(0), step.eq(step + 1)]
                    m.d.comb += rev.stop.eq(1)
                    with m.If(step + 1 == nsteps):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "SETUP"
        return m
