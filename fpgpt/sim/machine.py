"""The simulated device's state: scratchpad, HBM image and registers, with bounds-checked views.

The functional executor (:mod:`fpgpt.sim.executor`) reads and writes machine state only through
the view helpers here, so every out-of-range access becomes a one-line :class:`SimError` naming
the operand, the address range and the limit, never an ``IndexError`` from numpy.

Views are numpy arrays that share memory with the machine (built with ``np.ndarray(buffer=...)``
from a base offset and strides), so a strided or transposed DMA is one vectorised copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .control import Registers

if TYPE_CHECKING:
    from ..config import HardwareConfig
    from ..isa import Program

__all__ = ["SimError", "Machine"]

F16 = np.dtype("<f2")
I32 = np.dtype("<i4")


class SimError(RuntimeError):
    """A program that cannot run on the simulated device (bad address, unsupported op, ...)."""


def _extent(base: int, shape: tuple[int, ...], strides: tuple[int, ...], item: int) -> tuple[int, int]:
    """[lo, hi) in units of ``strides`` covered by a view (strides are never negative here)."""
    return base, base + sum((d - 1) * s for d, s in zip(shape, strides)) + item


class Machine:
    """One simulated device.

    Parameters
    ----------
    hw : HardwareConfig
        The design; the scratchpad holds ``hw.buffers.sram_elements`` FP16 elements.
    hbm_bytes : int
        Bytes of HBM to model: a program's extent (its highest region end), not the device's
        capacity, so a tiny program does not allocate gigabytes. Must not exceed
        ``hw.hbm.capacity_bytes``.

    Attributes
    ----------
    sram : numpy.ndarray
        The scratchpad, float16, zero at start.
    hbm : numpy.ndarray
        The modelled HBM, uint8, zero at start.
    regs : Registers
        The 16 registers (persist between streams, as on the device).
    """

    def __init__(self, hw: "HardwareConfig", hbm_bytes: int) -> None:
        if not isinstance(hbm_bytes, int) or hbm_bytes < 0:
            raise SimError(f"hbm_bytes must be a non-negative integer, not {hbm_bytes!r}")
        cap = hw.hbm.capacity_bytes
        if hbm_bytes > cap:
            raise SimError(f"the program needs {hbm_bytes} bytes of HBM but {hw.name!r} has {cap} "
                           f"(hbm.capacity_mib = {hw.hbm.capacity_mib}); use a config with more HBM "
                           "or a smaller model")
        self.hw = hw
        self.sram = np.zeros(hw.buffers.sram_elements, dtype=F16)
        self.hbm = np.zeros(hbm_bytes, dtype=np.uint8)
        self.regs = Registers()
        # The VPU's running ARGMAX, which an ARGMAX with cont = 1 continues: (best value, None
        # while every element so far was NaN; its index; elements so far). Any other VPU
        # instruction ends it (executor.py).
        self.argmax_run: tuple | None = None

    @classmethod
    def for_program(cls, hw: "HardwareConfig", program: "Program") -> "Machine":
        """A machine sized for ``program``'s HBM regions and segments, with the segments loaded."""
        seg_end = max((a + len(d) for a, d in program.segments), default=0)
        m = cls(hw, max(program.hbm_bytes, seg_end))
        m.load_segments(program)
        return m

    # -- program image ------------------------------------------------------------------------
    def load_segments(self, program: "Program") -> None:
        """Copy the program's memory image (weights, constants) into HBM."""
        for addr, data in program.segments:
            self.write_bytes(addr, data, what=f"segment at {addr:#x}")

    def write_bytes(self, addr: int, data: bytes, *, what: str = "write") -> None:
        self._check_hbm(what, addr, addr + len(data))
        self.hbm[addr:addr + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read_bytes(self, addr: int, nbytes: int, *, what: str = "read") -> bytes:
        self._check_hbm(what, addr, addr + nbytes)
        return self.hbm[addr:addr + nbytes].tobytes()

    # -- typed HBM access -----------------------------------------------------------------------
    def write_array(self, addr: int, values: np.ndarray, dtype: str | np.dtype = F16, *,
                    what: str = "write") -> None:
        """Store ``values`` (converted to ``dtype``, little-endian) contiguously at byte ``addr``."""
        data = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
        self.write_bytes(addr, data, what=what)

    def read_array(self, addr: int, count: int, dtype: str | np.dtype = F16, *,
                   what: str = "read") -> np.ndarray:
        """``count`` contiguous values of ``dtype`` from byte ``addr`` (a copy)."""
        dt = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(self.read_bytes(addr, count * dt.itemsize, what=what), dtype=dt).copy()

    def hbm_view(self, what: str, base: int, shape: tuple[int, ...], strides: tuple[int, ...],
                 dtype: np.dtype = F16) -> np.ndarray:
        """A view of HBM: element ``idx`` lives at byte ``base + sum(idx * strides)``.

        Any byte alignment is allowed (numpy handles unaligned views).
        """
        dt = np.dtype(dtype)
        if 0 in shape:
            return np.empty(shape, dtype=dt)
        lo, hi = _extent(base, shape, strides, dt.itemsize)
        self._check_hbm(what, lo, hi)
        return np.ndarray(shape, dtype=dt, buffer=self.hbm, offset=base, strides=strides)

    def _check_hbm(self, what: str, lo: int, hi: int) -> None:
        if lo < 0 or hi > self.hbm.size:
            raise SimError(f"{what} HBM bytes [{lo:#x}, {hi:#x}) outside the program's HBM "
                           f"[0, {self.hbm.size:#x}); the address or size is wrong")

    # -- scratchpad ------------------------------------------------------------------------------
    def sram_view(self, what: str, base: int, shape: tuple[int, ...],
                  strides: tuple[int, ...]) -> np.ndarray:
        """A view of the scratchpad; ``strides`` in elements: ``S[base + sum(idx * strides)]``."""
        if 0 in shape:
            return np.empty(shape, dtype=F16)
        lo, hi = _extent(base, shape, strides, 1)
        if lo < 0 or hi > self.sram.size:
            raise SimError(f"{what} scratchpad elements [{lo}, {hi}) outside the scratchpad "
                           f"[0, {self.sram.size}) (buffers.sram_kib = {self.hw.buffers.sram_kib})")
        return np.ndarray(shape, dtype=F16, buffer=self.sram, offset=2 * base,
                          strides=tuple(2 * s for s in strides))

    def sram_rows(self, what: str, base: int, rows: int, cols: int, stride: int) -> np.ndarray:
        """``rows`` x ``cols`` scratchpad matrix with ``stride`` elements between rows."""
        return self.sram_view(what, base, (rows, cols), (stride, 1))
