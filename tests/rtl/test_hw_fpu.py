"""FP units in Amaranth's simulator: corner cases against the numerics contract, bit for bit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from fpgpt.hw import fpu
from fpref import F16_SPECIAL, F32_SPECIAL, ref

COPIES = 64


def _pack(vals: np.ndarray, width: int) -> int:
    return int.from_bytes(vals.astype(f"<u{width // 8}").tobytes(), "little")


def _unpack(v: int, width: int, n: int) -> np.ndarray:
    return np.frombuffer(v.to_bytes(n * width // 8, "little"), dtype=f"<u{width // 8}")


def run_parallel(unit: type[fpu.FPUnit], a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Outputs of ``unit`` on every operand set, COPIES per simulated step."""
    dut = fpu.ParallelUnit(unit=unit, copies=COPIES)
    n = len(a)
    pad = -n % COPIES
    a = np.concatenate([a, np.zeros(pad, a.dtype)])
    b = None if b is None else np.concatenate([b, np.zeros(pad, b.dtype)])
    out = []

    async def bench(ctx):
        for i in range(0, len(a), COPIES):
            ctx.set(dut.a, _pack(a[i:i + COPIES], unit.in_width))
            if b is not None:
                ctx.set(dut.b, _pack(b[i:i + COPIES], unit.in_width))
            out.append(_unpack(ctx.get(dut.y), unit.out_width, COPIES))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return np.concatenate(out)[:n]


def _corner_operands(unit: type[fpu.FPUnit]):
    special = F16_SPECIAL if unit.in_width == 16 else F32_SPECIAL
    if unit.arity == 1:
        return special, None
    pairs = np.array(list(itertools.product(special, special)), dtype=special.dtype)
    return pairs[:, 0], pairs[:, 1]


@pytest.mark.parametrize("name", sorted(fpu.UNITS))
def test_corner_cases_bit_exact(name):
    unit = fpu.UNITS[name]
    a, b = _corner_operands(unit)
    got = run_parallel(unit, a, b)
    want = ref(name, a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{name}: {bad.size} mismatches, first a={a[bad[0]]:#x}"
                           + ("" if b is None else f" b={b[bad[0]]:#x}")
                           + f" got {got[bad[0]]:#x} want {want[bad[0]]:#x}")


def test_every_f16_input_one_input_units():
    a = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = run_parallel(fpu.F16ToF32, a, None)
    assert np.array_equal(got, ref("f16_to_f32", a))


@pytest.mark.parametrize("latency", [1, 3])
def test_latency_cycles(latency):
    dut = fpu.F32Add(latency=latency)
    assert dut.latency == latency
    seen = []

    async def bench(ctx):
        ctx.set(dut.a, 0x3F800000)
        ctx.set(dut.b, 0x3F800000)
        for _ in range(latency + 1):
            seen.append(ctx.get(dut.y))
            await ctx.tick()
        seen.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen.index(0x40000000) == latency


def test_constructor_checks(quiet_unused):
    with pytest.raises(TypeError, match=r"^latency must be a non-negative integer, not '2'$"):
        fpu.F32Add(latency="2")
    with pytest.raises(ValueError, match=r"^latency must be a non-negative integer, not -1$"):
        fpu.F32Mul(latency=-1)
    with pytest.raises(ValueError, match=r"^copies must be a positive integer, not 0$"):
        fpu.ParallelUnit(unit=fpu.F32Add, copies=0)
    with pytest.raises(TypeError, match=r"^unit must be an FPUnit subclass, not 3$"):
        fpu.ParallelUnit(unit=3, copies=1)
