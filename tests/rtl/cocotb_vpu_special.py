"""cocotb test module: the exp and GELU units (fpgpt.hw.vpu_special) against numerics, bit for bit.

The DUT is a ``fpu.UnitBank`` of ``exp`` (FP32 -> FP32) and ``gelu16`` (FP16 -> FP16) with
VSP_COPIES copies each. Environment: VSP_COPIES, VSP_COUNT (random FP32 inputs for exp),
VSP_SEED, VSP_STATS (a JSON file the counts are written to).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import Timer

from fpgpt.isa import numerics as nx


def exp_inputs(count: int, seed: int) -> np.ndarray:
    """Every FP16 value as FP32, corners, and ``count`` random FP32 patterns (uniform bits,
    values across and just outside the clamp range, near the overflow / flush thresholds and
    near the rounding ties of ``x * log2(e)``)."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    corners = np.array([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x3F800000,
                        0xBF800000, 0x42B20000, 0xC2D00000, 0x42B20001, 0xC2D00001, 0x42B17217,
                        0x42B17218, 0xC2AEAC4F, 0xC2AEAC50, 0xC2AEAC51, 0x7F7FFFFF, 0xFF7FFFFF,
                        0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001],
                       np.uint32)
    rng = np.random.default_rng(seed)
    q = count // 4
    uniform = rng.integers(0, 1 << 32, q, dtype=np.uint64).astype(np.uint32)
    span = rng.uniform(-110.0, 95.0, q).astype(np.float32).view(np.uint32)
    edges = (np.array([88.72, -87.33, -103.97, 88.99], np.float32)[rng.integers(0, 4, q)]
             .view(np.uint32) + rng.integers(-4096, 4096, q).astype(np.uint32))
    k = rng.integers(-150, 129, count - 3 * q) + 0.5        # x*log2(e) close to k + 1/2
    ties = (k / np.log2(np.e)).astype(np.float32).view(np.uint32)
    ties = ties + rng.integers(-2, 3, ties.size).astype(np.uint32)
    return np.concatenate([every.astype(np.float32).view(np.uint32), corners, uniform, span,
                           edges, ties])


async def drive(dut, name: str, inputs: np.ndarray, width: int, copies: int) -> np.ndarray:
    """Sets all copies of unit ``name`` per step; returns the outputs (unsigned ints)."""
    n = len(inputs)
    pad = np.concatenate([inputs, np.zeros(-n % copies, inputs.dtype)]).astype(f"<u{width // 8}")
    raw = pad.tobytes()
    step_bytes = copies * width // 8
    port_a, port_y = getattr(dut, f"{name}_a"), getattr(dut, f"{name}_y")
    outs = bytearray()
    for s in range(len(pad) // copies):
        port_a.value = int.from_bytes(raw[s * step_bytes:(s + 1) * step_bytes], "little")
        await Timer(1, "ns")
        outs += port_y.value.to_unsigned().to_bytes(step_bytes, "little")
    return np.frombuffer(bytes(outs), dtype=f"<u{width // 8}")[:n]


def _report(name, inputs, got, want, seconds):
    bad = np.flatnonzero(got != want)
    first = None if not bad.size else (f"x={int(inputs[bad[0]]):#x} got {int(got[bad[0]]):#x} "
                                       f"want {int(want[bad[0]]):#x}")
    return {"unit": name, "inputs": int(len(inputs)), "mismatches": int(bad.size),
            "first": first, "sim_s": round(seconds, 2)}


@cocotb.test()
async def exp_and_gelu_match_numerics(dut):
    copies = int(os.environ["VSP_COPIES"])
    count = int(os.environ.get("VSP_COUNT", "0"))
    seed = int(os.environ.get("VSP_SEED", "1"))
    results = []
    x = exp_inputs(count, seed)
    want = nx.f32_bits(nx.exp_f32(x.view(np.float32)))
    t0 = time.perf_counter()
    got = await drive(dut, "exp", x, 32, copies)
    results.append(_report("exp", x, got, want, time.perf_counter() - t0))
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    want16 = nx.f16_bits(nx.gelu(h.view(np.float16)))
    t0 = time.perf_counter()
    got16 = await drive(dut, "gelu16", h, 16, copies)
    results.append(_report("gelu16", h, got16, want16, time.perf_counter() - t0))
    if os.environ.get("VSP_STATS"):
        with open(os.environ["VSP_STATS"], "w") as f:
            json.dump(results, f, indent=1)
    bad = [f"{r['unit']}: {r['mismatches']} of {r['inputs']} differ, first {r['first']}"
           for r in results if r["mismatches"]]
    assert not bad, "; ".join(bad)
