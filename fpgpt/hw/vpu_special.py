"""VPU special functions built from FP32 add/mul units and the contract's tables.

Each ``build_*`` follows the fixed operation sequence of ``fpgpt.isa.numerics`` step by step
(same operands, same order, same tables), so every intermediate rounding is the contract's and
the result is bit-exact. ``a - b`` is built as ``a + (-b)``, which IEEE defines to be identical.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed

from ..isa import numerics as nx
from . import fplogic
from .fpu import FPUnit

__all__ = ["build_recip", "build_rsqrt", "Recip", "Rsqrt", "SPECIAL_UNITS"]

_ONE = 0x3F800000
_HALF = 0x3F000000
_INF = 0x7F800000


def _const_f32(v) -> Const:
    return Const(int(nx.f32_bits(v)), 32)


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


class Recip(FPUnit):
    """1/x in FP32 as numerics.recip_f32."""
    in_width, out_width, arity = 32, 32, 1
    build = staticmethod(build_recip)


class Rsqrt(FPUnit):
    """1/sqrt(x) in FP32 as numerics.rsqrt_f32."""
    in_width, out_width, arity = 32, 32, 1
    build = staticmethod(build_rsqrt)


#: Special-function units by name, with their numerics reference.
SPECIAL_UNITS: dict[str, type[FPUnit]] = {"recip": Recip, "rsqrt": Rsqrt}
