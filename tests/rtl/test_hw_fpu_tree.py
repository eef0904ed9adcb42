"""The MPU's adder (fpu.F32AddMPU): bit for bit with numpy float32 on the MPU's domain.

Its domain (docs/rtl-mpu-adder.md): operands are zeros, normals that are multiples of 2**-48,
infinities and NaNs; no subnormal operand or result, no overflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fpgpt.config import load_preset
from fpgpt.hw import fpu
from fpgpt.hw.cosim import run_cocotb

import mpu_operators
from cocotb_fpu_tree import SPECIAL, in_domain, mpu_domain_pairs
from fpref import ref
from test_hw_fpu import run_parallel

HERE = Path(__file__).parent
COPIES = mpu_operators.TREE_COPIES
COUNT = 1_000_000   # random operand pairs in Verilator (plus the corner pairs)


def _check(a, b, got):
    want = ref("f32_add", a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} mismatches, first a={a[bad[0]]:#x} b={b[bad[0]]:#x} "
                           f"got {got[bad[0]]:#x} want {want[bad[0]]:#x}")


def test_domain_stimulus_is_in_the_domain():
    a, b = mpu_domain_pairs(10_000, 3)
    for x in (a, b):
        finite = (x >> 23 & 0xFF) != 0xFF
        v = x[finite].view(np.float32).astype(np.float64)
        nz = v != 0
        assert np.all(np.abs(v[nz]) >= 2.0 ** -48) and np.all(np.abs(v) <= 2.0 ** 56)
        assert np.all(v == np.round(v * 2.0 ** 48) / 2.0 ** 48)        # multiples of 2**-48
        assert np.array_equal(in_domain(x), x)
    # the groups are there: cancellation to zero, equal exponents, specials
    s = ref("f32_add", a, b)
    assert np.count_nonzero((s << 1) == 0) > 100
    assert np.count_nonzero(((a ^ b) & 0x7F800000) == 0) > 2_000
    assert np.count_nonzero((s >> 23 & 0xFF) == 0xFF) > 1_000


def test_corner_and_random_pairs_amaranth_sim():
    a, b = mpu_domain_pairs(5_000, 11)     # the million pairs run in Verilator below
    _check(a, b, run_parallel(fpu.F32AddMPU, a, b))


def test_matches_general_adder_at_the_edges():
    # every pair of the lane's edge values: the same bits as the general adder (fpu.F32Add)
    pairs = np.array([(x, y) for x in SPECIAL for y in SPECIAL], dtype=np.uint32)
    a, b = pairs[:, 0], pairs[:, 1]
    assert np.array_equal(run_parallel(fpu.F32AddMPU, a, b), run_parallel(fpu.F32Add, a, b))


def test_mpu_lane_uses_the_mpu_adder():
    hw = load_preset("tiny")
    # the tree's width - 1 adders, the accumulator and the bias adder
    assert mpu_operators.builder_calls("build_f32_add", "build_f32_add_mpu") == {"general": 0, "mpu": hw.mpu.width + 1}


def test_million_pairs_verilator(tmp_path, rtl_build):
    """1M random pairs of the MPU domain in Verilator (measured: build about a minute cold on
    the shared 2-core machine, the run 6 s)."""
    d = rtl_build(mpu_operators.TOP)
    v = mpu_operators.write(d)
    stats = tmp_path / "stats.json"
    run_cocotb([v], mpu_operators.TOP, "cocotb_fpu_tree", d / "sim", test_dir=HERE, cxx_opt=False,
               env={"TREE_COPIES": str(COPIES), "FP_PORTS": "tree_", "TREE_COUNT": str(COUNT), "TREE_SEED": "5",
                    "TREE_STATS": str(stats)})
    s = json.loads(stats.read_text())
    assert s["mismatches"] == 0, s["first"]
    assert s["operand_pairs"] >= COUNT
