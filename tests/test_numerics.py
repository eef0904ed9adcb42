"""The numerics contract (docs/numerics.md) against independent references.

References here never reuse fpgpt.isa.numerics' vectorised code: FP32 arithmetic is emulated
with Python floats rounded to FP32 after every operation (double rounding through binary64 is
innocuous for +, - and * of binary32 operands, since 53 >= 2*24 + 2), FP32 -> FP16 rounding with
integer arithmetic, and accuracy is measured against float64 math.
"""

import math

import numpy as np
import pytest

from fpgpt.isa import numerics as nm

F16, F32 = np.float16, np.float32


def r32(v: float) -> float:
    """Rounds a Python float to the nearest FP32 (ties to even), as a Python float."""
    with np.errstate(over="ignore"):
        return float(np.float32(v))


def same_bits32(x, y) -> bool:
    """Bitwise FP32 equality where any two NaNs are equal (NaN payloads are not contractual)."""
    x, y = np.asarray(x, F32), np.asarray(y, F32)
    both_nan = np.isnan(x) & np.isnan(y)
    return bool(np.all(both_nan | (nm.f32_bits(x) == nm.f32_bits(y))))


def ordered16(h) -> np.ndarray:
    """FP16 values as integers in the order of the reals (adjacent FP16 values differ by 1)."""
    b = nm.f16_bits(h).astype(np.int32)
    return np.where(b & 0x8000, -(b & 0x7FFF), b)


def ulp32(ref) -> np.ndarray:
    e = np.floor(np.log2(np.maximum(np.abs(ref), 2.0 ** -126)))
    return 2.0 ** (e - 23)


# --------------------------------------------------------------------------- conversions


def f32_to_f16_bits_ref(x32: np.ndarray) -> np.ndarray:
    """FP32 -> FP16 bits, round to nearest even, by integer arithmetic on the bit fields."""
    b = nm.f32_bits(x32).astype(np.int64)
    sign = (b >> 16) & 0x8000
    e = (b >> 23) & 0xFF
    sig = (b & 0x7FFFFF) | 0x800000                       # value = sig * 2^(e - 150)
    lg = e - 127                                          # floor(log2 |value|) for normal x
    shift = np.minimum(np.maximum(lg, -14) + 13 - lg, 40)  # drop to a quantum of 2^(max(lg,-14)-10)
    q = sig >> shift
    rem = sig & ((np.int64(1) << shift) - 1)
    half = np.int64(1) << (shift - 1)
    q = q + ((rem > half) | ((rem == half) & (q & 1 == 1)))
    mag = ((np.maximum(lg, -14) + 15) << 10) + q - 1024   # also right for subnormal results
    mag = np.minimum(mag, 0x7C00)                         # overflow -> inf
    mag = np.where(e == 0, 0, mag)                        # FP32 subnormals are far below 2^-25
    mag = np.where(e == 255, np.where(b & 0x7FFFFF, nm.F16_NAN_BITS, 0x7C00), mag)
    out = np.where((e == 255) & (b & 0x7FFFFF != 0), nm.F16_NAN_BITS, sign | mag)
    return out.astype(np.uint16)


def test_f32_to_f16_is_one_correct_rounding():
    """Every high half-word x a set of low half-words around the FP16 rounding points."""
    rng = np.random.default_rng(0)
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = [0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x3000, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
    lows += list(rng.integers(0, 1 << 16, 8))
    bits = (hi[:, None] | np.array(lows, np.uint32)[None, :]).ravel()
    x = nm.from_bits(bits)
    assert np.array_equal(nm.f16_bits(nm.f32_to_f16(x)), f32_to_f16_bits_ref(x))


def test_f16_roundtrip_and_canonical_nan():
    h = nm.all_f16()
    back = nm.f16_bits(nm.f32_to_f16(nm.f16_to_f32(h)))
    nan = np.isnan(h)
    assert np.array_equal(back[~nan], nm.f16_bits(h)[~nan])
    assert np.all(back[nan] == nm.F16_NAN_BITS)
    assert np.all(nm.f32_bits(nm.f16_to_f32(h[nan])) == nm.F32_NAN_BITS)


def test_bits_helpers():
    assert nm.f16_bits(F16(1.0)) == 0x3C00
    assert nm.f32_bits(F32(-2.0)) == 0xC0000000
    assert nm.from_bits(np.uint16(0x0001)) == F16(2.0 ** -24)
    assert nm.from_bits(np.uint32(0x3F800000)) == F32(1.0)
    with pytest.raises(nm.NumericsError, match="uint16 or uint32"):
        nm.from_bits(np.int64(5))
    tab = nm.table_f16(nm.gelu)
    assert tab.dtype == np.uint16 and tab.shape == (65536,)
    assert tab[0x3C00] == nm.f16_bits(nm.gelu(F16(1.0)))


# --------------------------------------------------------------------------- MPU


def mpu_dot_ref(a, b, width: int, bias=None) -> float:
    """Plain-loop model of one MPU lane (docs/numerics.md "MPU")."""
    prods = [float(x) * float(y) for x, y in zip(a, b)]     # exact in binary64 and binary32
    while len(prods) % width or not prods:
        prods.append(0.0)
    acc = 0.0
    for c in range(0, len(prods), width):
        level = prods[c:c + width]
        while len(level) > 1:
            level = [r32(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        acc = r32(acc + level[0])
    if bias is not None:
        acc = r32(acc + float(bias))
    return acc


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 2.0 ** -24, -(2.0 ** -24), 2.0 ** -14, 65504.0,
            -65504.0, 1.0, -1.0, 3.0 ** 5]


def random_f16(rng, shape, specials: float = 0.0) -> np.ndarray:
    """Values over the whole FP16 range (subnormals included), some special values mixed in."""
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-26, 12, shape))).astype(F16)
    pick = rng.random(shape) < specials
    x[pick] = rng.choice(np.array(SPECIALS, F16), int(pick.sum()))
    return x


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("k", [1, 3, 8, 13, 17])
def test_mpu_exact_matches_scalar_reference(width, k):
    rng = np.random.default_rng(width * 100 + k)
    a = random_f16(rng, (3, k), specials=0.15)
    b = random_f16(rng, (4, k), specials=0.15)
    bias = random_f16(rng, (4,), specials=0.2)
    got = nm.mpu_matmul_f32(a, b, bias, width=width)
    want = np.array([[mpu_dot_ref(a[i], b[j], width, bias[j]) for j in range(4)]
                     for i in range(3)], F32)
    assert same_bits32(got, want)
    c16 = nm.mpu_matmul(a, b, bias, width=width)
    assert np.array_equal(nm.f16_bits(c16), nm.f16_bits(nm.f32_to_f16(want)))
    assert same_bits32(nm.mpu_dot(a[1], b[2], width=width), mpu_dot_ref(a[1], b[2], width))


def test_mpu_zero_signs_and_special_values():
    neg0 = np.array([-0.0, -0.0], F16)
    one = np.array([1.0, 1.0], F16)
    # The accumulator starts at +0.0, so a sum of -0 products is +0 (not -0 as in plain IEEE).
    assert nm.f32_bits(nm.mpu_dot(neg0, one, width=2)) == 0
    inf0 = np.array([np.inf, 1.0], F16)
    assert np.isnan(nm.mpu_dot(inf0, np.array([0.0, 1.0], F16), width=2))       # inf * 0
    assert nm.mpu_dot(inf0, one, width=2) == np.inf
    c = nm.mpu_matmul(np.array([[np.inf, -np.inf]], F16), np.array([[1.0, 1.0]], F16), width=2)
    assert nm.f16_bits(c)[0, 0] == nm.F16_NAN_BITS                               # inf - inf
    big = np.full((1, 4), 255.0, F16)                                            # 4 * 65025 > 65504
    assert nm.mpu_matmul(big, big, width=4)[0, 0] == np.inf


def test_mpu_products_are_exact_in_f32():
    rng = np.random.default_rng(3)
    a = random_f16(rng, 200_000)
    b = random_f16(rng, 200_000)
    p32 = a.astype(F32) * b.astype(F32)
    assert np.array_equal(p32.astype(np.float64), a.astype(np.float64) * b.astype(np.float64))
    nz = p32 != 0
    assert np.all(np.abs(p32[nz]) >= 2.0 ** -48)        # never an FP32 subnormal


def test_mpu_adder_tree_pairs_neighbours():
    """Products [2^24, 1, 0, 1]: the contract's tree gives 2^24; pairing (0,2),(1,3): 2^24+2."""
    a = np.array([4096.0, 1.0, 0.0, 1.0], F16)
    assert nm.mpu_dot(a, a, width=4) == 2.0 ** 24
    assert r32(r32(2.0 ** 24 + 0.0) + r32(1.0 + 1.0)) == 2.0 ** 24 + 2     # the other pairing
    # [2^24, 0, 1, 1]: tree (2^24 + 0) + (1 + 1) keeps both ones; a sequential sum loses them.
    b = np.array([4096.0, 0.0, 1.0, 1.0], F16)
    assert nm.mpu_dot(b, b, width=4) == 2.0 ** 24 + 2
    assert nm.mpu_dot(b, b, width=1) == 2.0 ** 24


def test_mpu_chunks_accumulate_in_order():
    """Chunk sums [1, 1, 2^24] accumulated first to last give 2^24+2 (last to first: 2^24)."""
    a = np.array([1.0, 0.0, 1.0, 0.0, 4096.0, 0.0], F16)
    assert nm.mpu_dot(a, a, width=2) == 2.0 ** 24 + 2


def test_mpu_fast_mode_within_bound():
    """The bound of docs/numerics.md "Fast mode"; also checks that fast mode is not exact mode."""
    rng = np.random.default_rng(4)
    differ = 0
    for m, k, n, width in [(1, 256, 1024, 64), (16, 1024, 256, 8), (4, 300, 64, 16)]:
        a = (rng.standard_normal((m, k)) * 2).astype(F16)
        b = (rng.standard_normal((n, k)) * 0.05).astype(F16)
        bias = (rng.standard_normal(n) * 0.1).astype(F16)
        ex = nm.mpu_matmul(a, b, bias, width=width).astype(np.float64)
        fa = nm.mpu_matmul(a, b, bias, width=width, mode="fast").astype(np.float64)
        mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)).T + np.abs(bias)
        terms = k + math.log2(width) + math.ceil(k / width) + 1
        bound = 2.0 ** -10 * np.maximum(np.abs(ex), np.abs(fa)) + 2.0 ** -24 \
            + terms * 2.0 ** -24 * mag
        assert np.all(np.abs(ex - fa) <= bound)
        differ += np.count_nonzero(ex != fa)
    assert differ > 0


def test_mpu_argument_errors():
    a = np.zeros((2, 3), F16)
    with pytest.raises(nm.NumericsError, match="power of two.*not 6"):
        nm.mpu_matmul(a, a, width=6)
    with pytest.raises(nm.NumericsError, match="same K"):
        nm.mpu_matmul(a, np.zeros((2, 4), F16), width=2)
    with pytest.raises(nm.NumericsError, match="float16"):
        nm.mpu_matmul(a.astype(F32), a, width=2)
    with pytest.raises(nm.NumericsError, match="'exact' or 'fast'"):
        nm.mpu_matmul(a, a, width=2, mode="fastest")


# --------------------------------------------------------------------------- VPU reductions


def vsum_ref(x, width: int, partials: int = 1) -> float:
    """Element i in lane i % W, beat i // W; lane j's partial p sums its beats b = p mod c."""
    parts = [[0.0] * partials for _ in range(width)]
    for i, v in enumerate(x):
        j, p = i % width, (i // width) % partials
        parts[j][p] = r32(parts[j][p] + float(v))
    lanes = []
    for ps in parts:
        t = ps[0]
        for q in ps[1:]:
            t = r32(t + q)
        lanes.append(t)
    while len(lanes) > 1:
        lanes = [r32(lanes[i] + lanes[i + 1]) for i in range(0, len(lanes), 2)]
    return lanes[0]


@pytest.mark.parametrize("width,partials", [(1, 1), (2, 1), (8, 1), (1, 2), (4, 2), (2, 3),
                                            (8, 5)])
def test_vsum_matches_scalar_reference(width, partials):
    rng = np.random.default_rng(width * 10 + partials)
    x = (rng.standard_normal((5, 37)) * np.exp2(rng.integers(-10, 20, (5, 37)))).astype(F32)
    got = nm.vsum(x, width=width, partials=partials)
    assert same_bits32(got, [vsum_ref(row, width, partials) for row in x])


def test_vsum_order_is_lane_strided():
    """[2^24, 1, 0, 1] on 2 lanes: lane sums 2^24 and 2 -> 2^24+2; a sequential sum gives 2^24."""
    x = np.array([2.0 ** 24, 1.0, 0.0, 1.0], F32)
    assert nm.vsum(x, width=2) == 2.0 ** 24 + 2
    assert nm.vsum(x, width=1) == 2.0 ** 24


def test_vsum_partials_interleave_beats():
    """One lane, 2 partials: beats 0, 2 -> 2^24 + 0, beats 1, 3 -> 1 + 1; folded 2^24 + 2. A
    3-beat row on 4 partials leaves the last one at its start, +0: -0s sum to +0."""
    x = np.array([2.0 ** 24, 1.0, 0.0, 1.0], F32)
    assert nm.vsum(x, width=1, partials=2) == 2.0 ** 24 + 2
    assert nm.vsum(x, width=1, partials=1) == 2.0 ** 24
    neg = np.array([-0.0, -0.0, -0.0], F32)
    assert np.signbit(nm.vsum(neg, width=1, partials=4)) == np.False_
    with pytest.raises(nm.NumericsError, match=r"^partials must be a positive integer"):
        nm.vsum(x, width=1, partials=0)


def test_vmax_nan_never_wins_and_zero_order():
    x = np.array([1.0, np.nan, 3.0, np.nan, 2.0], F32)
    for w in (1, 2, 4, 8):
        assert nm.vmax(x, width=w) == 3.0
    assert nm.vmax(np.array([np.nan, np.nan], F32), width=2) == -np.inf
    assert nm.f32_bits(nm.vmax(np.array([-0.0, 0.0], F32), width=2)) == 0x80000000   # first kept
    assert nm.f32_bits(nm.vmax(np.array([0.0, -0.0], F32), width=1)) == 0


def test_argmax_ties_and_nan():
    assert nm.argmax(np.array([1, 5, 5, 2], F16)) == 1
    assert nm.argmax(np.array([np.nan, -np.inf, np.nan], F16)) == 1
    assert nm.argmax(np.array([np.nan, np.nan], F16)) == 0
    assert nm.argmax(np.array([-0.0, 0.0], F16)) == 0
    assert nm.argmax(np.array([2, np.nan, np.inf, np.inf], F16)) == 2
    with pytest.raises(nm.NumericsError, match="non-empty 1-D"):
        nm.argmax(np.zeros((2, 2), F16))


def test_allreduce_order_and_elementwise():
    parts = np.array([[60000.0], [60000.0], [-60000.0]], F16)
    assert nm.allreduce_sum(parts)[0] == 60000.0          # FP32 holds 120000: no FP16 overflow
    assert nm.vadd(F16(60000.0), F16(60000.0)) == np.inf
    h = nm.all_f16()
    assert np.array_equal(nm.f16_bits(nm.vmul(h, F16(1.0))),
                          np.where(np.isnan(h), nm.F16_NAN_BITS, nm.f16_bits(h)))


# --------------------------------------------------------------------------- special functions


def test_exp_accuracy_and_specials():
    h = nm.f16_to_f32(nm.all_f16())
    rng = np.random.default_rng(5)
    x = np.concatenate([h, rng.uniform(-87.3, 88.7, 2_000_000).astype(F32)])
    y = nm.exp_f32(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64).clip(-700, 700))
    normal = np.isfinite(x) & (ref >= 2.0 ** -126) & (ref < 2.0 ** 128)
    assert np.max(np.abs(y - ref)[normal] / ulp32(ref[normal])) <= 1.0
    assert np.all((y[~normal & np.isfinite(x)] == 0) | (y[~normal & np.isfinite(x)] == np.inf))
    s = nm.exp_f32(np.array([-np.inf, np.inf, np.nan, 0.0, -104.0, 89.0], F32))
    assert s[0] == 0 and s[1] == np.inf and np.isnan(s[2]) and s[3] == 1.0
    assert s[4] == 0 and s[5] == np.inf


MANTISSAS = (np.arange(1 << 23, dtype=np.uint32) | np.uint32(0x3F800000)).view(F32)


def test_recip_exhaustive_mantissas_and_specials():
    # The exponent only shifts the result (exactly), so [1, 2) covers every normal input.
    for scale, step in ((1.0, 1), (2.0 ** -60, 61), (-(2.0 ** 70), 67)):
        x = (MANTISSAS[::step] * F32(scale)).astype(F32)
        y = nm.recip_f32(x).astype(np.float64)
        ref = 1.0 / x.astype(np.float64)
        assert np.max(np.abs(y - ref) / ulp32(ref)) <= 1.25
    s = nm.recip_f32(np.array([0.0, -0.0, 1e-45, np.inf, -np.inf, np.nan, 2.0 ** 126,
                               2.0 ** 126 * 1.5, 768.0], F32))
    assert list(s[:5]) == [np.inf, -np.inf, np.inf, 0.0, 0.0] and np.signbit(s[4])
    assert np.isnan(s[5]) and s[6] == 2.0 ** -126 and s[7] == 0.0
    assert abs(s[8] * 768.0 - 1.0) < 2.0 ** -23


def test_rsqrt_exhaustive_mantissas_and_specials():
    for scale, step in ((1.0, 1), (2.0, 1), (2.0 ** -41, 61), (2.0 ** 100, 67)):
        x = (MANTISSAS[::step] * F32(scale)).astype(F32)
        y = nm.rsqrt_f32(x).astype(np.float64)
        ref = 1.0 / np.sqrt(x.astype(np.float64))
        assert np.max(np.abs(y - ref) / ulp32(ref)) <= 1.2
    s = nm.rsqrt_f32(np.array([0.0, -0.0, 1e-45, np.inf, -1.0, -np.inf, np.nan, 4.0], F32))
    assert list(s[:4]) == [np.inf, -np.inf, np.inf, 0.0]
    assert np.all(np.isnan(s[4:7])) and s[7] == 0.5


def gelu_ref(x: np.ndarray) -> np.ndarray:
    """GPT-2's tanh GELU in float64, in the sigmoid form (no cancellation for x << 0)."""
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-2.0 * u))


def test_gelu_every_f16_input():
    h = nm.all_f16()
    fin = np.isfinite(h)
    ref = gelu_ref(h[fin].astype(np.float64))
    got = nm.gelu(h)[fin]
    diff = np.abs(ordered16(got) - ordered16(ref.astype(F16)))   # float64 -> FP16 directly
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 8
    g32 = nm.gelu_f32(h[fin].astype(F32)).astype(np.float64)
    big = np.abs(ref) > 2.0 ** -100
    assert np.max(np.abs(g32 - ref)[big] / np.abs(ref[big])) <= 2.0 ** -16
    s = nm.gelu(np.array([np.inf, -np.inf, np.nan, -0.0, 60000.0], F16))
    assert s[0] == np.inf and s[1] == 0 and np.signbit(s[1]) and np.isnan(s[2])
    assert np.signbit(s[3]) and s[4] == 60000.0


def test_layernorm_vs_float64():
    rng = np.random.default_rng(6)
    for n, width in [(7, 8), (64, 8), (257, 64), (768, 64)]:
        x = (rng.standard_normal((50, n)) * 3 + 1).astype(F16)
        g = (1 + rng.standard_normal(n) * 0.2).astype(F16)
        b = (rng.standard_normal(n) * 0.1).astype(F16)
        y = nm.layernorm(x, g, b, eps=1e-5, width=width)
        xd = x.astype(np.float64)
        mu = xd.mean(1, keepdims=True)
        ref = (xd - mu) / np.sqrt(((xd - mu) ** 2).mean(1, keepdims=True) + 1e-5) * g + b
        assert np.abs(ordered16(y) - ordered16(ref.astype(F16))).max() <= 1


def test_softmax_vs_float64_and_masking():
    rng = np.random.default_rng(7)
    for n, width in [(1, 8), (7, 8), (64, 64), (1024, 64)]:
        x = (rng.standard_normal((50, n)) * 4).astype(F16)
        x[:, n // 2 + 1:][rng.random((50, n - n // 2 - 1)) < 0.3] = -np.inf
        y = nm.softmax(x, scale=0.125, width=width)
        z = x.astype(np.float64) * 0.125
        e = np.exp(z - z.max(1, keepdims=True))
        ref = e / e.sum(1, keepdims=True)
        assert np.abs(ordered16(y) - ordered16(ref.astype(F16))).max() <= 1
        assert np.all(y[np.isneginf(x)] == 0)
    assert np.isnan(nm.softmax(np.array([[-np.inf, -np.inf]], F16), scale=1.0, width=2)).all()
    assert np.isnan(nm.softmax(np.array([[1.0, np.nan]], F16), scale=1.0, width=2)).all()
