"""VPU special functions (recip, rsqrt) in Verilator on every FP16 input (as FP32) plus corner and
random FP32 values, bit for bit with numerics. (Verilator, not Amaranth's simulator: these units
are ~15 FP operations deep and Python simulation of them is far too slow.)"""

from __future__ import annotations

import json
from pathlib import Path

from fpgpt.hw import fpu
from fpgpt.hw.cosim import run_cocotb, write_verilog
from fpgpt.hw.vpu_special import SPECIAL_UNITS

COPIES = 8
COUNT = 100_000


def test_special_units_verilator(tmp_path, rtl_build):
    names = sorted(SPECIAL_UNITS)
    d = rtl_build(f"special_bank_x{COPIES}")
    v = write_verilog(fpu.UnitBank(units=SPECIAL_UNITS, copies=COPIES), "special_bank",
                      d / "special_bank.v")
    stats = tmp_path / "stats.json"
    run_cocotb([v], "special_bank", "cocotb_fpu", d / "sim", test_dir=Path(__file__).parent,
               cxx_opt=False,   # -O0: the build dominates (-Os: 129 s CPU, -O0: 69 s, 2026-12-06)
               env={"FPU_UNITS": ",".join(names), "FPU_COPIES": str(COPIES),
                    "FPU_COUNT": str(COUNT), "FPU_SEED": "3", "FPU_STATS": str(stats)})
    results = json.loads(stats.read_text())
    assert [r["unit"] for r in results] == names
    for r in results:
        assert r["mismatches"] == 0, (r["unit"], r["first"])
        assert r["operand_sets"] > (1 << 16) + COUNT
