"""The whole core on a compiled GPT-2: the shipped ``micro`` model compiled for the ``tiny``
preset runs prefill and decode on the emitted Verilog (cocotb_program.py) through the host
protocol. Every HBM byte (KV caches, the generated tokens, everything else) must equal
fpgpt.sim's exact mode, every instruction of every unit must complete, and each stream's cycle
count must be within 2 % of the timing model's (issue #4). HBM is four AxiRams serving a beat
per cycle, the memory the tiny preset's timing model describes (64-bit ports at the core clock,
two cycles of latency); ``bench/bench_rtl_program.py --pauses`` runs the same with back-pressure.
The per-instruction comparison (start, duration, completion) is written to
build/rtl/core_reports/ (the bench prints it as a table).

The Verilator build is the one tests/rtl/test_hw_core.py makes (same top, same folder)."""

from __future__ import annotations

import json
from pathlib import Path

from program_case import compare, make_case, per_instruction

#: Largest |RTL - model| / model of a stream's cycle count that the test accepts (issue #4).
CYCLE_TOLERANCE = 0.02


def test_compiled_generation_on_the_core(tmp_path, rtl_build):
    from fpgpt.config import load_preset
    from fpgpt.hw.cosim import run_cocotb
    from fpgpt.hw.top import write_top

    case = make_case(model="micro", preset="tiny", prompt="de", new_tokens=3)
    hw = load_preset(case["preset"])
    d = rtl_build(f"core_{hw.artifact_name}")
    v = write_top(hw, d / "fpgpt_top.v", flat=True, probes=True)
    case_file, stats_file = tmp_path / "case.json", tmp_path / "stats.json"
    case_file.write_text(json.dumps(case))
    run_cocotb([v], "fpgpt_top", "cocotb_program", d / "sim", test_dir=Path(__file__).parent,
               cxx_opt=False,
               env={"PROGRAM_CASE": str(case_file), "PROGRAM_STATS": str(stats_file),
                    "PROGRAM_PAUSES": "0", "COCOTB_LOG_LEVEL": "WARNING"})
    stats = json.loads(stats_file.read_text())
    rows = compare(case, stats)
    (rtl_build("core_reports") / f"program_{case['model']}_{hw.artifact_name}.json").write_text(
        json.dumps({"rows": rows, "instructions": per_instruction(case, stats),
                    "runs": stats["runs"]}, indent=1))
    assert stats["differ"] == 0 and stats["tokens"] == case["tokens"]
    for r in rows:
        if "count_rtl" in r:        # every instruction of every unit completed on the RTL
            assert r["count_rtl"] == r["count_model"], r
    for run, got in zip(case["runs"], stats["runs"]):
        model, rtl = run["model_cycles"], got["cycles"]
        assert abs(rtl - model) <= CYCLE_TOLERANCE * model, (
            f"{run['stream']}: {rtl} RTL cycles vs {model:.0f} modelled "
            f"({(rtl - model) / model:+.1%}); per instruction: build/rtl/core_reports/")
