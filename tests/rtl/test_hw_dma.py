"""The DMA engine: address mapping, constructor checks, the path rule and the cycle formula, and
the Verilator bench against the executor (cocotb_dma.py: AxiRam per HBM channel; with
back-pressure bit-exact HBM + scratchpad, on an ideal memory also cycles == engine_cycles)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fpgpt.config import load_preset
from fpgpt.hw.decoder import captured_layout
from fpgpt.hw.dma import DMA, channel_address, dma_path, engine_cycles, stripes_ok
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


@pytest.mark.parametrize("depth", [2, 3, 8, 32])
def test_flag_fifo_is_sync_fifo_buffered(depth):
    """The segment FIFO (FlagFIFO, its level a thermometer code for the clock) behaves as
    amaranth's SyncFIFOBuffered cycle for cycle: w_rdy, r_rdy, r_data and level == 0 equal in
    every cycle of random pushes and pops, through full and empty; its read enable given on
    ``r_en``, on ``r_en_late`` or on both at random."""
    import random

    from amaranth.hdl import Module, Signal
    from amaranth.lib import fifo
    from amaranth.sim import Simulator

    from fpgpt.hw.flag_fifo import FlagFIFO
    m = Module()
    m.submodules.a = a = fifo.SyncFIFOBuffered(width=8, depth=depth)
    m.submodules.b = b = FlagFIFO(8, depth)
    we, re, wd, how = Signal(), Signal(), Signal(8), Signal(2)
    for f in (a, b):
        m.d.comb += [f.w_en.eq(we), f.w_data.eq(wd)]
    m.d.comb += [a.r_en.eq(re), b.r_en.eq(re & how[0]),
                 b.r_en_late.eq(re & (how[1] | ~how[0]))]
    sim = Simulator(m)
    sim.add_clock(1e-6)
    seen = {"full": 0, "empty": 0}

    async def bench(ctx):
        rng = random.Random(depth)
        for cyc in range(3000):
            pw, pr = [(0.8, 0.3), (0.3, 0.8), (0.5, 0.5)][(cyc // 150) % 3]
            ctx.set(we, rng.random() < pw)
            ctx.set(re, rng.random() < pr)
            ctx.set(wd, rng.randrange(256))
            ctx.set(how, rng.randrange(4))
            va = (ctx.get(a.w_rdy), ctx.get(a.r_rdy), ctx.get(a.r_rdy) and ctx.get(a.r_data),
                  ctx.get(a.level) == 0)
            vb = (ctx.get(b.w_rdy), ctx.get(b.r_rdy), ctx.get(b.r_rdy) and ctx.get(b.r_data),
                  ctx.get(b.empty))
            assert va == vb, (cyc, va, vb)
            seen["full"] += ctx.get(a.level) == depth
            seen["empty"] += ctx.get(a.level) == 0
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert seen["full"] > 50 and seen["empty"] > 50


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
    # A STORE overlaps its pieces: one cycle per element, none per piece.
    assert engine_cycles(hw, "STORE", t, latency=(5, 2)) == 8 + 2 + 7
    with pytest.raises(ValueError, match=r"at most outstanding-2=6"):
        engine_cycles(hw, "STORE", t, latency=(2, 7))
    g = dict(sram=0, hbm=0, idx=0, rows=2, cols=64, hstride=128, sstride=64, ra=0, rr=0)
    # Per row: its index (Lr, one cycle to register the word, two for index·hstride), then
    # the row's stripes (Lr): 2·Lr + 6 and the stripes.
    assert engine_cycles(hw, "GATHER", g, latency=2) == 3 + 2 * (4 + 2 * 2 + 6)
    with pytest.raises(ValueError, match="needs its indices"):
        engine_cycles(hw, "GATHER", {**g, "hstride": 144}, latency=2)
    with pytest.raises(ValueError, match="below outstanding=8"):
        engine_cycles(hw, "LOAD", w, latency=8)


def _run_bench(tmp_path, rtl_build, pauses: int, n: int, seed: int, cases=None) -> dict:
    """Run cocotb_dma (``pauses``: its DMA_PAUSES) on ``cases`` (``[op, fields, regs]``) and
    then ``n`` random instructions; its statistics."""
    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny")
    d = rtl_build(f"dma_{hw.artifact_name}")
    v = write_verilog(DMA(hw=hw), "dma", d / "dma.v")
    stats = tmp_path / f"stats_{int(pauses)}.json"
    env = {"DMA_PRESET": "tiny", "DMA_N": str(n), "DMA_SEED": str(seed),
           "DMA_PAUSES": str(int(pauses)), "DMA_STATS": str(stats)}
    if cases:
        env["DMA_CASES"] = str(tmp_path / "cases.json")
        Path(env["DMA_CASES"]).write_text(json.dumps(cases))
    run_cocotb([v], "dma", "cocotb_dma", d / "sim", test_dir=Path(__file__).parent, env=env,
               cxx_opt=False)   # -O0: the build dominates (docs/rtl.md)
    return json.loads(stats.read_text())


def _segment_cases() -> list:
    """Stripe-path transfers whose runs cross segments (tiny: 256 stripes of 32 bytes, 8 KiB;
    the random instructions' runs are at most 88 bytes and rarely cross one): runs of three
    segments, a run filling one segment exactly and one a stripe longer, runs ending on and
    starting at a segment's edge, batches whose rows cross, and a GATHER whose table rows
    straddle 8 KiB. Registers R5-R7 (ra, rr, rc) are 0."""
    z = {"5": 0, "6": 0, "7": 0}
    row = dict(batch=1, hbatch=0, sbatch=0, ra=5, rr=6, rc=7, transpose=0)
    big = dict(row, sram=10004, hbm=7000, rows=2, cols=5000, hstride=10016, sstride=5008)
    return [
        ["LOAD", big, z], ["STORE", big, z],
        ["LOAD", dict(row, sram=30002, hbm=7492, rows=3, cols=300, hstride=608, sstride=304,
                      batch=2, hbatch=8192, sbatch=1000), z],
        ["STORE", dict(row, sram=30002, hbm=7492, rows=3, cols=300, hstride=608, sstride=304,
                       batch=2, hbatch=8192, sbatch=1000), z],
        ["LOAD", dict(row, sram=40000, hbm=8192, rows=1, cols=4096, hstride=0, sstride=0), z],
        ["LOAD", dict(row, sram=50000, hbm=8192, rows=1, cols=4097, hstride=0, sstride=0), z],
        ["STORE", dict(row, sram=60000, hbm=8128, rows=2, cols=32, hstride=64, sstride=32), z],
        ["LOAD", dict(row, sram=70000, hbm=16352, rows=3, cols=16, hstride=32, sstride=16), z],
        ["GATHER", dict(sram=80000, hbm=8144, idx=32512, rows=6, cols=40, hstride=32,
                        sstride=48, ra=5, rr=6), z],
    ]


def test_dma_verilator_tiny(tmp_path, rtl_build):
    """Random LOAD/STORE/GATHER/STR in Verilator, each compared with the executor: with
    back-pressure bit for bit, on an ideal memory also cycle for cycle with engine_cycles;
    before the random ones, stripe-path runs across segments (_segment_cases)."""
    cases = _segment_cases()
    s = _run_bench(tmp_path, rtl_build, True, 60, 7, cases)
    assert s["instructions"] == 60 + len(cases) and s["mismatches"] == []
    paths = {(r["op"], r["path"]) for r in s["records"]}
    assert {("LOAD", "stripe"), ("STORE", "stripe"), ("GATHER", "stripe"), ("LOAD", "element"),
            ("STORE", "element"), ("GATHER", "element"), ("STR", "str")} <= paths
    assert all(r["path"] == "stripe" for r in s["records"][:len(cases)])
    s = _run_bench(tmp_path, rtl_build, False, 60, 8, cases)
    assert s["mismatches"] == [] and s["formula_misses"] == []
    assert s["axi_latency"] == {"read": 2, "write": 2}
    # The stripe path moves several elements per cycle (tiny: up to 16).
    fast = [r for r in s["records"] if r["path"] == "stripe" and r["op"] == "LOAD"]
    assert fast and all(r["rtl_cycles"] < r["bytes"] // 2 + 6 for r in fast)


def _element_store_cases() -> list:
    """Element-path STOREs that keep the write pipeline full: the compiler's V^T cache store
    for the micro model (d_model 64, 2 heads of 32, n_ctx 128: one element per HBM row, so one
    per piece, two batches) at several positions and prompt lengths, and misaligned row
    STOREs whose pieces hold 1 to 4 elements (tiny's 8-byte granule); then a LOAD (the bench
    measures read latency) and an STR. Registers: R5 = ra (the position)."""
    d, dh, t = 64, 32, 128
    vt = dict(sram=2 * d + 8, hbm=4096, cols=dh, hstride=2 * t, sstride=3 * d, batch=2,
              hbatch=2 * dh * t, sbatch=dh, ra=5, transpose=1)
    cases = [["STORE", {**vt, "rows": rows}, {"5": pos}]
             for rows, pos in ((1, 0), (1, 7), (1, 127), (5, 3), (8, 0), (3, 125))]
    for off in range(4):                 # first byte 0, 2, 4, 6 into a granule
        for cols in (1, 2, 3, 5, 9):
            cases.append(["STORE", dict(sram=301 + cols, hbm=24576 + 2 * off, rows=3, cols=cols,
                                        hstride=2 * cols + 6, sstride=cols + 4, batch=2,
                                        hbatch=64, sbatch=40, ra=5), {"5": 1}])
    cases.append(["LOAD", dict(sram=900, hbm=0, rows=2, cols=16, hstride=32, sstride=16, batch=1),
                  {}])
    cases.append(["STR", dict(rs=8, ra=5, hbm=20000), {"5": 3, "8": 0x89ABCDEF}])
    return cases


def test_dma_verilator_element_store(tmp_path, rtl_build):
    """The element path's STORE pipeline: on an ideal memory one element per cycle whatever
    the pieces (the V^T store of 64 one-element pieces in 64 + 9 cycles, was 327); under heavy
    W/B back-pressure and scratchpad refusals still bit-exact."""
    cases = _element_store_cases()
    s = _run_bench(tmp_path, rtl_build, 0, 0, 3, cases)
    assert s["mismatches"] == [] and s["formula_misses"] == []
    stores = [r for r in s["records"] if r["op"] == "STORE"]
    assert len(stores) == 26 and all(r["path"] == "element" for r in stores)
    lw = s["axi_latency"]["write"]
    for r in stores:
        f = r["fields"]
        e = (f["rows"] + f["rr"]) * (f["cols"] + f["rc"]) * f["batch"]
        assert r["rtl_cycles"] == e + lw + 7, r
    assert stores[0]["rtl_cycles"] == 73         # V^T store, one token: 64 pieces
    s = _run_bench(tmp_path, rtl_build, 2, 40, 4, cases)
    assert s["instructions"] == len(cases) + 40 and s["mismatches"] == []
