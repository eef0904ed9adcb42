"""The scratchpad: one FP16 address space of ``hw.buffers.sram_elements`` elements.

A requester (DMA, NET, the MPU/VPU operand fetch) sees a :func:`port_signature` port: one element
per cycle, read data one cycle after ``re`` (a registered read, as a BRAM/URAM gives it). The
:class:`Scratchpad` serves several such ports, one request per cycle in total, with fixed
priority (port 0 first); a port whose request loses waits (``grant`` low), so requesters hold
their request until granted.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import ClockSignal, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig

__all__ = ["ELEMENT_BITS", "addr_bits", "port_signature", "Scratchpad", "SPRAM_MODULE",
           "spram_verilog"]

#: The storage macro's Verilog module (written by :func:`spram_verilog`). It is a black box to
#: Amaranth because Amaranth writes an initialiser line per word of a memory, which for the
#: u280's 8 M-element scratchpad is a file of gigabytes; Vivado infers URAM from this one.
SPRAM_MODULE = "fpgpt_spram"


def spram_verilog(hw: HardwareConfig) -> str:
    """Verilog of the scratchpad storage: one port, registered read (URAM/BRAM inference)."""
    aw, depth = addr_bits(hw), hw.buffers.sram_elements
    return (f"// fpgpt scratchpad storage: {depth} x {ELEMENT_BITS} bits, registered read\n"
            f"module {SPRAM_MODULE} (input wire clk, input wire [{aw - 1}:0] addr, input wire we,\n"
            f"    input wire [{ELEMENT_BITS - 1}:0] wdata, input wire re,\n"
            f"    output reg [{ELEMENT_BITS - 1}:0] rdata);\n"
            f"  (* ram_style = \"ultra\" *) reg [{ELEMENT_BITS - 1}:0] cells [0:{depth - 1}];\n"
            f"  always @(posedge clk) begin\n"
            f"    if (we) cells[addr] <= wdata;\n"
            f"    if (re) rdata <= cells[addr];\n"
            f"  end\nendmodule\n")

#: Bits of one scratchpad element (FP16).
ELEMENT_BITS = 16


def addr_bits(hw: HardwareConfig) -> int:
    """Bits of a scratchpad element address for ``hw`` (at least 1)."""
    return max(1, (hw.buffers.sram_elements - 1).bit_length())


def port_signature(hw: HardwareConfig) -> wiring.Signature:
    """A requester's scratchpad port (``Out`` from the requester's side).

    Members: ``addr``, ``re``, ``we``, ``wdata`` (out), ``rdata``, ``grant`` (in). A request
    (``re`` or ``we``) is served in the cycle ``grant`` is high; read data appear on ``rdata``
    in the next cycle.
    """
    return wiring.Signature({
        "addr": Out(addr_bits(hw)), "re": Out(1), "we": Out(1), "wdata": Out(ELEMENT_BITS),
        "rdata": In(ELEMENT_BITS), "grant": In(1),
    })


class Scratchpad(wiring.Component):
    """``hw.buffers.sram_elements`` FP16 elements shared by ``ports`` requesters.

    Parameters
    ----------
    hw : HardwareConfig
    ports : int
        Number of requester ports, ``port0`` (highest priority) ... ``port{ports-1}``.

    Notes
    -----
    The storage is the black box :data:`SPRAM_MODULE` (write it with :func:`spram_verilog`).
    One element per cycle in total: the banked, wide organisation that feeds the MPU
    ``mpu.width`` elements per lane per cycle (``buffers.banks``) is not built yet.
    """

    def __init__(self, *, hw: HardwareConfig, ports: int = 1):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        if not isinstance(ports, int) or ports < 1:
            raise ValueError(f"ports must be a positive integer, not {ports!r}")
        self._hw = hw
        self._ports = ports
        super().__init__({f"port{i}": In(port_signature(hw)) for i in range(ports)})

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        addr, wdata = Signal(addr_bits(hw)), Signal(ELEMENT_BITS)
        we, re, rdata = Signal(), Signal(), Signal(ELEMENT_BITS)
        m.submodules.storage = Instance(SPRAM_MODULE, i_clk=ClockSignal(), i_addr=addr, i_we=we,
                                    i_wdata=wdata, i_re=re, o_rdata=rdata)
        ports = [getattr(self, f"port{i}") for i in range(self._ports)]
        # Fixed priority: the lowest-numbered port with a request gets the cycle.
        granted = Signal(range(max(2, self._ports)))
        for i in reversed(range(self._ports)):
            with m.If(ports[i].re | ports[i].we):
                m.d.comb += granted.eq(i)
        for i, p in enumerate(ports):
            with m.If(granted == i):
                m.d.comb += [p.grant.eq(1), addr.eq(p.addr), wdata.eq(p.wdata),
                             we.eq(p.we), re.eq(p.re)]
            m.d.comb += p.rdata.eq(rdata)
        return m
