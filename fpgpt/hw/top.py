"""The core: every unit of one device, and its Vitis-named Verilog top.

Wired: the control slave (``s_axi_control``, fpgpt.hw.control); the program loader
(``m_axi_prog``, fpgpt.hw.fetch) filling the instruction memory; the dispatcher
(fpgpt.hw.dispatch: fetch, CTRL, register capture, unit queues, wait counts, scoreboard); the DMA
(LOAD/STORE/GATHER/STR on the ``m_axi{k}`` HBM ports); the MPU engine (MM); the VPU engine
(VADD ... ARGMAX, with ARGMAX's register write-back); the NET unit (SEND/RECV/ALLGATHER/ALLREDUCE
on the ring's AXI4-Stream ports ``tx_next``/``rx_prev``/``tx_prev``/``rx_next``). They share the
scratchpad through four requester ports in fixed priority: DMA, MPU, NET, VPU.

:func:`write_top` writes the core (Amaranth port names, ``m_axi0__awaddr``) and a wrapper module
with Vitis RTL-kernel names: ``ap_clk``, ``ap_rst_n`` (active low), ``m_axi_gmem{k}_*``,
``m_axi_prog_*``, ``s_axi_control_*``, ``tx_next_tdata`` ...
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
import json
import tempfile
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out, connect

from ..config import HardwareConfig
from ..isa.table import WAIT_UNITS, WORD_BITS
from .control import ControlSlave, axi4lite_signature
from .cosim import write_if_changed, write_verilog
from .dispatch import Dispatcher
from .axi import AXI_ADDR_BITS, axi4_signature
from .dma import DMA
from .fetch import ProgramLoader
from .mpu_engine import MPUEngine
from .net import NetUnit, axis_signature
from .vpu_engine import VPUEngine
from .scratchpad import Scratchpad, spram_verilog

__all__ = ["Core", "write_top", "top_verilog", "vitis_name", "NET_PORTS"]

#: The ring's AXI4-Stream ports (fpgpt.hw.net: tx_next drives the next device's rx_prev).
NET_PORTS = ("tx_next", "rx_prev", "tx_prev", "rx_next")


class Core(wiring.Component):
    """One device's core for ``hw`` (module docstring says what is wired).

    Parameters
    ----------
    hw : HardwareConfig
    pc_bits : int
        The instruction memory holds ``2**pc_bits`` words (a longer program is refused at
        start: status bit 3).
    max_cols : int
        The VPU's row buffer: the longest LAYERNORM / SOFTMAX row (2048 covers every GPT-2 size:
        d_model up to 1600, context 1024).

    Ports
    -----
    s_axi : Out(control.axi4lite_signature())
    m_axi_prog : Out(axi4_signature(64, WORD_BITS))   program image reads
    m_axi0 ... : Out(axi4_signature(64, hbm.port_bits))
    tx_next, tx_prev : Out(net.axis_signature(hw)); rx_prev, rx_next : In(...)
    probe : Out(2 * len(WAIT_UNITS) + 1), only with ``probes=True``
        With ``n = len(WAIT_UNITS)``: bit ``i < n``, unit ``WAIT_UNITS[i]`` completes an
        instruction this cycle; bit ``n``, the dispatcher runs; bit ``n + 1 + i``, the unit
        takes an instruction from its queue this cycle. For cosimulation benches
        (per-instruction start and completion cycles), not for the Vitis kernel.
    """

    def __init__(self, *, hw: HardwareConfig, pc_bits: int = 10, max_cols: int = 2048,
                 probes: bool = False):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        if not isinstance(pc_bits, int) or not 1 <= pc_bits <= 24:
            raise ValueError(f"pc_bits must be an integer in 1..24, not {pc_bits!r}")
        self._hw, self._pc_bits, self._max_cols = hw, pc_bits, max_cols
        members = {"s_axi": Out(axi4lite_signature()),
                   "m_axi_prog": Out(axi4_signature(AXI_ADDR_BITS, WORD_BITS))}
        for k in range(hw.hbm.channels):
            members[f"m_axi{k}"] = Out(axi4_signature(AXI_ADDR_BITS, hw.hbm.port_bits))
        for name in NET_PORTS:
            members[name] = (Out if name.startswith("tx") else In)(axis_signature(hw))
        if probes:
            members["probe"] = Out(2 * len(WAIT_UNITS) + 1)
        self._probes = probes
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        m.submodules.ctl = ctl = ControlSlave()
        m.submodules.disp = disp = Dispatcher(hw=hw, pc_bits=self._pc_bits)
        m.submodules.dma = dma = DMA(hw=hw)
        m.submodules.mpu = mpu = MPUEngine(hw=hw)
        m.submodules.net = net = NetUnit(hw=hw)
        m.submodules.vpu = vpu = VPUEngine(hw=hw, max_cols=self._max_cols)
        # Port B of the scratchpad, in priority order; a unit with a `line` member moves lines.
        # The DMA comes last: it is the one heavy user (a stripe every cycle while it streams)
        # and the only one that can wait without changing its own time much (it holds the AXI
        # read data back); the engines' few accesses then never wait behind a transfer
        # (docs/rtl.md, "Port B priority").
        requesters = [mpu, vpu, net, dma]
        kinds = ["line" if "line" in u.signature.members else "element" for u in requesters]
        m.submodules.spad = spad = Scratchpad(hw=hw, ports=kinds, bank=True)
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
        for i, (u, kind) in enumerate(zip(requesters, kinds)):
            connect(m, u.line if kind == "line" else u.sram, getattr(spad, f"port{i}"))
        connect(m, mpu.bank, spad.bank)
        connect(m, disp.vpu_cmd, vpu.cmd)
        m.d.comb += [disp.vpu_done.eq(vpu.done), disp.wb_we.eq(vpu.wb_we),
                     disp.wb_addr.eq(vpu.wb_addr), disp.wb_data.eq(vpu.wb_data)]
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
            last = Signal(32, name=f"last_done_{u.value}")
            with m.If(getattr(disp, f"{u.value}_done")):
                m.d.sync += last.eq(cycles)
            m.d.comb += ctl.last_done[32 * i:32 * i + 32].eq(last)
        if self._probes:
            issued = [getattr(disp, f"{u.value}_cmd") for u in WAIT_UNITS]
            m.d.comb += self.probe.eq(Cat(*[getattr(disp, f"{u.value}_done") for u in WAIT_UNITS],
                                          disp.running, *[c.valid & c.ready for c in issued]))
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


#: Verilog of cores already generated in this process, by configuration (emitting a core takes
#: most of a minute even for tiny, and a test run asks for the same one several times).
_TEXT_CACHE: dict[tuple, str] = {}


def top_verilog(hw: HardwareConfig, *, pc_bits: int = 10, name: str = "fpgpt_top",
                flat: bool = False, probes: bool = False) -> str:
    """The Verilog :func:`write_top` writes (memoised per configuration within a process)."""
    key = (json.dumps(hw.to_dict(), sort_keys=True), pc_bits, name, flat, probes)
    if key not in _TEXT_CACHE:
        core = Core(hw=hw, pc_bits=pc_bits, probes=probes)
        with tempfile.TemporaryDirectory() as tmp:
            core_text = write_verilog(core, f"{name}_core", Path(tmp) / "core.v",
                                      flat=flat, share=True).read_text()
        ports = ["input wire ap_clk", "input wire ap_rst_n"]
        conns = [".clk(ap_clk)", ".rst(~ap_rst_n)"]
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
        _TEXT_CACHE[key] = core_text + "\n" + spram_verilog(hw) + "\n" + wrapper
    return _TEXT_CACHE[key]


def write_top(hw: HardwareConfig, path, *, pc_bits: int = 10, name: str = "fpgpt_top",
              flat: bool = False, probes: bool = False) -> Path:
    """Write the core (module ``{name}_core``) and the Vitis-named wrapper ``name`` to ``path``.

    ``flat=True`` flattens the core and drops its internal names (``cosim.write_verilog``): for
    Verilator benches, which then see only the top's ports; ``probes=True`` adds the
    :class:`Core`'s ``probe`` port (per-unit completions, for per-instruction cycle
    comparisons). An unchanged file is not rewritten
    (Verilator then skips re-verilating it).

    Returns
    -------
    Path
        The Verilog file.
    """
    return write_if_changed(path, top_verilog(hw, pc_bits=pc_bits, name=name, flat=flat,
                                              probes=probes))
