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
    """Cycles one row costs beyond its beats: pipeline fill and the row's scalar phase.

    Calibrated from the RTL VPU (fpgpt/hw/vpu.py; tests/rtl/test_hw_vpu.py asserts these
    formulas on the tiny preset): a = add, mu = mul, s = special-function latency, tree = the
    pairwise lane tree.
    """
    v = hw.vpu
    a, mu, s = v.add_latency, v.mul_latency, v.special_latency
    tree = (v.width.bit_length() - 1) * a
    return {
        "VADD": a + 2,
        "VMUL": mu + 2,
        "VCOPY": 2,
        "GELU": 5 * mu + 2 * a + 2 * s + 2,
        "LAYERNORM": 2 * tree + 4 * a + 5 * mu + s + 8,
        "SOFTMAX": 2 * tree + 4 * mu + 2 * a + 3 * s + 8,
        "ARGMAX": tree + 4,
    }[op]


def vpu_cycles(hw: "HardwareConfig", op: str, f: dict[str, int]) -> float:
    """VPU: per row, ``passes · ⌈cols/width⌉`` beats plus the op's fill.

    The RTL VPU takes one row per command and does not overlap rows (a row's scalar phase must
    finish before its next pass), so every row pays the fill.
    """
    cols = f["cols"] + f.get("rc", 0)
    rows = f.get("rows", 1)
    beats = -(-cols // hw.vpu.width)
    if rows <= 0 or beats <= 0:
        return 1.0
    return float(rows * (VPU_PASSES[op] * beats + _vpu_fill(hw, op)))


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
