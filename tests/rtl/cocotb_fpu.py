"""cocotb test module: a ParallelUnit of one FP unit against the numerics contract, bit for bit.

Parameters come from the environment (set by tests/rtl/test_hw_fpu_cocotb.py or bench/):
FPU_UNITS (comma-separated names in fpu.UNITS or vpu_special.SPECIAL_UNITS; the DUT is a fpu.UnitBank of them), FPU_COPIES, FPU_COUNT (random operand sets),
FPU_SEED, FPU_STATS (a JSON file the test writes its counts and timings to).
"""

from __future__ import annotations

import itertools
import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import Timer

from fpgpt.hw import fpu
from fpgpt.hw.vpu_special import SPECIAL_UNITS
from fpref import F16_SPECIAL, F32_SPECIAL, random_bits, ref


def _f16_ties() -> np.ndarray:
    """FP32 values at, just below and just above every FP16 rounding midpoint."""
    h = np.arange(0, 0x7C00, dtype=np.uint32).astype(np.uint16)
    lo = h.view(np.float16).astype(np.float32).view(np.uint32)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
    mid = ((lo.astype(np.uint64) + hi) // 2).astype(np.uint32)   # same binade: exact midpoint
    both = np.concatenate([mid, mid - 1, mid + 1, lo])
    return np.concatenate([both, both | np.uint32(0x80000000)])


ALL_UNITS = {**fpu.UNITS, **SPECIAL_UNITS}


def stimulus(name: str, count: int, seed: int):
    unit = ALL_UNITS[name]
    rng = np.random.default_rng(seed)
    if name in SPECIAL_UNITS:       # every FP16 input (as FP32), corner and random FP32 values
        every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
        as32 = every.view(np.float16).astype(np.float32).view(np.uint32)
        return np.concatenate([as32, F32_SPECIAL, random_bits(32, count, rng)]), None
    if unit.arity == 1:
        if unit.in_width == 16:      # every FP16 input
            return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16), None
        a = np.concatenate([F32_SPECIAL, _f16_ties(), random_bits(32, count, rng)])
        return a, None
    special = F16_SPECIAL if unit.in_width == 16 else F32_SPECIAL
    pairs = np.array(list(itertools.product(special, special)), dtype=special.dtype)
    a = np.concatenate([pairs[:, 0], random_bits(unit.in_width, count, rng)])
    b = np.concatenate([pairs[:, 1], random_bits(unit.in_width, count, rng)])
    if name == "f32_add":
        # Near-cancellation: b close to -a (same binade, a few ulps apart).
        k = count // 4
        b[-k:] = (a[-k:] ^ np.uint32(0x80000000)) + rng.integers(-3, 4, k).astype(np.uint32)
    return a, b


async def check_unit(dut, name: str, copies: int, count: int, seed: int) -> dict:
    """Drives every operand set of ``name`` through the bank, returns counts and timings."""
    unit = ALL_UNITS[name]
    a, b = stimulus(name, count, seed)
    want = ref(name, a, b)
    n = len(a)
    pad = -n % copies
    ai = np.concatenate([a, np.zeros(pad, a.dtype)]).astype(f"<u{unit.in_width // 8}")
    bi = None if b is None else np.concatenate([b, np.zeros(pad, b.dtype)]).astype(ai.dtype)
    nbytes_in, nbytes_out = copies * unit.in_width // 8, copies * unit.out_width // 8
    abytes = ai.tobytes()
    bbytes = None if bi is None else bi.tobytes()
    port_a, port_y = getattr(dut, f"{name}_a"), getattr(dut, f"{name}_y")
    port_b = getattr(dut, f"{name}_b") if bi is not None else None
    outs = bytearray()
    t0 = time.perf_counter()
    steps = len(ai) // copies
    for s in range(steps):
        port_a.value = int.from_bytes(abytes[s * nbytes_in:(s + 1) * nbytes_in], "little")
        if port_b is not None:
            port_b.value = int.from_bytes(bbytes[s * nbytes_in:(s + 1) * nbytes_in], "little")
        await Timer(1, "ns")
        outs += port_y.value.to_unsigned().to_bytes(nbytes_out, "little")
    sim_s = time.perf_counter() - t0
    got = np.frombuffer(bytes(outs), dtype=f"<u{unit.out_width // 8}")[:n]
    bad = np.flatnonzero(got != want)
    first = None
    if bad.size:
        i = bad[0]
        first = (f"a={a[i]:#x}" + ("" if b is None else f" b={b[i]:#x}")
                 + f" got {got[i]:#x} want {want[i]:#x}")
    return {"unit": name, "operand_sets": int(n), "mismatches": int(bad.size), "first": first,
            "steps": steps, "copies": copies, "sim_s": sim_s, "steps_per_s": steps / sim_s}


@cocotb.test()
async def units_match_numerics(dut):
    copies = int(os.environ["FPU_COPIES"])
    count = int(os.environ.get("FPU_COUNT", "0"))
    seed = int(os.environ.get("FPU_SEED", "1"))
    results = [await check_unit(dut, name, copies, count, seed)
               for name in os.environ["FPU_UNITS"].split(",")]
    if os.environ.get("FPU_STATS"):
        with open(os.environ["FPU_STATS"], "w") as f:
            json.dump(results, f, indent=1)
    bad = [f"{r['unit']}: {r['mismatches']} of {r['operand_sets']} mismatch, first {r['first']}"
           for r in results if r["mismatches"]]
    assert not bad, "; ".join(bad)
