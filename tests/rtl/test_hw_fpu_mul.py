"""The MPU's multiplier (fpu.F16MulF32MPU): bit for bit with numpy (fpref) on FP16 pairs.

It is exact on every input pair, as the general multiplier (docs/rtl-mpu-adder.md, "The MPU's
multiplier"), so the reference is the contract's own, with no domain restriction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fpgpt.config import load_preset
from fpgpt.hw import fpu
from fpgpt.hw.cosim import run_cocotb

import mpu_operators
from cocotb_fpu_mul import b_values, mul_pairs
from fpref import F16_SPECIAL, ref
from test_hw_fpu import run_parallel

HERE = Path(__file__).parent
COPIES = mpu_operators.MUL_COPIES
COUNT = 1_000_000   # random operand pairs in Verilator, besides every a against b_values()


def _check(a, b, got):
    want = ref("f16_mul_f32", a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} mismatches, first a={a[bad[0]]:#x} b={b[bad[0]]:#x} "
                           f"got {got[bad[0]]:#x} want {want[bad[0]]:#x}")


def test_stimulus_covers_every_class():
    bs = b_values(1)
    assert 100 <= len(bs) <= 200
    e, f = bs >> 10 & 0x1F, bs & 0x3FF
    sub = f[(e == 0) & (f != 0)]
    # a subnormal for every leading-zero count of the fraction, both signs
    assert set(np.floor(np.log2(sub)).astype(int)) == set(range(10))
    assert np.count_nonzero((bs & 0x7FFF) == 0) == 2                      # +0, -0
    assert np.count_nonzero((bs & 0x7FFF) == 0x7C00) == 2                 # +inf, -inf
    assert np.count_nonzero((e == 31) & (f != 0)) >= 8                    # NaNs, payloads
    a, b = mul_pairs(1000, 1)
    assert len(a) == (1 << 16) * len(bs) // 2 + 1000          # the b with the sign bit clear
    assert np.count_nonzero(b[:(1 << 16) * len(bs) // 2] & 0x8000) == 0
    assert np.count_nonzero(b[-1000:] & 0x8000) > 300         # negative b in the random part
    assert np.array_equal(np.unique(a[:1 << 16]), np.arange(1 << 16))


def test_corner_pairs_amaranth_sim():
    # every pair of the corner values and every b against a sample of a: the same bits as numpy
    bs = b_values(1)
    rng = np.random.default_rng(3)
    av = np.concatenate([F16_SPECIAL, rng.integers(0, 1 << 16, 40).astype(np.uint16)])
    a, b = np.repeat(av, len(bs)).astype(np.uint16), np.tile(bs, len(av)).astype(np.uint16)
    _check(a, b, run_parallel(fpu.F16MulF32MPU, a, b))


def test_matches_general_multiplier():
    a, b = mul_pairs(0, 7)
    a, b = a[::389], b[::389]        # a slice of the exhaustive-a group: every positive b, spread a
    assert np.array_equal(run_parallel(fpu.F16MulF32MPU, a, b),
                          run_parallel(fpu.F16MulF32, a, b))


def test_mpu_lane_uses_the_mpu_multiplier():
    hw = load_preset("tiny")
    assert mpu_operators.builder_calls("build_f16_mul_f32", "build_f16_mul_f32_mpu") == {"general": 0, "mpu": hw.mpu.width}


def test_every_a_and_million_pairs_verilator(tmp_path, rtl_build):
    """Every FP16 ``a`` against the 68 positive ``b`` values, plus 1M random pairs, in
    Verilator."""
    d = rtl_build(mpu_operators.TOP)
    v = mpu_operators.write(d)
    stats = tmp_path / "stats.json"
    run_cocotb([v], mpu_operators.TOP, "cocotb_fpu_mul", d / "sim", test_dir=HERE, cxx_opt=False,
               env={"MUL_COPIES": str(COPIES), "FP_PORTS": "mul_", "MUL_COUNT": str(COUNT), "MUL_SEED": "1",
                    "MUL_STATS": str(stats)})
    s = json.loads(stats.read_text())
    assert s["mismatches"] == 0, s["first"]
    assert s["operand_pairs"] >= COUNT + (1 << 16) * 50
    print(s)
