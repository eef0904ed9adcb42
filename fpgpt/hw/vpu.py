"""The VPU: ``hw.vpu.width`` FP32 lanes over streams of FP16 vectors (docs/numerics.md, "VPU").

One command runs one row, or for LAYERNORM and SOFTMAX a *group* of ``rows`` rows of the same
length. Element-wise ops (VADD, VMUL, GELU, VCOPY) stream the row straight through the lanes;
LAYERNORM and SOFTMAX make three passes over the group, pass by pass (pass 1 streams every row
of the group, copying them into a local buffer; passes 2 and 3 read the buffer row after row);
ARGMAX makes one pass and returns an index. In a reducing pass each row's lane results are
captured at the row's end and go through the scalar phase, which reduces them with the
contract's pairwise tree and computes the row's scalars (mean, 1/sqrt(var + eps), maximum,
1/sum) into a per-row scalar memory that the next passes read beside the buffer, each beat
with its own row's scalars. The next pass starts once the group's last row's scalar is in: the
fill is paid once a group (``costs._vpu_fill``), and a row boundary costs one cycle in each
reducing pass (the accumulators' capture and reset).

Datapath per pass (all stages stall together when the output stream is not ready)::

    source (input stream, or the row buffer's read port) -> W x VPULane: the pass's FP32
        chain (combinational), then its latency in registers (the retiming depth of its FP
        units; an output pass's result is rounded to FP16 before them; a reducing pass's
        goes through one more lane register, ``ysum`` or ``ymax``)
        -> output stream | lane accumulators (1 beat/cycle; a sum in a ring of
           k = vpu.acc_latency registers holding k interleaved partial sums, the adder
           retimed over the ring)

Every pass's result has a register chain of its own, inside the lane and right after its
logic (each register driving only the next), so that synthesis retiming may spread the
registers through the logic (docs/rtl-clock.md); a valid / mask / last-of-row delay line beside
the lanes is tapped at the pass's latency. The scalar phase likewise: its results pass through
as many registers as the phase waits, a pipeline that a new row may enter every other cycle.

The summing passes (LAYERNORM's sum and variance, SOFTMAX's exp-sum) issue one beat a cycle
like the others: each lane's sum is an FP32 adder followed by a plain chain of ``k`` registers
whose last one feeds it back, so that retiming may spread the adder over ``k`` stages, and the
chain holds ``k`` interleaved partial sums (C-slow, as the MPU lane's accumulator): partial
``p`` takes the row's beats ``p, p+k, ...`` in order (``numerics.vsum``'s ``partials``). After a
row's last beat the ring drains, ``k`` turns adding +0 during which each partial passes the
last register and is captured; the scalar phase folds each lane's partials in order, then the
lane tree adds the lanes. A summing row thus costs its beats plus ``k`` cycles.

Special lanes (``vpu.special_ratio = r > 1``): only the first ``W/r`` lanes have the exp and
reciprocal units and GELU's chain (:class:`VPULane` ``special``), the costliest part of a lane
(u280: an exp 9,672 LUT, a reciprocal 3,033, five FP32 multipliers and two adders for GELU of a
lane's ~21 k). The passes that need them (``SPECIAL_MODES``: GELU and SOFTMAX's exp-sum)
issue each beat as ``r`` sub-beats of ``W/r`` elements on those lanes (``sub``; the
stream's beat is taken, and the buffer's address advances, with the last), the other lanes
masked off; an output pass collects the first ``r - 1`` sub-beats' results in ``hold`` and
sends the beat with the last. So these passes take ``r`` cycles a beat and the others one
(``costs.vpu_cycles``), and SOFTMAX's exp-sum is a sum over ``W/r`` lanes: lane ``j`` sees
elements ``j, j + W/r, ...`` (``numerics.softmax``'s ``sum_width``; the masked lanes' +0 sums
join the lane tree as a subtree of +0, which leaves the sum unchanged).

The exp buffer (``ebuf``): SOFTMAX's exp-sum pass writes each exponential it adds, FP32, beside
the row buffer (one entry a beat, one bank a sub-beat), and the output pass multiplies those
by the row's 1/sum on every lane at a beat a cycle: the contract's ``e * r`` with the very
``e`` the sum took (``numerics.softmax``), bit for bit what computing the exp again gave, in
one cycle a beat instead of ``r`` and with the exp's latency out of the pass's chain.

Bit-exactness: each lane applies the contract's FP32 operations in its order; lane ``j`` sees
elements ``j, j+W, ...`` of each row in order (a sum's partial ``p`` those of beats ``p, p+k,
...``); padded lanes of a row's short last beat add +0 /
are skipped (the contract pads sums with +0 and maxima with -inf).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from . import fplogic
from .decoder import INSTR_LAYOUTS, Opcode
from .shared import shared
from .vpu_lane import (_BUFFERED, _FROM_BUFFER, _NEG_INF, _NEXT, _ROW_REDUCING, FIRST_MODE,
                       OUTPUT_MODES, SPECIAL_MODES, SUMMING_MODES, Mode, VPULane, _is,
                       chain_latency, mode_latency, scalar_wait, sum_latencies)
from .vpu_special import build_recip, build_rsqrt, f32_gt

# (the passes, their latencies and the lane live in fpgpt/hw/vpu_lane.py; re-exported here)
__all__ = ["Mode", "OUTPUT_MODES", "SUMMING_MODES", "SPECIAL_MODES", "FIRST_MODE", "mode_latency",
           "chain_latency", "scalar_wait", "sum_latencies",
           "VPULane", "VPU", "check_vpu_args"]

def _uint_to_f32(m: Module, n, name: str) -> Signal:
    """Unsigned integer (< 2^24) to FP32, exact."""
    w = len(n)
    lz = fplogic.count_leading_zeros(m, n, f"{name}_lz")
    norm = Signal(w, name=f"{name}_norm")
    ef = Signal(8, name=f"{name}_ef")
    out = Signal(32, name=name)
    frac = Cat(Const(0, 23 - (w - 1)), norm[:w - 1]) if w - 1 <= 23 else norm[w - 24:w - 1]
    m.d.comb += [norm.eq((n << lz)[:w]), ef.eq(127 + w - 1 - lz),
                 out.eq(Mux(n == 0, 0, Cat(frac, ef, Const(0, 1))))]
    return out


def _tree(m: Module, values: list, combine, name: str) -> list:
    """The contract's pairwise tree: level 0 combines (0,1), (2,3), ..."""
    level, depth = list(values), 0
    while len(level) > 1:
        level = [combine(level[2 * j], level[2 * j + 1], f"{name}{depth}_{j}")
                 for j in range(len(level) // 2)]
        depth += 1
    return level[0]


def check_vpu_args(hw: HardwareConfig, max_cols: int) -> None:
    """The checks of :class:`VPU`'s parameters (shared with the engine that wraps it)."""
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    w = hw.vpu.width
    if not isinstance(max_cols, int) or max_cols < w or max_cols % w:
        raise ValueError(f"max_cols must be a positive multiple of vpu.width={w}, not "
                         f"{max_cols!r}")
    if max_cols > w * hw.vpu.buffer_beats:
        raise ValueError(f"max_cols must be at most vpu.width x vpu.buffer_beats = "
                         f"{w * hw.vpu.buffer_beats} (the row buffer), not {max_cols!r}")


class VPU(wiring.Component):
    """The vector unit: one row per command (LAYERNORM, SOFTMAX: a group of rows), FP16 vectors of
    ``hw.vpu.width`` per beat.

    Parameters
    ----------
    hw : HardwareConfig
        ``hw.vpu``: width (lanes), add/mul/special latencies (the pipeline depths),
        ``buffer_beats`` (the row buffer's and the per-row scalar memories' depth).
    max_cols : int
        Longest LAYERNORM / SOFTMAX row (a multiple of the width, at most ``width x
        buffer_beats``).

    Ports
    -----
    cmd : In(stream.Signature(CMD_LAYOUT))
        ``op`` (an ISA :class:`~fpgpt.hw.decoder.Opcode` of the VPU), ``cols`` (elements, >= 1;
        at most ``max_cols`` for LAYERNORM / SOFTMAX), ``scale`` (SOFTMAX), ``eps`` (LAYERNORM),
        ``rows`` (LAYERNORM / SOFTMAX: the group's rows, >= 1, ``rows * ceil(cols / W) <=
        buffer_beats``; the other ops run one row). Taken when the VPU is idle.
    i : In(stream.Signature(IN_LAYOUT))
        Per row, ``ceil(cols / W)`` beats of ``a`` (element ``k*W + j`` in lane ``j``), ``b``
        (VADD/VMUL second operand, LAYERNORM gamma) and ``c`` (LAYERNORM beta).
    o : Out(stream.Signature(16 * W))
        The result rows, in order, same beat layout (lanes past ``cols`` read 0); ARGMAX: one
        beat whose low 32 bits are the index.
    busy : Out(1)
    """

    def __init__(self, *, hw: HardwareConfig, max_cols: int = 1024):
        check_vpu_args(hw, max_cols)
        w = hw.vpu.width
        self._hw, self._max_cols = hw, max_cols
        cols_shape = INSTR_LAYOUTS["layernorm"].members["cols"]
        self.CMD_LAYOUT = data.StructLayout({"op": Opcode, "cols": cols_shape,
                                             "scale": unsigned(32), "eps": unsigned(32),
                                             "rows": range(hw.vpu.buffer_beats + 1),
                                             "cont": unsigned(1)})
        self.IN_LAYOUT = data.StructLayout({"a": unsigned(16 * w), "b": unsigned(16 * w),
                                            "c": unsigned(16 * w)})
        super().__init__({"cmd": In(stream.Signature(self.CMD_LAYOUT)),
                          "i": In(stream.Signature(self.IN_LAYOUT)),
                          "o": Out(stream.Signature(16 * w)), "busy": Out(1)})

    @property
    def width(self) -> int:
        return self._hw.vpu.width

    def elaborate(self, platform):
        m = Module()
        hw, w = self._hw, self._hw.vpu.width
        lat, waits = mode_latency(hw), scalar_wait(hw)
        sum_lats = sum_latencies(hw)
        depth = max(lat.values())
        lw = w.bit_length() - 1

        # ---------------------------------------------------------------- command registers
        mode = Signal(4)
        cols = Signal(len(self.cmd.payload.cols))
        scale, eps = Signal(32), Signal(32)
        nbuf = hw.vpu.buffer_beats
        nrows = Signal(range(nbuf + 1))          # rows of the group (1 but for LN / SM)
        issued = Signal(range(nbuf + 1))        # beats of the pass issued (the buffer address)
        retired = Signal(len(cols))             # beats taken at the tap (ARGMAX's index)
        # The row's elements from the beat issued next on (``cols`` at a row's first beat, less
        # ``W`` a beat): the beat's lane mask and whether it is the row's last are compares of
        # this register with constants, not of ``cols`` with the beat's index (an add, a
        # divide by ``W`` and an equality in front of the issue logic, the VPU block's
        # critical path on u280, docs/rtl-clock.md).
        rem = Signal(len(cols), name="rem")
        irow, rrow = Signal(range(nbuf + 1)), Signal(range(nbuf + 1))   # rows issued / taken
        ilast = Signal()                        # the beat issued next is its row's last
        m.d.comb += ilast.eq(rem <= w)
        wait = Signal(range(max(waits.values()) + 2))
        result = Signal(32)

        # ---------------------------------------------------------------- row buffer
        # (block RAM: its read and write ports share one address, which Yosys would otherwise
        # take for a single-port LUTRAM and fail to map at this depth)
        buf = m.submodules.buf = Memory(shape=self.IN_LAYOUT, depth=nbuf, init=[],
                                        attrs={"ram_style": "block"})
        wr = buf.write_port()
        rd = buf.read_port(domain="sync")
        # The group's row scalars, one entry a row: ``sc0`` pass 1's (LAYERNORM mean, SOFTMAX
        # maximum), ``sc1`` pass 2's (1/sqrt(var + eps), 1/sum). Read beside the row buffer, at
        # the issued beat's row, so that each beat enters the lanes with its row's scalars.
        sc0 = m.submodules.sc0 = Memory(shape=32, depth=nbuf, init=[])
        sc1 = m.submodules.sc1 = Memory(shape=32, depth=nbuf, init=[])
        sc0_wr, sc1_wr = sc0.write_port(), sc1.write_port()
        sc0_rd, sc1_rd = sc0.read_port(domain="sync"), sc1.read_port(domain="sync")
        # The exp buffer: SOFTMAX's exponentials, FP32, one entry a beat of the group as the
        # row buffer has them, written by the exp-sum pass as its lanes' ``ysum`` is taken
        # (``r`` sub-beats of ``sw`` lanes, one bank of ``sw`` words each) and read by the output
        # pass beside the row buffer, so that the output pass multiplies them by 1/sum on every
        # lane instead of computing each exp again on the special lanes.
        r = hw.vpu.special_ratio
        sw = w // r
        ebuf = m.submodules.ebuf = Memory(shape=unsigned(32 * w), depth=nbuf, init=[],
                                          attrs={"ram_style": "block"})
        e_wr = ebuf.write_port(granularity=32 * sw)
        e_rd = ebuf.read_port(domain="sync")

        # ---------------------------------------------------------------- source stage
        src = Signal(self.IN_LAYOUT)
        src_valid, src_mask, src_last = Signal(), Signal(w), Signal()
        src_from_buf = Signal()          # the source is the buffer's read port this pass
        tap_valid = Signal()
        tap_emit = Signal()     # the tap's beat goes out (with special lanes: below)
        # tap_valid & tap_emit, a register holding what they will be (below, beside the delay
        # line): the stall decision reads it instead of the mode's select over the delay line
        # (which, with ``special_latency`` 48, mapped to 12 LUT from ``mode`` into ``rem``,
        # docs/rtl-clock.md "Session 21")
        tap_ve = Signal(name="tap_ve")
        out_mode = _is(mode, *OUTPUT_MODES)
        advance = Signal()
        m.d.comb += advance.eq(~(out_mode & tap_ve & ~self.o.ready))
        streaming = Signal()
        flush = Signal()
        lane_active = Cat(rem > j for j in range(w))
        # Special lanes (module docstring): the passes that need the exp take each beat in
        # ``r`` sub-beats of ``sw`` elements, on lanes ``0 .. sw-1``; ``sub`` is the sub-beat
        # issued next, ``sub_last`` whether it is the beat's last (always, in the other passes).
        split = _is(mode, *SPECIAL_MODES) if r > 1 else Const(0, 1)
        sub = Signal(range(r), name="sub")
        sub_last = Signal()
        m.d.comb += sub_last.eq(~split | (sub == r - 1))
        issue_mask = Signal(w)
        if r > 1:
            m.d.comb += issue_mask.eq(Mux(split, lane_active.word_select(sub, sw), lane_active))
        else:
            m.d.comb += issue_mask.eq(lane_active)
        # A LAYERNORM / SOFTMAX reducing pass leaves cycles between a row's last beat and the
        # next row's first, while the row's accumulators are captured and reset: one for the
        # maxima, ``k`` for the sums (their rings drain, below). ``gap`` counts the cycles
        # until the next beat may issue.
        kacc = hw.vpu.acc_latency
        summing = _is(mode, *SUMMING_MODES)
        row_pass = _is(mode, *_ROW_REDUCING)
        gap = Signal(range(kacc + 1), name="gap")
        src_open = gap == 0
        feed_stream = streaming & ~src_from_buf & (irow < nrows) & src_open
        feed_buf = streaming & src_from_buf & (irow < nrows) & src_open
        m.d.comb += [
            self.i.ready.eq(feed_stream & advance & sub_last),
            wr.addr.eq(issued), wr.data.eq(self.i.payload),
            wr.en.eq(self.i.valid & self.i.ready & _is(mode, *_BUFFERED)),
            rd.addr.eq(issued), rd.en.eq(advance),
            e_rd.addr.eq(issued), e_rd.en.eq(advance),
            sc0_rd.addr.eq(irow), sc0_rd.en.eq(advance),
            sc1_rd.addr.eq(irow), sc1_rd.en.eq(advance),
        ]
        issue = advance & ((feed_stream & self.i.valid) | feed_buf)
        with m.If(advance):
            m.d.sync += src_valid.eq(0)
            with m.If(feed_stream & self.i.valid):
                m.d.sync += src.eq(self.i.payload)
        src_sub = Signal(range(r), name="src_sub")
        # the word of the beat that lanes 0 .. sw-1 take: the sub-beat in a split pass, else 0
        # (their own elements); a register, so that the pass's mode is not decoded in front
        # of the lanes' inputs (the stitched VPU's critical path, docs/rtl-clock.md)
        src_word = Signal(range(r), name="src_word")
        with m.If(issue):
            m.d.sync += [src_valid.eq(1), src_mask.eq(issue_mask), src_last.eq(ilast & sub_last),
                         src_sub.eq(sub), src_word.eq(Mux(split, sub, 0))]
            with m.If(sub_last):
                m.d.sync += [issued.eq(issued + 1), sub.eq(0)]
                with m.If(ilast):
                    m.d.sync += [rem.eq(cols), irow.eq(irow + 1)]
                with m.Else():
                    m.d.sync += rem.eq(rem - w)
            with m.Else():
                m.d.sync += sub.eq(sub + 1)
        with m.If(issue & row_pass & ilast & sub_last):
            m.d.sync += gap.eq(Mux(summing, kacc, 1))
        with m.Elif(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        with m.If(flush):
            m.d.sync += [src_valid.eq(0), gap.eq(0), sub.eq(0)]
        operands = Signal(self.IN_LAYOUT)
        m.d.comb += operands.eq(Mux(src_from_buf, rd.data, src))
        # In a split pass, lane j < sw takes element ``src_sub * sw + j`` of the beat (only the
        # ``a`` operand: the special passes read no other); in the others word 0 is its own.
        lane_a = Signal(16 * w, name="lane_a")
        if r > 1:
            m.d.comb += lane_a.eq(Cat(operands.a.word_select(src_word, 16 * sw),
                                      operands.a[16 * sw:]))
        else:
            m.d.comb += lane_a.eq(operands.a)

        # ---------------------------------------------------------------- lanes
        ys, lanes = [], []
        for j in range(w):
            lane = m.submodules[f"lane{j}"] = shared(VPULane, hw=hw, special=j < sw)
            lanes.append(lane)
            sl = slice(16 * j, 16 * j + 16)
            m.d.comb += [lane.mode.eq(mode), lane.advance.eq(advance),
                         lane.a.eq(lane_a[sl]), lane.b.eq(operands.b[sl]),
                         lane.c.eq(operands.c[sl]), lane.e.eq(e_rd.data[32 * j:32 * j + 32]),
                         lane.scale.eq(scale),
                         lane.mmax.eq(sc0_rd.data), lane.mean.eq(sc0_rd.data),
                         lane.inv.eq(sc1_rd.data), lane.r.eq(sc1_rd.data)]
            ys.append(lane.y)

        # ------------------------------------------- valid / mask delay line + tap
        # (the data's own chains are in the lanes, one per pass latency)
        # (and, with special lanes, whether the beat is its beat's last sub-beat)
        src_sl = Signal(name="src_sl")
        m.d.comb += src_sl.eq(src_sub == r - 1) if r > 1 else src_sl.eq(1)
        stages = [(src_valid, src_mask, src_last, src_sl)]
        for k in range(depth):
            pv, pm, pl, ps = stages[-1]
            sv, smk = Signal(name=f"dl{k}_v"), Signal(w, name=f"dl{k}_m")
            sl_ = Signal(name=f"dl{k}_l")
            ss = Signal(name=f"dl{k}_s") if r > 1 else ps
            with m.If(advance):
                m.d.sync += [sv.eq(pv), smk.eq(pm), sl_.eq(pl)]
                if r > 1:
                    m.d.sync += ss.eq(ps)
            with m.If(flush):
                m.d.sync += sv.eq(0)
            stages.append((sv, smk, sl_, ss))
        tap_mask, tap_data, tap_last, tap_sl = Signal(w), Signal(32 * w), Signal(), Signal()
        m.d.comb += tap_data.eq(Cat(*ys))
        with m.Switch(mode):
            for md, l in lat.items():
                with m.Case(int(md)):
                    m.d.comb += [tap_valid.eq(stages[l][0]), tap_mask.eq(stages[l][1]),
                                 tap_last.eq(stages[l][2]), tap_sl.eq(stages[l][3])]
            with m.Default():
                m.d.comb += tap_valid.eq(0)
        # A split pass's output beat leaves with its last sub-beat (the others wait in ``hold``).
        m.d.comb += tap_emit.eq(~split | tap_sl)
        # tap_ve's next value: the tap's stage after this cycle's shift (the one before it when
        # the line advances), 0 after a flush (the mode changes only with one, so the stage
        # index is the mode's own whenever a beat can be there)
        ve_next = Signal(name="tap_ve_next")

        def ve(k, special):
            v, _mk, _l, s_ = stages[k]
            return v & s_ if special else v
        with m.Switch(mode):
            for md, l in lat.items():
                sp = r > 1 and md in SPECIAL_MODES
                with m.Case(int(md)):
                    m.d.comb += ve_next.eq(Mux(advance, ve(l - 1, sp), ve(l, sp)))
        m.d.sync += tap_ve.eq(ve_next & ~flush)
        taken = tap_valid & advance
        # The summing passes' lane select (each lane's ``sum_sel``: the bit of the pass's chain,
        # set where the beat is valid and its lane mask is, so that ``ysum`` is +0 in a cycle
        # without a beat: the rings' drain turns add it), a register loaded with the mask of
        # the beat that the pass's chain end will hold after the next advance (the delay line's stage
        # ``chain_latency - 1``, two before the tap: the lane's ``ysum`` register lies between
        # the chain and the tap), so that the mode's tap select stays out of the accumulators'
        # loop (below) and ``ysum``'s input is one LUT after the chains. The mode holds through
        # a pass; in the cycle after it changes the delay line holds no valid beat (``flush``),
        # so ``sum_sel`` and ``ysum`` are right whenever a beat is taken.
        clat = chain_latency(hw)
        sum_sel = [Signal(len(sum_lats), name=f"sum_sel{j}") for j in range(w)]
        with m.If(advance):
            with m.Switch(mode):
                for md in SUMMING_MODES:
                    assert clat[md] >= 1 and lat[md] == clat[md] + 1, (md, lat[md], clat[md])
                    vk, mk = stages[clat[md] - 1][:2]
                    with m.Case(int(md)):
                        m.d.sync += [sum_sel[j].eq(Cat(*[mk[j] & vk if l == clat[md]
                                                         else Const(0, 1)
                                                         for l in sum_lats]))
                                     for j in range(w)]
        for j in range(w):
            m.d.comb += lanes[j].sum_sel.eq(sum_sel[j])

        # ---------------------------------------------------------------- output stream
        state_result = Signal()
        out16 = [Mux(tap_mask[j], tap_data[32 * j:32 * j + 16], 0) for j in range(w)]
        out_beat = Cat(*out16)
        if r > 1:
            # a split pass's first r - 1 sub-beats, in order (shifted in from the top)
            hold = Signal(16 * sw * (r - 1), name="hold")
            part = Cat(*out16[:sw])
            with m.If(streaming & split & taken & ~tap_sl):
                m.d.sync += hold.eq(Cat(hold[16 * sw:], part))
            out_beat = Mux(split, Cat(hold, part), out_beat)
        m.d.comb += [
            self.o.valid.eq((streaming & out_mode & tap_valid & tap_emit) | state_result),
            self.o.payload.eq(Mux(state_result, result, out_beat)),
        ]

        # ---------------------------------------------------------------- accumulators
        # Sums: per lane an adder followed by a ring of k = acc_latency registers, the last
        # (``sum{j}``) feeding the adder back, so that synthesis may retime the adder over the
        # k stages (docs/rtl-clock.md). The ring holds k interleaved partial sums (C-slow, as the
        # MPU lane's accumulator): it turns once for each beat taken, adding the beat to the sum
        # in its last register, so that partial ``p`` takes the beats ``p, p+k, p+2k, ...`` of
        # the row in order from +0 (numerics.vsum's ``partials``), one beat a cycle. After a
        # row's last beat the ring *drains*: k more turns, adding +0 (``ysum`` is +0 without a
        # beat: identity on a sum that starts at +0), while each partial passes the last
        # register and is captured into ``capsum{j}_{p}`` by its index (``pc``: turns since the
        # reset, mod k); the last drain turn resets the ring for the next row. The capture reads
        # the last register only, the adder's loop being the ring alone.
        # Maxima (SM_MAX, ARGMAX): a compare loop in ``acc{j}``, one beat per cycle.
        acc = [Signal(32, name=f"acc{j}") for j in range(w)]
        best = [Signal(len(cols), name=f"best{j}") for j in range(w)]
        has = [Signal(name=f"has{j}") for j in range(w)]
        reset_sum, reset_max = Signal(), Signal()
        take_sum = Signal()
        turn = Signal()                 # the rings turn this cycle
        drain = Signal(range(kacc + 1))     # drain turns left after a row's last beat
        pc = Signal(range(kacc))            # turns since the rings' reset, mod k
        m.d.comb += [take_sum.eq(streaming & taken & summing),
                     turn.eq(take_sum | (drain != 0))]
        with m.If(turn):
            m.d.sync += pc.eq(Mux(pc == kacc - 1, 0, pc + 1))
        with m.If(take_sum & tap_last):
            m.d.sync += drain.eq(kacc)
        with m.Elif(drain != 0):
            m.d.sync += drain.eq(drain - 1)
        with m.If(flush):
            m.d.sync += drain.eq(0)
        # The exp buffer's writes: each taken sub-beat of the exp-sum pass, its special lanes'
        # ``ysum`` (the exponentials the rings add; +0 in a masked lane) into its bank at the
        # beat's index. Beats reach the tap in the order they were issued, so a counter of the
        # taken sub-beats is the beat's buffer address (``issued`` when it was issued).
        e_addr = Signal(range(nbuf), name="e_addr")
        e_sub = Signal(range(r), name="e_sub")
        e_take = Signal()
        m.d.comb += [e_take.eq(take_sum & (mode == int(Mode.SM_SUM))),
                     e_wr.addr.eq(e_addr),
                     e_wr.data.eq(Cat(*[lanes[j].ysum for j in range(sw)] * r)),
                     e_wr.en.eq(Mux(e_take, 1 << e_sub, 0) if r > 1 else e_take)]
        with m.If(e_take):
            if r > 1:
                m.d.sync += e_sub.eq(Mux(e_sub == r - 1, 0, e_sub + 1))
                with m.If(e_sub == r - 1):
                    m.d.sync += e_addr.eq(e_addr + 1)
            else:
                m.d.sync += e_addr.eq(e_addr + 1)
        with m.If(flush):
            m.d.sync += [e_addr.eq(0), e_sub.eq(0)]
        # A group's row ends at the tap (its last beat taken). The maxima's row results are
        # captured into ``cap{j}`` in the next cycle (``row_pend``), the sums' over the drain
        # (its last turn: ``drain == 1``); the accumulators are reset then for the next row, in
        # the cycles the issue left free after the row (``gap`` above).
        row_pend, capture, cap_ev = Signal(), Signal(), Signal()
        sum_last = drain == 1
        m.d.comb += capture.eq(row_pend | sum_last)
        m.d.sync += cap_ev.eq(capture & ~flush)
        with m.If(streaming & taken & tap_last & row_pass & ~summing):
            m.d.sync += row_pend.eq(1)
        with m.Elif(capture | flush):
            m.d.sync += row_pend.eq(0)
        with m.If(sum_last):
            m.d.comb += reset_sum.eq(1)
        with m.If(row_pend):
            m.d.comb += reset_max.eq(1)
        with m.If(reset_sum):
            m.d.sync += pc.eq(0)
        cap = [Signal(32, name=f"cap{j}") for j in range(w)]
        capsum = [[Signal(32, name=f"capsum{j}_{p}") for p in range(kacc)] for j in range(w)]
        for j in range(w):
            ring = [Signal(32, name=f"sum{j}_r{i}") for i in range(kacc - 1)]
            ring.append(Signal(32, name=f"sum{j}"))
            # The beat's value (+0 in a lane past the row's end and in a drain turn): the lane's
            # ``ysum`` register, its summing chain's end gated by ``sum_sel``. ``take_sum``
            # stays out of the adder's path (it was 9 LUT levels in front of it, measured on
            # u280): it enables the ring's registers. So do the tap's mask select (5 LUT), the
            # lane's output select (4 LUT) and its ``sum_sel`` gate (1 LUT, now in front of
            # ``ysum``).
            summed = fplogic.build_f32_add(m, ring[-1], lanes[j].ysum, name=f"acc_add{j}")
            with m.If(turn):
                m.d.sync += [ring[0].eq(summed)] + [ring[i].eq(ring[i - 1])
                                                    for i in range(1, kacc)]
            with m.If(reset_sum):
                m.d.sync += [r.eq(0) for r in ring]
            with m.If(drain != 0):
                with m.Switch(pc):
                    for p in range(kacc):
                        with m.Case(p):
                            m.d.sync += capsum[j][p].eq(ring[-1])
            with m.If(row_pend):
                m.d.sync += cap[j].eq(acc[j])
            # The maxima read the lane's ``ymax`` register (its own select of the SM_MAX /
            # ARGMAX chain), so that ``mode`` and the lane's selects stay out of the compares.
            y = lanes[j].ymax
            nan = (y[23:31] == 255) & (y[:23] != 0)
            gt = f32_gt(y, acc[j])
            with m.If(streaming & taken):
                with m.Switch(mode):
                    with m.Case(int(Mode.SM_MAX)):
                        with m.If(tap_mask[j] & gt):
                            m.d.sync += acc[j].eq(y)
                    with m.Case(int(Mode.ARGMAX)):
                        with m.If(tap_mask[j] & ~nan & (~has[j] | gt)):
                            m.d.sync += [acc[j].eq(y), has[j].eq(1),
                                         best[j].eq((retired << lw) + j)]
                    with m.Default():
                        m.d.sync += acc[j].eq(acc[j])
            with m.If(reset_sum):
                m.d.sync += [acc[j].eq(0), has[j].eq(0)]
            with m.If(reset_max):
                m.d.sync += [acc[j].eq(_NEG_INF), has[j].eq(0)]

        # ---------------------------------------------------------------- scalar phase
        def add2(x, y, name):
            return fplogic.build_f32_add(m, x, y, name=name)

        # Each node of the max / argmax trees is a named Signal: a node's expression uses each
        # operand twice, so an unnamed tree is an expression DAG that Amaranth walks as a tree,
        # in time exponential in the depth (minutes at 8 lanes, hours at 64).
        def node(name, value):
            s = Signal(value.shape(), name=name)
            m.d.comb += s.eq(value)
            return s

        def max2(x, y, name):          # later wins only if strictly greater (NaN never wins)
            return node(name, Mux(f32_gt(y, x), y, x))

        def arg2(x, y, name):          # (has, value, index): lower index wins ties
            hx, vx, ix = x
            hy, vy, iy = y
            take = node(f"{name}_take",
                        hy & (~hx | f32_gt(vy, vx) | (~f32_gt(vx, vy) & (iy < ix))))
            return (node(f"{name}_has", hx | hy), node(f"{name}_val", Mux(take, vy, vx)),
                    node(f"{name}_idx", Mux(take, iy, ix)))

        # A lane's sum folds its partials in order, ((s0 + s1) + s2) ..., then the lane tree.
        lane_sums = []
        for j in range(w):
            t = capsum[j][0]
            for p in range(1, kacc):
                t = add2(t, capsum[j][p], f"tfold{j}_{p}")
            lane_sums.append(t)
        tsum = _tree(m, lane_sums, add2, "tsum")
        tmax = _tree(m, cap, max2, "tmax")
        # ARGMAX's tree is registered level by level (``log2 W`` of the ``waits[ARGMAX]``
        # registers its result goes through: taken at the same cycle). Combinational, its
        # ``has`` / index logic (19 LUT at 8 lanes) ended in the chain's first register's
        # synchronous reset: Yosys folds the index bits whose inputs are lane constants into
        # the R pin, where no retiming is credited (123.8 MHz retimed on tiny; docs/rtl-clock.md).
        # Registered, a path into any reset is one node.
        level = list(zip(has, acc, best))
        arg_regs = 0
        while len(level) > 1:
            nxt = []
            for j in range(len(level) // 2):
                hn, vn, xn = arg2(level[2 * j], level[2 * j + 1], f"targ{arg_regs}_{j}")
                hr = Signal(name=f"targ{arg_regs}_{j}_has_r")
                vr = Signal(32, name=f"targ{arg_regs}_{j}_val_r")
                xr = Signal(len(cols), name=f"targ{arg_regs}_{j}_idx_r")
                m.d.sync += [hr.eq(hn), xr.eq(xn)]
                if len(level) > 2:          # the root's value is not used
                    m.d.sync += vr.eq(vn)
                nxt.append((hr, vr, xr))
            level, arg_regs = nxt, arg_regs + 1
        thas, _, targ = level[0]
        rn = build_recip(m, _uint_to_f32(m, cols, "n32"), name="rn")   # once per instruction
        s_mean = fplogic.build_f32_mul(m, tsum, rn, name="s_mean")
        s_var = fplogic.build_f32_add(m, s_mean, eps, name="s_var")    # var + eps
        s_inv = build_rsqrt(m, s_var, name="s_inv")
        s_rcp = build_recip(m, tsum, name="s_rcp")
        # The scalar phase is a pipeline: each result goes through ``waits[mode]`` registers, a
        # plain chain after its logic that retiming may spread through it (docs/rtl-clock.md),
        # so a row's scalars come out ``waits[mode]`` cycles after its ``cap{j}`` (whatever the
        # next row puts there later; rows are captured at least two cycles apart, ``cols`` and
        # ``eps`` hold through the command). ARGMAX's inputs hold still from its pass's end.
        def settle(value, md, name, done=0):
            """``value`` (through ``done`` registers already) after ``waits[md]`` in all."""
            assert waits[md] >= done, (md, waits[md], done)    # add_latency >= 1
            out = node(f"{name}_s", value)
            for k in range(waits[md] - done):
                reg = Signal.like(out, name=f"{name}_s{k}")
                m.d.sync += reg.eq(out)
                out = reg
            return out

        s_mean = settle(s_mean, Mode.LN_SUM, "s_mean")
        s_inv = settle(s_inv, Mode.LN_VAR, "s_inv")
        s_rcp = settle(s_rcp, Mode.SM_SUM, "s_rcp")
        tmax = settle(tmax, Mode.SM_MAX, "tmax")
        # All NaN -> index 0, selected after the chains.
        s_arg = Mux(settle(thas, Mode.ARGMAX, "s_has", arg_regs),
                    settle(targ, Mode.ARGMAX, "s_arg", arg_regs), 0)
        # A row's scalar is written into ``sc0`` / ``sc1`` at its row's index when it comes out
        # of its chain: ``cap_ev`` (the row's ``cap{j}`` loaded) delayed by ``waits[mode]``
        # (cleared as a pass starts: the last row's comes out as the pass ends, and the events
        # of a shorter pass 1 must not reach pass 2's longer tap).
        cap_d = [cap_ev]
        for k in range(max(waits[md] for md in _ROW_REDUCING)):
            reg = Signal(name=f"cap_ev{k}")
            m.d.sync += reg.eq(cap_d[-1])
            with m.If(flush):
                m.d.sync += reg.eq(0)
            cap_d.append(reg)
        sc_we = Signal()
        with m.Switch(mode):
            for md in _ROW_REDUCING:
                with m.Case(int(md)):
                    m.d.comb += sc_we.eq(cap_d[waits[md]])
        wrow = Signal(range(nbuf), name="wrow")
        with m.If(sc_we):
            m.d.sync += wrow.eq(wrow + 1)
        with m.If(flush):
            m.d.sync += wrow.eq(0)
        m.d.comb += [
            sc0_wr.addr.eq(wrow), sc0_wr.data.eq(Mux(mode == int(Mode.LN_SUM), s_mean, tmax)),
            sc0_wr.en.eq(sc_we & _is(mode, Mode.LN_SUM, Mode.SM_MAX)),
            sc1_wr.addr.eq(wrow), sc1_wr.data.eq(Mux(mode == int(Mode.LN_VAR), s_inv, s_rcp)),
            sc1_wr.en.eq(sc_we & _is(mode, Mode.LN_VAR, Mode.SM_SUM)),
        ]

        # ---------------------------------------------------------------- control
        m.d.comb += self.busy.eq(~self.cmd.ready)
        # a pass's counters from 0
        restart = [issued.eq(0), retired.eq(0), rem.eq(cols), irow.eq(0), rrow.eq(0)]
        with m.If(streaming & taken):
            m.d.sync += retired.eq(retired + 1)
            with m.If(tap_last):
                m.d.sync += rrow.eq(rrow + 1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    grouped = (p.op == Opcode.LAYERNORM) | (p.op == Opcode.SOFTMAX)
                    m.d.sync += [cols.eq(p.cols), scale.eq(p.scale), eps.eq(p.eps),
                                 nrows.eq(Mux(grouped, p.rows, 1))]
                    m.d.sync += restart
                    m.d.sync += rem.eq(p.cols)          # (cols is loaded this cycle too)
                    m.d.comb += flush.eq(1)
                    # An ARGMAX with cont continues the previous one: its lanes' best (acc,
                    # has, best) and the beat count that indexes them (retired) carry on.
                    cont = (p.op == Opcode.ARGMAX) & p.cont
                    with m.If(cont):
                        m.d.sync += retired.eq(retired)
                    with m.Switch(p.op):
                        for name, md in FIRST_MODE.items():
                            with m.Case(Opcode[name]):
                                m.d.sync += [mode.eq(int(md)),
                                             src_from_buf.eq(md in _FROM_BUFFER)]
                                reset = reset_max if md == Mode.SM_MAX else reset_sum
                                m.d.comb += reset.eq(~cont if md == Mode.ARGMAX else 1)
                        with m.Default():       # not a VPU opcode: runs as VCOPY
                            m.d.sync += [mode.eq(int(Mode.VCOPY)), src_from_buf.eq(0)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += streaming.eq(1)
                # (a summing pass ends with its last row's last drain turn)
                with m.If((rrow == nrows) & (~summing | sum_last)):
                    with m.If(out_mode):
                        m.next = "IDLE"
                    with m.Else():
                        with m.Switch(mode):
                            for md, cyc in waits.items():
                                with m.Case(int(md)):
                                    m.d.sync += wait.eq(cyc)
                            with m.Default():
                                m.d.sync += wait.eq(0)
                        m.next = "SCALAR"
            with m.State("SCALAR"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    # (the group's last row's scalar is written into sc0 / sc1 this cycle)
                    with m.If(mode == int(Mode.ARGMAX)):
                        m.d.sync += result.eq(s_arg)
                    with m.If(mode == int(Mode.ARGMAX)):
                        m.next = "RESULT"
                    with m.Else():
                        with m.Switch(mode):
                            for md, nxt in _NEXT.items():
                                with m.Case(int(md)):
                                    m.d.sync += [mode.eq(int(nxt)), src_from_buf.eq(1)]
                                    m.d.sync += restart
                                    m.d.comb += (reset_max if nxt == Mode.SM_MAX
                                                 else reset_sum).eq(1)
                            with m.Default():
                                m.d.sync += mode.eq(mode)
                        m.d.comb += flush.eq(1)
                        m.next = "STREAM"
            with m.State("RESULT"):
                m.d.comb += state_result.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
