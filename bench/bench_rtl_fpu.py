"""Full-size FP unit run in Verilator: N random operand sets per unit, build and simulation speed.

    .venv/bin/python bench/bench_rtl_fpu.py [--count 1000000] [--copies 16] [--fresh]

Prints JSON: per unit the operand sets checked, mismatches (must be 0), simulated steps per
second; the build time of the bank (``--fresh`` forces a cold build) and of a single small
module (one registered FP32 adder) built from scratch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "rtl"
sys.path.insert(0, str(TESTS))

from fpgpt.hw import fpu  # noqa: E402
from fpgpt.hw.cosim import build, run_cocotb, write_verilog  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--copies", type=int, default=16)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--fresh", action="store_true", help="rebuild the bank from scratch")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        v = write_verilog(fpu.F32Add(latency=1), "f32_add", Path(tmp) / "f32_add.v")
        small_build_s = build([v], "f32_add", Path(tmp) / "sim")

    names = sorted(fpu.UNITS)
    d = ROOT / "build" / "rtl" / f"fp_bank_x{args.copies}"
    if args.fresh and d.exists():
        shutil.rmtree(d)
    v = write_verilog(fpu.UnitBank(units={n: fpu.UNITS[n] for n in names}, copies=args.copies), "fp_bank", d / "fp_bank.v")
    stats = d / "bench_stats.json"
    res = run_cocotb([v], "fp_bank", "cocotb_fpu", d / "sim", test_dir=TESTS,
                     env={"FPU_UNITS": ",".join(names), "FPU_COPIES": str(args.copies),
                          "FPU_COUNT": str(args.count), "FPU_SEED": str(args.seed),
                          "FPU_STATS": str(stats)})
    units = json.loads(stats.read_text())
    print(json.dumps({"small_module_build_s": round(small_build_s, 1),
                      "bank_build_s": round(res.build_s, 1), "bank_test_s": round(res.test_s, 1),
                      "units": [{k: (round(u[k], 1) if isinstance(u[k], float) else u[k])
                                 for k in ("unit", "operand_sets", "mismatches", "copies",
                                           "steps_per_s", "sim_s")} for u in units]}, indent=1))


if __name__ == "__main__":
    main()
