"""cocotb test module: the MPU adder (fpu.F32AddMPU) against numpy float32 on the MPU's domain.

Also the stimulus of tests/rtl/test_hw_fpu_tree.py (imported flatly from tests/rtl).
Environment: TREE_COPIES (the DUT is a ParallelUnit of that many adders), TREE_COUNT (random
operand pairs, plus the corner pairs), TREE_SEED, TREE_STATS (a JSON file for the counts).
"""

from __future__ import annotations

import itertools
import json
import os

import cocotb
import numpy as np

from fpref import ref
from mpu_operators import stream_pairs

SIGN = np.uint32(0x80000000)
#: Largest magnitude drawn: 2**40 (K * 2**32 for K up to 256 products, with room).
MAX_EXP = 40
#: Every MPU value is a multiple of 2**-48 (docs/numerics.md), so none is below it.
MIN_EXP = -48

#: Values the lane meets at the edges: signed zeros, infinities, NaNs (the canonical one and
#: two with payloads), 1, the smallest product 2**-48, the largest product 65504**2, and
#: 2**40, 2**56 (an accumulator far above the random values).
SPECIAL = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
                    0x7F800001, 0x3F800000, 0xBF800000, 0x27800000, 0xA7800000, 0x4F7FC002,
                    0xCF7FC002, 0x53800000, 0x5B800000], dtype=np.uint32)


def in_domain(x: np.ndarray) -> np.ndarray:
    """``x`` (finite FP32 bits) as a multiple of 2**-48: fraction bits below 2**-48 cleared,
    magnitudes below 2**-48 made a zero of the same sign."""
    e = (x >> 23 & 0xFF).astype(np.int64) - 127
    below = np.clip(MIN_EXP - (e - 23), 0, 23).astype(np.uint32)
    y = x & ~((np.uint32(1) << below) - np.uint32(1))
    return np.where(e < MIN_EXP, x & SIGN, y).astype(np.uint32)


def random_values(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` finite nonzero values of the domain, both signs; a third have at most 22
    significant bits (like a product), a tenth are zeros of either sign."""
    sign = rng.integers(0, 2, n).astype(np.uint32) << 31
    e = rng.integers(MIN_EXP + 127, MAX_EXP + 128, n).astype(np.uint32)
    frac = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    frac = np.where(rng.random(n) < 1 / 3, frac & np.uint32(0x7FFFFE), frac)
    x = in_domain(sign | e << 23 | frac)
    return np.where(rng.random(n) < 0.1, sign, x).astype(np.uint32)


def mpu_domain_pairs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``count`` operand pairs of the MPU's domain: every pair of :data:`SPECIAL`, and
    random pairs in five equal groups: independent; cancellation (b = -a a few ulps off);
    equal exponents; exponents 0..31 apart (every alignment); infinities and NaNs against
    random values."""
    rng = np.random.default_rng(seed)
    k = count // 5
    pairs = np.array(list(itertools.product(SPECIAL, SPECIAL)), dtype=np.uint32)
    a_parts, b_parts = [pairs[:, 0]], [pairs[:, 1]]
    a = random_values(k, rng)
    a_parts.append(a); b_parts.append(random_values(k, rng))
    a = random_values(k, rng)
    b = in_domain((a ^ SIGN) + rng.integers(-4, 5, k).astype(np.uint32))
    a_parts.append(a); b_parts.append(np.where(a << 1 == 0, a ^ SIGN, b))
    a, b = random_values(k, rng), random_values(k, rng)
    same_exp = (b & np.uint32(0x807FFFFF)) | (a & np.uint32(0x7F800000))
    a_parts.append(a); b_parts.append(in_domain(same_exp))
    a, b = random_values(k, rng), random_values(k, rng)
    ea = (a >> 23 & 0xFF).astype(np.int64)
    eb = np.clip(ea - rng.integers(0, 32, k), MIN_EXP + 127, None).astype(np.uint32)
    b = in_domain((b & np.uint32(0x807FFFFF)) | eb << 23)
    a_parts.append(a); b_parts.append(np.where(a << 1 == 0, a, b))
    n = count - 4 * k
    s = SPECIAL[rng.integers(0, 7, n)]
    r = random_values(n, rng)
    first = rng.random(n) < 0.5
    a_parts.append(np.where(first, s, r)); b_parts.append(np.where(first, r, s))
    return np.concatenate(a_parts).astype(np.uint32), np.concatenate(b_parts).astype(np.uint32)



@cocotb.test()
async def mpu_adder_matches_numpy(dut):
    copies = int(os.environ["TREE_COPIES"])
    a, b = mpu_domain_pairs(int(os.environ["TREE_COUNT"]), int(os.environ.get("TREE_SEED", "1")))
    want = ref("f32_add", a, b)
    n = len(a)
    got, sim_s = await stream_pairs(dut, a, b, copies, "<u4")
    bad = np.flatnonzero(got != want)
    first = None if not bad.size else (f"a={a[bad[0]]:#x} b={b[bad[0]]:#x} "
                                       f"got {got[bad[0]]:#x} want {want[bad[0]]:#x}")
    if os.environ.get("TREE_STATS"):
        with open(os.environ["TREE_STATS"], "w") as f:
            json.dump({"operand_pairs": int(n), "mismatches": int(bad.size), "first": first,
                       "sim_s": sim_s}, f)
    assert not bad.size, f"{bad.size} of {n} mismatch, first {first}"
