"""Long VPU runs in Verilator: exp on many random FP32 inputs (plus every FP16 input, and GELU on
every FP16 input), and the VPU on many random rows of every operation with back-pressure.

    .venv/bin/python bench/bench_rtl_vpu.py [--count 2000000] [--rows 60] [--max-cols 256]

Prints JSON: inputs / rows checked and mismatches (must be 0), cycle counts per command at full
throughput, build and simulation wall times. Reuses the builds of tests/rtl/test_hw_vpu*.py
when the design is unchanged (same copies / max_cols).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "rtl"
sys.path.insert(0, str(TESTS))

from fpgpt.config import load_preset  # noqa: E402
from fpgpt.hw import fpu  # noqa: E402
from fpgpt.hw.cosim import run_cocotb, write_verilog  # noqa: E402
from fpgpt.hw.vpu import VPU  # noqa: E402
from fpgpt.hw.vpu_special import EXP_GELU_UNITS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2_000_000, help="random FP32 inputs for exp")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--rows", type=int, default=60, help="random rows per VPU operation")
    ap.add_argument("--max-cols", type=int, default=256)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--skip-exp", action="store_true")
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_exp:
            d = ROOT / "build" / "rtl" / f"vpu_exp_gelu_x{args.copies}"
            units = {"exp": EXP_GELU_UNITS["exp"], "gelu16": EXP_GELU_UNITS["gelu16"]}
            v = write_verilog(fpu.UnitBank(units=units, copies=args.copies), "exp_gelu_bank",
                              d / "exp_gelu_bank.v")
            stats = Path(tmp) / "exp.json"
            t0 = time.perf_counter()
            r = run_cocotb([v], "exp_gelu_bank", "cocotb_vpu_special", d / "sim", test_dir=TESTS,
                           env={"VSP_COPIES": str(args.copies), "VSP_COUNT": str(args.count),
                                "VSP_SEED": str(args.seed), "VSP_STATS": str(stats)})
            out["exp_gelu"] = {"results": json.loads(stats.read_text()), "build_s": r.build_s,
                               "test_s": r.test_s, "wall_s": time.perf_counter() - t0}
        hw = load_preset(args.preset)
        d = ROOT / "build" / "rtl" / f"vpu_{hw.artifact_name}_{args.max_cols}"
        v = write_verilog(VPU(hw=hw, max_cols=args.max_cols), "vpu", d / "vpu.v", flat=True)
        stats = Path(tmp) / "vpu.json"
        t0 = time.perf_counter()
        r = run_cocotb([v], "vpu", "cocotb_vpu", d / "sim", test_dir=TESTS, cxx_opt=False,
                       env={"VPU_PRESET": args.preset, "VPU_MAX_COLS": str(args.max_cols),
                            "VPU_ROWS": str(args.rows), "VPU_SEED": str(args.seed),
                            "VPU_STATS": str(stats)})
        out["vpu"] = {**json.loads(stats.read_text()), "build_s": r.build_s, "test_s": r.test_s,
                      "wall_s": time.perf_counter() - t0}
    print(json.dumps(out, indent=1))
    bad = [k for k, v in out.items() if (v.get("mismatches") or
                                          any(x["mismatches"] for x in v.get("results", [])))]
    if bad:
        raise SystemExit(f"mismatches in {bad}")


if __name__ == "__main__":
    main()
