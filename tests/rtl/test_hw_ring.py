"""A ring of Verilog cores (fpgpt.hw.ring, cocotb_ring.py): two and three ``tiny`` cores, each
with its own AxiRam HBM and host, their ring ports joined by a link model with the ``tiny``
preset's hop latency (60 cycles) and credit flow control.

- ``test_net_program_on_a_ring``: a hand-assembled program with every NET instruction (SEND/RECV
  in both directions, ALLGATHER, ALLREDUCE; partial beats, FP32 partial sums over several beats)
  on 2 and 3 cards; every HBM byte of every card equals what the ISA's NET semantics give
  (ring_case.net_case writes it with numpy and fpgpt.isa.numerics; fpgpt.sim.system agrees,
  ``test_net_case_agrees_with_the_system_simulator``).
- ``test_compiled_generation_on_a_ring_of_two``: the shipped ``micro`` model compiled for two
  cards, prefill + decode: tokens and every HBM byte of both cards equal fpgpt.sim.system's
  exact mode; cycles against the system timing model (check_ring_cycles).
- ``test_compiled_generation_on_a_ring_of_three`` (``FPGPT_SLOW_RTL=1``): the same on three
  cards with the shipped ``tiny`` model.

The cards are runs of the one-card Verilator build of test_hw_core.py / test_hw_program.py (same
top, same folder): a ring costs no build of its own when those ran first.
"""

from __future__ import annotations

import os

import pytest

from ring_case import net_case, ring_report, run_cases

#: Largest |RTL - model| / model of a card's stream cycles (issue 11: 2 %).
CYCLE_TOLERANCE = 0.02


def test_link_latency_in_cycles():
    from fpgpt.config import load_preset
    from fpgpt.hw.ring import link_latency_cycles

    hw = load_preset("tiny")
    assert link_latency_cycles(hw) == 90          # 600 ns at 150 MHz
    with pytest.raises(TypeError, match="hw must be a HardwareConfig, not 'tiny'"):
        link_latency_cycles("tiny")


def test_run_ring_checks_its_arguments(tmp_path):
    from fpgpt.hw.ring import run_ring

    with pytest.raises(ValueError, match="cards must be a positive integer, not 0"):
        run_ring([], "top", "m", tmp_path, cards=0, work_dir=tmp_path, test_dir=tmp_path, env=[])
    with pytest.raises(ValueError, match=r"env must give one mapping per card \(2\), not 1"):
        run_ring([], "top", "m", tmp_path, cards=2, work_dir=tmp_path, test_dir=tmp_path,
                 env=[{}])


@pytest.mark.parametrize("cards", [2, 3])
def test_net_case_agrees_with_the_system_simulator(cards):
    """The HBM that net_case expects (written from the ISA's NET semantics) is what
    fpgpt.sim.system computes for the same programs: the RTL ring below is then checked against
    both."""
    import numpy as np

    from fpgpt.config import load_preset
    from fpgpt.isa.asm import assemble
    from fpgpt.isa.program import Program
    from fpgpt.sim.system import System

    cases = net_case(cards)
    programs = [Program(streams={"main": assemble(c["asm"])},
                        segments=[(0, bytes.fromhex(c["hbm_in"]))],
                        meta={"device": d, "devices": cards}) for d, c in enumerate(cases)]
    system = System(programs, load_preset("tiny").replace(devices=cards))
    system.run_stream("main")
    for c, got in zip(cases, system.hbm_images()):
        want = bytes.fromhex(c["hbm_out"])
        assert got[:len(want)] == want
        assert np.count_nonzero(np.frombuffer(want, np.uint8) != np.frombuffer(
            bytes.fromhex(c["hbm_in"]), np.uint8)) > 0        # the program changed something


@pytest.mark.parametrize("cards", [2, 3])
def test_net_program_on_a_ring(cards, tmp_path, rtl_build):
    from fpgpt.config import load_preset

    hw = load_preset("tiny")
    stats, _ = run_cases(net_case(cards), tmp_path / "ring", rtl_build(f"core_{hw.artifact_name}"))
    for s in stats:
        assert s["differ"] == 0, s
        run = s["runs"][0]
        assert run["units"]["net"]["completed"] == 6 and run["units"]["dma"]["completed"] == 7
    # every card started its stream on the same edge, and every link carried beats both ways
    assert len({s["runs"][0]["start_edge"] for s in stats}) == 1
    assert all(n > 0 for s in stats for n in s["beats"].values())
    # the ALLGATHER (NET's 5th instruction; both directions on 3 cards): from the last card's
    # start to each card's completion, as the timing model charges it (an upper bound)
    got, want = allgather_cycles(stats, hw.replace(devices=cards))
    print(f"ALLGATHER on {cards} cards: RTL {got} cycles (slowest card), model {want}")
    assert want - AG_SLACK * (cards // 2) <= got <= want, (got, want)


#: How far below costs.net_cycles an ALLGATHER of the NET program may finish, per step.
AG_SLACK = 8


def allgather_cycles(stats: list[dict], hw) -> tuple[int, float]:
    """The NET program's ALLGATHER (ring_case.net_case): RTL cycles from the last card's start
    to the last completion (every card starts its stream on the same edge, so the stamps share
    a time base), and what fpgpt.sim.costs.net_cycles charges for it."""
    from fpgpt.sim import costs
    from ring_case import GATHER

    i = 4                                   # SEND, RECV, SEND, RECV, ALLGATHER, ALLREDUCE
    start = max(s["runs"][0]["starts"]["net"][i] for s in stats)
    end = max(s["runs"][0]["stamps"]["net"][i] for s in stats)
    return end - start, costs.net_cycles(hw, "ALLGATHER", {"count": GATHER, "sram": 1024})


#: Extra cycles a VPU instruction may take in the RTL when an MPU or DMA instruction runs beside
#: it (scratchpad bank conflicts the timing model does not charge; measured up to 13).
VPU_CONTENTION = 16


def check_ring_cycles(report: dict, tolerance: float = CYCLE_TOLERANCE) -> None:
    """The cycle checks of a compiled run (ring_case.ring_report): every card's stream cycles
    within ``tolerance`` of the system timing model's for that card (issue 11), and the engines'
    instructions last what the model says: the MPU within 2 cycles, the VPU within 2 cycles
    unless it ran beside an MPU or DMA instruction. Then it may be up to :data:`VPU_CONTENTION`
    cycles longer: they share the scratchpad's banks, which the model does not charge.
    The halved prefill rows run them side by side (docs/compiler.md): measured +4 to +13
    cycles on such VPU instructions beside an MPU one (micro on tiny), 0.07 to 0.3 % of a
    stream; +3 on a LAYERNORM beside a DMA LOAD (tiny on three cards, by halves)."""
    for card in report["cards"]:
        for s in card["streams"]:
            assert abs(s["rtl"] - s["model"]) <= tolerance * s["model"], (
                f"card {card['card']} {s['stream']}: {s['rtl']} RTL cycles vs {s['model']:.0f} "
                f"modelled ({s['diff_pct']:+.1f} %); NET unit {s['net_rtl']} vs "
                f"{s['net_model']:.0f}; per instruction: build/rtl/core_reports/")
        mpu = [(r["stream"], r["rtl_start"], r["rtl"]) for r in card["instructions"]
               if r["unit"] in ("mpu", "dma") and r["dur_diff"] is not None]
        for r in card["instructions"]:
            if r["unit"] not in ("mpu", "vpu") or r["dur_diff"] is None:
                continue
            beside = r["unit"] == "vpu" and any(
                st == r["stream"] and s0 < r["rtl"] and r["rtl_start"] < e0 for st, s0, e0 in mpu)
            assert -2 <= r["dur_diff"] <= (VPU_CONTENTION if beside else 2), (card["card"], r)


def test_compiled_generation_on_a_ring_of_two(tmp_path, rtl_build):
    """The shipped ``micro`` model compiled for 2 cards (fpgpt.compiler.compile_devices), prompt
    "de", prefill + one decode step (2 tokens) on two cores: tokens and every HBM byte of both
    cards equal fpgpt.sim.system's exact mode (and the tokens are the one-card core's); every
    instruction of every unit completes; cycles as :func:`check_ring_cycles`. The per-card and
    per-instruction comparison goes to build/rtl/core_reports/ring_micro_tiny_2.json."""
    _compiled_ring(tmp_path, rtl_build, model="micro", prompt="de", devices=2)


@pytest.mark.skipif(os.environ.get("FPGPT_SLOW_RTL") != "1", reason=(
    "three Verilator cards of 45k + 26k cycles each: 115 s wall on a 2-core machine "
    "(2026-12-07), more than make test's budget has left; run with FPGPT_SLOW_RTL=1 "
    "(docs/rtl-ring.md)"))
def test_compiled_generation_on_a_ring_of_three(tmp_path, rtl_build):
    """As the ring of two, on three cores: the shipped ``tiny`` model (4 heads, split 2/1/1;
    ``micro`` has only 2), prompt "def" (a prefill tile of 3 rows: gathered by halves of 2 and
    1 rows and attended by query halves, on uneven heads), prefill + one decode step."""
    _compiled_ring(tmp_path, rtl_build, model="tiny", prompt="def", devices=3)


def _compiled_ring(tmp_path, rtl_build, *, model: str, prompt: str, devices: int) -> None:
    import json

    from fpgpt.config import load_preset
    from ring_case import model_case

    hw = load_preset("tiny")
    cases = model_case(model=model, preset="tiny", prompt=prompt, new_tokens=2, devices=devices)
    stats, _ = run_cases(cases, tmp_path / "ring", rtl_build(f"core_{hw.artifact_name}"))
    report = ring_report(cases, stats)
    (rtl_build("core_reports") / f"ring_{model}_tiny_{devices}.json").write_text(
        json.dumps(report, indent=1))
    for case, s, card in zip(cases, stats, report["cards"]):
        assert s["differ"] == 0 and s["tokens"] == case["tokens"], s
        for r in card["rows"]:
            if "count_rtl" in r:
                assert r["count_rtl"] == r["count_model"], r
    check_ring_cycles(report)
