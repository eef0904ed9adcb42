"""The whole core on a compiled GPT-2: the shipped ``micro`` model compiled for the ``tiny``
preset runs prefill and decode on the emitted Verilog (cocotb_program.py). Every HBM byte
(KV caches, activations spilled to HBM, the generated tokens) must equal fpgpt.sim's exact mode.
The cycle comparison with the timing model is written to build/rtl/core_reports/ and printed
(``bench/bench_rtl_program.py`` prints it as a table); it is a measurement, not asserted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from program_case import compare, make_case


@pytest.mark.skipif(os.environ.get("FPGPT_SLOW_RTL") != "1", reason=(
    "a whole-core Verilator build (~4 min, -O0 C++) plus a prefill and two decode steps at "
    "~400 cycles/s; the 1-token prefill of bench/bench_rtl_program.py measured 13,945 cycles "
    "in 35 s; run with FPGPT_SLOW_RTL=1 (results in docs/rtl.md and the closing notes)"))
def test_compiled_generation_on_the_core(tmp_path, rtl_build):
    from fpgpt.config import load_preset
    from fpgpt.hw.cosim import run_cocotb
    from fpgpt.hw.top import write_top

    case = make_case(model="micro", preset="tiny", prompt="de", new_tokens=3)
    hw = load_preset(case["preset"])
    d = rtl_build(f"core_{hw.artifact_name}")
    v = write_top(hw, d / "fpgpt_top.v", flat=True)
    case_file, stats_file = tmp_path / "case.json", tmp_path / "stats.json"
    case_file.write_text(json.dumps(case))
    run_cocotb([v], "fpgpt_top", "cocotb_program", d / "sim", test_dir=Path(__file__).parent,
               cxx_opt=False,
               env={"PROGRAM_CASE": str(case_file), "PROGRAM_STATS": str(stats_file),
                    "PROGRAM_PROGRESS": str(rtl_build("core_reports") / "program_progress.log")})
    stats = json.loads(stats_file.read_text())
    assert stats["differ"] == 0 and stats["tokens"] == case["tokens"]
    rows = compare(case, stats)
    for r in rows:
        if "count_rtl" in r:        # every instruction of every unit completed on the RTL
            assert r["count_rtl"] == r["count_model"], r
    (rtl_build("core_reports") / f"program_{case['model']}_{hw.artifact_name}.json").write_text(
        json.dumps({"rows": rows, "runs": stats["runs"]}, indent=1))
