"""The VPU's passes and one lane (fpgpt/hw/vpu.py has the VPU block, and its module docstring
describes the datapath): :class:`Mode` (one pass of one operation), the passes' chain latencies
in a lane (:func:`chain_latency`, :func:`mode_latency`) and the scalar phase's waits
(:func:`scalar_wait`), and :class:`VPULane`, a lane's FP32 chains, one per pass, each followed
by its latency in registers. Split out of fpgpt/hw/vpu.py, statement for statement."""

from __future__ import annotations

import enum

from amaranth.hdl import Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..geometry import VPU_CONVERT_LATENCY, VPU_GROUPED_REDUCING_PASSES
from ..isa import numerics as nx
from . import fplogic
from .vpu_special import _const_f32, _neg, build_exp, build_recip

__all__ = ["Mode", "OUTPUT_MODES", "SUMMING_MODES", "SPECIAL_MODES", "FIRST_MODE", "GROUPED_OPS",
           "mode_latency", "chain_latency", "scalar_wait", "sum_latencies", "VPULane"]

_ONE = 0x3F800000
_NEG_INF = 0xFF800000
_WRITEBACK_LATENCY = 1      # FP32 -> FP16 rounding register of output passes
_CONVERT_LATENCY = VPU_CONVERT_LATENCY   # FP16 -> FP32 result registers of LN_SUM and ARGMAX
_REDUCE_LATENCY = 1         # a reducing pass's lane result register (``ysum`` / ``ymax``)


class Mode(enum.IntEnum):
    """One pass of one operation (what the lanes compute and where the result goes)."""

    VADD = 0
    VMUL = 1
    GELU = 2
    VCOPY = 3
    LN_SUM = 4       # LAYERNORM pass 1: sum x
    LN_VAR = 5       # pass 2: sum (x - mean)^2
    LN_OUT = 6       # pass 3: ((x - mean) * inv) * gamma + beta
    SM_MAX = 7       # SOFTMAX pass 1: max of x * scale
    SM_SUM = 8       # pass 2: sum exp(x * scale - m)
    SM_OUT = 9       # pass 3: e * r, e = exp(x * scale - m) as pass 2 computed it
    ARGMAX = 10


#: Passes whose lane results go to the output stream (the others feed the accumulators).
OUTPUT_MODES = (Mode.VADD, Mode.VMUL, Mode.GELU, Mode.VCOPY, Mode.LN_OUT, Mode.SM_OUT)
#: Pass after each reducing pass (ARGMAX ends with its result beat).
_NEXT = {Mode.LN_SUM: Mode.LN_VAR, Mode.LN_VAR: Mode.LN_OUT, Mode.SM_MAX: Mode.SM_SUM,
         Mode.SM_SUM: Mode.SM_OUT}
#: First pass of each VPU opcode.
FIRST_MODE = {"VADD": Mode.VADD, "VMUL": Mode.VMUL, "GELU": Mode.GELU, "VCOPY": Mode.VCOPY,
              "LAYERNORM": Mode.LN_SUM, "SOFTMAX": Mode.SM_MAX, "ARGMAX": Mode.ARGMAX}
_BUFFERED = (Mode.LN_SUM, Mode.SM_MAX)          # pass 1 of a three-pass op fills the buffer
#: Passes that need the special functions (exp; GELU's reciprocal): only the first
#: ``vpu.special_lanes`` lanes have them, and these passes take each beat in
#: ``vpu.special_ratio`` sub-beats (geometry.VPU_SPECIAL_PASSES). SOFTMAX's output pass is not
#: one: it multiplies the exponentials its exp-sum pass computed, which the VPU keeps in its
#: exp buffer (fpgpt/hw/vpu.py), on every lane.
SPECIAL_MODES = (Mode.GELU, Mode.SM_SUM)
#: Passes whose lanes sum their results: one beat every ``vpu.acc_latency`` cycles.
SUMMING_MODES = (Mode.LN_SUM, Mode.LN_VAR, Mode.SM_SUM)
_FROM_BUFFER = (Mode.LN_VAR, Mode.LN_OUT, Mode.SM_SUM, Mode.SM_OUT)
#: Reducing passes of a group of rows: each row's lane results are captured at its end.
_ROW_REDUCING = (Mode.LN_SUM, Mode.LN_VAR, Mode.SM_MAX, Mode.SM_SUM)
#: The ops that take a group of rows per command (the others: one row).
GROUPED_OPS = tuple(VPU_GROUPED_REDUCING_PASSES)


def mode_latency(hw: HardwareConfig) -> dict[Mode, int]:
    """Cycles from a beat entering the lanes to its result at the tap (its FP units' latencies
    in series, plus the FP16 write-back register for output passes, plus the lane's result
    register for the reducing passes).

    Every pass has at least one register in the lane's chain: LN_SUM and ARGMAX, which only
    convert FP16 -> FP32, have one (``_CONVERT_LATENCY``). A reducing pass's result then goes
    through one more lane register (``_REDUCE_LATENCY``): ``ysum`` for the summing passes,
    ``ymax`` for the maxima, each loaded by its own select over the chains' ends, so that what
    the VPU's adder rings and compares read is a register's output and no path runs from the
    mode or the lane's chain selects into them in one cycle (docs/rtl-clock.md, "The VPU")."""
    return {md: lat + (_REDUCE_LATENCY if md not in OUTPUT_MODES else 0)
            for md, lat in chain_latency(hw).items()}


def chain_latency(hw: HardwareConfig) -> dict[Mode, int]:
    """The registers of each pass's chain in the lane (``mode_latency`` less the reducing
    passes' result register)."""
    v = hw.vpu
    a, mu, s, wb = v.add_latency, v.mul_latency, v.special_latency, _WRITEBACK_LATENCY
    cv, rc = _CONVERT_LATENCY, v.recip_stages
    return {
        Mode.VADD: a + wb, Mode.VMUL: mu + wb, Mode.VCOPY: wb,
        Mode.GELU: 5 * mu + 2 * a + s + rc + wb,       # v, w, u, k, g; w1, d; exp; recip
        Mode.LN_SUM: cv, Mode.LN_VAR: a + mu, Mode.LN_OUT: a + 2 * mu + a + wb,
        Mode.SM_MAX: mu, Mode.SM_SUM: mu + a + s, Mode.SM_OUT: mu + wb,
        Mode.ARGMAX: cv,
    }


def sum_latencies(hw: HardwareConfig) -> tuple[int, ...]:
    """The distinct chain lengths (:func:`chain_latency`) of the summing passes, ascending: the
    lane chains whose ends feed ``ysum`` (one bit of the lane's ``sum_sel`` each)."""
    lat = chain_latency(hw)
    return tuple(sorted({lat[md] for md in SUMMING_MODES}))


def scalar_wait(hw: HardwareConfig) -> dict[Mode, int]:
    """Cycles of the scalar phase after each reducing pass: the lane tree (``log2 W`` levels of
    ``add_latency``; comparators are charged the same), for the sums after each lane's fold of
    its ``acc_latency`` partials (``acc_latency - 1`` adders), and the row scalar's FP units."""
    v = hw.vpu
    tree = (v.width.bit_length() - 1) * v.add_latency
    fold = tree + (v.acc_latency - 1) * v.add_latency
    return {Mode.LN_SUM: fold + v.mul_latency,                                     # mean
            Mode.LN_VAR: fold + v.mul_latency + v.add_latency + v.recip_stages,  # inv
            Mode.SM_MAX: tree, Mode.SM_SUM: fold + v.recip_stages, Mode.ARGMAX: tree}


def _is(mode, *modes):
    out = Const(0, 1)
    for md in modes:
        out = out | (mode == int(md))
    return out


class VPULane(wiring.Component):
    """One lane: every pass's FP32 chain (sharing one exp unit), each pass's result delayed by
    the pass's chain latency (:func:`chain_latency`) in a plain chain of registers after its
    logic; a reducing pass's result then goes through one more register, ``ysum`` (the sums)
    or ``ymax`` (the maxima), so that its total is :func:`mode_latency`.

    Passes with the same chain latency share one chain (their results multiplexed by ``mode``
    in front of it). An output pass's result is rounded to FP16 before its chain (the write-back
    rounding: ``mode_latency`` counts its register), so every register follows the logic it
    may be retimed into (docs/rtl-clock.md, "VPU").

    Parameters
    ----------
    hw : HardwareConfig
        ``hw.vpu``'s add / mul / special latencies (the chains' lengths).

    Ports
    -----
    mode : In(4)
        A :class:`Mode`.
    advance : In(1)
        The chains shift when it is high (the VPU's stall).
    a, b, c : In(16)
        The element and its operands: VADD/VMUL ``b``; LAYERNORM ``b`` = gamma, ``c`` = beta.
    e : In(32)
        SOFTMAX's output pass: the element's ``exp(x * scale - m)`` (FP32) as its exp-sum pass
        computed it, from the VPU's exp buffer.
    scale, mmax, mean, inv, r : In(32)
        Row scalars (SOFTMAX scale and maximum, LAYERNORM mean and 1/sqrt(var+eps), 1/sum).
    y : Out(32)
        An output pass's result (the FP16 result in the low half; VCOPY: ``a`` unchanged) of the
        element that entered ``mode_latency(hw)[mode]`` advancing cycles earlier; 0 in the
        reducing passes.
    sum_sel : In(len(sum_latencies(hw)))
        One bit per summing chain length (:func:`sum_latencies`): which chain ``ysum`` loads
        (the summing pass's, and only in a lane whose beat counts).
    ysum : Out(32)
        A register: the summing passes' FP32 result for the VPU's adder, ``mode_latency``
        cycles after its element entered. Loaded (when ``advance``) with the end of each chain
        ``sum_sel`` selects, +0 where none is (one LUT6 a bit after the chains' last registers).
    ymax : Out(32)
        A register: the maxima's (SM_MAX, ARGMAX) FP32 result for the VPU's compares,
        ``mode_latency`` cycles after its element entered. Loaded (when ``advance``) with the
        end of the pass's chain, which ``mode`` selects.
    """

    def __init__(self, *, hw: HardwareConfig, special: bool = True):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        self._special = bool(special)
        self._lat = chain_latency(hw)
        self._sum_lats = sum_latencies(hw)
        super().__init__({"mode": In(4), "advance": In(1), "a": In(16), "b": In(16),
                          "c": In(16), "e": In(32), "scale": In(32), "mmax": In(32), "mean": In(32),
                          "inv": In(32), "r": In(32), "y": Out(32),
                          "sum_sel": In(len(self._sum_lats)), "ysum": Out(32),
                          "ymax": Out(32)})

    def elaborate(self, platform):
        m = Module()
        md = self.mode
        sm = _is(md, Mode.SM_MAX, Mode.SM_SUM, Mode.SM_OUT)
        a32 = fplogic.build_f16_to_f32(m, self.a, name="a32")
        b32 = fplogic.build_f16_to_f32(m, self.b, name="b32")
        c32 = fplogic.build_f16_to_f32(m, self.c, name="c32")
        # VMUL a*b; SOFTMAX y = x*scale; in a lane without the special functions also
        # SOFTMAX's output e*r (below).
        m1_a, m1_b = a32, Mux(sm, self.scale, b32)
        if not self._special:
            out = md == int(Mode.SM_OUT)
            m1_a, m1_b = Mux(out, self.e, m1_a), Mux(out, self.r, m1_b)
        m1 = fplogic.build_f32_mul(m, m1_a, m1_b, name="m1")
        # VADD a+b; LAYERNORM d = x - mean; SOFTMAX y - m.
        s1 = fplogic.build_f32_add(m, Mux(sm, m1, a32),
                                   Mux(md == int(Mode.VADD), b32,
                                       _neg(Mux(sm, self.mmax, self.mean))), name="s1")
        # d*d (LN pass 2), d*inv (LN pass 3).
        m2 = fplogic.build_f32_mul(m, s1, Mux(md == int(Mode.LN_VAR), s1, self.inv), name="m2")
        m3 = fplogic.build_f32_mul(m, m2, b32, name="m3")          # * gamma
        a3 = fplogic.build_f32_add(m, m3, c32, name="a3")          # + beta
        results = {Mode.VADD: s1, Mode.VMUL: m1, Mode.VCOPY: self.a,
                   Mode.LN_SUM: a32, Mode.LN_VAR: m2, Mode.LN_OUT: a3, Mode.SM_MAX: m1,
                   Mode.ARGMAX: a32}
        if self._special:
            # GELU prefix: k = ((x*x)*C + 1)*x*K (numerics.gelu_f32's order).
            gv = fplogic.build_f32_mul(m, a32, a32, name="g_v")
            gw = fplogic.build_f32_mul(m, gv, _const_f32(nx.GELU_C), name="g_w")
            gw1 = fplogic.build_f32_add(m, gw, Const(_ONE, 32), name="g_w1")
            gu = fplogic.build_f32_mul(m, a32, gw1, name="g_u")
            gk = fplogic.build_f32_mul(m, gu, _const_f32(nx.GELU_K), name="g_k")
            e = build_exp(m, Mux(md == int(Mode.GELU), gk, s1), name="exp")
            # GELU suffix: x * recip(exp + 1); x = -inf gives -0.
            gd = fplogic.build_f32_add(m, e, Const(_ONE, 32), name="g_d")
            gr = build_recip(m, gd, name="g_r")
            gg = fplogic.build_f32_mul(m, a32, gr, name="g_g")
            gelu = Mux(a32 == _NEG_INF, Const(0x80000000, 32), gg)
            results.update({Mode.GELU: gelu, Mode.SM_SUM: e})
        # e*r (SOFTMAX pass 3), e from the VPU's exp buffer (pass 2's exponentials): in a lane
        # with the special functions a multiplier of its own, so that nothing is added in
        # front of ``m1``, the head of the exp-sum's chain (the stitched VPU's slowest,
        # docs/rtl-clock.md); in the others ``m1``, whose chains (VMUL, SOFTMAX's maximum) are
        # short.
        results[Mode.SM_OUT] = (fplogic.build_f32_mul(m, self.e, self.r, name="m2s")
                                if self._special else m1)
        # (a lane without the special functions has no chain for their passes: the VPU masks
        # it off in them, so that its ``y`` and ``ysum`` are 0 there)
        # An output pass's result is rounded to FP16 (write-back) before its chain.
        for mode in OUTPUT_MODES:
            if mode != Mode.VCOPY and mode in results:
                results[mode] = fplogic.build_f32_to_f16(m, results[mode],
                                                         name=f"wb_{mode.name.lower()}")
        # One chain per distinct latency.
        ends: dict[Mode, Value] = {}
        chain_end: dict[int, Value] = {}
        for lat in sorted({self._lat[mode] for mode in results}):
            modes = [mode for mode in Mode if self._lat[mode] == lat and mode in results]
            head = Signal(32, name=f"p{lat}")
            with m.Switch(md):
                for mode in modes:
                    with m.Case(int(mode)):
                        m.d.comb += head.eq(results[mode])
                with m.Default():
                    m.d.comb += head.eq(0)
            value = head
            for k in range(lat):
                reg = Signal(32, name=f"p{lat}_d{k}")
                with m.If(self.advance):
                    m.d.sync += reg.eq(value)
                value = reg
            for mode in modes:
                ends[mode] = value
            chain_end[lat] = value
        # The output stream's value: the output passes' chains (the reducing passes' go to
        # ``ysum`` / ``ymax`` instead).
        with m.Switch(md):
            for mode, val in ends.items():
                if mode in OUTPUT_MODES:
                    with m.Case(int(mode)):
                        m.d.comb += self.y.eq(val)
            with m.Default():       # a reducing pass, or not a Mode
                m.d.comb += self.y.eq(0)
        # The adder rings' input: a register loaded with an AND-OR over the summing chains' ends
        # (one LUT6 a bit for three chains) gated by ``sum_sel``, so that the path into the
        # VPU's adders, which crosses the lane's boundary, starts at a register and holds the
        # adder alone (docs/rtl-clock.md, "The VPU").
        ysum = Const(0, 32)
        for i, lat in enumerate(self._sum_lats):
            if lat in chain_end:
                ysum = ysum | Mux(self.sum_sel[i], chain_end[lat], 0)
        ysum_r = Signal(32, name="ysum_r")
        # The compares' input: a register loaded with the maxima's chain end by its own select
        # on ``mode`` (SM_MAX or ARGMAX), so that no path runs from ``mode`` or the output
        # select through the VPU's compares in one cycle.
        ymax = chain_end[self._lat[Mode.ARGMAX]]
        if self._lat[Mode.SM_MAX] != self._lat[Mode.ARGMAX]:
            ymax = Mux(md == int(Mode.SM_MAX), chain_end[self._lat[Mode.SM_MAX]], ymax)
        ymax_r = Signal(32, name="ymax_r")
        with m.If(self.advance):
            m.d.sync += [ysum_r.eq(ysum), ymax_r.eq(ymax)]
        m.d.comb += [self.ysum.eq(ysum_r), self.ymax.eq(ymax_r)]
        return m
