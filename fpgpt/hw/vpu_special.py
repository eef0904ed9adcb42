"""VPU special functions built from FP32 add/mul units and the contract's tables.

Each ``build_*`` follows the fixed operation sequence of ``fpgpt.isa.numerics`` step by step
(same operands, same order, same tables), so every intermediate rounding is the contract's and
the result is bit-exact. ``a - b`` is built as ``a + (-b)``, which IEEE defines to be identical.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed

from ..isa import numerics as nx
from . import fplogic
from .fpu import FPUnit

__all__ = ["build_recip", "build_rsqrt", "build_exp", "build_gelu", "build_gelu16", "f32_gt",
           "Recip", "Rsqrt", "Exp", "Gelu", "Gelu16", "SPECIAL_UNITS", "EXP_GELU_UNITS"]

_ONE = 0x3F800000
_HALF = 0x3F000000
_INF = 0x7F800000


def _const_f32(v) -> Const:
    return Const(int(np.asarray(v, np.float32).reshape(()).view(np.uint32)), 32)


def _neg(x: Value) -> Value:
    return Cat(x[:31], ~x[31])


def _rom(m: Module, table, index: Value, name: str) -> Signal:
    out = Signal(32, name=name)
    m.d.comb += out.eq(Array(Const(int(b), 32) for b in nx.f32_bits(table))[index])
    return out


def _scale_pow2(m: Module, y: Value, e: Value, name: str) -> Signal:
    """numerics._scale_pow2: add ``e`` to y's exponent field; <= 0 flushes to ±0, >= 255 is ±inf."""
    expo = Signal(signed(12), name=f"{name}_expo")
    out = Signal(32, name=name)
    m.d.comb += [
        expo.eq(y[23:31] + e),
        out.eq(Mux(expo >= 255, Cat(Const(_INF, 31), y[31]),
                   Mux(expo <= 0, Cat(Const(0, 31), y[31]), Cat(y[:23], expo[:8], y[31])))),
    ]
    return out


def _newton_recip(m: Module, mant: Value, y: Value, step: int) -> Value:
    # d = 1 - m*y ; y = y + y*d
    t = fplogic.build_f32_mul(m, mant, y, name=f"rc{step}_my")
    d = fplogic.build_f32_add(m, Const(_ONE, 32), _neg(t), name=f"rc{step}_d")
    yd = fplogic.build_f32_mul(m, y, d, name=f"rc{step}_yd")
    return fplogic.build_f32_add(m, y, yd, name=f"rc{step}_y")


def build_recip(m: Module, x: Value, name: str = "recip") -> Signal:
    """numerics.recip_f32: table seed, NEWTON_STEPS Newton steps, exponent scaling, specials."""
    sign, expf, frac = x[31], x[23:31], x[:23]
    e = Signal(signed(10), name=f"{name}_e")
    m.d.comb += e.eq(expf - 127)
    mant = Cat(frac, Const(0x7F, 8), Const(0, 1))        # 1.frac as an FP32 in [1, 2)
    y = _rom(m, nx.RECIP_TABLE, frac[23 - nx.RECIP_TABLE_BITS:], f"{name}_seed")
    for step in range(nx.NEWTON_STEPS):
        y = _newton_recip(m, mant, y, step)
    scaled = _scale_pow2(m, y, -e, f"{name}_scaled")
    finite = Cat(scaled[:31], scaled[31] | sign)
    out = Signal(32, name=name)
    is_nan = (expf == 255) & (frac != 0)
    is_inf = (expf == 255) & (frac == 0)
    m.d.comb += out.eq(Mux(is_nan, Const(fplogic.F32_QNAN, 32),
                           Mux(is_inf, Cat(Const(0, 31), sign),
                               Mux(expf == 0, Cat(Const(_INF, 31), sign), finite))))
    return out


def build_rsqrt(m: Module, x: Value, name: str = "rsqrt") -> Signal:
    """numerics.rsqrt_f32: seed on exponent parity and top mantissa bits, Newton steps."""
    sign, expf, frac = x[31], x[23:31], x[:23]
    e = Signal(signed(10), name=f"{name}_e")
    m.d.comb += e.eq(expf - 127)
    odd = e[0]
    # m2 = 2^odd * m: doubling 1.frac only raises its exponent (exact, as numerics' multiply).
    m2 = Cat(frac, Mux(odd, Const(0x80, 8), Const(0x7F, 8)), Const(0, 1))
    y = _rom(m, nx.RSQRT_TABLE, Cat(frac[23 - nx.RSQRT_TABLE_BITS:], odd), f"{name}_seed")
    for step in range(nx.NEWTON_STEPS):
        # d = 1 - (y*y)*m2 ; y = y + y*(d*0.5)
        yy = fplogic.build_f32_mul(m, y, y, name=f"rs{step}_yy")
        t = fplogic.build_f32_mul(m, yy, m2, name=f"rs{step}_t")
        d = fplogic.build_f32_add(m, Const(_ONE, 32), _neg(t), name=f"rs{step}_d")
        dh = fplogic.build_f32_mul(m, d, Const(_HALF, 32), name=f"rs{step}_dh")
        ydh = fplogic.build_f32_mul(m, y, dh, name=f"rs{step}_ydh")
        y = fplogic.build_f32_add(m, y, ydh, name=f"rs{step}_y")
    half_e = Signal(signed(10), name=f"{name}_half_e")
    m.d.comb += half_e.eq((e - odd) >> 1)
    scaled = _scale_pow2(m, y, -half_e, f"{name}_scaled")
    out = Signal(32, name=name)
    tiny = expf == 0
    is_nan = (expf == 255) & (frac != 0)
    m.d.comb += out.eq(Mux(is_nan | (sign & ~tiny), Const(fplogic.F32_QNAN, 32),
                           Mux(tiny, Cat(Const(_INF, 31), sign),
                               Mux(expf == 255, Const(0, 32), scaled))))
    return out


def f32_gt(a: Value, b: Value) -> Value:
    """IEEE ``a > b`` on FP32 bit patterns: false if either is NaN; -0 and +0 are equal."""
    a_nan = (a[23:31] == 255) & (a[:23] != 0)
    b_nan = (b[23:31] == 255) & (b[:23] != 0)
    both_zero = (a[:31] == 0) & (b[:31] == 0)
    # Sign-magnitude order: positive a beats negative b; same sign compares magnitudes.
    gt = Mux(a[31] != b[31], ~a[31],
             Mux(a[31], a[:31] < b[:31], a[:31] > b[:31]))
    return gt & ~a_nan & ~b_nan & ~both_zero


def _rint_f32(m: Module, t: Value, name: str) -> tuple[Signal, Signal]:
    """``numpy.rint`` of an FP32 value with |t| < 256: ``(n, n_f32)``, RNE to an integer.

    ``n`` is a signed integer; ``n_f32`` is the same value as FP32 with t's sign (rint keeps the
    sign of zero, -0.3 -> -0.0, and the sign of a zero reaches r through ``xc - n*C1``).
    """
    sign, expf = t[31], t[23:31]
    sig = Cat(t[:23], expf != 0)
    # |t| = sig * 2^(expf - 150); the integer part is sig >> (150 - expf). 150 - expf >= 25
    # means |t| < 0.5 (rounds to 0), so the shift saturates there.
    shift = Signal(range(26), name=f"{name}_sh")
    m.d.comb += shift.eq(Mux(expf < 125, 25, 150 - expf))
    ext = Signal(49, name=f"{name}_ext")
    m.d.comb += ext.eq(Cat(Const(0, 25), sig) >> shift)
    ipart, guard, sticky = ext[25:34], ext[24], ext[:24] != 0
    mag = Signal(9, name=f"{name}_mag")
    m.d.comb += mag.eq(ipart + (guard & (sticky | ipart[0])))
    n = Signal(signed(10), name=name)
    m.d.comb += n.eq(Mux(sign, -mag, mag))
    # Integer -> FP32, exact (|n| <= 256): normalise the magnitude.
    lz = fplogic.count_leading_zeros(m, mag, f"{name}_lz")
    norm = Signal(9, name=f"{name}_norm")
    m.d.comb += norm.eq((mag << lz)[:9])
    efield = Signal(8, name=f"{name}_ef")
    n_f32 = Signal(32, name=f"{name}_f32")
    m.d.comb += [
        efield.eq((127 + 8) - lz),
        n_f32.eq(Mux(mag == 0, Cat(Const(0, 31), sign), Cat(Const(0, 15), norm[:8], efield, sign))),
    ]
    return n, n_f32


def build_exp(m: Module, x: Value, name: str = "exp") -> Signal:
    """numerics.exp_f32: clamp, Cody-Waite reduction, Cephes polynomial, exponent insertion."""
    lo, hi = _const_f32(nx.EXP_CLAMP_LO), _const_f32(nx.EXP_CLAMP_HI)
    # np.maximum / np.minimum: x below -104 (incl. -inf) -> -104, above 89 -> 89; a NaN x is
    # replaced at the end, so what the clamp does with it does not matter.
    xc = Signal(32, name=f"{name}_xc")
    m.d.comb += xc.eq(Mux(f32_gt(lo, x), lo, Mux(f32_gt(x, hi), hi, x)))
    t = fplogic.build_f32_mul(m, xc, _const_f32(nx.EXP_LOG2E), name=f"{name}_t")
    n, n_f32 = _rint_f32(m, t, f"{name}_n")
    nc1 = fplogic.build_f32_mul(m, n_f32, _const_f32(nx.EXP_C1), name=f"{name}_nc1")
    nc2 = fplogic.build_f32_mul(m, n_f32, _const_f32(nx.EXP_C2), name=f"{name}_nc2")
    r1 = fplogic.build_f32_add(m, xc, _neg(nc1), name=f"{name}_r1")
    r = fplogic.build_f32_add(m, r1, _neg(nc2), name=f"{name}_r")
    z = fplogic.build_f32_mul(m, r, r, name=f"{name}_z")
    p: Value = _const_f32(nx.EXP_POLY[0])
    for i, c in enumerate(nx.EXP_POLY[1:], start=1):
        pr = fplogic.build_f32_mul(m, p, r, name=f"{name}_p{i}m")
        p = fplogic.build_f32_add(m, pr, _const_f32(c), name=f"{name}_p{i}")
    pz = fplogic.build_f32_mul(m, p, z, name=f"{name}_pz")
    y1 = fplogic.build_f32_add(m, pz, r, name=f"{name}_y1")
    y = fplogic.build_f32_add(m, y1, Const(_ONE, 32), name=f"{name}_y")
    scaled = _scale_pow2(m, y, n, f"{name}_scaled")
    out = Signal(32, name=name)
    is_nan = (x[23:31] == 255) & (x[:23] != 0)
    m.d.comb += out.eq(Mux(is_nan, Const(fplogic.F32_QNAN, 32), scaled))
    return out


def build_gelu(m: Module, x: Value, name: str = "gelu") -> Signal:
    """numerics.gelu_f32: v=x*x; w=v*C; w1=w+1; u=x*w1; k=u*K; t=exp(k); d=t+1; r=recip(d);
    g=x*r; x = -inf gives -0."""
    v = fplogic.build_f32_mul(m, x, x, name=f"{name}_v")
    w = fplogic.build_f32_mul(m, v, _const_f32(nx.GELU_C), name=f"{name}_w")
    w1 = fplogic.build_f32_add(m, w, Const(_ONE, 32), name=f"{name}_w1")
    u = fplogic.build_f32_mul(m, x, w1, name=f"{name}_u")
    k = fplogic.build_f32_mul(m, u, _const_f32(nx.GELU_K), name=f"{name}_k")
    t = build_exp(m, k, name=f"{name}_exp")
    d = fplogic.build_f32_add(m, t, Const(_ONE, 32), name=f"{name}_d")
    r = build_recip(m, d, name=f"{name}_recip")
    g = fplogic.build_f32_mul(m, x, r, name=f"{name}_g")
    out = Signal(32, name=name)
    m.d.comb += out.eq(Mux(x == 0xFF800000, Const(0x80000000, 32), g))
    return out


def build_gelu16(m: Module, x: Value, name: str = "gelu16") -> Signal:
    """The GELU instruction on one element: ``f16(gelu_f32(f32(x)))``, FP16 in and out."""
    x32 = fplogic.build_f16_to_f32(m, x, name=f"{name}_in")
    g = build_gelu(m, x32, name=f"{name}_g")
    return fplogic.build_f32_to_f16(m, g, name=f"{name}_out")


class Recip(FPUnit):
    """1/x in FP32 as numerics.recip_f32."""
    in_width, out_width, arity = 32, 32, 1
    build = staticmethod(build_recip)


class Rsqrt(FPUnit):
    """1/sqrt(x) in FP32 as numerics.rsqrt_f32."""
    in_width, out_width, arity = 32, 32, 1
    build = staticmethod(build_rsqrt)


class Exp(FPUnit):
    """e^x in FP32 as numerics.exp_f32."""
    in_width, out_width, arity = 32, 32, 1
    build = staticmethod(build_exp)


class Gelu(FPUnit):
    """GPT-2's GELU in FP32 as numerics.gelu_f32."""
    in_width, out_width, arity = 32, 32, 1
    build = staticmethod(build_gelu)


class Gelu16(FPUnit):
    """The GELU instruction on one FP16 element, as numerics.gelu."""
    in_width, out_width, arity = 16, 16, 1
    build = staticmethod(build_gelu16)


#: Special-function units by name, with their numerics reference.
SPECIAL_UNITS: dict[str, type[FPUnit]] = {"recip": Recip, "rsqrt": Rsqrt}

#: The exp and GELU units by name (benched by tests/rtl/cocotb_vpu_special.py).
EXP_GELU_UNITS: dict[str, type[FPUnit]] = {"exp": Exp, "gelu": Gelu, "gelu16": Gelu16}
