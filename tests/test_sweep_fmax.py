"""A sweep point's Fmax (fpgpt/sweep/clock.py): looked up in the synthesis cache by the key
synth_module gives a block, complete or partial (an upper bound), and the clock flagged
against it. Hand-made netlists stand in for Yosys's: no Yosys here (tests/test_sweep_synth.py
runs it)."""

from __future__ import annotations

import json
import subprocess

import pytest

from fpgpt.config import load_preset
from fpgpt.hw import fmax as hwfmax
from fpgpt.hw import synth as hs
from fpgpt.sweep.clock import (NOT_ESTIMATED, block_cache_key, design_fmax,
                               fmax_columns_from_report, module_key)
from fpgpt.sweep.point import evaluate_point, point_key

BLOCKS = {c.name: c for c in hs.COMPONENTS}
TWO = (BLOCKS["control"], BLOCKS["program_loader"])      # elaborate in well under a second


def _chain(levels: int) -> dict:
    """A netlist of one register-to-register path through ``levels`` LUTs."""
    ff = lambda n, d, q: {"name": n, "type": "FDRE", "conns": {
        "D": ["input", [d]], "Q": ["output", [q]], "C": ["input", [999]]}}
    cells = [ff("r0", 998, 1)]
    for i in range(levels):
        cells.append({"name": f"l{i}", "type": "LUT1",
                      "conns": {"I0": ["input", [1 + i]], "O": ["output", [2 + i]]}})
    cells.append(ff("r1", 1 + levels, 997))
    return {"top": "t", "ports": {}, "cells": cells, "names": {}}


def _period(levels: int) -> float:
    d = hwfmax.DELAYS
    return d.ff_clk_to_q + (levels + 1) * d.route + levels * d.lut + d.ff_setup


def _put(cache, hw, comp, levels):
    top, key, kinds = block_cache_key(hw, comp)
    assert kinds == ()                  # control and the loader build no FP operator
    cache.mkdir(parents=True, exist_ok=True)
    hwfmax.save_netlist(_chain(levels), cache / f"{top}-{key}.flat.net.json.gz")


def test_module_key_is_the_key_synth_module_caches_under(tmp_path, monkeypatch):
    """The lookup's key equals synth_module's (a fake Yosys writes the cell counts)."""
    def fake_yosys(args, cwd, **_kw):
        script = args[-1]
        stat = script.split("tee -q -o ")[1].split()[0]
        (cwd / stat).write_text(json.dumps({"design": {"num_cells_by_type": {"LUT6": 1}}}))
        return subprocess.CompletedProcess(args, 0, "", "")
    monkeypatch.setattr(hs.subprocess, "run", fake_yosys)
    v = tmp_path / "m.v"
    v.write_text("module m(input a, output y);\n  fpgpt_bb_f32_add u (.a(a), .y(y));\nendmodule\n")
    lib = ("module fpgpt_bb_f32_add(input wire [0:0] a, output wire [0:0] y);\nendmodule\n"
           "module fpgpt_bb_exp(input wire [0:0] a, output wire [0:0] y);\nendmodule\n")
    hs.synth_module(v, "m", work_dir=tmp_path / "w", lib=lib, cache_dir=tmp_path / "c")
    used = hs._used_stubs(lib, v.read_text())
    assert [p.name for p in (tmp_path / "c").iterdir()] == \
        [f"m-{module_key(v.read_text(), used, 'm')}.json"]


def test_fmax_from_the_cache_complete_partial_and_missing(tmp_path):
    tiny = load_preset("tiny")                                  # claims 100 MHz
    cache = tmp_path / "cache"
    none = design_fmax(tiny, cache, TWO)
    assert none["fmax_source"] == NOT_ESTIMATED and none["fmax_mhz"] is None
    assert none["clock_within_fmax"] is None and "no synthesized netlists" in none["fmax_reason"]
    assert "not looked up" in design_fmax(tiny, None, TWO)["fmax_reason"]

    _put(cache, tiny, BLOCKS["control"], 2)                     # fast: about 780 MHz
    part = design_fmax(tiny, cache, TWO)
    assert part["fmax_source"] == "synthesis cache (partial)" and part["fmax_blocks_timed"] == 1
    assert part["fmax_mhz"] == pytest.approx(1000 / _period(2), abs=0.1)
    assert part["fmax_supported_clock_mhz"] == hwfmax.supported_clock_mhz(part["fmax_mhz"])
    # within the timed blocks' bound, but the loader is not timed: not proven
    assert part["clock_within_fmax"] is None and "upper bound" in part["fmax_reason"]
    assert "program_loader" in part["fmax_reason"]

    _put(cache, tiny, BLOCKS["program_loader"], 5)              # slower: the core's figure
    full = design_fmax(tiny, cache, TWO)
    assert full["fmax_source"] == "synthesis cache" and full["fmax_blocks_timed"] == 2
    assert full["fmax_mhz"] == pytest.approx(1000 / _period(5), abs=0.1)
    assert full["fmax_critical_block"] == "program_loader"
    assert full["clock_within_fmax"] is True
    # the same design claiming more than the estimate supports is flagged
    fast = tiny.replace(clock_mhz=full["fmax_supported_clock_mhz"] + 5)
    assert design_fmax(fast, cache, TWO)["clock_within_fmax"] is False

    # a design whose blocks' Verilog differs (8 MPU lanes: another scratchpad line, control
    # registers...) does not match tiny's keys where its Verilog differs
    other = tiny.replace(**{"mpu.lanes": 8, "buffers.banks": 8})
    keys = {c.name: block_cache_key(other, c)[1] == block_cache_key(tiny, c)[1] for c in TWO}
    got = design_fmax(other, cache, TWO)
    assert got["fmax_blocks_timed"] == sum(keys.values())


def test_a_slow_block_flags_the_clock_even_when_partial(tmp_path):
    tiny = load_preset("tiny")
    cache = tmp_path / "cache"
    _put(cache, tiny, BLOCKS["control"], 40)                    # about 60 MHz < 100 claimed
    r = design_fmax(tiny, cache, TWO)
    assert r["fmax_mhz"] < 100 and r["fmax_source"].endswith("(partial)")
    assert r["clock_within_fmax"] is False                      # an upper bound already below
    assert "above its supported" in r["fmax_reason"]


def test_report_columns_use_the_public_keys_only():
    tiny = load_preset("tiny")
    rep = {"core": {"retimed_fmax_mhz": 200.0, "supported_clock_mhz": 160.0},
           "blocks": {"a": {"retimed_fmax_mhz": 200.0}, "b": {"retimed_fmax_mhz": 300.0}}}
    c = fmax_columns_from_report(rep, tiny, source="synthesis")
    assert c == {"fmax_mhz": 200.0, "fmax_supported_clock_mhz": 160.0, "fmax_source": "synthesis",
                 "fmax_blocks_timed": 2, "fmax_critical_block": "a", "clock_within_fmax": True,
                 "fmax_reason": c["fmax_reason"]}
    assert fmax_columns_from_report({"core": {}, "blocks": {}}, tiny,
                                    source="synthesis")["fmax_source"] == NOT_ESTIMATED
    assert fmax_columns_from_report(None, tiny, source="s")["clock_within_fmax"] is None


def test_a_point_row_carries_its_fmax(tmp_path):
    """evaluate_point looks its design up in ``synth_dir``/cache (only the blocks with any
    cached netlist are elaborated: here control)."""
    tiny = load_preset("tiny")
    work = tmp_path / "synth"
    _put(work / "cache", tiny, BLOCKS["control"], 2)
    p = {"model": "micro", "prompt_len": 8, "gen_len": 4}
    t = {"key": point_key(tiny, p, "model"), "point": p, "base": tiny.to_dict(),
         "resources": "model", "synth_dir": str(work)}
    r = evaluate_point(t)
    assert r["status"] == "ok", r["reason"]
    assert r["fmax_mhz"] == pytest.approx(1000 / _period(2), abs=0.1)
    assert r["fmax_blocks_timed"] == 1 and r["clock_within_fmax"] is None
    assert f"1 of {len(hs.COMPONENTS)} blocks timed" in r["fmax_reason"]
