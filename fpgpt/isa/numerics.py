"""The numerics contract (docs/numerics.md), implemented once, vectorised with numpy.

This module is the golden model: the simulator's functional executor and the RTL's cocotb tests
both compare against it bit for bit. Every operation is a fixed sequence of IEEE binary32
additions and multiplications (round to nearest, ties to even), conversions between float and
integer, exponent/bit manipulation and the small tables defined here, so that hardware built
from binary32 add/mul units reproduces it exactly.

numpy's float32 array arithmetic is IEEE binary32 with round-to-nearest-even on every platform
numpy supports (SSE/AVX/NEON, never x87 extended precision), which is what makes this module a
faithful model. Conversions FP32 -> FP16 go directly (``astype(float16)`` from float32 is a
single correctly rounded conversion; tests/test_numerics.py checks it against an integer
reference), never through float64.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "NumericsError", "F16_NAN_BITS", "F32_NAN_BITS",
    # conversions and bit patterns
    "f16_to_f32", "f32_to_f16", "f16_bits", "f32_bits", "from_bits", "all_f16", "table_f16",
    # MPU
    "mpu_matmul", "mpu_matmul_f32", "mpu_dot",
    # VPU
    "vadd", "vmul", "vsum", "vmax", "allreduce_sum",
    "exp_f32", "recip_f32", "rsqrt_f32", "gelu_f32",
    "gelu", "layernorm", "softmax", "argmax",
    # constants the RTL needs
    "EXP_LOG2E", "EXP_C1", "EXP_C2", "EXP_POLY", "EXP_CLAMP_LO", "EXP_CLAMP_HI",
    "RECIP_TABLE_BITS", "RECIP_TABLE", "RSQRT_TABLE_BITS", "RSQRT_TABLE",
    "GELU_C", "GELU_K", "NEWTON_STEPS",
]

F32 = np.float32
F16 = np.float16

#: Canonical NaN written by every FP16 result (quiet, positive).
F16_NAN_BITS = 0x7E00
#: Canonical NaN returned by every FP32 result of this module (quiet, positive).
F32_NAN_BITS = 0x7FC00000


def _quiet(fn):
    """Runs ``fn`` with numpy's floating-point warnings off: inf and NaN are defined results."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return wrapper


class NumericsError(ValueError):
    """A bad argument to a numerics function (shape, width, mode)."""


# --------------------------------------------------------------------------- bit patterns


def f16_bits(x) -> np.ndarray:
    """Bit patterns (uint16) of FP16 values."""
    return np.ascontiguousarray(np.asarray(x, dtype=F16)).view(np.uint16)


def f32_bits(x) -> np.ndarray:
    """Bit patterns (uint32) of FP32 values."""
    return np.ascontiguousarray(np.asarray(x, dtype=F32)).view(np.uint32)


def from_bits(bits) -> np.ndarray:
    """FP16 values from uint16 bit patterns, or FP32 values from uint32 bit patterns.

    Parameters
    ----------
    bits : array_like of uint16 or uint32
        The dtype selects the format; Python ints are not accepted because their width is unknown.
    """
    b = np.asarray(bits)
    if b.dtype == np.uint16:
        return np.ascontiguousarray(b).view(F16)
    if b.dtype == np.uint32:
        return np.ascontiguousarray(b).view(F32)
    raise NumericsError(f"from_bits needs a uint16 or uint32 array, not dtype {b.dtype}; "
                        "use np.asarray(bits, dtype=np.uint16) or np.uint32")


def _canon32(y: np.ndarray) -> np.ndarray:
    """Replaces every NaN by the canonical FP32 NaN (payloads are not part of the contract)."""
    nan = np.isnan(y)
    if nan.any():
        y = np.where(nan, from_bits(np.uint32(F32_NAN_BITS)), y).astype(F32)
    return y


def f16_to_f32(x) -> np.ndarray:
    """FP16 -> FP32, exact (subnormals included). NaN becomes the canonical FP32 NaN."""
    return _canon32(np.asarray(x, dtype=F16).astype(F32))


@_quiet
def f32_to_f16(x) -> np.ndarray:
    """FP32 -> FP16 rounded to nearest even; subnormals kept; overflow -> ±inf; NaN -> 0x7E00.

    The input is taken as float32 first (a float64 argument is rounded to float32 by numpy before
    this conversion; the contract only ever rounds FP32 values).
    """
    y = np.asarray(x, dtype=F32).astype(F16)
    nan = np.isnan(y)
    if nan.any():
        y = np.where(nan, from_bits(np.uint16(F16_NAN_BITS)), y).astype(F16)
    return y


def all_f16() -> np.ndarray:
    """All 65536 FP16 values, indexed by their bit pattern."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16)


def table_f16(fn) -> np.ndarray:
    """``fn`` applied to every FP16 input: uint16 output bits indexed by the input bits.

    Parameters
    ----------
    fn : callable
        Maps a float16 array to a float16 array (e.g. :func:`gelu`), or to a float32 array (e.g.
        ``lambda x: exp_f32(f16_to_f32(x))``), in which case uint32 bits are returned.
    """
    y = np.asarray(fn(all_f16()))
    if y.dtype == F16:
        return f16_bits(y)
    if y.dtype == F32:
        return f32_bits(y)
    raise NumericsError(f"table_f16: fn must return float16 or float32, not {y.dtype}")


def _positive_int(value, *, pow2: bool) -> bool:
    return (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))
            and value >= 1 and not (pow2 and value & (value - 1)))


def _check_width(width) -> int:
    if not _positive_int(width, pow2=True):
        raise NumericsError(f"width must be a positive power of two (hw.mpu.width / "
                            f"hw.vpu.width), not {width!r}")
    return int(width)


# --------------------------------------------------------------------------- MPU

#: Products per block in exact mode (measured fastest of 2^14..2^18 on the lm-head shape).
_BLOCK_ELEMS = 1 << 18


def _tree(p: np.ndarray) -> np.ndarray:
    """Pairwise FP32 adder tree over the last axis (a power of two long).

    Level 0 adds (0,1),(2,3),...; level 1 adds the level-0 results (0,1),(2,3),...; and so on.
    """
    while p.shape[-1] > 1:
        p = p[..., 0::2] + p[..., 1::2]
    return p[..., 0]


def _as_f16_2d(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != F16:
        raise NumericsError(f"{name} must be a float16 array, not dtype {a.dtype}; "
                            "convert with f32_to_f16() first")
    if a.ndim != 2:
        raise NumericsError(f"{name} must be 2-D, not shape {a.shape}")
    return a


@_quiet
def mpu_matmul_f32(a16, b16t, bias16=None, *, width: int) -> np.ndarray:
    """The MPU's FP32 accumulators before write-back: ``A @ B^T (+ bias)`` per docs/numerics.md.

    Parameters
    ----------
    a16 : float16 array [M, K]
    b16t : float16 array [N, K]
        B transposed: row ``j`` is the vector dotted with every row of ``a16`` for column ``j``.
    bias16 : float16 array [N], optional
        Added to the accumulator as one more FP32 addition.
    width : int
        ``hw.mpu.width``: products per adder tree (a power of two).

    Returns
    -------
    float32 array [M, N]
        Bit-exact accumulators (NaN canonical).
    """
    w = _check_width(width)
    a = _as_f16_2d(a16, "a16")
    bt = _as_f16_2d(b16t, "b16t")
    if a.shape[1] != bt.shape[1]:
        raise NumericsError(f"a16 is {a.shape} and b16t is {bt.shape}: both need the same K "
                            "(b16t holds B transposed, [N, K])")
    m, k = a.shape
    n = bt.shape[0]
    chunks = max(1, -(-k // w))
    kp = chunks * w
    a32 = np.zeros((m, kp), F32)                  # K padded with +0 (so the products are +0)
    a32[:, :k] = a
    acc = np.empty((m, n), F32)
    # Blocks of rows of B are converted to FP32 as they are used, so the working set stays in
    # cache and B is never transposed (numpy's transposing copy is the slow part otherwise).
    mb = max(1, min(m, _BLOCK_ELEMS // (kp * 16)))
    nb = max(1, _BLOCK_ELEMS // (kp * mb))
    for j0 in range(0, n, nb):
        b32 = bt[j0:j0 + nb].astype(F32)
        if kp != k:
            b32 = np.concatenate([b32, np.zeros((b32.shape[0], kp - k), F32)], axis=1)
        for i0 in range(0, m, mb):
            p = a32[i0:i0 + mb, None, :] * b32[None, :, :]          # exact products [mb, nb, kp]
            p = _tree(p.reshape(p.shape[0], p.shape[1], chunks, w))  # chunk sums [mb, nb, chunks]
            s = np.zeros(p.shape[:2], F32)                          # accumulator starts at +0.0
            for c in range(chunks):
                s = s + p[:, :, c]
            acc[i0:i0 + mb, j0:j0 + nb] = s
    if bias16 is not None:
        bias = np.asarray(bias16)
        if bias.dtype != F16 or bias.shape != (n,):
            raise NumericsError(f"bias16 must be float16 of shape ({n},), not {bias.dtype} "
                                f"{bias.shape}")
        acc = acc + bias.astype(F32)
    return _canon32(acc)


@_quiet
def mpu_matmul(a16, b16t, bias16=None, *, width: int, mode: str = "exact") -> np.ndarray:
    """MPU matrix times transposed matrix, ``C = f16(A @ B^T (+ bias))``.

    Parameters
    ----------
    a16 : float16 array [M, K]
    b16t : float16 array [N, K]
    bias16 : float16 array [N], optional
    width : int
        ``hw.mpu.width``.
    mode : {"exact", "fast"}
        ``"exact"``: the contract, bit for bit (adder tree per ``width`` chunk, sequential chunk
        accumulation). ``"fast"``: float32 BLAS (summation order unspecified), then bias, then
        FP16; within the bound stated in docs/numerics.md of the exact result.

    Returns
    -------
    float16 array [M, N]
    """
    if mode == "exact":
        return f32_to_f16(mpu_matmul_f32(a16, b16t, bias16, width=width))
    if mode != "fast":
        raise NumericsError(f"mode must be 'exact' or 'fast', not {mode!r}")
    _check_width(width)
    a = _as_f16_2d(a16, "a16")
    bt = _as_f16_2d(b16t, "b16t")
    if a.shape[1] != bt.shape[1]:
        raise NumericsError(f"a16 is {a.shape} and b16t is {bt.shape}: both need the same K")
    acc = a.astype(F32) @ bt.astype(F32).T
    if bias16 is not None:
        acc = acc + np.asarray(bias16, dtype=F16).astype(F32)
    return f32_to_f16(acc)


def mpu_dot(a16, b16, *, width: int) -> np.float32:
    """One MPU lane's dot product of two FP16 vectors: the FP32 accumulator (before rounding)."""
    a = np.asarray(a16)
    b = np.asarray(b16)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise NumericsError(f"mpu_dot needs two 1-D vectors of equal length, not {a.shape} and "
                            f"{b.shape}")
    return mpu_matmul_f32(a[None, :], b[None, :], width=width)[0, 0]


# --------------------------------------------------------------------------- VPU basics


@_quiet
def vadd(a16, b16) -> np.ndarray:
    """Element-wise ``f16(f32(a) + f32(b))``."""
    return f32_to_f16(np.asarray(a16, F16).astype(F32) + np.asarray(b16, F16).astype(F32))


@_quiet
def vmul(a16, b16) -> np.ndarray:
    """Element-wise ``f16(f32(a) * f32(b))`` (the FP32 product is exact)."""
    return f32_to_f16(np.asarray(a16, F16).astype(F32) * np.asarray(b16, F16).astype(F32))


def _lanes(x: np.ndarray, width: int, fill: float) -> np.ndarray:
    """[..., n] -> [..., ceil(n/W), W], padded with ``fill`` (an identity of the reduction)."""
    n = x.shape[-1]
    steps = max(1, -(-n // width))
    if steps * width != n:
        pad = np.full(x.shape[:-1] + (steps * width - n,), fill, F32)
        x = np.concatenate([x, pad], axis=-1)
    return x.reshape(x.shape[:-1] + (steps, width))


@_quiet
def vsum(x32, *, width: int, partials: int = 1) -> np.ndarray:
    """Sum over the last axis in the VPU's order (docs/numerics.md, "Reductions").

    Elements go to the ``width`` lanes in beats of ``W``: beat ``b`` holds elements
    ``b*W .. b*W + W-1``, element ``b*W + j`` in lane ``j``. Lane ``j`` keeps ``partials = c``
    interleaved sums (its accumulator is a ring of ``c`` registers, ``vpu.acc_latency``): sum
    ``p`` adds the lane's elements of beats ``p, p+c, p+2c, ...`` sequentially from +0.0. The
    lane's total folds its sums in order, ``((s0 + s1) + s2) ...``; then a pairwise tree adds
    the lanes (level 0: (0,1),(2,3),...). ``partials = 1`` is one sequential sum per lane.
    """
    w = _check_width(width)
    c = _check_partials(partials)
    x = _lanes(np.asarray(x32, dtype=F32), w, 0.0)
    steps = x.shape[-2]
    if steps % c:           # whole rounds of c beats: the missing beats add +0 (exact)
        pad = np.zeros(x.shape[:-2] + (c - steps % c, w), F32)
        x = np.concatenate([x, pad], axis=-2)
    x = x.reshape(x.shape[:-2] + (-1, c, w))
    acc = np.zeros(x.shape[:-3] + (c, w), F32)
    for s in range(x.shape[-3]):
        acc = acc + x[..., s, :, :]
    lane = acc[..., 0, :]
    for p in range(1, c):
        lane = lane + acc[..., p, :]
    while lane.shape[-1] > 1:
        lane = lane[..., 0::2] + lane[..., 1::2]
    return _canon32(lane[..., 0])


def _check_partials(partials) -> int:
    if not _positive_int(partials, pow2=False):
        raise NumericsError(f"partials must be a positive integer (hw.vpu.acc_latency), not "
                            f"{partials!r}")
    return int(partials)


def _max2(first: np.ndarray, later: np.ndarray) -> np.ndarray:
    """Keeps ``first`` unless ``later`` is strictly greater (so a NaN ``later`` never wins)."""
    return np.where(later > first, later, first)


def vmax(x32, *, width: int) -> np.ndarray:
    """Maximum over the last axis in the VPU's order; lanes start at -inf; NaN never wins."""
    w = _check_width(width)
    x = _lanes(np.asarray(x32, dtype=F32), w, -np.inf)
    acc = np.full(x.shape[:-2] + (w,), -np.inf, F32)
    for s in range(x.shape[-2]):
        acc = _max2(acc, x[..., s, :])
    while acc.shape[-1] > 1:
        acc = _max2(acc[..., 0::2], acc[..., 1::2])
    return acc[..., 0]


@_quiet
def allreduce_sum(parts16) -> np.ndarray:
    """Ring all-reduce: ``f16(((+0 + f32(p0)) + f32(p1)) + ...)`` over axis 0, in device order."""
    p = np.asarray(parts16, dtype=F16)
    acc = np.zeros(p.shape[1:], F32)
    for d in range(p.shape[0]):
        acc = acc + p[d].astype(F32)
    return f32_to_f16(acc)


def argmax(x16) -> int:
    """First index of the largest element; NaN never wins (all-NaN -> 0); -0 ties with +0."""
    x = np.asarray(x16, dtype=F16)
    if x.ndim != 1 or x.size == 0:
        raise NumericsError(f"argmax needs a non-empty 1-D array, not shape {x.shape}")
    ok = ~np.isnan(x)
    if not ok.any():
        return 0
    best = x[ok].max()
    return int(np.flatnonzero(ok & (x == best))[0])


# --------------------------------------------------------------------------- special functions

def _f32c(v: float) -> np.float32:
    return F32(v)


#: exp: x is clamped to [EXP_CLAMP_LO, EXP_CLAMP_HI] (out-of-range results are then 0 / inf).
EXP_CLAMP_LO = _f32c(-104.0)
EXP_CLAMP_HI = _f32c(89.0)
EXP_LOG2E = _f32c(1.4426950408889634)
#: ln 2 split (Cody-Waite): C1 has 9 significant bits so that n*C1 is exact for |n| <= 2^15.
EXP_C1 = _f32c(0.693359375)
EXP_C2 = _f32c(np.log(2.0) - 0.693359375)
#: exp(r) ~= 1 + r + r^2 * P(r), P by Horner from the highest degree (Cephes expf).
EXP_POLY = tuple(_f32c(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                    4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))

#: Newton-Raphson iterations after the table seed (reciprocal and reciprocal square root).
NEWTON_STEPS = 2
RECIP_TABLE_BITS = 7
#: Entry i: f32(1 / (1 + (i + 0.5) / 2^RECIP_TABLE_BITS)), the midpoint of mantissa interval i.
RECIP_TABLE = (1.0 / (1.0 + (np.arange(1 << RECIP_TABLE_BITS) + 0.5)
                      / (1 << RECIP_TABLE_BITS))).astype(F32)
RSQRT_TABLE_BITS = 6
#: Entry (p << RSQRT_TABLE_BITS) | i: f32(1 / sqrt(2^p * (1 + (i + 0.5) / 2^RSQRT_TABLE_BITS))).
RSQRT_TABLE = (1.0 / np.sqrt(np.repeat([1.0, 2.0], 1 << RSQRT_TABLE_BITS)
                             * (1.0 + (np.tile(np.arange(1 << RSQRT_TABLE_BITS), 2) + 0.5)
                                / (1 << RSQRT_TABLE_BITS)))).astype(F32)

#: GELU (tanh form): gelu(x) = x / (1 + exp(GELU_K * x * (1 + GELU_C * x^2))).
GELU_C = _f32c(0.044715)
GELU_K = _f32c(-2.0 * np.sqrt(2.0 / np.pi))

_ONE = F32(1.0)
_HALF = F32(0.5)


def _scale_pow2(y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``y * 2^e`` by adding ``e`` to the exponent field; y normal and positive-or-signed.

    Results whose biased exponent falls to 0 or below flush to ±0; 255 or above become ±inf.
    """
    bits = f32_bits(y).astype(np.int64)
    expo = ((bits >> 23) & 0xFF) + e.astype(np.int64)
    sign = bits & 0x80000000
    normal = (bits & ~(0xFF << 23)) | (np.clip(expo, 0, 255) << 23)
    out = np.where(expo >= 255, sign | 0x7F800000, np.where(expo <= 0, sign, normal))
    return out.astype(np.uint32).view(F32)


@_quiet
def exp_f32(x32) -> np.ndarray:
    """e^x in FP32 by the fixed sequence of docs/numerics.md (Cephes-style, ~1 ulp).

    -inf -> +0, +inf -> +inf, NaN -> NaN; results below 2^-126 flush to +0 (never subnormal).
    """
    x = np.asarray(x32, dtype=F32)
    xc = np.minimum(np.maximum(x, EXP_CLAMP_LO), EXP_CLAMP_HI)  # NaN handled at the end
    n = np.rint(xc * EXP_LOG2E)                                 # RNE float -> int
    r = (xc - n * EXP_C1) - n * EXP_C2
    z = r * r
    p = np.full(x.shape, EXP_POLY[0], F32)
    for c in EXP_POLY[1:]:
        p = p * r + c
    y = (p * z + r) + _ONE
    out = _scale_pow2(y, np.nan_to_num(n).astype(np.int64))
    return _canon32(np.where(np.isnan(x), F32(np.nan), out).astype(F32))


def _split(x: np.ndarray):
    """|x| = 2^e * m with m in [1, 2): returns (sign bits, e, m, mantissa field)."""
    bits = f32_bits(x)
    frac = bits & np.uint32(0x7FFFFF)
    e = ((bits >> 23) & 0xFF).astype(np.int64) - 127
    m = (frac | np.uint32(0x3F800000)).view(F32)
    return bits & np.uint32(0x80000000), e, m, frac


@_quiet
def recip_f32(x32) -> np.ndarray:
    """1/x in FP32: table seed on the top mantissa bits, then Newton-Raphson (docs/numerics.md).

    Subnormal inputs count as ±0 (-> ±inf); ±inf -> ±0; results below 2^-126 flush to ±0.
    """
    x = np.asarray(x32, dtype=F32)
    sign, e, m, frac = _split(x)
    y = RECIP_TABLE[(frac >> (23 - RECIP_TABLE_BITS)).astype(np.intp)]
    for _ in range(NEWTON_STEPS):
        d = _ONE - m * y
        y = y + y * d
    out = _scale_pow2(y, -e).view(np.uint32) | sign
    out = out.view(F32)
    ax = np.abs(x)
    out = np.where(ax < F32(2.0 ** -126), np.copysign(F32(np.inf), x), out)
    out = np.where(np.isinf(x), np.copysign(F32(0.0), x), out)
    out = np.where(np.isnan(x), F32(np.nan), out)
    return _canon32(out.astype(F32))


@_quiet
def rsqrt_f32(x32) -> np.ndarray:
    """1/sqrt(x) in FP32: table seed on exponent parity + top mantissa bits, then Newton-Raphson.

    +0 and positive subnormals -> +inf, -0 and negative subnormals -> -inf, +inf -> +0,
    x < 0 and NaN -> NaN.
    """
    x = np.asarray(x32, dtype=F32)
    _, e, m, frac = _split(x)
    odd = (e & 1).astype(np.intp)                 # e - odd is even; m2 = 2^odd * m in [1, 4)
    m2 = m * np.where(odd == 1, F32(2.0), _ONE)
    y = RSQRT_TABLE[(odd << RSQRT_TABLE_BITS) | (frac >> (23 - RSQRT_TABLE_BITS)).astype(np.intp)]
    for _ in range(NEWTON_STEPS):
        d = _ONE - (y * y) * m2
        y = y + y * (d * _HALF)
    out = _scale_pow2(y, -((e - odd) >> 1))
    tiny = np.abs(x) < F32(2.0 ** -126)
    out = np.where(tiny, np.copysign(F32(np.inf), x), out)
    out = np.where(x == F32(np.inf), F32(0.0), out)
    out = np.where(np.isnan(x) | ((x < 0) & ~tiny), F32(np.nan), out)
    return _canon32(out.astype(F32))


@_quiet
def gelu_f32(x32) -> np.ndarray:
    """GPT-2's tanh-form GELU in FP32 as ``x * recip(1 + exp(K*x*(1 + C*x*x)))``.

    Exact order: v = x*x; w = v*C; w1 = w + 1; u = x*w1; k = u*K; t = exp(k); d = t + 1;
    r = recip(d); g = x*r. Large positive x gives exactly x; x -> -inf gives -0 (an input of
    -inf is special-cased to -0 because -inf * 0 would be NaN); NaN -> NaN.
    """
    x = np.asarray(x32, dtype=F32)
    v = x * x
    w = v * GELU_C
    w1 = w + _ONE
    u = x * w1
    k = u * GELU_K
    t = exp_f32(k)
    d = t + _ONE
    r = recip_f32(d)
    g = x * r
    g = np.where(x == F32(-np.inf), F32(-0.0), g)
    return _canon32(g.astype(F32))


# --------------------------------------------------------------------------- VPU instructions


def gelu(x16) -> np.ndarray:
    """The GELU instruction: ``f16(gelu_f32(f32(x)))``."""
    return f32_to_f16(gelu_f32(f16_to_f32(x16)))


def _rows16(x16, name: str) -> np.ndarray:
    x = np.asarray(x16)
    if x.dtype != F16 or x.ndim != 2 or x.shape[1] == 0:
        raise NumericsError(f"{name} must be a float16 array [rows, n] with n >= 1, not "
                            f"{x.dtype} {x.shape}")
    return x


@_quiet
def layernorm(x16, gamma16, beta16, *, eps, width: int, partials: int = 1) -> np.ndarray:
    """The LAYERNORM instruction on each row of ``x16`` [rows, n] (order in docs/numerics.md).

    s = vsum(x); rn = recip(f32(n)); mean = s*rn; d = x - mean; v = vsum(d*d)*rn;
    inv = rsqrt(v + eps); y = ((d*inv)*gamma) + beta; result f16(y).
    """
    x = _rows16(x16, "x16").astype(F32)
    n = x.shape[1]
    g = np.asarray(gamma16, dtype=F16).astype(F32)
    b = np.asarray(beta16, dtype=F16).astype(F32)
    if g.shape != (n,) or b.shape != (n,):
        raise NumericsError(f"gamma16 and beta16 must have shape ({n},), not {g.shape} and "
                            f"{b.shape}")
    rn = recip_f32(F32(n))
    mean = vsum(x, width=width, partials=partials) * rn
    d = x - mean[:, None]
    var = vsum(d * d, width=width, partials=partials) * rn
    inv = rsqrt_f32(var + F32(eps))
    return f32_to_f16(((d * inv[:, None]) * g) + b)


@_quiet
def softmax(x16, *, scale, width: int, partials: int = 1,
            sum_width: int | None = None) -> np.ndarray:
    """The SOFTMAX instruction on each row of ``x16`` [rows, n] (order in docs/numerics.md).

    y = x*scale; m = vmax(y); e = exp(y - m); s = vsum(e); r = recip(s); result f16(e*r).
    -inf inputs give 0 (when the row has a finite maximum). A row holding +inf or NaN, or only
    -inf, gives NaN everywhere (IEEE propagation: inf - inf, NaN - m).

    ``sum_width``: the lanes of the exp-sum, ``hw.vpu.special_lanes`` (the lanes with an exp
    unit, which take the row in sub-beats of that width); ``width`` when not given.
    """
    x = _rows16(x16, "x16").astype(F32)
    y = x * F32(scale)
    m = vmax(y, width=width)
    e = exp_f32(y - m[:, None])
    s = vsum(e, width=width if sum_width is None else sum_width, partials=partials)
    r = recip_f32(s)
    return f32_to_f16(e * r[:, None])
