"""Synthesis bookkeeping, and one real Yosys run on a small unit (~5 s once Yosys's WebAssembly
is cached; the first Yosys run on a machine compiles it, about 2 minutes)."""

from __future__ import annotations

import pytest

from fpgpt.config import load_preset
from fpgpt.hw import fpu
from fpgpt.hw.cosim import write_verilog
from fpgpt.hw.synth import _cells_to_resources, synth_module, unit_counts


def test_unit_counts_follow_config():
    hw = load_preset("u280")
    c = unit_counts(hw)
    assert c["f16_mul_f32"] == hw.mpu.lanes * hw.mpu.width
    # width-1 tree adders and one bias adder per lane, plus the accumulator
    assert c["f32_add_mpu"] == hw.mpu.lanes * (hw.mpu.width - 1) + hw.mpu.lanes
    assert c["f32_add_acc"] == hw.mpu.lanes
    assert c["f32_add_vpu"] == hw.vpu.width


def test_cells_to_resources():
    r = _cells_to_resources({"LUT6": 3, "LUT2": 1, "SRL16E": 2, "FDRE": 5, "FDSE": 1,
                             "DSP48E2": 2, "RAMB18E2": 2, "RAMB36E2": 1, "URAM288": 4,
                             "CARRY8": 9})
    assert r == {"LUT": 6, "FF": 6, "DSP48E2": 2, "BRAM36": 2, "URAM": 4}


def test_synth_small_unit(tmp_path):
    v = write_verilog(fpu.F16ToF32(latency=1), "h2f", tmp_path / "h2f.v")
    r = synth_module(v, "h2f", work_dir=tmp_path)
    assert r["resources"]["LUT"] > 0
    assert r["resources"]["FF"] <= 32          # one output register, constant bits removed
    assert r["resources"]["DSP48E2"] == 0


def test_synth_report_rejects_non_config(tmp_path):
    from fpgpt.hw.synth import synth_report
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not 'u280'$"):
        synth_report("u280", tmp_path)
