"""Verilog of every distinct RTL component for one HardwareConfig, plus a JSON manifest.

Files are named ``{hw.artifact_name}_{component}.v`` (module ``fpgpt_{component}``) so that a
netlist, a compiled program and a simulation can be matched to their configuration.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from amaranth.hdl import Shape
from amaranth.lib import wiring

from ..config import HardwareConfig
from . import fpu
from .cosim import VERILATOR_WAIVERS, write_verilog
from .decoder import Decoder
from .mpu import MPULane
from .top import write_top
from .verilator_env import setup_verilator

__all__ = ["Part", "parts", "emit_verilog", "lint_verilog"]

_WRITEBACK_LATENCY = 1


@dataclass(frozen=True)
class Part:
    """One distinct component of a design: how to build it and how many the design holds."""

    name: str
    make: Callable[[], wiring.Component]
    instances: int
    parameters: dict[str, Any]
    role: str


def parts(hw: HardwareConfig) -> list[Part]:
    """The distinct components of ``hw``'s datapath and how many of each it instantiates.

    The MPU lane holds its own multipliers and adders; the separate FP units are listed for the
    per-unit synthesis figures (and the VPU, whose lanes are ``vpu.width`` adders and
    multipliers plus one FP16<->FP32 converter pair each).
    """
    mpu, vpu = hw.mpu, hw.vpu
    return [
        Part("mpu_lane", lambda: MPULane(hw=hw), mpu.lanes,
             {"width": mpu.width, "mul_latency": mpu.mul_latency, "add_latency": mpu.add_latency},
             "MPU: lanes x (width multipliers, width-1 tree adders, accumulator, bias, rounding)"),
        Part("f16_mul_f32_mpu", lambda: fpu.F16MulF32MPU(latency=mpu.mul_latency),
             mpu.lanes * mpu.width, {"latency": mpu.mul_latency}, "MPU multiplier"),
        Part("f32_add_mpu", lambda: fpu.F32AddMPU(latency=mpu.add_latency),
             mpu.lanes * (mpu.width + 1), {"latency": mpu.add_latency},
             "MPU adder (tree, accumulator, bias; inside mpu_lane)"),
        Part("f32_add", lambda: fpu.F32Add(latency=vpu.add_latency), vpu.width,
             {"latency": vpu.add_latency}, "VPU adder (MPU tree adders are inside mpu_lane)"),
        Part("f32_mul", lambda: fpu.F32Mul(latency=vpu.mul_latency), vpu.width,
             {"latency": vpu.mul_latency}, "VPU multiplier"),
        Part("f16_to_f32", lambda: fpu.F16ToF32(latency=_WRITEBACK_LATENCY), vpu.width,
             {"latency": _WRITEBACK_LATENCY}, "VPU input conversion"),
        Part("f32_to_f16", lambda: fpu.F32ToF16(latency=_WRITEBACK_LATENCY), vpu.width,
             {"latency": _WRITEBACK_LATENCY}, "VPU write-back rounding"),
        Part("decoder", Decoder, 1, {}, "instruction decoder"),
    ]


def _ports(component: wiring.Component, verilog: str) -> list[dict[str, Any]]:
    out = []
    if "input clk" in verilog:
        out += [{"name": "clk", "direction": "in", "width": 1},
                {"name": "rst", "direction": "in", "width": 1}]
    for path, member in component.signature.members.flatten():
        if member.is_port:
            out.append({"name": "__".join(str(p) for p in path),
                        "direction": "in" if member.flow == wiring.In else "out",
                        "width": Shape.cast(member.shape).width})
    return out


_PORT_RE = re.compile(r"^\s*(input|output) wire (?:\[(\d+):0\] )?(\w+)")


def _top_ports(verilog: str, module: str) -> list[dict[str, Any]]:
    """The ports of the Vitis-named wrapper, read from its header."""
    header = verilog[verilog.index(f"module {module} ("):]
    header = header[:header.index(");")]
    out = []
    for line in header.splitlines():
        m = _PORT_RE.match(line)
        if m:
            out.append({"name": m.group(3), "direction": "in" if m.group(1) == "input" else "out",
                        "width": int(m.group(2)) + 1 if m.group(2) else 1})
    return out


def emit_verilog(hw: HardwareConfig, out_dir: str | Path, *, top: bool = True) -> dict[str, Any]:
    """Write the Verilog of each component of ``hw`` and ``{artifact_name}_manifest.json``.

    Parameters
    ----------
    hw : HardwareConfig
    out_dir : folder to write into (created).
    top : bool
        Also write the core with its Vitis-named wrapper (``{artifact_name}_top.v``, module
        ``fpgpt_top``, see fpgpt/hw/top.py). For u280 that is tens of MB of Verilog and minutes.

    Returns
    -------
    dict
        The manifest: ``{"artifact": ..., "hw": hw.to_dict(), "components": [{"name", "module",
        "file", "instances", "parameters", "role", "ports": [{"name", "direction", "width"}]}]}``.
    """
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    comps = []
    for part in parts(hw):
        comp = part.make()
        module = f"fpgpt_{part.name}"
        path = write_verilog(comp, module, out / f"{hw.artifact_name}_{part.name}.v")
        comps.append({"name": part.name, "module": module, "file": path.name,
                      "instances": part.instances, "parameters": part.parameters,
                      "role": part.role, "ports": _ports(comp, path.read_text())})
    if top:
        path = write_top(hw, out / f"{hw.artifact_name}_top.v")
        comps.append({"name": "top", "module": "fpgpt_top", "file": path.name, "instances": 1,
                      "parameters": {}, "role": "the core: control slave, program loader, "
                      "dispatcher, DMA, MPU, VPU and NET engines, scratchpad; Vitis RTL-kernel "
                      "port names",
                      "ports": _top_ports(path.read_text(), "fpgpt_top")})
    manifest = {"artifact": hw.artifact_name, "hw": hw.to_dict(), "components": comps}
    (out / f"{hw.artifact_name}_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def lint_verilog(out_dir: str | Path, manifest: dict[str, Any]) -> dict[str, str]:
    """``verilator --lint-only -Wall`` (with :data:`cosim.VERILATOR_WAIVERS`) on each file.

    Returns
    -------
    dict
        Module name to Verilator's output; empty strings mean clean.

    Raises
    ------
    RuntimeError
        If Verilator reports an error or an unwaived warning (the message holds its output).
    """
    setup_verilator()
    results = {}
    for c in manifest["components"]:
        cmd = ["verilator", "--lint-only", "-Wall", *VERILATOR_WAIVERS, "--top-module", c["module"],
               str(Path(out_dir) / c["file"])]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"verilator lint of {c['file']} failed:\n{r.stderr[-4000:]}")
        results[c["module"]] = r.stderr
    return results
