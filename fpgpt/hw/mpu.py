"""One MPU lane: a ``width``-input FP16 dot-product pipeline with FP32 accumulation.

Contract (docs/numerics.md, ``numerics.mpu_dot``): products exact in FP32; a pairwise FP32 adder
tree whose level 0 adds products (0,1), (2,3), ...; the chunk sums accumulated in order into an
FP32 accumulator that starts at +0.0; an optional FP32 bias add; RNE rounding to FP16.

Every FP32 add is :func:`fplogic.build_f32_add_mpu`: the lane's values are multiples of 2**-48
far below FP32's overflow, so the adder needs no subnormal or overflow logic and does both
shifts in DSP48E2 (docs/rtl-mpu-adder.md).
Every product is :func:`fplogic.build_f16_mul_f32_mpu`: exact like the general multiplier,
with its normalising shift in a second DSP48E2 (docs/rtl-mpu-adder.md).

Pipeline (docs/rtl.md)::

    a,b ─► width x F16MulF32MPU (mul_latency) ─► log2(width) levels of F32AddMPU (add_latency
        each) ─► accumulator: one F32AddMPU + a ring of D = acc_latency registers
        ─► on ``last``, D cycles later: bias F32AddMPU + F32ToF16 (add_latency + 1 registers)

The accumulator is C-slow: its adder is combinational and followed by a plain chain of ``D``
registers whose last one feeds the adder back (through the ``first`` Mux), so synthesis may
retime the adder over the ``D`` stages, and ``D`` dot products are in flight, each in its own
*slot* (the cycle modulo ``D`` at which its chunks enter). A dot product's chunk ``kc >= 1``
must enter exactly a multiple of ``D`` cycles after its chunk ``kc - 1`` (the partial sum then
leaves the ring as the chunk's tree sum arrives); when no chunk is taken the ring keeps its
values (they go round, plus +0). A chunk marked ``first`` starts from +0.0 whatever its slot holds.
Interleaving changes no dot product's order of additions, so the contract holds.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from . import fplogic
from .fpu import delay

__all__ = ["MPULane"]

_WRITEBACK_LATENCY = 1   # the FP32 -> FP16 rounding stage


class MPULane(wiring.Component):
    """One lane of the MPU for ``hw.mpu.width`` products per cycle.

    Ports
    -----
    a, b : In(16 * width)
        A chunk of the two FP16 vectors, element ``i`` at bits ``[16*i, 16*i+16)``. Pad a short
        last chunk with +0.0 (the contract pads with +0 products).
    valid : In(1)
        The chunk is taken this cycle. A dot product's chunks after its first enter a multiple
        of ``hw.mpu.acc_latency`` cycles after its previous chunk (module docstring).
    first, last : In(1)
        The chunk starts / ends a dot product (both for a single-chunk one).
    bias : In(16), has_bias : In(1)
        Sampled with the ``last`` chunk.
    acc : Out(32), y : Out(16), y_valid : Out(1)
        The FP32 accumulator after the bias and its FP16 rounding, ``latency`` cycles after the
        ``last`` chunk was taken; ``y_valid`` marks that cycle.
    """

    def __init__(self, *, hw: HardwareConfig):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        self._hw = hw
        w = hw.mpu.width
        super().__init__({
            "a": In(16 * w), "b": In(16 * w), "valid": In(1), "first": In(1), "last": In(1),
            "bias": In(16), "has_bias": In(1),
            "acc": Out(32), "y": Out(16), "y_valid": Out(1),
        })

    @property
    def width(self) -> int:
        return self._hw.mpu.width

    @property
    def chunk_latency(self) -> int:
        """Cycles from a chunk's inputs to its tree sum entering the accumulator."""
        mpu = self._hw.mpu
        return mpu.mul_latency + mpu.tree_levels * mpu.add_latency

    @property
    def latency(self) -> int:
        """Cycles from the ``last`` chunk's inputs to ``y_valid``."""
        mpu = self._hw.mpu
        return self.chunk_latency + mpu.acc_latency + mpu.add_latency + _WRITEBACK_LATENCY

    @property
    def slots(self) -> int:
        """Dot products in flight in the accumulator (``D``): the lane takes a chunk every
        cycle when ``D`` dot products are interleaved."""
        return self._hw.mpu.acc_latency

    def elaborate(self, platform):
        m = Module()
        mpu = self._hw.mpu
        w = mpu.width

        # Products, exact in FP32.
        level = []
        for i in range(w):
            p = fplogic.build_f16_mul_f32_mpu(m, self.a[16 * i:16 * i + 16],
                                              self.b[16 * i:16 * i + 16], name=f"mul{i}")
            level.append(delay(m, p, mpu.mul_latency, f"mul{i}"))
        # Pairwise tree: level 0 adds (0,1), (2,3), ... as numerics._tree does.
        for depth in range(mpu.tree_levels):
            level = [delay(m, fplogic.build_f32_add_mpu(m, level[2 * j], level[2 * j + 1],
                                                        name=f"t{depth}_{j}"),
                           mpu.add_latency, f"t{depth}_{j}")
                     for j in range(len(level) // 2)]
        chunk_sum = level[0]

        # Control and bias travel beside the data.
        ctl = Cat(self.valid, self.first, self.last, self.has_bias, self.bias)
        ctl_d = delay(m, ctl, self.chunk_latency, "ctl")
        c_valid, c_first, c_last, c_has_bias, c_bias = ctl_d[0], ctl_d[1], ctl_d[2], ctl_d[3], ctl_d[4:20]

        # C-slow accumulation from +0.0: the adder, then a plain chain of D registers (the
        # ring) whose last one closes the loop, so the adder retimes over D stages. A first
        # chunk adds to +0, never replaces it (so a -0 chunk sum becomes +0, as in the
        # contract). A cycle without a chunk adds +0 to the ring's value, which leaves it
        # unchanged (a partial sum is never -0: it starts at +0 and x + (-x) is +0), so the
        # loop holds one LUT level (the Mux) besides the adder; the gating of the chunk sum
        # sits outside it.
        D = mpu.acc_latency
        acc_tail = Signal(32)
        addend = Signal(32)
        m.d.comb += addend.eq(Mux(c_valid, chunk_sum, 0))
        acc_in = Mux(c_first & c_valid, Const(0, 32), acc_tail)
        acc_next = fplogic.build_f32_add_mpu(m, acc_in, addend, name="acc_add")
        m.d.comb += acc_tail.eq(delay(m, acc_next, D, "acc"))
        # A dot product's sum leaves the ring D cycles after its last chunk: its control
        # travels beside it.
        done_ctl = delay(m, Cat(c_valid & c_last, c_has_bias, c_bias), D, "acc_ctl")
        done, done_has_bias, done_bias = done_ctl[0], done_ctl[1], done_ctl[2:18]
        acc = acc_tail

        # Bias (one more FP32 add) and write-back rounding.
        bias32 = fplogic.build_f16_to_f32(m, done_bias, name="bias32")
        biased = fplogic.build_f32_add_mpu(m, acc, bias32, name="bias_add")
        # The rounding sits before the bias adder's registers, so that synthesis retimes the
        # add, the Mux and the rounding together over add_latency + 1 stages (the rounding
        # behind its own single register was the lane's slowest stage, 5.9 ns).
        total = Signal(32)
        m.d.comb += total.eq(Mux(done_has_bias, biased, acc))
        y16 = fplogic.build_f32_to_f16(m, total, name="wb")
        out = mpu.add_latency + _WRITEBACK_LATENCY
        m.d.comb += [
            self.acc.eq(delay(m, total, out, "acc_out")),
            self.y.eq(delay(m, y16, out, "y_out")),
            self.y_valid.eq(delay(m, done, out, "y_valid")),
        ]
        return m
