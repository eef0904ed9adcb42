"""The DMA engine: address mapping, constructor checks, and the Verilator bench against the
executor (cocotb_dma.py: AxiRam per HBM channel, back-pressure on, bit-exact HBM + scratchpad)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fpgpt.config import load_preset
from fpgpt.hw.dma import DMA, captured_layout, channel_address
from fpgpt.isa import Unit



def test_channel_address_interleaves_granules():
    hw = load_preset("tiny")
    g, c = hw.hbm.interleave_bytes, hw.hbm.channels
    assert channel_address(hw, 0) == (0, 0)
    assert channel_address(hw, g - 1) == (0, g - 1)
    assert channel_address(hw, g) == (1, 0)
    assert channel_address(hw, c * g) == (0, g)
    assert channel_address(hw, c * g + 3 * g + 5) == (3, g + 5)
    # A bijection: every channel's first bytes are used exactly once.
    seen = {channel_address(hw, a) for a in range(4 * c * g)}
    assert len(seen) == 4 * c * g


def test_captured_layout_widens_register_fields():
    lay = captured_layout(Unit.DMA)
    assert lay.members["ra"].width == 32 and lay.members["rs"].width == 32
    assert lay.members["hbm"].width == 40 and lay.members["transpose"].width == 1


def test_dma_checks(quiet_unused):
    hw = load_preset("tiny")
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not 'tiny'$"):
        DMA(hw="tiny")
    with pytest.raises(ValueError, match=r"^outstanding must be a positive integer, not 0$"):
        DMA(hw=hw, outstanding=0)
    odd = dataclasses.replace(hw, hbm=dataclasses.replace(hw.hbm, channels=3))
    with pytest.raises(ValueError, match=r"hbm.channels must be a power of two"):
        DMA(hw=odd)


def test_dma_verilator_tiny(tmp_path, rtl_build):
    """40 random LOAD/STORE/GATHER/STR in Verilator, each compared with the executor."""
    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny")
    d = rtl_build(f"dma_{hw.artifact_name}")
    v = write_verilog(DMA(hw=hw), "dma", d / "dma.v")
    stats = tmp_path / "stats.json"
    run_cocotb([v], "dma", "cocotb_dma", d / "sim", test_dir=Path(__file__).parent,
               env={"DMA_PRESET": "tiny", "DMA_N": "40", "DMA_SEED": "7", "DMA_STATS": str(stats)})
    s = json.loads(stats.read_text())
    assert s["instructions"] == 40 and s["mismatches"] == []
    assert {r["op"] for r in s["records"]} == {"LOAD", "STORE", "GATHER", "STR"}
    assert any(r["stripes"] for r in s["records"])      # the stripe path was exercised
