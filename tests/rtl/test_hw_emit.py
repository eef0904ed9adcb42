"""Verilog emission for a preset: files named by the artifact, a manifest, a clean -Wall lint
(the tiny core's top included: its Vitis port names, test_hw_top.check_vitis_ports)."""

from __future__ import annotations

import json
import re

import pytest

from fpgpt.config import load_preset
from fpgpt.hw.emit import emit_verilog, lint_verilog, parts
from test_hw_top import check_vitis_ports


def test_emit_tiny_manifest_and_lint(tmp_path):
    hw = load_preset("tiny")
    manifest = emit_verilog(hw, tmp_path)
    assert json.loads((tmp_path / f"{hw.artifact_name}_manifest.json").read_text()) == manifest
    assert manifest["hw"] == hw.to_dict()
    names = [c["name"] for c in manifest["components"]]
    assert names == [p.name for p in parts(hw)] + ["top"]
    by_name = {c["name"]: c for c in manifest["components"]}
    lane = {p["name"]: p for p in by_name["mpu_lane"]["ports"]}
    assert lane["a"] == {"name": "a", "direction": "in", "width": 16 * hw.mpu.width}
    assert lane["y"]["direction"] == "out" and "clk" in lane
    assert by_name["mpu_lane"]["instances"] == hw.mpu.lanes
    for c in manifest["components"]:
        text = (tmp_path / c["file"]).read_text()
        assert c["file"].startswith(hw.artifact_name)
        assert re.search(rf"module {c['module']}\s*\(", text)
    check_vitis_ports(hw, (tmp_path / by_name["top"]["file"]).read_text())
    top = {p["name"]: p for p in by_name["top"]["ports"]}
    assert top["ap_clk"]["direction"] == "in" and top["s_axi_control_rdata"]["direction"] == "out"
    assert top["m_axi_gmem0_wdata"]["width"] == hw.hbm.port_bits
    assert sum(n.endswith("_awaddr") and n.startswith("m_axi_gmem") for n in top) == hw.hbm.channels
    assert set(lint_verilog(tmp_path, manifest)) == {c["module"] for c in manifest["components"]}


def test_emit_rejects_non_config(tmp_path):
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not 'tiny'$"):
        emit_verilog("tiny", tmp_path)
