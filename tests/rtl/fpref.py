"""Stimulus and numpy references for the FP unit tests (shared by pytest and cocotb modules).

The references are the numerics contract's (fpgpt.isa.numerics): numpy float32 arithmetic is
IEEE binary32 RNE, and every NaN result is the canonical NaN.
"""

from __future__ import annotations

import numpy as np

from fpgpt.isa import numerics as nx

F32_SPECIAL = np.array([
    0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x00000002, 0x007FFFFF, 0x807FFFFF,
    0x00800000, 0x80800000, 0x00800001, 0x00FFFFFF, 0x01000000, 0x3F800000, 0xBF800000,
    0x3F800001, 0x3F7FFFFF, 0x3FFFFFFF, 0x40000000, 0x33800000, 0x33800001, 0x34000000,
    0x4B800000, 0x4B7FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F000000, 0x7E800000, 0x7F800000,
    0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x477FE000, 0x477FF000, 0x477FEFFF,
    0x38800000, 0x387FFFFF, 0x33000000, 0x33000001, 0x33C00000, 0x3F000000, 0x00400000,
], dtype=np.uint32)

F16_SPECIAL = np.array([
    0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x0401, 0x3C00, 0xBC00, 0x3C01, 0x3BFF,
    0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF, 0x0200, 0x5BFF, 0x2000, 0x1000,
], dtype=np.uint16)


def _bits32(x: np.ndarray) -> np.ndarray:
    return nx.f32_bits(nx._canon32(np.asarray(x, np.float32)))


def ref(unit: str, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Reference output bits of FP unit ``unit`` (a name in fpgpt.hw.fpu.UNITS) on input bits."""
    with np.errstate(all="ignore"):
        if unit == "f32_add":
            return _bits32(a.view(np.float32) + b.view(np.float32))
        if unit == "f32_mul":
            return _bits32(a.view(np.float32) * b.view(np.float32))
        if unit == "f16_mul_f32":
            return _bits32(nx.f16_to_f32(a.view(np.float16)) * nx.f16_to_f32(b.view(np.float16)))
        if unit == "f16_to_f32":
            return nx.f32_bits(nx.f16_to_f32(a.view(np.float16)))
        if unit == "recip":
            return nx.f32_bits(nx.recip_f32(a.view(np.float32)))
        if unit == "rsqrt":
            return nx.f32_bits(nx.rsqrt_f32(a.view(np.float32)))
        if unit == "f32_to_f16":
            return nx.f16_bits(nx.f32_to_f16(a.view(np.float32)))
    raise KeyError(unit)


def random_bits(unit_in_width: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` operands: uniform bit patterns mixed with values near 1 and near the subnormal
    range, so that cancellation, carries and rounding ties are all exercised."""
    if unit_in_width == 16:
        return rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    x = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    kind = rng.integers(0, 4, n)
    sign = x & np.uint32(0x80000000)
    frac = x & np.uint32(0x007FFFFF)
    near1 = sign | (rng.integers(120, 135, n).astype(np.uint32) << 23) | frac
    tiny = sign | (rng.integers(0, 4, n).astype(np.uint32) << 23) | frac
    f16ish = sign | (rng.integers(98, 145, n).astype(np.uint32) << 23) | (frac & np.uint32(0x7FE000 | 0x1FFF * (n > 0)))
    return np.select([kind == 0, kind == 1, kind == 2], [x, near1, tiny], f16ish).astype(np.uint32)
