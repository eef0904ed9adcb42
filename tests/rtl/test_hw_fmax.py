"""Fmax estimate (fpgpt/hw/fmax.py): the timing walk on hand-made netlists, and on tiny's
MPU lane synthesized by Yosys (about two minutes of Yosys: the lane and its four operators):
its accumulator loop retimes over the ring's registers, and the lane is bounded by one DSP48E2."""

from __future__ import annotations

import math
import re

import pytest

from fpgpt.config import load_preset
from fpgpt.hw import fmax
from fpgpt.hw.fmax import DELAYS as D


def _net(cells, ports=None):
    """cells: (type, name, {port: (dir, [bits])}); a DSP gets no registers."""
    out = []
    for t, name, conns in cells:
        c = {"name": name, "type": t, "conns": {p: [d, b] for p, (d, b) in conns.items()}}
        if t == "DSP48E2":
            c["regs"] = {}
        out.append(c)
    return {"top": "t", "ports": ports or {}, "cells": out}


def _ff(name, d, q):
    return ("FDRE", name, {"D": ("input", [d]), "Q": ("output", [q]), "C": ("input", [99]),
                           "CE": ("input", ["1"]), "R": ("input", ["0"])})


def _lut(name, ins, o):
    return (f"LUT{len(ins)}", name, {**{f"I{i}": ("input", [b]) for i, b in enumerate(ins)},
                                     "O": ("output", [o])})


def test_two_luts_between_registers():
    net = _net([_ff("r0", 10, 1), _lut("l1", [1], 2), _lut("l2", [2], 3), _ff("r1", 3, 4)])
    r = fmax.analyse(net)
    want = D.ff_clk_to_q + 3 * D.route + 2 * D.lut + D.ff_setup
    assert r["period_ns"] == pytest.approx(want, abs=1e-3)
    assert r["fmax_mhz"] == pytest.approx(1000 / want, abs=0.1)
    assert r["levels"] == {"LUT": 2}
    assert [t for t, _ in r["path"]] == ["FDRE", "LUT1", "LUT1"]


def test_carry_chain_and_lut_in_front_are_dedicated():
    carry = lambda n, s, ci, co: ("CARRY4", n, {"S": ("input", [s]), "DI": ("input", ["0"]),
                                                "CI": ("input", [ci]), "CO": ("output", [co]),
                                                "O": ("output", [co + 100])})
    net = _net([_ff("r0", 10, 1), _lut("l", [1], 2), carry("c0", 2, "0", 3),
                carry("c1", 1, 3, 4), _ff("r1", 4, 5)])
    r = fmax.analyse(net)
    # r0 -> hop -> LUT -> (in slice) carry entry -> chain -> hop -> r1
    want = D.ff_clk_to_q + D.route + D.lut + D.carry_entry + D.carry_chain + D.route + D.ff_setup
    assert r["period_ns"] == pytest.approx(want, abs=1e-3)


def _box(name, a, y):
    return ("fpgpt_bb_f32_add_mpu", name, {"a": ("input", [a]), "y": ("output", [y])})


OP = {"f32_add_mpu": {"delay_ns": 10.0, "atomic_ns": 2.0}}


def test_retiming_spreads_a_path_over_its_register_chain():
    # r0 -> adder (10 ns) -> d0 -> d1 -> d2: three registers after the logic
    net = _net([_ff("r0", 10, 1), _box("add", 1, 2), _ff("d0", 2, 3), _ff("d1", 3, 4),
                _ff("d2", 4, 5), _lut("use", [5], 6), _ff("out", 6, 7)])
    r = fmax.analyse(net, fp_delays=OP)
    path = D.ff_clk_to_q + D.route + 10.0 + D.route + D.ff_setup
    assert r["period_ns"] == pytest.approx(path, abs=1e-3)
    assert r["retimed_stages"] == 3
    assert r["retimed_period_ns"] == pytest.approx(path / 3, abs=1e-3)
    assert r["levels"] == {"f32_add_mpu": 1}


def test_a_loop_through_the_adder_is_not_retimed():
    # acc -> mux LUT -> adder -> acc, the accumulator; its Q also leaves the block
    net = _net([_ff("acc", 2, 1), _lut("mux", [1], 3), _box("add", 3, 2),
                _ff("d0", 1, 4), _ff("d1", 4, 5)],
               ports={"y": ["output", [5]]})
    r = fmax.analyse(net, fp_delays=OP)
    loop = D.ff_clk_to_q + 3 * D.route + D.lut + 10.0 + D.ff_setup
    assert r["retimed_stages"] == 1
    assert r["retimed_period_ns"] == pytest.approx(loop, abs=1e-3)
    assert r["period_ns"] == pytest.approx(loop, abs=1e-3)


def test_retiming_never_beats_the_slowest_cell():
    net = _net([_ff("r0", 1000, 1), _box("add", 1, 2)] +
               [_ff(f"d{i}", 2 + i, 3 + i) for i in range(40)])
    r = fmax.analyse(net, fp_delays=OP)
    assert r["retimed_stages"] == 40
    assert r["retimed_period_ns"] == pytest.approx(2.0 + D.ff_clk_to_q + D.ff_setup, abs=1e-3)


def test_combinational_dsp_and_ports():
    dsp = ("DSP48E2", "m", {"A": ("input", [1]), "B": ("input", [2]), "P": ("output", [3]),
                            "CLK": ("input", [99])})
    net = _net([_ff("ra", 10, 1), _ff("rb", 11, 2), dsp, _ff("rp", 3, 4)])
    r = fmax.analyse(net)
    assert r["period_ns"] == pytest.approx(D.ff_clk_to_q + 2 * D.route + D.dsp_comb
                                           + D.ff_setup, abs=1e-3)
    # an operator alone: ports at time 0, no hop in or out
    op = _net([dsp], ports={"a": ["input", [1]], "b": ["input", [2]], "y": ["output", [3]]})
    o = fmax.operator_delay(op)
    assert o["delay_ns"] == pytest.approx(D.dsp_comb, abs=1e-3)
    assert o["levels"] == {"DSP48E2": 1}


def test_stages_needed_for_a_period():
    over = 2 * D.route + D.ff_clk_to_q + D.ff_setup          # a register stage's own cost
    assert fmax.DSP_STAGE_NS == pytest.approx(D.dsp_comb + over, abs=1e-3)
    assert fmax.stages_needed(D.dsp_comb, fmax.DSP_STAGE_NS) == 1
    assert fmax.stages_needed(2 * fmax.DSP_STAGE_NS - over, fmax.DSP_STAGE_NS) == 2
    assert fmax.stages_needed(2 * fmax.DSP_STAGE_NS - over + 0.01, fmax.DSP_STAGE_NS) == 3
    assert fmax.stages_needed(211.65, fmax.DSP_STAGE_NS) == 70     # exp, docs/rtl-clock.md
    with pytest.raises(ValueError, match="period_ns must be > 0"):
        fmax.stages_needed(1.0, 0.0)


def test_supported_clock_applies_the_margin():
    assert fmax.supported_clock_mhz(400.0) == 320.0
    assert fmax.supported_clock_mhz(67.9) == 50.0
    assert fmax.supported_clock_mhz(100.0, margin=1.0) == 100.0


def test_report_names_each_blocks_source_and_takes_the_core_as_their_minimum(tmp_path):
    # two timed blocks (one LUT level, three), one structural estimate, one not timed
    fast = _net([_ff("r0", 10, 1), _lut("l1", [1], 2), _ff("r1", 2, 3)])
    slow = _net([_ff("r0", 10, 1), _lut("l1", [1], 2), _lut("l2", [2], 3), _lut("l3", [3], 4),
                 _ff("r1", 4, 5)])
    paths = {n: fmax.save_netlist(net, tmp_path / f"{n}.net.json.gz")
             for n, net in (("fast", fast), ("slow", slow))}
    est = {"guess": {"retimed_fmax_mhz": 100.0, "basis": "the same block timed on tiny"},
           "fast": {"retimed_fmax_mhz": 1.0, "basis": "ignored: the block is timed"}}
    rep = fmax.fmax_report(paths, {}, clock_mhz=90.0, structural=est,
                           not_timed={"left": "not synthesized in this run", "guess": "x"})
    b = rep["blocks"]
    assert {n: r["status"] for n, r in b.items()} == {
        "fast": "timed", "slow": "timed", "guess": "structural", "left": "not timed"}
    assert b["left"]["reason"] == "not synthesized in this run" and b["left"]["fmax_mhz"] is None
    assert b["slow"]["fmax_mhz"] < b["fast"]["fmax_mhz"] and b["slow"]["fmax_mhz"] > 100.0
    core = rep["core"]
    assert core["retimed_critical_block"] == "guess" and core["retimed_fmax_mhz"] == 100.0
    assert core["blocks_timed"] == ["fast", "slow"] and core["blocks_structural"] == ["guess"]
    assert core["blocks_not_timed"] == ["left"] and core["complete"] is False
    assert "minimum of its blocks" in core["from"]
    assert core["supported_clock_mhz"] == 80.0 and rep["claim_ok"] is False
    with pytest.raises(ValueError, match="needs retimed_fmax_mhz and basis"):
        fmax.fmax_report(paths, {}, structural={"guess": {"retimed_fmax_mhz": 100.0}})
    # every block timed: the core's figure is complete and the slowest block's
    full = fmax.fmax_report(paths, {})
    assert full["core"]["complete"] and full["core"]["critical_block"] == "slow"
    assert full["core"]["fmax_mhz"] == b["slow"]["fmax_mhz"]


# -- tiny's MPU lane through Yosys -----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lane(tmp_path_factory):
    from fpgpt.config import load_preset
    from fpgpt.hw.synth import COMPONENTS, synth_report
    hw = load_preset("tiny")
    comps = tuple(c for c in COMPONENTS if c.name == "mpu_lane")
    work = tmp_path_factory.mktemp("fmax")
    rep = synth_report(hw, work, components=comps, fmax=True)
    return hw, rep["fmax"], work


def test_tiny_lane_estimate_retimes_the_accumulator_loop(tiny_lane):
    hw, f, work = tiny_lane
    assert set(f["operators"]) == {"f16_mul_f32_mpu", "f32_add_mpu", "f16_to_f32", "f32_to_f16"}
    add = f["operators"]["f32_add_mpu"]
    assert add["levels"].get("DSP48E2") == 2 and add["levels"].get("LUT", 0) >= 5
    assert add["delay_ns"] > 2 * D.dsp_comb
    # the accumulator's adder is followed by a plain chain of acc_latency registers (the ring,
    # C-slow over that many dot products), so its loop retimes over them like the tree's adders
    (net_path,) = (work / "cache").glob("fpgpt_mpu_lane-*.flat.net.json.gz")
    net = fmax.load_netlist(net_path)
    chains = fmax.chain_lengths(net)
    head = {i for i, c in enumerate(net["cells"]) if c["type"].startswith("FD")
            and net["names"].get(str(c["conns"]["Q"][1][0]), "").startswith("acc_d0[")}
    assert len(head) == 32 and {chains[i] for i in head} == {hw.mpu.acc_latency}
    # ... under one DSP48E2 between two fabric registers (mpu.acc_latency's derivation) ...
    loop = add["delay_ns"] + D.ff_clk_to_q + D.ff_setup + 3 * D.route + D.lut
    dsp = D.ff_clk_to_q + 2 * D.route + D.dsp_comb + D.ff_setup
    assert loop / hw.mpu.acc_latency < dsp < loop / (hw.mpu.acc_latency - 1)
    # ... so the loop is not the lane's limit. With mpu.add_latency sized for the claimed clock
    # (docs/rtl-clock.md, "Latencies for the claimed clock") the limit is the bias add and its
    # rounding, retimed over their add_latency + 1 registers (a DSP48E2 stage when that was 12)
    lane = f["blocks"]["mpu_lane"]
    assert lane["retimed_stages"] == hw.mpu.add_latency + 1
    assert {"f32_add_mpu", "f32_to_f16"} <= set(lane["retimed_levels"])
    assert lane["retimed_period_ns"] > dsp
    assert lane["retimed_fmax_mhz"] >= lane["fmax_mhz"]
    # the slowest end points after retiming, the critical one first, each register once
    ends = lane["retimed_endpoints"]
    assert ends[0][0] == lane["retimed_fmax_mhz"]
    assert ends[0][1] == re.sub(r"\[\d+\]", "", lane["retimed_end"])
    assert [e[0] for e in ends] == sorted(e[0] for e in ends)
    assert len({e[1] for e in ends}) == len(ends) and 1 < len(ends) <= fmax.NEXT_ENDS
    assert f["core"]["retimed_critical_block"] == "mpu_lane"
    assert f["core"]["supported_clock_mhz"] == fmax.supported_clock_mhz(
        f["core"]["retimed_fmax_mhz"])
    assert f["claimed_clock_mhz"] == hw.clock_mhz
    assert f["claim_ok"] == (hw.clock_mhz <= f["core"]["supported_clock_mhz"])


def test_tiny_clock_is_within_its_estimate(tiny_lane):
    """tiny's clock against its MPU lane's estimate (the lane's Yosys run is the one the suite
    can afford). The whole core's check is ``bench/bench_fmax.py --hw tiny``: with the latencies
    sized for 150 MHz (session 14: special_latency 43, vpu add / mul 6 / 4, mpu mul / add 4 / 4)
    its slowest blocks are the VPU with its lanes stitched in, 190.0 MHz retimed
    (bench/bench_fmax_stitched.py), the VPU lane, 191.1, and the DMA, 191.7, which set tiny's 150
    MHz with the margin (session 17's RTL took its MPU engine 189.5 -> 205.0 and its VPU 205.0 ->
    223.3)."""
    hw, f, _work = tiny_lane
    assert math.isfinite(f["core"]["supported_clock_mhz"])
    assert hw.clock_mhz <= f["core"]["supported_clock_mhz"], (
        f"tiny claims {hw.clock_mhz} MHz, its MPU lane supports "
        f"{f['core']['supported_clock_mhz']} MHz (docs/rtl-clock.md)")


def test_cli_synth_shows_fmax_beside_the_resources(monkeypatch):
    import json

    from click.testing import CliRunner

    from fpgpt import cli
    from fpgpt.hw import synth
    from fpgpt.hw.synth import RESOURCES

    def fake(hw, work_dir, *, cache=True, progress=None, fmax=False, **_):
        row = {"kind": "block", "instances": 4, "total": dict.fromkeys(RESOURCES, 1)}
        op = {"kind": "fp_operator", "instances": 4, "total": dict.fromkeys(RESOURCES, 1)}
        cap = hw.device.capacity()
        rep = {"components": {"mpu_lane": row, "fp_f32_add_mpu": op},
               "total": dict.fromkeys(RESOURCES, 2), "capacity": cap,
               "utilisation": dict.fromkeys(RESOURCES, 0.0), "fits_70": True, "excluded": []}
        if fmax:
            rep["fmax"] = {
                "blocks": {"mpu_lane": {"fmax_mhz": 58.4, "retimed_fmax_mhz": 67.9}},
                "operators": {"f32_add_mpu": {"delay_ns": 13.55}}, "margin": 0.8,
                "core": {"fmax_mhz": 58.4, "retimed_fmax_mhz": 67.9, "critical_block": "mpu_lane",
                         "retimed_critical_block": "mpu_lane", "supported_clock_mhz": 50.0},
                "claimed_clock_mhz": hw.clock_mhz, "claim_ok": False}
        return rep

    monkeypatch.setattr(synth, "synth_report", fake)
    r = CliRunner().invoke(cli.main, ["synth", "--hw", "tiny"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())                 # rich wraps to the terminal's width
    assert "68 / 58" in out and "13.55 ns" in out
    assert "supported clock with the 80% margin: 50 MHz" in out
    assert f"claims {load_preset('tiny').clock_mhz:,.0f} MHz (ABOVE it)" in out
    r = CliRunner().invoke(cli.main, ["synth", "--hw", "tiny", "--no-fmax"],
                           catch_exceptions=False)
    assert "Fmax" not in r.output and "claims" not in r.output
    r = CliRunner().invoke(cli.main, ["synth", "--hw", "tiny", "--json"], catch_exceptions=False)
    assert json.loads(r.output)["fmax"]["core"]["supported_clock_mhz"] == 50.0
