"""The MPU engine: constructor checks and the Verilator bench against the executor
(cocotb_mpu_engine.py: random MMs with K % width != 0, N % lanes != 0, bias, mask, batch,
R[rk]/R[rn], ldb = 0; scratchpad back-pressure; bit-exact scratchpad)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fpgpt.config import load_preset
from fpgpt.hw.mpu_engine import MPUEngine


def test_mpu_engine_checks(quiet_unused):
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not 'tiny'$"):
        MPUEngine(hw="tiny")


def test_mpu_engine_verilator_tiny(tmp_path, rtl_build):
    """30 random MMs in Verilator, each compared with the executor bit for bit."""
    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny")
    d = rtl_build(f"mpu_engine_{hw.artifact_name}")
    v = write_verilog(MPUEngine(hw=hw), "mpu_engine", d / "mpu_engine.v")
    stats = tmp_path / "stats.json"
    run_cocotb([v], "mpu_engine", "cocotb_mpu_engine", d / "sim", test_dir=Path(__file__).parent,
               env={"MPU_PRESET": "tiny", "MPU_N": "30", "MPU_SEED": "3", "MPU_STATS": str(stats)})
    s = json.loads(stats.read_text())
    assert s["instructions"] == 30 and s["mismatches"] == []
    recs = s["records"]
    # The bench covered what it claims to.
    w, lanes = hw.mpu.width, hw.mpu.lanes
    assert any(r["k"] % w for r in recs) and any(r["k"] == 0 for r in recs)
    assert any(r["n"] % lanes for r in recs)
    assert any(r["has_bias"] for r in recs) and any(r["mask"] for r in recs)
    assert any(r["batch"] > 1 for r in recs)
