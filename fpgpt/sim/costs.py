"""How long each unit is busy with one instruction: durations from its shape and the config.

Every number comes from :class:`~fpgpt.config.HardwareConfig`; the only structure stated here is
*which* pipelines an operation passes through (docs/timing.md). DMA time is not here: it comes
from the HBM model (:mod:`fpgpt.sim.hbm`). All results are in core clock cycles; each
instruction costs at least one cycle.

Functions take ``f``, an instruction's fields with register fields replaced by register values
(:func:`fpgpt.sim.control.capture`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import HardwareConfig

__all__ = ["mpu_cycles", "vpu_cycles", "net_cycles", "VPU_PASSES"]

#: Passes over the data each VPU operation makes (one element per lane per cycle per pass):
#: LayerNorm sums, then accumulates squared deviations, then normalises; softmax finds the
#: maximum, then sums exponentials, then normalises.
VPU_PASSES = {"VADD": 1, "VMUL": 1, "VCOPY": 1, "GELU": 1, "LAYERNORM": 3, "SOFTMAX": 3,
              "ARGMAX": 1}


def mpu_cycles(hw: "HardwareConfig", f: dict[str, int]) -> float:
    """MM: ``batch·m·⌈n/lanes⌉·⌈k/width⌉`` cycles plus one pipeline fill.

    Each of the ``lanes`` dot-product lanes consumes ``width`` products per cycle; the rows of A
    and the lane groups of B stream through the multiplier/adder tree back to back, so the
    pipeline (``hw.mpu.pipeline_cycles``) fills once per instruction, not once per row.
    """
    p = hw.mpu
    k = f["k"] + f["rk"]
    n = f["n"] + f["rn"]
    work = max(f["batch"], 1) * f["m"] * -(-n // p.lanes) * -(-k // p.width)
    return float(work + p.pipeline_cycles) if work > 0 else 1.0


def _vpu_fill(hw: "HardwareConfig", op: str) -> int:
    """The dependent-pipeline latency one row exposes (rows stream back to back after it)."""
    v = hw.vpu
    tree = (v.width.bit_length() - 1) * v.add_latency + v.add_latency   # lane tree + accumulator
    return {
        "VADD": v.add_latency,
        "VMUL": v.mul_latency,
        "VCOPY": 0,
        "GELU": v.special_latency,
        "LAYERNORM": tree + v.mul_latency + tree + v.special_latency + v.mul_latency + v.add_latency,
        "SOFTMAX": tree + v.mul_latency + v.special_latency + tree + v.special_latency + v.mul_latency,
        "ARGMAX": tree,
    }[op]


def vpu_cycles(hw: "HardwareConfig", op: str, f: dict[str, int]) -> float:
    """VPU: ``passes · rows · ⌈cols/width⌉`` cycles plus the op's pipeline fill."""
    cols = f["cols"] + f.get("rc", 0)
    rows = f.get("rows", 1)
    work = VPU_PASSES[op] * rows * -(-cols // hw.vpu.width)
    return float(work + _vpu_fill(hw, op)) if work > 0 else 1.0


def _hop_ns(hw: "HardwareConfig", nbytes: int) -> float:
    lk = hw.link
    packets = -(-nbytes // lk.packet_bytes)
    return lk.latency_ns + nbytes / lk.payload_bytes_per_s * 1e9 + packets * lk.packet_overhead_ns


def net_cycles(hw: "HardwareConfig", op: str, f: dict[str, int]) -> float:
    """NET on an idle ring (the partner is assumed ready; the multi-device system model adds
    waiting for it). Ring collectives on D devices: all-gather D-1 hops of ``count`` elements,
    all-reduce 2(D-1) hops of ``⌈count/D⌉`` (reduce-scatter then all-gather)."""
    count = f["count"]
    d = hw.devices
    if op in ("SEND", "RECV"):
        ns = _hop_ns(hw, 2 * count) if count else 0.0
    elif op == "ALLGATHER":
        ns = (d - 1) * _hop_ns(hw, 2 * count) if count else 0.0
    elif op == "ALLREDUCE":
        ns = 2 * (d - 1) * _hop_ns(hw, 2 * -(-count // d)) if count else 0.0
    else:
        raise ValueError(f"{op} is not a NET instruction")
    return max(1.0, math.ceil(ns * hw.clock_mhz / 1e3))
