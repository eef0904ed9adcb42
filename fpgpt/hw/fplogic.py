"""Combinational IEEE-754 arithmetic as Amaranth expressions (docs/numerics.md, docs/rtl.md).

Each ``build_*`` function adds the logic of one operation to a module's ``comb`` domain and
returns the result value. Rounding is IEEE round-to-nearest-even with subnormal inputs and
outputs; every NaN result is the canonical quiet NaN of its format (:data:`F32_QNAN`,
:data:`F16_QNAN`), whatever the input NaN's payload, so that results compare bit for bit.
The components in :mod:`fpgpt.hw.fpu` wrap these with pipeline registers.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned

__all__ = ["FPFormat", "FP16", "FP32", "F32_QNAN", "F16_QNAN", "count_leading_zeros",
           "round_pack", "build_f32_add", "build_f32_mul", "build_f16_mul_f32",
           "build_f16_to_f32", "build_f32_to_f16", "count_leading_zeros_tree",
           "build_f32_add_mpu", "build_f16_mul_f32_mpu"]


@dataclass(frozen=True)
class FPFormat:
    """An IEEE-754 binary format: exponent and fraction widths."""

    ebits: int
    fbits: int

    @property
    def width(self) -> int:
        return 1 + self.ebits + self.fbits

    @property
    def bias(self) -> int:
        return (1 << (self.ebits - 1)) - 1

    @property
    def emax_field(self) -> int:
        """The all-ones exponent field (infinities and NaNs)."""
        return (1 << self.ebits) - 1


FP16 = FPFormat(5, 10)
FP32 = FPFormat(8, 23)
F32_QNAN = 0x7FC00000   # canonical quiet NaN, positive, payload 0 (what numpy's np.nan is)
F16_QNAN = 0x7E00


class _Unpacked:
    """Fields of one operand: sign, effective biased exponent (subnormals read as 1), significand."""

    def __init__(self, m: Module, x: Value, fmt: FPFormat, name: str):
        self.sign = x[fmt.width - 1]
        self.exp_field = x[fmt.fbits:fmt.fbits + fmt.ebits]
        self.frac = x[:fmt.fbits]
        self.is_zero_exp = self.exp_field == 0
        self.is_max_exp = self.exp_field == fmt.emax_field
        self.is_nan = self.is_max_exp & (self.frac != 0)
        self.is_inf = self.is_max_exp & (self.frac == 0)
        self.is_zero = self.is_zero_exp & (self.frac == 0)
        # Subnormals have exponent 1 - bias and no hidden bit; reading their exponent field as 1
        # makes one formula serve both.
        self.exp = Signal(fmt.ebits, name=f"{name}_exp")
        self.sig = Signal(fmt.fbits + 1, name=f"{name}_sig")
        m.d.comb += [
            self.exp.eq(Mux(self.is_zero_exp, 1, self.exp_field)),
            self.sig.eq(Cat(self.frac, ~self.is_zero_exp)),
        ]


def count_leading_zeros(m: Module, x: Value, name: str = "lz") -> Signal:
    """Leading zeros of ``x`` (``len(x)`` when ``x`` is zero), as a signal."""
    width = len(x)
    lz = Signal(range(width + 1), name=name)
    expr: Value = Const(width, lz.shape())
    for i in range(width):   # the highest set bit is applied last, so it wins
        expr = Mux(x[i], width - 1 - i, expr)
    m.d.comb += lz.eq(expr)
    return lz


def round_pack(m: Module, *, sign: Value, mant: Value, exp: Value, sticky: Value,
               fmt: FPFormat, underflow_shift: bool = True, name: str = "rp") -> Signal:
    """Round ``(-1)**sign * (mant + sticky*eps) * 2**(exp - len(mant) + 1)`` to ``fmt`` (RNE).

    ``exp`` is the unbiased exponent of ``mant``'s top bit (a signed value); ``sticky`` says
    whether nonzero bits lie below ``mant``. Produces normals, subnormals, signed zeros and
    infinities on overflow. ``underflow_shift=False`` leaves out the right shifter when the
    caller knows the value never needs one (the adder: its exponent is never below the
    operands').
    """
    width = len(mant)
    if width < fmt.fbits + 3:
        raise ValueError(f"round_pack needs at least {fmt.fbits + 3} mantissa bits, not {width}")
    lz = count_leading_zeros(m, mant, f"{name}_lz")
    # Largest left shift that keeps the biased exponent >= 1; a smaller one than lz means the
    # result is subnormal (the top bit stays clear).
    room = Signal(signed(len(exp) + 2), name=f"{name}_room")
    lshift = Signal(signed(len(exp) + 2), name=f"{name}_lshift")
    m.d.comb += [
        room.eq(exp + (fmt.bias - 1)),
        lshift.eq(Mux(room < lz, room, lz)),
    ]
    norm = Signal(width, name=f"{name}_norm")
    lost = Signal(name=f"{name}_lost")
    left = (mant << lshift[:bits_for(width)].as_unsigned())[:width]
    if underflow_shift:
        # Right shift for tiny results; everything shifted out goes into the sticky bit.
        rmax = width + 1
        neg = Signal(range(rmax + 1), name=f"{name}_rshift")
        m.d.comb += neg.eq(Mux(-lshift > rmax, rmax, (-lshift)[:bits_for(rmax)].as_unsigned()))
        ext = Cat(Const(0, width + 2), mant) >> neg
        m.d.comb += [
            norm.eq(Mux(lshift < 0, ext[width + 2:], left)),
            lost.eq((lshift < 0) & (ext[:width + 2] != 0)),
        ]
    else:
        m.d.comb += [norm.eq(left), lost.eq(0)]
    frac = norm[width - 1 - fmt.fbits:width - 1]
    guard = norm[width - 2 - fmt.fbits]
    rest = (norm[:width - 2 - fmt.fbits] != 0) | lost | sticky
    round_up = guard & (rest | frac[0])
    biased = Signal(signed(len(exp) + 3), name=f"{name}_biased")
    m.d.comb += biased.eq(exp + fmt.bias - lshift)
    exp_field = Mux(norm[width - 1], biased[:fmt.ebits], 0)
    overflow = norm[width - 1] & (biased >= fmt.emax_field)
    # Adding the rounding increment to exponent and fraction together carries a full fraction
    # into the exponent: subnormal -> normal, and the largest finite -> infinity.
    packed = Signal(fmt.ebits + fmt.fbits, name=f"{name}_packed")
    m.d.comb += packed.eq(Mux(overflow, Const(fmt.emax_field << fmt.fbits, fmt.ebits + fmt.fbits),
                              Cat(frac, exp_field) + round_up))
    out = Signal(fmt.width, name=name)
    m.d.comb += out.eq(Cat(packed, sign))
    return out


def bits_for(n: int) -> int:
    """Bits of an unsigned number up to ``n``."""
    return max(1, int(n).bit_length())


def _select_special(m: Module, name: str, fmt: FPFormat, finite: Value,
                    cases: list[tuple[Value, Value]]) -> Signal:
    """``cases`` in priority order ``(condition, value)``, else ``finite``."""
    out = Signal(fmt.width, name=name)
    expr = finite
    for cond, val in reversed(cases):
        expr = Mux(cond, val, expr)
    m.d.comb += out.eq(expr)
    return out


def _inf(fmt: FPFormat, sign: Value) -> Value:
    return Cat(Const(fmt.emax_field << fmt.fbits, fmt.ebits + fmt.fbits), sign)


def build_f32_add(m: Module, a: Value, b: Value, name: str = "fadd") -> Signal:
    """``a + b`` in IEEE binary32, RNE. An exact zero sum is +0 unless both operands are -0."""
    fa, fb = _Unpacked(m, a, FP32, f"{name}_a"), _Unpacked(m, b, FP32, f"{name}_b")
    swap = a[:31] < b[:31]    # compare magnitudes: exponent then fraction, as one integer
    big_exp = Mux(swap, fb.exp, fa.exp)
    big_sig = Mux(swap, fb.sig, fa.sig)
    small_exp = Mux(swap, fa.exp, fb.exp)
    small_sig = Mux(swap, fa.sig, fb.sig)
    big_sign = Mux(swap, fb.sign, fa.sign)
    diff = Signal(8, name=f"{name}_diff")
    m.d.comb += diff.eq(big_exp - small_exp)
    # Three extra bits (guard, round, sticky) make the rounded sum exact (Goldberg 1991, §1.4).
    shift = Mux(diff > 31, 31, diff[:5])
    ext = Cat(Const(0, 35), small_sig) >> shift     # bits [0, 32) fall below the window
    aligned = Cat(ext[32] | (ext[:32] != 0), ext[33:59])        # 27 bits, sticky at the bottom
    wide_big = Cat(Const(0, 3), big_sig)
    total = Signal(28, name=f"{name}_sum")
    effective_sub = fa.sign ^ fb.sign
    m.d.comb += total.eq(Mux(effective_sub, wide_big - aligned, wide_big + aligned))
    exact_zero = total == 0
    sign = Mux(exact_zero, fa.sign & fb.sign, big_sign)
    exp = Signal(signed(10), name=f"{name}_e")
    m.d.comb += exp.eq(big_exp - (FP32.bias - 1))     # total's bit 27 is worth 2**(big_exp-126)
    finite = round_pack(m, sign=sign, mant=total, exp=exp, sticky=Const(0), fmt=FP32,
                        underflow_shift=False, name=f"{name}_rp")
    nan = fa.is_nan | fb.is_nan | (fa.is_inf & fb.is_inf & effective_sub)
    return _select_special(m, name, FP32, finite, [
        (nan, Const(F32_QNAN, 32)),
        (fa.is_inf, _inf(FP32, fa.sign)),
        (fb.is_inf, _inf(FP32, fb.sign)),
    ])


def build_f32_mul(m: Module, a: Value, b: Value, name: str = "fmul") -> Signal:
    """``a * b`` in IEEE binary32, RNE, subnormals in and out."""
    fa, fb = _Unpacked(m, a, FP32, f"{name}_a"), _Unpacked(m, b, FP32, f"{name}_b")
    sign = fa.sign ^ fb.sign
    prod = Signal(48, name=f"{name}_prod")
    exp = Signal(signed(11), name=f"{name}_e")
    m.d.comb += [
        prod.eq(fa.sig * fb.sig),
        exp.eq(fa.exp + fb.exp - (2 * FP32.bias - 1)),   # prod's bit 47 is worth 2**(ea+eb-253)
    ]
    finite = round_pack(m, sign=sign, mant=prod, exp=exp, sticky=Const(0), fmt=FP32,
                        name=f"{name}_rp")
    nan = fa.is_nan | fb.is_nan | (fa.is_inf & fb.is_zero) | (fb.is_inf & fa.is_zero)
    return _select_special(m, name, FP32, finite, [
        (nan, Const(F32_QNAN, 32)),
        (fa.is_inf | fb.is_inf, _inf(FP32, sign)),
    ])


def build_f16_mul_f32(m: Module, a: Value, b: Value, name: str = "hmul") -> Signal:
    """The exact FP32 product of two FP16 values (11x11-bit significands fit FP32's 24 bits,
    and the exponent range 2**-48 .. 2**32 is inside FP32's normal range: no rounding)."""
    fa, fb = _Unpacked(m, a, FP16, f"{name}_a"), _Unpacked(m, b, FP16, f"{name}_b")
    sign = fa.sign ^ fb.sign
    prod = Signal(22, name=f"{name}_prod")
    m.d.comb += prod.eq(fa.sig * fb.sig)
    lz = count_leading_zeros(m, prod, f"{name}_lz")
    norm = Signal(22, name=f"{name}_norm")
    exp_field = Signal(8, name=f"{name}_ef")
    # prod * 2**(ea+eb-50) with the leading one at bit 21-lz: biased exponent ea+eb+98-lz.
    m.d.comb += [
        norm.eq((prod << lz)[:22]),
        exp_field.eq(fa.exp + fb.exp + (FP32.bias - 2 * FP16.bias - 20 + 21) - lz),
    ]
    finite = Mux(prod == 0, Cat(Const(0, 31), sign), Cat(Const(0, 2), norm[:21], exp_field, sign))
    nan = fa.is_nan | fb.is_nan | (fa.is_inf & fb.is_zero) | (fb.is_inf & fa.is_zero)
    return _select_special(m, name, FP32, finite, [
        (nan, Const(F32_QNAN, 32)),
        (fa.is_inf | fb.is_inf, _inf(FP32, sign)),
    ])


def build_f16_to_f32(m: Module, a: Value, name: str = "h2f") -> Signal:
    """FP16 to FP32, exact (FP16 subnormals become FP32 normals)."""
    fa = _Unpacked(m, a, FP16, f"{name}_a")
    lz = count_leading_zeros(m, fa.sig, f"{name}_lz")
    norm = Signal(11, name=f"{name}_norm")
    m.d.comb += norm.eq((fa.sig << lz)[:11])
    exp_field = fa.exp + (FP32.bias - FP16.bias) - lz
    finite = Mux(fa.is_zero, Cat(Const(0, 31), fa.sign),
                 Cat(Const(0, 13), norm[:10], exp_field[:8], fa.sign))
    return _select_special(m, name, FP32, finite, [
        (fa.is_nan, Const(F32_QNAN, 32)),
        (fa.is_inf, _inf(FP32, fa.sign)),
    ])


def build_f32_to_f16(m: Module, a: Value, name: str = "f2h") -> Signal:
    """FP32 to FP16, RNE: subnormal results, overflow to infinity."""
    fa = _Unpacked(m, a, FP32, f"{name}_a")
    exp = Signal(signed(10), name=f"{name}_e")
    m.d.comb += exp.eq(fa.exp - FP32.bias)
    finite = round_pack(m, sign=fa.sign, mant=fa.sig, exp=exp, sticky=Const(0), fmt=FP16,
                        name=f"{name}_rp")
    return _select_special(m, name, FP16, finite, [
        (fa.is_nan, Const(F16_QNAN, 16)),
        (fa.is_inf, _inf(FP16, fa.sign)),
    ])


def count_leading_zeros_tree(m: Module, x: Value, name: str = "lzt") -> tuple[Signal, Signal]:
    """Leading zeros of ``x`` by a log-depth tree, and whether ``x`` is nonzero.

    Returns ``(lz, nonzero)``; ``lz`` is only meaningful when ``nonzero`` (a zero ``x`` gives
    ``2**k - 1`` for the power of two ``2**k >= len(x)`` it is padded to). Each level merges
    two halves' (nonzero, count) pairs with one multiplexer per count bit, where the priority
    chain of :func:`count_leading_zeros` is ``len(x)`` multiplexers deep.
    """
    width = len(x)
    k = max(1, (width - 1).bit_length())
    padded = Cat(Const(0, (1 << k) - width), x) if (1 << k) > width else x   # zeros at the bottom
    # leaves: one bit each, MSB first; (nonzero, count) with count of width 0
    nodes: list[tuple[Value, Value | None]] = [(padded[i], None) for i in reversed(range(1 << k))]
    while len(nodes) > 1:
        merged = []
        for hi, lo in zip(nodes[0::2], nodes[1::2]):
            (vh, ch), (vl, cl) = hi, lo
            if ch is None:
                count = ~vh
            else:
                count = Cat(Mux(vh, ch, cl), ~vh)
            merged.append((vh | vl, count))
        nodes = merged
    lz = Signal(k, name=name)
    nonzero = Signal(name=f"{name}_nz")
    m.d.comb += [lz.eq(nodes[0][1]), nonzero.eq(nodes[0][0])]
    return lz, nonzero


def _one_hot(m: Module, amount: Value, values: int, *, enable: Value = Const(1),
             name: str) -> Signal:
    """``2**amount``, ``values`` wide, or 0 when not ``enable``: the multiplier operand that
    makes a DSP48E2 shift. ``enable`` costs nothing: it is one more input of the same LUTs."""
    onehot = Signal(values, name=name)
    m.d.comb += onehot.eq(Mux(enable, Const(1, values) << amount, 0))
    return onehot


def build_f32_add_mpu(m: Module, a: Value, b: Value, name: str = "madd") -> Signal:
    """``a + b`` in binary32, RNE, for operands from the MPU's domain (docs/rtl-mpu-adder.md).

    Bit for bit :func:`build_f32_add` on every pair whose finite operands are zeros or normals
    and whose exact sum, when finite, rounds to a normal or a zero -- which holds for every sum
    the MPU lane forms (docs/numerics.md, "Consequences": each value is a multiple of 2**-48
    with magnitude far below 2**128, so no subnormal and no overflow arises). Infinities and
    NaNs are handled as in IEEE (NaN canonical). Outside that domain (subnormal operands, an
    overflowing sum) the result is unspecified. Both shifts are multiplications by a one-hot
    operand, which Yosys maps to DSP48E2 (two per adder) instead of LUT barrel shifters.
    """
    swap = a[:31] < b[:31]    # magnitude order: exponent then fraction, as one integer
    big = Signal(32, name=f"{name}_big")
    m.d.comb += big.eq(Mux(swap, b, a))
    big_exp = big[23:31]
    small_exp = Signal(8, name=f"{name}_sexp")
    m.d.comb += small_exp.eq(Mux(swap, a[23:31], b[23:31]))
    # exponent field 0 is a zero here (no subnormals), so the hidden bit is "exponent != 0"
    nz_a, nz_b = a[23:31] != 0, b[23:31] != 0
    big_sig = Cat(big[:23], Mux(swap, nz_b, nz_a))
    sig_a, sig_b = Cat(a[:23], nz_a), Cat(b[:23], nz_b)
    diff = Signal(8, name=f"{name}_diff")
    m.d.comb += diff.eq(big_exp - small_exp)
    # At 27 places or more the small operand lies wholly below the round bit (sticky only):
    # it is aligned as if 27 apart.
    far = diff >= 27
    # Alignment: a window of 26 exact bits (the big significand's 24, guard, round) and a
    # sticky bit below (Goldberg 1991, section 1.4), from one DSP: p = x * 2**k with bit
    # 13 + j of p window bit j and p's bits below 13 the sticky bit. diff = 16*c + r:
    # c = 0: x = small_sig, k = 15 - r. c = 1: x = small_sig >> 12 with its lost bits ORed
    # into x's bit 0 (they all fall below the window; any nonzero stand-in below it rounds
    # the same), k = 11 - r (r <= 10; k = 0 when far). Selecting x from a, b, c is one LUT6
    # per bit.
    c, r = diff[4] | far, diff[:4]
    low_a, low_b = a[:13] != 0, b[:13] != 0
    x = Signal(24, name=f"{name}_ax")
    m.d.comb += x.eq(Cat(
        Mux(c, Mux(swap, low_a, low_b), Mux(swap, sig_a[0], sig_b[0])),
        *[Mux(c, Mux(swap, sig_a[i + 12], sig_b[i + 12]), Mux(swap, sig_a[i], sig_b[i]))
          for i in range(1, 12)],
        *[~c & Mux(swap, sig_a[i], sig_b[i]) for i in range(12, 24)]))
    k = Signal(4, name=f"{name}_k")
    m.d.comb += k.eq(Mux(far, 0, Mux(c, 11 - r, 15 - r)))
    p = Signal(40, name=f"{name}_ap")
    m.d.comb += p.eq(x * _one_hot(m, k, 16, name=f"{name}_aoh"))
    aligned = Cat(p[:13] != 0, p[13:39])
    # One adder: big + aligned, or big + ~aligned + 1.
    sub = a[31] ^ b[31]
    total = Signal(29, name=f"{name}_sum")
    m.d.comb += total.eq(Cat(sub, Const(0, 3), big_sig, 0)
                         + Cat(sub, aligned ^ sub.replicate(27), sub))
    mant = total[1:29]        # 28 bits; bit 27 is worth 2**(big_exp - 126)
    lz, nonzero = count_leading_zeros_tree(m, mant, f"{name}_lz")
    # Infinities and NaNs: the operand of largest magnitude is the NaN or infinity, if any.
    max_a, max_b = a[23:31] == FP32.emax_field, b[23:31] == FP32.emax_field
    frac_a, frac_b = low_a | (a[13:23] != 0), low_b | (b[13:23] != 0)
    special = max_a | max_b
    nan = (max_a & frac_a) | (max_b & frac_b) | (max_a & max_b & sub)
    # Normalisation, mant << lz, from the second DSP. Only norm[3:27] (fraction and guard)
    # is needed: bit 27 is the hidden one, and the bits below the guard are nonzero only for
    # lz <= 2 (a larger lz needs cancellation, so exponents at most 1 apart and no sticky).
    # The DSP takes mant[1:27] (26 bits; mant[27] set means lz = 0, where mant[1:27] still
    # holds bits 3..26) shifted by 8 * (lz // 8) in LUTs (one LUT6 per bit: the top lz bits
    # are zero, so nothing is lost) and multiplies it by 2**(lz % 8). A special result zeroes
    # the product (fraction, guard: no rounding), so only the exponent field, the quiet bit
    # and the sign need a multiplexer.
    src = Signal(26, name=f"{name}_nsrc")
    m.d.comb += src.eq((mant[1:27] << Cat(Const(0, 3), lz[3:5]))[:26])
    q = Signal(34, name=f"{name}_np")
    m.d.comb += q.eq(src * _one_hot(m, lz[:3], 8, enable=~special, name=f"{name}_noh"))
    frac, guard = Cat(q[3:25], q[25] | nan), q[2]
    rest = Mux(lz == 0, mant[:3] != 0, Mux(lz == 1, mant[:2] != 0, (lz == 2) & mant[0]))
    round_up = guard & (rest | frac[0])
    # The result's biased exponent is big_exp + 1 - lz, never below 1 for a nonzero sum in
    # the domain (no clamp). A zero sum (exponent field 0) and a special result (all ones)
    # replace the subtraction's operands (0 + 1 - 1, 255 + 1 - 1), not its result: that is
    # more inputs of the subtractor's LUTs rather than a multiplexer after it.
    e_op = Signal(8, name=f"{name}_eop")
    lz_op = Signal(5, name=f"{name}_lzop")
    m.d.comb += [e_op.eq(Mux(special, FP32.emax_field, Mux(nonzero, big_exp, 0))),
                 lz_op.eq(Mux(special | ~nonzero, 1, lz))]
    exp_field = Signal(8, name=f"{name}_ef")
    m.d.comb += exp_field.eq(e_op + 1 - lz_op)
    packed = Signal(31, name=f"{name}_packed")
    m.d.comb += packed.eq(Cat(frac, exp_field) + round_up)
    sign = Mux(special, big[31] & ~nan, Mux(nonzero, big[31], a[31] & b[31]))
    out = Signal(32, name=name)
    m.d.comb += out.eq(Cat(packed, sign))
    return out


def build_f16_mul_f32_mpu(m: Module, a: Value, b: Value, name: str = "mmul") -> Signal:
    """The exact FP32 product of two FP16 values, normalised in a DSP48E2 (the MPU lane's).

    Bit for bit :func:`build_f16_mul_f32` on every pair of FP16 inputs (docs/rtl-mpu-adder.md,
    "The MPU's multiplier"): the 11x11-bit product ``p`` is always exact and normal in FP32,
    so the only work after the multiplication is ``p << lz`` and the exponent
    ``ea + eb + 98 - lz`` (``lz`` the leading zeros of the 22-bit ``p``, above 1 only for a
    subnormal input). The shift is a second multiplication, by the one-hot ``2**(lz % 16)``,
    after a coarse shift by 16 in LUTs (12 of them); the specials zero that one-hot instead of
    multiplexing the fraction. Two DSP48E2 per multiplier.
    """
    ef_a, ef_b = a[10:15], b[10:15]
    fa, fb = a[:10], b[:10]
    nz_a, nz_b = ef_a != 0, ef_b != 0          # hidden bits
    max_a, max_b = ef_a == FP16.emax_field, ef_b == FP16.emax_field
    fz_a, fz_b = fa == 0, fb == 0
    # A zero factor, told from the inputs rather than from p == 0: off the DSP's path.
    zero = (~nz_a & fz_a) | (~nz_b & fz_b)
    special = max_a | max_b
    nan = (max_a & ~fz_a) | (max_b & ~fz_b) | (special & zero)
    p = Signal(22, name=f"{name}_p")
    m.d.comb += p.eq(Cat(fa, nz_a) * Cat(fb, nz_b))
    lz, _ = count_leading_zeros_tree(m, p, f"{name}_lz")   # p == 0: zero, handled apart
    # Coarse shift by 16 when lz >= 16: then p < 2**6, so p[6:16] is zero either way and only
    # p[:6] and p[16:] need a gate or a multiplexer. The fine shift, lz % 16, is the DSP's.
    lz16 = lz[4]
    src = Signal(22, name=f"{name}_src")
    m.d.comb += src.eq(Cat(p[:6] & ~lz16.replicate(6), p[6:16], Mux(lz16, p[:6], p[16:22])))
    q = Signal(38, name=f"{name}_q")        # q[21] is the hidden bit, q[:21] the fraction
    m.d.comb += q.eq(src * _one_hot(m, lz[:4], 16, enable=~special, name=f"{name}_oh"))
    # p * 2**(ea + eb - 50) with its leading one at bit 21 - lz: biased exponent
    # ea + eb + 98 - lz (subnormal exponent fields read as 1). The sum of the input exponents
    # is formed beside the first DSP; only the subtraction of lz follows it.
    ea = Cat(ef_a[0] | ~nz_a, ef_a[1:])
    eb = Cat(ef_b[0] | ~nz_b, ef_b[1:])
    e_in = Signal(8, name=f"{name}_ein")
    m.d.comb += e_in.eq(ea + eb + (FP32.bias - 2 * FP16.bias - 20 + 21))
    exp_field = Signal(8, name=f"{name}_ef")
    m.d.comb += exp_field.eq(Mux(special, FP32.emax_field, Mux(zero, 0, e_in - lz)))
    out = Signal(32, name=name)
    m.d.comb += out.eq(Cat(Const(0, 2), q[:20], q[20] | nan, exp_field,
                           (a[15] ^ b[15]) & ~nan))
    return out
