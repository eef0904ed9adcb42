"""The MPU engine: constructor checks, the closed-form cycle count, and the Verilator bench against
the executor (cocotb_mpu_engine.py: compiler-like fast-path MMs and random MMs with K % width != 0,
K = 0, N % lanes != 0, bias, mask, batch, R[rk]/R[rn], ldb = 0, any alignment; every MM bit-exact,
and cycle-exact against engine_cycles while the scratchpad grants every request)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fpgpt.config import load_preset
from fpgpt.geometry import mm_entry_groups
from fpgpt.hw.mpu_engine import MPUEngine, engine_cycles, fast_b_layout


def _mm(**kw):
    f = dict(a=0, b=0, bias=0, dst=0, m=1, k=64, n=64, lda=64, ldb=72, ldc=64, batch=1,
             bsa=0, bsb=0, bsc=0, rk=0, rn=0, has_bias=0, mask=0)
    f.update(kw)
    return f


def test_mpu_engine_checks(quiet_unused):
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not 'tiny'$"):
        MPUEngine(hw="tiny")
    with pytest.raises(ValueError, match=r"^max_k must be a positive integer, not 0$"):
        MPUEngine(hw=load_preset("tiny"), max_k=0)


def test_fast_b_rule():
    u280 = load_preset("u280")      # 16 banks: ldb/64 must be 1 mod 8 (1 or 9 mod 16)
    assert fast_b_layout(u280, _mm(ldb=25 * 64)) and fast_b_layout(u280, _mm(ldb=17 * 64))
    assert not fast_b_layout(u280, _mm(ldb=3 * 64)) and not fast_b_layout(u280, _mm(ldb=5 * 64))
    hw = load_preset("tiny")        # C = 8, 4 banks: ldb/8 must be odd (1 mod 2)
    assert fast_b_layout(hw, _mm(ldb=72))
    assert fast_b_layout(hw, _mm(ldb=40, b=16))
    assert fast_b_layout(hw, _mm(ldb=24))                # 3 chunks: lanes in banks 0, 3, 2, 1
    assert not fast_b_layout(hw, _mm(ldb=64))            # 8 chunks: every lane in one bank
    assert not fast_b_layout(hw, _mm(ldb=48))            # 6 chunks: lanes 0 and 2 share a bank
    assert not fast_b_layout(hw, _mm(ldb=73))            # rows not chunk-aligned
    assert not fast_b_layout(hw, _mm(ldb=72, b=4))       # start not chunk-aligned
    assert not fast_b_layout(hw, _mm(ldb=0))             # broadcast
    assert not fast_b_layout(hw, _mm(ldb=72, batch=2, bsb=7))
    assert fast_b_layout(hw, _mm(ldb=72, batch=2, bsb=8))


def test_engine_cycles_fast_path_is_one_chunk_step_per_cycle_plus_row_loads():
    """On the fast path the engine costs one cycle per chunk step (batch·m·⌈N/lanes⌉·⌈K/C⌉)
    when the groups fill the accumulator's D slots, plus the lane pipeline, the A-row loads and
    fixed ends; a last super-group of g < D groups pads each chunk step but its last to D."""
    hw = load_preset("tiny")
    d, lanes = hw.mpu.acc_latency, hw.mpu.lanes
    assert d == 5
    for m, k, n in ((1, 64, 2 * d * lanes), (2, 256, d * lanes), (3, 64, 3 * d * lanes)):
        f = _mm(m=m, k=k, n=n, lda=k, ldb=((k // 8 + 1) * 8 if (k // 8) % 4 != 1 else k))
        assert fast_b_layout(hw, f)
        rows_overhead = m * (-(-k // 32) + 1)
        steps = m * -(-n // lanes) * -(-k // hw.mpu.width)
        assert engine_cycles(hw, f) - (steps + hw.mpu.pipeline_cycles) == rows_overhead + 2 + 3
    # 65 groups of 8 chunks: 13 full super-groups
    f = _mm(m=1, k=64, n=257, lda=64, ldb=72)
    assert engine_cycles(hw, f) == 2 + (2 + 1 + 65 * 8) + hw.mpu.pipeline_cycles + 3
    # 7 groups of 8 chunks: a super-group of 5, then one of 2 (3 bubbles per step but its last)
    f = _mm(m=1, k=64, n=28, lda=64, ldb=72)
    assert engine_cycles(hw, f) == 2 + (2 + 1 + 7 * d * 2 + 7) + hw.mpu.pipeline_cycles + 3
    # one chunk step: no dependency, one cycle per group, and a cycle per bias line: one line
    # per super-group (its D groups' biases: mm_entry_groups), so 10 groups read 2 lines, and a
    # super-group of 3 one
    assert mm_entry_groups(hw) == d
    f = _mm(m=1, k=8, n=40, lda=8, ldb=8, has_bias=1)
    assert fast_b_layout(hw, f)
    assert engine_cycles(hw, f) == 2 + (1 + 1 + 10 + 2) + hw.mpu.pipeline_cycles + 3
    f = _mm(m=1, k=8, n=32, lda=8, ldb=8, has_bias=1)
    assert engine_cycles(hw, f) == 2 + (1 + 1 + 8 + 2) + hw.mpu.pipeline_cycles + 3
    # slow path: one lane-chunk per cycle, a group's steps but its last padded to D
    f = _mm(m=1, k=64, n=8, ldb=64)
    assert engine_cycles(hw, f) == 2 + (2 + 1 + 2 * 1 + 2 * (7 * d + 4)) + \
        hw.mpu.pipeline_cycles + 2


def test_mpu_engine_verilator_tiny(tmp_path, rtl_build):
    """Compiler-like and random MMs in Verilator: bit-exact, and cycle-exact when granted."""
    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny")
    d = rtl_build(f"mpu_engine_{hw.artifact_name}")
    v = write_verilog(MPUEngine(hw=hw), "mpu_engine", d / "mpu_engine.v", share=True)
    stats = tmp_path / "stats.json"
    run_cocotb([v], "mpu_engine", "cocotb_mpu_engine", d / "sim", test_dir=Path(__file__).parent,
               cxx_opt=False,   # -O0: the build dominates (docs/rtl.md)
               env={"MPU_PRESET": "tiny", "MPU_N": "40", "MPU_EXACT": "25", "MPU_SEED": "3",
                    "MPU_STATS": str(stats), "MPU_PAIRS": "12"})
    s = json.loads(stats.read_text())
    assert s["mismatches"] == []
    recs = s["records"]
    exact = [r for r in recs if r["exact"]]
    assert len(exact) >= 30 and all(r["rtl_cycles"] == r["engine_cycles"] for r in exact)
    # the line port's accesses are the timing model's port-B count, MM by MM (with refusals
    # too: a refused request is asked again, not counted twice)
    assert [r["line_accesses"] for r in recs] == [r["model_line_accesses"] for r in recs]
    assert any(r["fast"] and r["has_bias"] and r["line_accesses"] for r in recs)
    assert any(not r["exact"] for r in recs)
    # The bench covered what it claims to.
    w, lanes = hw.mpu.width, hw.mpu.lanes
    for group in (exact, [r for r in recs if not r["exact"]]):
        assert any(r["fast"] for r in group) and any(not r["fast"] for r in group)
    assert any(r["k"] % w for r in recs) and any(r["k"] == 0 for r in recs)
    # the fast path's strides that are not a rotation (an odd chunk count, not 1 mod banks)
    odd = [r for r in recs if r["fast"] and (r["ldb"] // w) % lanes != 1]
    assert any(r["exact"] for r in odd) and any(not r["exact"] for r in odd)
    assert any(r["n"] % lanes for r in recs) and any(r["ldb"] == 0 for r in recs)
    assert any(r["has_bias"] for r in recs) and any(r["mask"] for r in recs)
    assert any(r["batch"] > 1 for r in recs)
    # back to back: the next MM started before the previous one completed, on both B paths
    pairs = s["pairs"]
    assert len(pairs) == 12 and all(p["exact"] for p in pairs)
    for fast in (True, False):
        assert any(p["fast"][x] is fast and p["handshakes"][x + 1] - p["handshakes"][x]
                   < p["cycles"][x] for p in pairs for x in range(2))


@pytest.mark.skipif(os.environ.get("FPGPT_SLOW_RTL") != "1", reason=(
    "a second Verilator build of the MPU engine (2 lanes): 38 s wall on a 2-core machine "
    "(2026-12-07), for a geometry no preset has (entries of fewer groups than a super-group); "
    "make test's budget has no room left; run with FPGPT_SLOW_RTL=1"))
def test_mpu_engine_verilator_entries_of_fewer_groups(tmp_path, rtl_build):
    """With 2 lanes of 8 (a 16-element line) a super-group of 5 lane groups does not fit one
    line write from any chunk offset, so an entry is 4 groups (geometry.mm_entry_groups) and a
    super-group's results and biases go in two entries: bit-exact, cycle-exact when granted,
    and the line-port accesses are costs.port_b_accesses."""
    from fpgpt.geometry import mm_entries
    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny").replace(**{"mpu.lanes": 2, "buffers.banks": 2})
    assert (mm_entry_groups(hw), hw.mpu.acc_latency) == (4, 5) and mm_entries(hw, 12) == 5
    d = rtl_build(f"mpu_engine_{hw.artifact_name}")
    v = write_verilog(MPUEngine(hw=hw), "mpu_engine", d / "mpu_engine.v", share=True)
    toml = tmp_path / "lanes2.toml"
    hw.save(toml)
    stats = tmp_path / "stats.json"
    run_cocotb([v], "mpu_engine", "cocotb_mpu_engine", d / "sim", test_dir=Path(__file__).parent,
               cxx_opt=False,
               env={"MPU_PRESET": str(toml), "MPU_N": "30", "MPU_EXACT": "20", "MPU_SEED": "5",
                    "MPU_STATS": str(stats), "MPU_PAIRS": "0"})
    s = json.loads(stats.read_text())
    assert s["mismatches"] == []
    recs = s["records"]
    assert all(r["rtl_cycles"] == r["engine_cycles"] for r in recs if r["exact"])
    assert [r["line_accesses"] for r in recs] == [r["model_line_accesses"] for r in recs]
    # super-groups of more than one entry, with biases, ran
    assert any(r["fast"] and r["has_bias"] and -(-r["n"] // 2) > 4 for r in recs)
