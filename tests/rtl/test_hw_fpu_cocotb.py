"""FP units in Verilator through cocotb: random and corner operands, bit for bit with numerics.

One Verilator build holds all five units (fpu.UnitBank): the build dominates (about 45 s on
one core); the simulation checks 32 operand sets per step. The full-size run (a million
operand pairs per two-input unit) is bench/bench_rtl_fpu.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from fpgpt.hw import fpu
from fpgpt.hw.cosim import run_cocotb, write_verilog

HERE = Path(__file__).parent
COPIES = 16
COUNT = 1_000_000  # random operand sets per unit (plus all corner pairs)


def test_fp_units_verilator(tmp_path, rtl_build):
    names = sorted(fpu.UNITS)
    d = rtl_build(f"fp_bank_x{COPIES}")
    v = write_verilog(fpu.UnitBank(units={n: fpu.UNITS[n] for n in names}, copies=COPIES), "fp_bank", d / "fp_bank.v")
    stats = tmp_path / "stats.json"
    run_cocotb([v], "fp_bank", "cocotb_fpu", d / "sim", test_dir=HERE, cxx_opt=False,
               env={"FPU_UNITS": ",".join(names), "FPU_COPIES": str(COPIES),
                    "FPU_COUNT": str(COUNT), "FPU_SEED": "7", "FPU_STATS": str(stats)})
    results = {r["unit"]: r for r in json.loads(stats.read_text())}
    assert sorted(results) == names
    for name, r in results.items():
        assert r["mismatches"] == 0, (name, r["first"])
        unit = fpu.UNITS[name]
        if unit.arity == 1 and unit.in_width == 16:
            assert r["operand_sets"] == 1 << 16        # every FP16 input
        else:
            assert r["operand_sets"] > COUNT
