"""One Verilator build for the MPU's own FP operators: ``tree_*`` ports are
``TREE_COPIES`` combinational :class:`fpu.F32AddMPU`, ``mul_*`` ports ``MUL_COPIES``
:class:`fpu.F16MulF32MPU` (each a :class:`fpu.ParallelUnit`). tests/rtl/test_hw_fpu_tree.py and
test_hw_fpu_mul.py share it, so the suite pays one build (the build dominates: about a minute
each on the shared 2-core machine; the million-pair runs take seconds)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.triggers import Timer

from fpgpt.hw import fpu
from fpgpt.hw.cosim import write_verilog

TREE_COPIES, MUL_COPIES = 32, 64
TOP = "mpu_fp_ops"


class MPUOperators(wiring.Component):
    def __init__(self):
        add, mul = fpu.F32AddMPU, fpu.F16MulF32MPU
        super().__init__({
            "tree_a": In(add.in_width * TREE_COPIES), "tree_b": In(add.in_width * TREE_COPIES),
            "tree_y": Out(add.out_width * TREE_COPIES),
            "mul_a": In(mul.in_width * MUL_COPIES), "mul_b": In(mul.in_width * MUL_COPIES),
            "mul_y": Out(mul.out_width * MUL_COPIES)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = fpu.ParallelUnit(unit=fpu.F32AddMPU, copies=TREE_COPIES)
        m.submodules.mul = mul = fpu.ParallelUnit(unit=fpu.F16MulF32MPU, copies=MUL_COPIES)
        m.d.comb += [tree.a.eq(self.tree_a), tree.b.eq(self.tree_b), self.tree_y.eq(tree.y),
                     mul.a.eq(self.mul_a), mul.b.eq(self.mul_b), self.mul_y.eq(mul.y)]
        return m


def port(dut, name: str):
    """``dut``'s port ``name`` behind the prefix in ``FP_PORTS`` (``tree_`` or ``mul_``)."""
    return getattr(dut, os.environ.get("FP_PORTS", "") + name)


async def stream_pairs(dut, a: np.ndarray, b: np.ndarray, copies: int, out_dtype: str
                       ) -> tuple[np.ndarray, float]:
    """Drive ``a``/``b`` (one numpy dtype each, ``copies`` per step) through the combinational
    operators behind ``FP_PORTS``; returns the outputs and the simulation's wall seconds."""
    pad = -len(a) % copies
    dt = a.dtype.newbyteorder("<")
    abytes = np.concatenate([a, np.zeros(pad, a.dtype)]).astype(dt).tobytes()
    bbytes = np.concatenate([b, np.zeros(pad, b.dtype)]).astype(dt).tobytes()
    step, out_step = a.dtype.itemsize * copies, np.dtype(out_dtype).itemsize * copies
    outs = bytearray()
    t0 = time.perf_counter()
    for s in range(0, len(abytes), step):
        port(dut, "a").value = int.from_bytes(abytes[s:s + step], "little")
        port(dut, "b").value = int.from_bytes(bbytes[s:s + step], "little")
        await Timer(1, "ns")
        outs += port(dut, "y").value.to_unsigned().to_bytes(out_step, "little")
    return np.frombuffer(bytes(outs), dtype=out_dtype)[:len(a)], time.perf_counter() - t0


def builder_calls(general: str, mpu: str) -> dict[str, int]:
    """How often a tiny :class:`MPULane` calls the ``fplogic`` builders named ``general`` and
    ``mpu`` while it elaborates."""
    import pytest
    from amaranth.hdl import Fragment

    from fpgpt.config import load_preset
    from fpgpt.hw import fplogic
    from fpgpt.hw.mpu import MPULane

    counts = {"general": 0, "mpu": 0}
    mp = pytest.MonkeyPatch()
    for key, name in (("general", general), ("mpu", mpu)):
        def counted(*args, _orig=getattr(fplogic, name), _key=key, **kw):
            counts[_key] += 1
            return _orig(*args, **kw)
        mp.setattr(fplogic, name, counted)
    try:
        Fragment.get(MPULane(hw=load_preset("tiny")), None)
    finally:
        mp.undo()
    return counts


def write(build_dir: Path) -> Path:
    """The shared top's Verilog in ``build_dir`` (byte-equal when unchanged)."""
    return write_verilog(MPUOperators(), TOP, build_dir / f"{TOP}.v")
