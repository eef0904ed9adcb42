"""The core: dispatcher + DMA + scratchpad + AXI4-Lite control, and its Vitis-named Verilog top.

What is wired (this version): the dispatcher fetches from an on-chip program memory, executes
CTRL, captures and queues instructions; the DMA executes LOAD/STORE/GATHER/STR on the HBM AXI
ports and the scratchpad; the MPU engine (fpgpt.hw.mpu_engine) executes MM; the host drives
everything through ``s_axi_control`` (fpgpt.hw.control). The scratchpad has two requester ports:
the DMA's (first priority) and the MPU's. The VPU and NET queues end in :class:`Trap` units: an
instruction sent to one completes at once and sets its ``trapped`` flag, so a program that needs
them stops being silently wrong. TODO: the VPU (fpgpt.hw.vpu, in progress elsewhere; its command
layout is not the dispatcher's captured layout yet), NET AXI4-Stream ports, and fetching the
program from HBM at ``prog_base`` (today the program memory is initialised from
``program_words``).

:func:`write_top` writes the core (Amaranth port names, ``m_axi0__awaddr``) and a wrapper module
with Vitis RTL-kernel names: ``ap_clk``, ``ap_rst_n`` (active low), ``m_axi_gmem{k}_*``,
``s_axi_control_*``.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out, connect

from ..config import HardwareConfig
from ..isa.table import WAIT_UNITS, WORD_BITS
from .control import ControlSlave, axi4lite_signature
from .cosim import write_verilog
from .dispatch import Dispatcher
from .dma import AXI_ADDR_BITS, DMA, axi4_signature
from .fetch import ProgramLoader
from .mpu_engine import MPUEngine
from .net import NetUnit, axis_signature
from .scratchpad import Scratchpad, spram_verilog

__all__ = ["Core", "Trap", "write_top", "vitis_name", "NET_PORTS"]

#: The ring's AXI4-Stream ports (fpgpt.hw.net: tx_next drives the next device's rx_prev).
NET_PORTS = ("tx_next", "rx_prev", "tx_prev", "rx_next")


class Trap(wiring.Component):
    """Completes every instruction at once and remembers that one arrived (a unit not built)."""

    def __init__(self):
        super().__init__({"cmd_valid": In(1), "cmd_ready": Out(1), "done": Out(1),
                          "trapped": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.cmd_ready.eq(1), self.done.eq(self.cmd_valid)]
        with m.If(self.cmd_valid):
            m.d.sync += self.trapped.eq(1)
        return m


class Core(wiring.Component):
    """One device's core for ``hw`` (module docstring says what is wired).

    Parameters
    ----------
    hw : HardwareConfig
    program_words : list of int
        Instruction words (``WORD_BITS`` each) of the program memory's initial contents.
    pc_bits : int
        The program memory holds ``2**pc_bits`` words.

    Ports
    -----
    s_axi : Out(control.axi4lite_signature())
    m_axi0 ... : Out(dma.axi4_signature(64, hbm.port_bits))
    """

    def __init__(self, *, hw: HardwareConfig, pc_bits: int = 10):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        if not isinstance(pc_bits, int) or not 1 <= pc_bits <= 24:
            raise ValueError(f"pc_bits must be an integer in 1..24, not {pc_bits!r}")
        self._hw, self._pc_bits = hw, pc_bits
        members = {"s_axi": Out(axi4lite_signature()),
                   "m_axi_prog": Out(axi4_signature(AXI_ADDR_BITS, WORD_BITS))}
        for k in range(hw.hbm.channels):
            members[f"m_axi{k}"] = Out(axi4_signature(AXI_ADDR_BITS, hw.hbm.port_bits))
        for name in NET_PORTS:
            members[name] = (Out if name.startswith("tx") else In)(axis_signature(hw))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        m.submodules.ctl = ctl = ControlSlave()
        m.submodules.disp = disp = Dispatcher(hw=hw, pc_bits=self._pc_bits)
        m.submodules.dma = dma = DMA(hw=hw)
        m.submodules.mpu = mpu = MPUEngine(hw=hw)
        m.submodules.net = net = NetUnit(hw=hw)
        m.submodules.spad = spad = Scratchpad(hw=hw, ports=3)
        m.submodules.loader = loader = ProgramLoader(pc_bits=self._pc_bits)
        m.submodules.imem = imem = memory.Memory(shape=WORD_BITS, depth=1 << self._pc_bits,
                                                 init=[])
        rd, wr = imem.read_port(), imem.write_port()
        m.d.comb += [rd.addr.eq(disp.imem_addr), disp.imem_data.eq(rd.data),
                     wr.addr.eq(loader.waddr), wr.data.eq(loader.wdata), wr.en.eq(loader.we)]
        wiring.connect(m, loader.m_axi, wiring.flipped(self.m_axi_prog))

        wiring.connect(m, wiring.flipped(self.s_axi), ctl.s_axi)
        for k in range(hw.hbm.channels):
            wiring.connect(m, getattr(dma, f"m_axi{k}"),
                           wiring.flipped(getattr(self, f"m_axi{k}")))
        connect(m, dma.sram, spad.port0)
        connect(m, mpu.sram, spad.port1)
        connect(m, net.sram, spad.port2)
        connect(m, disp.net_cmd, net.cmd)
        for name in NET_PORTS:
            port = getattr(self, name)
            wiring.connect(m, getattr(net, name), wiring.flipped(port))
        m.d.comb += [disp.net_done.eq(net.done), net.device_index.eq(ctl.ring[0:8]),
                     net.device_count.eq(ctl.ring[8:16]), ctl.net_error.eq(net.error)]
        connect(m, disp.dma_cmd, dma.cmd)
        connect(m, disp.mpu_cmd, mpu.cmd)
        m.d.comb += [disp.dma_done.eq(dma.done), dma.data_base.eq(ctl.data_base),
                     disp.mpu_done.eq(mpu.done)]

        for i, u in enumerate(WAIT_UNITS):
            if u.value in ("dma", "mpu", "net"):
                continue
            t = Trap()
            m.submodules[f"trap_{u.value}"] = t
            cmd = getattr(disp, f"{u.value}_cmd")
            m.d.comb += [t.cmd_valid.eq(cmd.valid), cmd.ready.eq(t.cmd_ready),
                         getattr(disp, f"{u.value}_done").eq(t.done)]

        # Start: load the program first when its base or length changed (fetch.py), then run.
        # The run cycle counter counts while the dispatcher runs (the timing model's span).
        loading = Signal()
        cycles, load_cycles = Signal(32), Signal(32)
        run_start = Signal()
        with m.If(ctl.start):
            with m.If(ctl.prog_dirty):
                m.d.comb += loader.go.eq(1)
                m.d.sync += [loading.eq(1), load_cycles.eq(0)]
            with m.Else():
                m.d.comb += run_start.eq(1)
        with m.If(loading):
            m.d.sync += load_cycles.eq(load_cycles + 1)
            with m.If(loader.done):
                m.d.sync += loading.eq(0)
                m.d.comb += [ctl.prog_loaded.eq(1), run_start.eq(~loader.too_long)]
        with m.If(run_start):
            m.d.sync += cycles.eq(0)
        with m.Elif(disp.running):
            m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += [
            loader.base.eq(ctl.prog_base), loader.count.eq(ctl.prog_len),
            ctl.error.eq(loader.too_long), ctl.cycles.eq(cycles),
            ctl.load_cycles.eq(load_cycles),
            disp.start.eq(run_start), disp.entry.eq(ctl.entry),
            ctl.running.eq(disp.running | loading | loader.busy),
            ctl.halted.eq(disp.halted | (loading & loader.done & loader.too_long)),
            disp.reg_we.eq(ctl.reg_we), disp.reg_waddr.eq(ctl.reg_waddr),
            disp.reg_wdata.eq(ctl.reg_wdata), ctl.regs.eq(disp.regs),
        ]
        for i, u in enumerate(WAIT_UNITS):
            m.d.comb += ctl.completed[32 * i:32 * i + 32].eq(getattr(disp, f"completed_{u.value}"))
        return m


def vitis_name(path: tuple) -> str:
    """Vitis RTL-kernel name of a core port: ``m_axi3.awaddr`` -> ``m_axi_gmem3_awaddr``,
    ``s_axi.awaddr`` -> ``s_axi_control_awaddr``."""
    bus, member = str(path[0]), str(path[-1])
    if bus[len("m_axi"):].isdigit():
        return f"m_axi_gmem{bus[len('m_axi'):]}_{member}"
    if bus.startswith("m_axi_"):
        return f"{bus}_{member}"
    if bus == "s_axi":
        return f"s_axi_control_{member}"
    return "_".join(str(p) for p in path)


def write_top(hw: HardwareConfig, path, *, pc_bits: int = 10,
              name: str = "fpgpt_top") -> Path:
    """Write the core (module ``{name}_core``) and the Vitis-named wrapper ``name`` to ``path``.

    Returns
    -------
    Path
        The Verilog file.
    """
    core = Core(hw=hw, pc_bits=pc_bits)
    path = Path(path)
    write_verilog(core, f"{name}_core", path.with_suffix(".core.v"))
    ports, conns = ["input wire ap_clk", "input wire ap_rst_n"], [".clk(ap_clk)", ".rst(~ap_rst_n)"]
    for p, member in core.signature.members.flatten():
        if not member.is_port:
            continue
        width = member.shape.width if hasattr(member.shape, "width") else int(member.shape)
        d = "input" if member.flow == In else "output"
        rng = f"[{width - 1}:0] " if width > 1 else ""
        vn = vitis_name(p)
        ports.append(f"{d} wire {rng}{vn}")
        conns.append(f".{'__'.join(str(x) for x in p)}({vn})")
    wrapper = (f"// Vitis RTL-kernel port names around {name}_core (generated by fpgpt.hw.top)\n"
               f"module {name} (\n  " + ",\n  ".join(ports) + "\n);\n"
               f"  {name}_core core (\n    " + ",\n    ".join(conns) + "\n  );\nendmodule\n")
    text = path.with_suffix(".core.v").read_text() + "\n" + spram_verilog(hw) + "\n" + wrapper
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    path.with_suffix(".core.v").unlink()
    return path
