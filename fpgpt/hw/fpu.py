"""Floating-point units as Amaranth components (docs/rtl.md).

Each unit is a combinational core (:mod:`fpgpt.hw.fplogic`) followed by ``latency`` register
stages on its output. ``latency=0`` is purely combinational (no clock). The registers sit after
the logic so that synthesis retiming (Vivado ``-retiming``) spreads them through it; the
latency a HardwareConfig states (``mpu.mul_latency``, ``mpu.add_latency``) is passed here
unchanged, so the RTL's cycle count is the config's by construction.
"""

from __future__ import annotations

from typing import Callable

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import fplogic

__all__ = ["check_latency", "FPUnit", "F16MulF32", "F16MulF32MPU", "F32Add", "F32AddMPU",
           "F32Mul", "F16ToF32", "F32ToF16", "ParallelUnit", "UnitBank", "UNITS"]


def check_latency(latency: object, what: str = "latency") -> int:
    """``latency`` as an int >= 0, else ``TypeError`` / ``ValueError`` naming it."""
    if not isinstance(latency, int) or isinstance(latency, bool):
        raise TypeError(f"{what} must be a non-negative integer, not {latency!r}")
    if latency < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {latency!r}")
    return latency


def delay(m: Module, value: Value, cycles: int, name: str) -> Value:
    """``value`` through ``cycles`` registers in the ``sync`` domain."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


class FPUnit(wiring.Component):
    """Base of the FP units: inputs ``a`` (and ``b``), output ``y``, ``latency`` cycles apart.

    Subclasses set ``in_width``, ``out_width``, ``arity`` and ``build``.
    """

    in_width: int = 32
    out_width: int = 32
    arity: int = 2
    build: Callable[..., Signal]

    def __init__(self, *, latency: int = 0):
        self._latency = check_latency(latency)
        ports = {"a": In(self.in_width), "y": Out(self.out_width)}
        if self.arity == 2:
            ports["b"] = In(self.in_width)
        super().__init__(ports)

    @property
    def latency(self) -> int:
        """Cycles from an input to its result (0: combinational)."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        args = (self.a, self.b) if self.arity == 2 else (self.a,)
        y = type(self).build(m, *args)
        m.d.comb += self.y.eq(delay(m, y, self._latency, "y"))
        return m


class F16MulF32(FPUnit):
    """FP16 x FP16 -> FP32, exact (the MPU multiplier)."""
    in_width, out_width, arity = 16, 32, 2
    build = staticmethod(fplogic.build_f16_mul_f32)


class F16MulF32MPU(FPUnit):
    """FP16 x FP16 -> FP32, exact, normalised in a second DSP48E2 (the MPU lane's multiplier):
    the same bits as :class:`F16MulF32` on every input pair (docs/rtl-mpu-adder.md)."""
    in_width, out_width, arity = 16, 32, 2
    build = staticmethod(fplogic.build_f16_mul_f32_mpu)


class F32Add(FPUnit):
    """FP32 + FP32 -> FP32, RNE (the MPU adder tree and accumulator, the VPU adder)."""
    in_width, out_width, arity = 32, 32, 2
    build = staticmethod(fplogic.build_f32_add)


class F32AddMPU(FPUnit):
    """FP32 + FP32 -> FP32, RNE, for the MPU's operands only (the lane's tree, accumulator and
    bias adders): no subnormal operands or results, no overflow (docs/rtl-mpu-adder.md)."""
    in_width, out_width, arity = 32, 32, 2
    build = staticmethod(fplogic.build_f32_add_mpu)


class F32Mul(FPUnit):
    """FP32 x FP32 -> FP32, RNE (the VPU multiplier)."""
    in_width, out_width, arity = 32, 32, 2
    build = staticmethod(fplogic.build_f32_mul)


class F16ToF32(FPUnit):
    """FP16 -> FP32, exact."""
    in_width, out_width, arity = 16, 32, 1
    build = staticmethod(fplogic.build_f16_to_f32)


class F32ToF16(FPUnit):
    """FP32 -> FP16, RNE (write-back rounding)."""
    in_width, out_width, arity = 32, 16, 1
    build = staticmethod(fplogic.build_f32_to_f16)


#: The FP units by name (what benches, emission and synthesis iterate over).
UNITS: dict[str, type[FPUnit]] = {
    "f16_mul_f32": F16MulF32, "f32_add": F32Add, "f32_mul": F32Mul,
    "f16_to_f32": F16ToF32, "f32_to_f16": F32ToF16,
}


class ParallelUnit(wiring.Component):
    """``copies`` instances of one FP unit side by side, operands packed into wide ports.

    Copy ``i`` reads ``a[i*in_width : (i+1)*in_width]`` (and ``b``) and drives the matching slice
    of ``y``. Benches use it so that each simulated cycle checks ``copies`` operand sets.
    """

    def __init__(self, *, unit: type[FPUnit], copies: int, latency: int = 0):
        if not (isinstance(unit, type) and issubclass(unit, FPUnit)):
            raise TypeError(f"unit must be an FPUnit subclass, not {unit!r}")
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise ValueError(f"copies must be a positive integer, not {copies!r}")
        self._unit, self._copies, self._latency = unit, copies, check_latency(latency)
        ports = {"a": In(unit.in_width * copies), "y": Out(unit.out_width * copies)}
        if unit.arity == 2:
            ports["b"] = In(unit.in_width * copies)
        super().__init__(ports)

    @property
    def latency(self) -> int:
        return self._latency

    def elaborate(self, platform):
        m = Module()
        wi, wo = self._unit.in_width, self._unit.out_width
        for i in range(self._copies):
            u = m.submodules[f"u{i}"] = self._unit(latency=self._latency)
            m.d.comb += u.a.eq(self.a[i * wi:(i + 1) * wi])
            if self._unit.arity == 2:
                m.d.comb += u.b.eq(self.b[i * wi:(i + 1) * wi])
            m.d.comb += self.y[i * wo:(i + 1) * wo].eq(u.y)
        return m


class UnitBank(wiring.Component):
    """One :class:`ParallelUnit` per named FP unit, in one module (one Verilator build for all).

    Ports are ``{name}_a``, ``{name}_b`` (two-input units) and ``{name}_y`` for each name.
    """

    def __init__(self, *, units: "dict[str, type[FPUnit]]", copies: int):
        if not units or not all(isinstance(u, type) and issubclass(u, FPUnit)
                                for u in units.values()):
            raise ValueError(f"units must map names to FPUnit subclasses, not {units!r}")
        self._names = tuple(units)
        self._banks = {n: ParallelUnit(unit=u, copies=copies) for n, u in units.items()}
        ports = {}
        for n, bank in self._banks.items():
            for port, member in bank.signature.members.items():
                ports[f"{n}_{port}"] = member
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for n, bank in self._banks.items():
            m.submodules[n] = bank
            for port, member in bank.signature.members.items():
                ours, theirs = getattr(self, f"{n}_{port}"), getattr(bank, port)
                m.d.comb += (theirs.eq(ours) if member.flow == wiring.In else ours.eq(theirs))
        return m
