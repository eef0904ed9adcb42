"""Synthesis bookkeeping, and real Yosys runs on small blocks only (about 5 s each once Yosys's
WebAssembly is cached; the first Yosys run on a machine compiles it, about 2 minutes). The full
report (minutes: the exp unit alone takes several) is bench/bench_synth.py's job."""

from __future__ import annotations

import importlib
from collections import Counter

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpgpt.config import load_preset
from fpgpt.hw import fplogic, fpu
from fpgpt.hw.cosim import write_verilog
from fpgpt.hw.synth import (COMPONENTS, CORE_UNITS, RESOURCES, URAM_BITS, Component,
                            _cells_to_resources, _class_black_boxes, _fp_black_boxes, _stubs,
                            _used_stubs,
                            core_units, scratchpad_memory, scratchpad_ports, synth_module,
                            synth_report)


def _built(component, hw):
    """``component.build(hw)``, marked used: the tests only read its class and signature."""
    block = component.build(hw)
    block._MustUse__used = True                     # no UnusedElaboratable warning
    return block


def test_components_cover_the_core():
    hw = load_preset("tiny")
    names = [c.name for c in COMPONENTS]
    assert len(set(names)) == len(names)
    # every submodule of top.Core is one row (the core row holds the instruction memory) ...
    units = core_units(hw)
    rows = {c.core_submodule: c for c in COMPONENTS if c.core_submodule}
    assert set(rows) == set(units)
    assert rows["imem"].name == "core"
    # ... built from the class the core instantiates (the core's are black-boxed subclasses)
    for name, unit in units.items():
        if name != "imem":
            assert type(_built(rows[name], hw)) is type(unit).__mro__[1]
    # every class a row black-boxes is another row's block, so nothing is counted twice or lost
    built = {type(_built(c, hw)) for c in COMPONENTS}
    for c in COMPONENTS:
        for mod, cls in c.boxes:
            assert getattr(importlib.import_module(mod), cls) in built, (c.name, cls)
    assert {cls for _, cls in rows["imem"].boxes} == set(CORE_UNITS)
    counts = {c.name: c.count(hw) for c in COMPONENTS}
    assert counts.pop("mpu_lane") == hw.mpu.lanes
    # (tiny: vpu.special_ratio 2, half its VPU lanes without the special functions)
    assert counts.pop("vpu_lane") == hw.vpu.special_lanes == 4
    assert counts.pop("vpu_lane_light") == hw.vpu.width - hw.vpu.special_lanes == 4
    assert set(counts.values()) == {1}


def test_scratchpad_ports_come_from_the_core():
    hw = load_preset("tiny")
    arbiter = _built(next(c for c in COMPONENTS if c.name == "scratchpad_arbiter"), hw)
    kinds, bank = scratchpad_ports(hw)
    assert len(kinds) == 4                          # DMA, MPU, NET, VPU (fpgpt/hw/top.py)
    assert arbiter.kinds == kinds and arbiter.has_bank == bank
    assert [k for k in arbiter.signature.members if k.startswith("port")] == \
        [f"port{i}" for i in range(len(kinds))]


def test_core_row_black_boxes_every_unit(tmp_path):
    # the core row keeps the instruction memory and the counters, nothing of a unit
    hw = load_preset("tiny")
    core = next(c for c in COMPONENTS if c.name == "core")
    block, counts, stubs = core.build(hw), Counter(), {}
    with _fp_black_boxes(counts), _class_black_boxes(core.boxes, stubs):
        text = write_verilog(block, "core", tmp_path / "core.v").read_text()
    assert not counts
    assert set(stubs) == {f"fpgpt_bb_{n.lower()}" for n in CORE_UNITS}
    for box in stubs:
        assert text.count(f"{box} ") == 1
    from fpgpt.hw import top
    from fpgpt.hw.dma import DMA
    assert top.DMA is DMA                           # restored


class _Wide(wiring.Component):
    """Two outputs of 40,000 bits: more than one Amaranth instance may drive (2^16 - 1)."""

    def __init__(self):
        super().__init__({"a": In(8), "x": Out(40000), "y": Out(40000)})

    def elaborate(self, platform):
        raise AssertionError("black-boxed in the test")


class _WideParent(wiring.Component):
    def __init__(self):
        super().__init__({"x": Out(40000), "y": Out(40000)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.w = w = _Wide()
        m.d.comb += [self.x.eq(w.x), self.y.eq(w.y)]
        return m


def test_black_box_outputs_spread_over_instances(tmp_path):
    # the u280 scratchpad's line ports give its core black box 81,920 output bits
    stubs: dict = {}
    with _class_black_boxes(((__name__, "_Wide"),), stubs):
        text = write_verilog(_WideParent(), "wide", tmp_path / "wide.v").read_text()
    assert sorted(stubs) == ["fpgpt_bb__wide", "fpgpt_bb__wide_p1"]
    assert "input wire [7:0] a" in stubs["fpgpt_bb__wide"]
    assert "output wire [39999:0] x" in stubs["fpgpt_bb__wide"]
    assert "output wire [39999:0] y" in stubs["fpgpt_bb__wide_p1"]
    assert "a" not in stubs["fpgpt_bb__wide_p1"].split("(", 1)[1]
    for box in stubs:
        assert text.count(f"{box} ") == 1


class _WideIn(wiring.Component):
    """70,000 input bits (the u280 scratchpad arbiter has more): one netlist cell can't hold them."""

    def __init__(self):
        super().__init__({"a": In(40_000), "b": In(30_000), "y": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a[:8] ^ self.b[-8:])
        return m


def test_wide_inputs_come_from_black_boxes(tmp_path):
    from fpgpt.hw.synth import _InputsFromBoxes, _input_bits
    with pytest.raises(AssertionError):              # Amaranth's limit, which the wrapper avoids
        write_verilog(_WideIn(), "wide_in", tmp_path / "plain.v")
    block, stubs = _WideIn(), {}
    assert _input_bits(block) == 70_000
    v = write_verilog(_InputsFromBoxes(block, stubs), "wide_in", tmp_path / "wide_in.v")
    assert sorted(stubs) == ["fpgpt_bb_in", "fpgpt_bb_in_p1"]
    assert "output wire [39999:0] a" in stubs["fpgpt_bb_in"]
    assert "output wire [29999:0] b" in stubs["fpgpt_bb_in_p1"]
    r = synth_module(v, "wide_in", work_dir=tmp_path, lib="".join(stubs.values()))
    # the block's logic and only it: 8 XORs into 8 registers (the sources are black boxes)
    assert r["resources"]["FF"] == 8 and 1 <= r["resources"]["LUT"] <= 8


def test_cache_key_keeps_only_the_black_boxes_a_block_uses():
    # a new FP operator (a stub every block's lib gets) must not invalidate unrelated blocks
    lib = _stubs(load_preset("tiny"))
    text = "module top();\n  fpgpt_bb_f32_add u0 (.a(x), .b(y), .y(z));\nendmodule\n"
    used = _used_stubs(lib, text)
    assert used.startswith("module fpgpt_bb_f32_add(") and used.count("endmodule") == 1
    assert _used_stubs(lib + "module fpgpt_bb_new(input wire [0:0] a);\nendmodule\n", text) == used


def test_fp_black_box_takes_a_positional_name(tmp_path):
    # net.py calls build_f16_to_f32(m, value, "net_h2f"): the name must not become an operand
    from fpgpt.hw.net import NetUnit
    hw = load_preset("tiny")
    counts: Counter = Counter()
    with _fp_black_boxes(counts):
        write_verilog(NetUnit(hw=hw), "net", tmp_path / "net.v")
    assert counts == {"f16_to_f32": 1, "f32_add": 1, "f32_to_f16": 1}


def test_engine_lanes_become_black_boxes(tmp_path):
    # the mpu_lane row counts the lanes, so the engine's row must not contain them
    hw = load_preset("tiny")
    engine = next(c for c in COMPONENTS if c.name == "mpu_engine")
    block, counts, stubs = engine.build(hw), Counter(), {}
    with _fp_black_boxes(counts), _class_black_boxes(engine.boxes, stubs):
        text = write_verilog(block, "eng", tmp_path / "eng.v").read_text()
    assert not counts                               # no FP operator left in the engine
    assert text.count("fpgpt_bb_mpulane ") == hw.mpu.lanes
    assert list(stubs) == ["fpgpt_bb_mpulane"]
    assert f"input wire [{16 * hw.mpu.width - 1}:0] a," in stubs["fpgpt_bb_mpulane"]
    from fpgpt.hw import mpu_engine
    from fpgpt.hw.mpu import MPULane
    assert mpu_engine.MPULane is MPULane            # restored


def test_uram_geometry_matches_device_capacity():
    # 960 URAM288 = 270 Mb (DS963, reference/hardware.md)
    assert round(960 * URAM_BITS / 2**20) == 270


def test_scratchpad_memory_packing():
    hw = load_preset("u280")                       # 16 MiB = 8 Mi FP16 elements
    r = scratchpad_memory(hw)
    assert r["elements"] == hw.buffers.sram_elements == 8 * 2**20
    assert r["uram288"] == 8 * 2**20 // (4 * 4096) == 512
    assert scratchpad_memory(hw, elements_per_word=1)["uram288"] == 4 * 512
    assert r["bits_used"] <= r["bits_allocated"]
    assert scratchpad_memory(load_preset("tiny"))["uram288"] == 16
    with pytest.raises(ValueError, match=r"^elements_per_word must be an integer in 1\.\.4, "
                                         r"not 5$"):
        scratchpad_memory(hw, elements_per_word=5)


def test_fp_black_boxes_count_the_mpu_operators(tmp_path):
    from fpgpt.hw.mpu_engine import MPUEngine
    hw = load_preset("tiny")
    original = fplogic.build_f32_add
    counts: Counter = Counter()
    with _fp_black_boxes(counts):
        assert fplogic.build_f32_add is not original
        v = write_verilog(MPUEngine(hw=hw), "eng", tmp_path / "eng.v")
    assert fplogic.build_f32_add is original          # restored
    L, W = hw.mpu.lanes, hw.mpu.width
    # per lane: W products, W-1 tree adders, the accumulator and the bias adder
    assert counts == {"f16_mul_f32_mpu": L * W, "f32_add_mpu": L * (W + 1), "f16_to_f32": L,
                      "f32_to_f16": L}
    assert v.read_text().count("fpgpt_bb_f16_mul_f32_mpu ") == L * W


def test_cells_to_resources():
    r = _cells_to_resources({"LUT6": 3, "LUT2": 1, "SRL16E": 2, "FDRE": 5, "FDSE": 1,
                             "DSP48E2": 2, "RAMB18E2": 2, "RAMB36E2": 1, "URAM288": 4,
                             "CARRY8": 9, "INV": 1, "RAM64M": 1, "fpgpt_bb_f32_add": 7})
    assert r == {"LUT": 3 + 1 + 2 + 1 + 4, "FF": 6, "DSP48E2": 2, "BRAM36": 2, "URAM": 4}


def test_synth_small_unit(tmp_path):
    v = write_verilog(fpu.F16ToF32(latency=1), "h2f", tmp_path / "h2f.v")
    r = synth_module(v, "h2f", work_dir=tmp_path)
    assert r["resources"]["LUT"] > 0
    assert r["resources"]["FF"] <= 32          # one output register, constant bits removed
    assert r["resources"]["DSP48E2"] == 0
    assert not r["cached"]
    again = synth_module(v, "h2f", work_dir=tmp_path)
    assert again["cached"] and again["cells"] == r["cells"]


class _Widen(wiring.Component):
    """Two FP16->FP32 conversions and a register: a block with FP operators inside."""

    def __init__(self):
        super().__init__({"a": In(16), "b": In(16), "y": Out(32), "z": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.y.eq(fplogic.build_f16_to_f32(m, self.a, name="wa")),
                     self.z.eq(fplogic.build_f16_to_f32(m, self.b, name="wb"))]
        return m


def test_synth_report_structure(tmp_path):
    hw = load_preset("tiny")
    comps = (Component("widen", lambda hw: _Widen(), count=lambda hw: 3),
             next(c for c in COMPONENTS if c.name == "scratchpad_arbiter"))
    rep = synth_report(hw, tmp_path, components=comps)
    rows = rep["components"]
    assert list(rows) == ["widen", "scratchpad_arbiter", "fp_f16_to_f32", "scratchpad_storage"]
    assert rows["widen"]["kind"] == "block" and rows["widen"]["instances"] == 3
    assert rows["widen"]["per_instance"]["FF"] == 64        # the registers stay in the block
    assert rows["widen"]["total"]["FF"] == 3 * 64
    assert rows["fp_f16_to_f32"]["instances"] == 3 * 2
    assert rows["fp_f16_to_f32"]["per_instance"]["FF"] == 0     # combinational
    assert rows["fp_f16_to_f32"]["per_instance"]["LUT"] > 0
    assert rows["scratchpad_storage"]["total"]["URAM"] == scratchpad_memory(hw)["uram288"]
    for k in RESOURCES:
        assert rep["total"][k] == sum(r["total"][k] for r in rows.values())
        assert rep["utilisation"][k] == rep["total"][k] / hw.device.capacity()[k]
    assert rep["fits_70"] == all(u <= 0.7 for u in rep["utilisation"].values())
    from fpgpt.hw import vpu_lane, vpu_special
    assert vpu_lane.build_exp is vpu_special.build_exp      # no black box left behind
    again = synth_report(hw, tmp_path, components=comps)
    assert all(r["cached"] for r in again["components"].values() if r["kind"] != "memory")
    assert again["total"] == rep["total"]


def test_synth_report_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not 'u280'$"):
        synth_report("u280", tmp_path)
    with pytest.raises(TypeError, match=r"^components must hold synth.Component entries, "
                                        r"not 'dma'$"):
        synth_report(load_preset("tiny"), tmp_path, components=("dma",))
    with pytest.raises(ValueError, match=r"^stack_mib must be an integer in 1\.\.4096, not 0$"):
        synth_module(tmp_path / "x.v", "x", work_dir=tmp_path, stack_mib=0)


def _fake_report(hw, work_dir, *, cache=True, progress=None, **_):
    progress("control: yosys")
    row = {"kind": "block", "instances": 1, "total": {"LUT": 1_000_000, "FF": 10, "DSP48E2": 0,
                                                      "BRAM36": 14.5, "URAM": 0}}
    cap = hw.device.capacity()
    util = {k: row["total"][k] / cap[k] for k in RESOURCES}
    return {"artifact": hw.artifact_name, "components": {"control": row}, "total": row["total"],
            "capacity": cap, "utilisation": util,
            "fits_70": all(u <= 0.7 for u in util.values()), "excluded": ["the shell"],
            "cache": cache}


def test_cli_synth_table_json_and_no_cache(monkeypatch):
    import json

    from click.testing import CliRunner

    from fpgpt import cli
    from fpgpt.hw import synth
    monkeypatch.setattr(synth, "synth_report", _fake_report)
    r = CliRunner().invoke(cli.main, ["synth", "--hw", "tiny"], catch_exceptions=False)
    assert r.exit_code == 0
    assert "fits within 70 %: no" in r.output           # 1 M LUT: 77 % of the xcu280
    assert "14.5" in r.output and "not included yet" not in r.output
    r = CliRunner().invoke(cli.main, ["synth", "--hw", "tiny", "--json", "--no-cache"],
                           catch_exceptions=False)
    doc = json.loads(r.output)
    assert doc["cache"] is False and doc["components"]["control"]["total"]["BRAM36"] == 14.5


def test_vpu_max_trees_are_named_signals(tmp_path):
    # each max / argmax node is a Signal (no expression repeats a subtree), so elaboration is
    # linear in the width; the nodes' names show up in the Verilog
    from fpgpt.hw.vpu import VPU
    hw = load_preset("tiny")
    counts: Counter = Counter()
    with _fp_black_boxes(counts), _class_black_boxes((("fpgpt.hw.vpu", "VPULane"),), {}):
        text = write_verilog(VPU(hw=hw), "vpu", tmp_path / "vpu.v").read_text()
    for name in ("tmax0_0", "targ0_0_idx", "targ0_0_take"):
        assert name in text
