"""A compiled GPT-2 generation as a cosimulation case: what the RTL core must reproduce.

:func:`make_case` compiles a shipped model for a preset, runs the host protocol of
docs/execution.md on fpgpt.sim (exact numerics; the timing model per stream) and returns the HBM
image before and after, the generated tokens, the program image with its stream entries, and the
timing model's completion cycles per unit. ``cocotb_program.py`` runs the same protocol on the
Verilog (:func:`run_on_core`); :func:`compare` lines the two up and :func:`check_core_run`
asserts what the tests require. Shared by ``tests/rtl/test_hw_program.py``,
``tests/rtl/test_decode_floor_program.py`` and ``bench/bench_rtl_program.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fpgpt.compiler import compile_model
from fpgpt.config import load_preset
from fpgpt.models import ByteTokenizer, load_model
from fpgpt.sim.control import Registers
from fpgpt.sim.executor import run_stream
from fpgpt.sim.machine import I32, Machine
from fpgpt.sim.results import UNITS
from fpgpt.sim.runner import REG_COUNT
from fpgpt.sim.timing import time_stream
from fpgpt.sim.trace import TraceRecorder

__all__ = ["CYCLE_TOLERANCE", "make_case", "run_on_core", "check_core_run", "compare",
           "per_instruction"]


def _model_stamps(program, stream, hw, regs) -> tuple[float, dict, dict, dict]:
    """The timing model's stream length and, per unit in order, the instructions' completion
    cycles, names and start cycles."""
    tr = TraceRecorder(max_events=10_000_000)
    t = time_stream(program, stream, hw, regs, trace=tr)
    ends: dict[str, list[tuple[float, str]]] = {u: [] for u in UNITS}
    for ev in tr.events:
        if ev.get("ph") == "X" and ev["tid"] < len(UNITS):
            ends[UNITS[ev["tid"]]].append((TraceRecorder.completion_us(ev) * hw.clock_mhz, ev["name"],
                                           ev["ts"] * hw.clock_mhz))
    ends = {u: sorted(v) for u, v in ends.items()}
    return (t.cycles, {u: [e[0] for e in v] for u, v in ends.items()},
            {u: [e[1] for e in v] for u, v in ends.items()},
            {u: [e[2] for e in v] for u, v in ends.items()})


def make_case(model: str = "micro", preset: str = "tiny", prompt: str = "def",
              new_tokens: int = 3) -> dict:
    """Everything the RTL run needs and must reproduce (JSON-serialisable)."""
    hw = load_preset(preset)
    w = load_model(model)
    ids = ByteTokenizer().encode(prompt)
    program = compile_model(w, hw, prompt_len=len(ids))
    m = Machine.for_program(hw, program)
    m.write_array(program.regions["tokens_in"].addr, np.asarray(ids), I32)
    hbm_in = m.hbm.copy()

    streams = [("prefill", dict(program.registers.get("prefill", {})))]
    if new_tokens > 1:
        regs = dict(program.registers.get("decode", {}))
        regs[REG_COUNT] = new_tokens - 1
        streams.append(("decode", regs))
    timing_regs = Registers()
    runs = []
    for name, regs in streams:
        for r, v in regs.items():
            m.regs[int(r)] = int(v)
            timing_regs[int(r)] = int(v)
        run_stream(m, program, name)
        cycles, stamps, names, starts = _model_stamps(program, name, hw, timing_regs)
        runs.append({"stream": name, "regs": {int(r): int(v) for r, v in regs.items()},
                     "model_cycles": cycles, "model_stamps": stamps, "model_names": names,
                     "model_starts": starts})
    out = program.regions["tokens_out"]
    tokens = [int(t) for t in m.read_array(out.addr, new_tokens, I32)]
    image, entries = program.image()
    return {"preset": preset, "model": model, "prompt": ids, "tokens": tokens,
            "tokens_out": [out.addr, new_tokens], "program": image.hex(), "entries": entries,
            "hbm_in": hbm_in.tobytes().hex(), "hbm_out": m.hbm.tobytes().hex(), "runs": runs,
            "instructions": {s: len(program.stream(s)) for s in program.streams}}


#: Largest |RTL - model| / model of a stream's cycle count that the tests accept (issue #4).
CYCLE_TOLERANCE = 0.02


def run_on_core(case: dict, build: Path, work: Path, *, pauses: bool = False) -> Path:
    """Emit the core's top for ``case["preset"]`` (flat, with its completion probes) into
    ``build``, run ``case`` on it (cocotb_program.py in Verilator; HBM AxiRams serving a beat a
    cycle, or with back-pressure when ``pauses``) and return the statistics file it wrote in
    ``work``. A failed run raises RuntimeError; its statistics may still be there."""
    from fpgpt.hw.cosim import run_cocotb
    from fpgpt.hw.top import write_top

    v = write_top(load_preset(case["preset"]), build / "fpgpt_top.v", flat=True, probes=True)
    case_file, stats_file = work / "case.json", work / "stats.json"
    case_file.write_text(json.dumps(case))
    run_cocotb([v], "fpgpt_top", "cocotb_program", build / "sim",
               test_dir=Path(__file__).resolve().parent, cxx_opt=False,
               env={"PROGRAM_CASE": str(case_file), "PROGRAM_STATS": str(stats_file),
                    "PROGRAM_PAUSES": "1" if pauses else "0",
                    "COCOTB_LOG_LEVEL": "WARNING"})      # not a line per AXI-Lite poll
    return stats_file


def run_and_check(case: dict, rtl_build, work: Path, *, instructions: bool = False) -> None:
    """Runs ``case`` on the tiny core (the build test_hw_core.py makes), writes the comparison
    to build/rtl/core_reports/program_<model>_<preset artifact>.json (``instructions``: with
    the per-instruction rows) and asserts :func:`check_core_run`."""
    hw = load_preset(case["preset"])
    stats = json.loads(run_on_core(case, rtl_build(f"core_{hw.artifact_name}"),
                                   work).read_text())
    rows = compare(case, stats)
    report = {"rows": rows, "runs": stats["runs"]}
    if instructions:
        report["instructions"] = per_instruction(case, stats)
    (rtl_build("core_reports") / f"program_{case['model']}_{hw.artifact_name}.json").write_text(
        json.dumps(report, indent=1))
    check_core_run(case, stats, rows)


def check_core_run(case: dict, stats: dict, rows: list[dict]) -> None:
    """What a run on the core must show (the tests' asserts): every HBM byte and the tokens
    equal to fpgpt.sim's exact mode, every instruction of every unit completed, each stream's
    cycles within :data:`CYCLE_TOLERANCE` of the timing model's."""
    assert stats["differ"] == 0 and stats["tokens"] == case["tokens"]
    for r in rows:
        if "count_rtl" in r:        # every instruction of every unit completed on the RTL
            assert r["count_rtl"] == r["count_model"], r
    for run, got in zip(case["runs"], stats["runs"]):
        model, rtl = run["model_cycles"], got["cycles"]
        assert abs(rtl - model) <= CYCLE_TOLERANCE * model, (
            f"{run['stream']}: {rtl} RTL cycles vs {model:.0f} modelled "
            f"({(rtl - model) / model:+.1%}); per instruction: build/rtl/core_reports/")


def compare(case: dict, stats: dict) -> list[dict]:
    """Per stream and unit: instructions completed and the latest completion cycle, RTL vs
    model, and the whole stream's cycles (``rtl`` / ``model`` / ``diff_pct``)."""
    rows = []
    for run, got in zip(case["runs"], stats["runs"]):
        for u in UNITS:
            want, have = run["model_stamps"][u], got["units"][u]
            if not want and not have["completed"]:
                continue
            rows.append({"stream": run["stream"], "what": u, "count_rtl": have["completed"],
                         "count_model": len(want),
                         "rtl": have["last"] if have["completed"] else None,
                         "model": want[-1] if want else None})
        rows.append({"stream": run["stream"], "what": "total", "rtl": got["cycles"],
                     "model": run["model_cycles"]})
    for r in rows:
        if r["rtl"] is not None and r["model"]:
            r["diff_pct"] = 100.0 * (r["rtl"] - r["model"]) / r["model"]
    return rows


def per_instruction(case: dict, stats: dict) -> list[dict]:
    """Every instruction's start and completion cycle, RTL (the top's probe port) vs model, in
    each unit's order: ``diff`` = RTL - model completion, ``step`` = how much of it this
    instruction added (its diff minus the previous one's in the same unit), ``start_diff`` the
    same for the start and ``dur_diff`` = RTL - model duration."""
    out = []
    for run, got in zip(case["runs"], stats["runs"]):
        for u in UNITS:
            prev = 0.0
            rtl = got.get("stamps", {}).get(u, [])
            rtl_s = got.get("starts", {}).get(u, [])
            for i, (want, name) in enumerate(zip(run["model_stamps"][u], run["model_names"][u])):
                have = rtl[i] if i < len(rtl) else None
                diff = None if have is None else have - want
                m_s = run.get("model_starts", {}).get(u, [None] * (i + 1))[i]
                r_s = rtl_s[i] if i < len(rtl_s) else None
                both = None not in (m_s, r_s, have)
                out.append({"stream": run["stream"], "unit": u, "index": i, "op": name,
                            "model": want, "rtl": have, "diff": diff,
                            "step": None if diff is None else diff - prev,
                            "model_start": m_s, "rtl_start": r_s,
                            "start_diff": r_s - m_s if both else None,
                            "dur_diff": (have - r_s) - (want - m_s) if both else None})
                prev = diff if diff is not None else prev
    return out
