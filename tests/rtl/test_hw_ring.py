"""A ring of Verilog cores (fpgpt.hw.ring, cocotb_ring.py): two and three ``tiny`` cores, each
with its own AxiRam HBM and host, their ring ports joined by a link model with the ``tiny``
preset's hop latency (60 cycles) and credit flow control.

- ``test_net_program_on_a_ring``: a hand-assembled program with every NET instruction (SEND/RECV
  in both directions, ALLGATHER, ALLREDUCE; partial beats, FP32 partial sums over several beats)
  on 2 and 3 cards; every HBM byte of every card equals what the ISA's NET semantics give
  (ring_case.net_case writes it with numpy and fpgpt.isa.numerics).

The cards are runs of the one-card Verilator build of test_hw_core.py / test_hw_program.py (same
top, same folder): a ring costs no build of its own when those ran first.
"""

from __future__ import annotations

import pytest

from ring_case import net_case, run_cases


def test_link_latency_in_cycles():
    from fpgpt.config import load_preset
    from fpgpt.hw.ring import link_latency_cycles

    hw = load_preset("tiny")
    assert link_latency_cycles(hw) == 60          # 600 ns at 100 MHz
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

