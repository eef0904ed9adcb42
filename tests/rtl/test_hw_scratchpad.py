"""The banked scratchpad: geometry checks, and Verilator against a numpy model (cocotb_scratchpad.py:
line, element and bank ports at random, priority, masks, reads of both ports)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fpgpt.config import load_preset
from fpgpt.hw.scratchpad import Scratchpad, spram_verilog


def test_scratchpad_checks(quiet_unused):
    hw = load_preset("tiny")
    with pytest.raises(ValueError, match=r"^ports must be a positive integer or a sequence"):
        Scratchpad(hw=hw, ports=("line", "wide"))
    odd = dataclasses.replace(hw, mpu=dataclasses.replace(hw.mpu, lanes=3))
    with pytest.raises(ValueError, match=r"^mpu.lanes = 3 is not a power of two.*use 2 or 4$"):
        Scratchpad(hw=odd, ports=1)


def test_scratchpad_verilator_tiny(tmp_path, rtl_build):
    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny")
    d = rtl_build(f"scratchpad_{hw.artifact_name}")
    v = write_verilog(Scratchpad(hw=hw, ports=("line", "element", "line"), bank=True),
                      "scratchpad", d / "scratchpad.v")
    mem = d / "spram.v"
    mem.write_text(spram_verilog(hw))
    stats = tmp_path / "stats.json"
    run_cocotb([v, mem], "scratchpad", "cocotb_scratchpad", d / "sim", cxx_opt=False,
               test_dir=Path(__file__).parent,
               env={"SPAD_PRESET": "tiny", "SPAD_SEED": "5", "SPAD_CYCLES": "3000",
                    "SPAD_STATS": str(stats)})
    s = json.loads(stats.read_text())
    assert s["mismatch_count"] == 0
    assert min(s["checked"].values()) > 100     # every kind of access was exercised
