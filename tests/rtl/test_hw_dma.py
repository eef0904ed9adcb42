"""The DMA engine: address mapping, constructor checks, the path rule and the cycle formula, and
the Verilator bench against the executor (cocotb_dma.py: AxiRam per HBM channel; with
back-pressure bit-exact HBM + scratchpad, on an ideal memory also cycles == engine_cycles)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fpgpt.config import load_preset
from fpgpt.hw.dma import DMA, captured_layout, channel_address, dma_path, engine_cycles, stripes_ok
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


def _f(**kw):
    f = dict(sram=0, hbm=0, rows=1, cols=1, hstride=0, sstride=0, batch=1, hbatch=0, sbatch=0,
             ra=0, rr=0, rc=0, transpose=0)
    f.update(kw)
    return f


def test_dma_path_alignment_rule():
    hw = load_preset("tiny")          # chunk 8 elements, stripe 4 x 8 bytes = 16 elements
    assert stripes_ok(hw)
    w = _f(rows=192, cols=64, hstride=128, sstride=72)        # a compiled weight tile
    assert dma_path(hw, "LOAD", w) == "stripe" and dma_path(hw, "STORE", w) == "stripe"
    assert dma_path(hw, "LOAD", {**w, "sram": 4}) == "element"          # start off by 4
    assert dma_path(hw, "LOAD", {**w, "sstride": 68}) == "element"      # rows drift
    assert dma_path(hw, "LOAD", {**w, "hbm": 8, "ra": 1, "hstride": 112, "sram": 68}) == "stripe"
    assert dma_path(hw, "LOAD", {**w, "transpose": 1}) == "element"
    kv = _f(cols=32, hstride=64, sstride=192, batch=2, hbatch=8192, sbatch=32)
    assert dma_path(hw, "STORE", kv) == "stripe"
    assert dma_path(hw, "STORE", {**kv, "sbatch": 36}) == "element"     # batches drift
    g = dict(sram=64, hbm=0, idx=0, rows=2, cols=64, hstride=128, sstride=64, ra=0, rr=0)
    assert dma_path(hw, "GATHER", g) == "stripe"
    assert dma_path(hw, "GATHER", {**g, "hstride": 136}) == "element"   # a row index breaks it
    assert dma_path(hw, "LOAD", _f(rows=0)) == "empty" and dma_path(hw, "STR", {}) == "str"
    wide = dataclasses.replace(hw, hbm=dataclasses.replace(hw.hbm, interleave_bytes=256))
    assert not stripes_ok(wide) and dma_path(wide, "LOAD", w) == "element"


def test_engine_cycles_structure():
    hw = load_preset("tiny")
    w = _f(rows=192, cols=64, hstride=128, sstride=72)
    # 192 rows of 4 aligned stripes, one per cycle, plus latency and 4 cycles of overhead.
    assert engine_cycles(hw, "LOAD", w, latency=2) == 192 * 4 + 2 + 4
    assert engine_cycles(hw, "LOAD", w, latency=5) == 192 * 4 + 5 + 4
    # A row starting 2 elements into a stripe touches one stripe more.
    assert engine_cycles(hw, "LOAD", {**w, "hbm": 4, "sram": 2}, latency=2) == 192 * 5 + 6
    assert engine_cycles(hw, "STORE", w, latency=(2, 3)) == 192 * 4 + 3 + 7
    # The element path: one cycle per element and per piece (an 8-byte granule here).
    t = {**w, "transpose": 1, "rows": 4, "cols": 2, "hstride": 8}
    assert engine_cycles(hw, "LOAD", t, latency=2) == 8 + 2 + 2 + 3
    g = dict(sram=0, hbm=0, idx=0, rows=2, cols=64, hstride=128, sstride=64, ra=0, rr=0)
    assert engine_cycles(hw, "GATHER", g, latency=2) == 3 + 2 * (4 + 2 * 2 + 4)
    with pytest.raises(ValueError, match="needs its indices"):
        engine_cycles(hw, "GATHER", {**g, "hstride": 144}, latency=2)
    with pytest.raises(ValueError, match="below outstanding=8"):
        engine_cycles(hw, "LOAD", w, latency=8)


def _run_bench(tmp_path, rtl_build, pauses: bool, n: int, seed: int) -> dict:
    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny")
    d = rtl_build(f"dma_{hw.artifact_name}")
    v = write_verilog(DMA(hw=hw), "dma", d / "dma.v")
    stats = tmp_path / f"stats_{int(pauses)}.json"
    run_cocotb([v], "dma", "cocotb_dma", d / "sim", test_dir=Path(__file__).parent,
               env={"DMA_PRESET": "tiny", "DMA_N": str(n), "DMA_SEED": str(seed),
                    "DMA_PAUSES": str(int(pauses)), "DMA_STATS": str(stats)})
    return json.loads(stats.read_text())


def test_dma_verilator_tiny(tmp_path, rtl_build):
    """Random LOAD/STORE/GATHER/STR in Verilator, each compared with the executor: with
    back-pressure bit for bit, on an ideal memory also cycle for cycle with engine_cycles."""
    s = _run_bench(tmp_path, rtl_build, True, 60, 7)
    assert s["instructions"] == 60 and s["mismatches"] == []
    paths = {(r["op"], r["path"]) for r in s["records"]}
    assert {("LOAD", "stripe"), ("STORE", "stripe"), ("GATHER", "stripe"), ("LOAD", "element"),
            ("STORE", "element"), ("GATHER", "element"), ("STR", "str")} <= paths
    s = _run_bench(tmp_path, rtl_build, False, 60, 8)
    assert s["mismatches"] == [] and s["formula_misses"] == []
    assert s["axi_latency"] == {"read": 2, "write": 2}
    # The stripe path moves several elements per cycle (tiny: up to 16).
    fast = [r for r in s["records"] if r["path"] == "stripe" and r["op"] == "LOAD"]
    assert fast and all(r["rtl_cycles"] < r["bytes"] // 2 + 6 for r in fast)
