"""cocotb test module: the MPU multiplier (fpu.F16MulF32MPU) against numpy on FP16 pairs.

Also the stimulus of tests/rtl/test_hw_fpu_mul.py (imported flatly from tests/rtl).
Environment: MUL_COPIES (the DUT is a ParallelUnit of that many multipliers), MUL_COUNT
(random operand pairs, besides every ``a`` against the positive :func:`b_values`), MUL_SEED, MUL_STATS (a
JSON file for the counts).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from fpref import F16_SPECIAL, ref
from mpu_operators import stream_pairs

SIGN16 = np.uint16(0x8000)


def b_values(seed: int) -> np.ndarray:
    """The ``b`` operands every FP16 ``a`` meets: :data:`fpref.F16_SPECIAL` (zeros,
    infinities, NaNs with and without payload, extremes), a subnormal for every leading-zero
    count with one bit and with all bits below it set, the normal binade edges, and 32
    random patterns; each with both signs."""
    rng = np.random.default_rng(seed)
    sub = [1 << k for k in range(10)] + [(2 << k) - 1 for k in range(10)]
    normal = [0x0400, 0x07FF, 0x3C00, 0x3FFF, 0x7BFF, 0x7C00, 0x7C01, 0x7DFF, 0x7E00, 0x7FFF]
    x = np.concatenate([F16_SPECIAL, np.array(sub + normal, np.uint16),
                        rng.integers(0, 1 << 16, 32).astype(np.uint16)]).astype(np.uint16)
    return np.unique(np.concatenate([x, x ^ SIGN16]))


def mul_pairs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every FP16 ``a`` against every :func:`b_values` with its sign bit clear, then ``count``
    random pairs: half uniform bit patterns, half with a subnormal or zero operand (exponent
    field 0) against a uniform one, in either order. The product's sign is the operands' XOR
    and nothing else depends on it, so every ``a`` (both signs) against the positive ``b``
    covers the exhaustive part in half the Verilator time that both signs of ``b`` took
    (negative ``b`` come in the random pairs and the corner pairs of test_hw_fpu_mul.py)."""
    rng = np.random.default_rng(seed)
    bs = b_values(seed)
    bs = bs[bs < SIGN16]
    a_all = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    a_parts, b_parts = [np.tile(a_all, len(bs))], [np.repeat(bs, len(a_all))]
    half = count // 2
    a_parts.append(rng.integers(0, 1 << 16, half).astype(np.uint16))
    b_parts.append(rng.integers(0, 1 << 16, half).astype(np.uint16))
    n = count - half
    sub = (rng.integers(0, 1 << 16, n) & 0x83FF).astype(np.uint16)
    other = rng.integers(0, 1 << 16, n).astype(np.uint16)
    first = rng.random(n) < 0.5
    a_parts.append(np.where(first, sub, other)); b_parts.append(np.where(first, other, sub))
    return (np.concatenate(a_parts).astype(np.uint16), np.concatenate(b_parts).astype(np.uint16))



@cocotb.test()
async def mpu_multiplier_matches_numpy(dut):
    copies = int(os.environ["MUL_COPIES"])
    a, b = mul_pairs(int(os.environ["MUL_COUNT"]), int(os.environ.get("MUL_SEED", "1")))
    want = ref("f16_mul_f32", a, b)
    n = len(a)
    got, sim_s = await stream_pairs(dut, a, b, copies, "<u4")
    bad = np.flatnonzero(got != want)
    first = None if not bad.size else (f"a={a[bad[0]]:#06x} b={b[bad[0]]:#06x} "
                                       f"got {got[bad[0]]:#010x} want {want[bad[0]]:#010x}")
    if os.environ.get("MUL_STATS"):
        with open(os.environ["MUL_STATS"], "w") as f:
            json.dump({"operand_pairs": int(n), "b_values": int(len(b_values(1))),
                       "mismatches": int(bad.size), "first": first, "sim_s": sim_s}, f)
    assert not bad.size, f"{bad.size} of {n} mismatch, first {first}"
