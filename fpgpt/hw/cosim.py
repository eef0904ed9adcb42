"""Emit an Amaranth component to Verilog, build it with Verilator and run a cocotb test module.

Used by the cocotb benches under ``tests/rtl`` and ``bench/``. Every build goes into a folder the
caller names (a pytest ``tmp_path`` or ``build/``), never the current directory.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from amaranth.back import verilog
from amaranth.lib import wiring

from .verilator_env import setup_verilator

__all__ = ["VERILATOR_WAIVERS", "write_verilog", "CosimResult", "build", "run_cocotb"]

#: Verilator warnings switched off for Amaranth's output, each with why. Everything else
#: stays on and fatal.
VERILATOR_WAIVERS: dict[str, str] = {
    # Amaranth's RTLIL->Verilog back end writes `assign x = y;` where y is wider or narrower
    # than x (it relies on Verilog's implicit truncation/extension, which is exact here).
    "-Wno-WIDTHEXPAND": "Amaranth's Verilog extends operands implicitly; semantics are exact",
    "-Wno-WIDTHTRUNC": "Amaranth's Verilog truncates results implicitly; semantics are exact",
    # Yosys emits a `reg` driven from an always @* with a default assignment first, which
    # Verilator flags as a possible latch although every path assigns it.
    "-Wno-LATCH": "Yosys's always @* blocks assign a default first; no latch is inferred",
    # Amaranth gives every register its reset value as a declaration initialiser
    # (`reg x = 1'h0;`) and also assigns it in an always block; that is its reset semantics.
    "-Wno-PROCASSINIT": "Amaranth initialises registers at declaration (only with -Wall)",
    # Yosys writes each FSM state decode as a casez listing only the states that assign the
    # signal, after a default assignment: complete in effect, incomplete in form.
    "-Wno-CASEINCOMPLETE": "Yosys FSM decodes list only the states that assign, after a default",
    # Slices of wide intermediate wires are left unread (e.g. the sticky part of a shifter).
    "-Wno-UNUSEDSIGNAL": "unread bits of intermediate wires (only with -Wall)",
    # Yosys names generated wires with a leading '_' or '$'-derived suffixes.
    "-Wno-DECLFILENAME": "one module per file is not Amaranth's layout (only with -Wall)",
    # A comparison that one configuration's widths make constant (the NET unit's group logic:
    # a 5-bit offset compared with 31 when a group is 32 elements, on tiny and u280; not
    # constant with narrower ring ports); fatal by default, it stopped the whole core's
    # Verilator build after the group-per-cycle NET unit (waiver added by the ring session).
    "-Wno-CMPCONST": "comparisons made constant by one configuration's widths (NET groups)",
}


def write_verilog(component: wiring.Component, name: str, path: str | Path, *,
                  flat: bool = False, share: bool = False) -> Path:
    """Write ``component`` as a Verilog module ``name`` to ``path`` (folders are created).

    Parameters
    ----------
    component : wiring.Component
        Its signature gives the ports (``clk``/``rst`` are added when it has a ``sync`` domain).
    name : str
        The Verilog module name (a valid identifier).
    path : str or Path
        Output file.
    flat : bool
        Flatten the hierarchy and drop every internal name (Yosys ``flatten``, ``opt_clean
        -purge``): for Verilator builds of big designs. When cocotb's ``--public-flat-rw`` still
        applied (before :data:`VERILATOR_SPEED`) every named wire became a VPI symbol; for the
        VPU's thousands of intermediate wires compiling those tables took over 20 minutes on
        two cores.
    share : bool
        Convert each component built with :func:`fpgpt.hw.shared.shared` (the MPU and VPU
        lanes) once, as a module of its own that every instance instantiates: the same design
        in less than half the time (tiny's flat core, ``bench/bench_emit.py``). Off for
        synthesis, whose cache is keyed by the Verilog text (fpgpt.hw.synth).
    """
    if not name.isidentifier():
        raise ValueError(f"module name must be a Verilog identifier, not {name!r}")
    if flat or share:
        from amaranth._toolchain.yosys import find_yosys
        from amaranth.back import rtlil

        from .shared import convert

        il = (convert(component, name) if share
              else rtlil.convert(component, name=name, emit_src=False))
        # As amaranth.back.verilog.convert does, and for ``flat`` the flattening and purge;
        # ``hierarchy -top`` drops the shared modules that flattening inlined.
        steps = (["flatten", f"hierarchy -top {name}", "opt_clean -purge",
                  "write_verilog -noattr"] if flat else ["write_verilog -norename"])
        script = "\n".join([f"read_rtlil <<rtlil\n{il}\nrtlil", "proc -nomux -norom",
                            "memory_collect", *steps])
        text = find_yosys(lambda ver: ver >= (0, 40)).run(["-q", "-"], script,
                                                          ignore_warnings=True)
    else:
        text = verilog.convert(component, name=name, emit_src=False)
    return write_if_changed(path, text)


def write_if_changed(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (folders created) unless it already holds it.

    Verilator skips re-verilating identical inputs (by file metadata), which makes a rebuild of
    an unchanged design take seconds, not a minute. Written to a temporary name and renamed, so
    that a concurrent reader (pytest-xdist workers sharing a build folder) never sees half a
    file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


@contextmanager
def build_lock(build_dir: str | Path):
    """Hold an exclusive lock on ``build_dir`` (created): one process at a time builds or runs
    in a build folder, so parallel test workers that share a Verilator build wait for each
    other instead of compiling over each other."""
    d = Path(build_dir)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".fpgpt-build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class CosimResult:
    """Wall times of one Verilator build and one cocotb run, seconds."""

    build_s: float
    test_s: float
    results_xml: Path


#: Make variables that compile Verilator's C++ without optimisation. For designs of many
#: megabytes of generated C++ (the whole core with its VPU) compile time dominates a bench, and
#: -O0 cuts it several times at some cost in simulation speed.
NO_CXX_OPT = "OPT=-O0 OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"


#: Verilator options that every cocotb build adds after the runner's own. cocotb's runner
#: passes ``--public-flat-rw``: every signal becomes writable through VPI, so Verilator must
#: assume any of them changed between two ``eval()`` calls and evaluates all the
#: combinational logic in its input region (``ico``) at every clock edge. The whole tiny core
#: ran 6.6 ms a cycle that way, 63 % of it in ``ico``. Only the top's ports need VPI
#: (:func:`ports_config`); the benches touch nothing else. With the logic no longer public,
#: Verilator's ``merge_cond`` pass took 312 of the core's 362 s of Verilation: it is off.
#: Measured on the tiny core (``flat``, -O0): build 204 -> 73 s, 6.6 -> 0.8 ms a clock cycle.
VERILATOR_SPEED = ("--no-public-flat-rw", "-fno-merge-cond")


def port_names(sources: Sequence[Path], toplevel: str) -> list[str]:
    """The port names of module ``toplevel`` in ``sources`` (its header's list, ANSI or not)."""
    header = re.compile(rf"^\s*module\s+{re.escape(toplevel)}\s*\((.*?)\);", re.S | re.M)
    for src in sources:
        m = header.search(Path(src).read_text())
        if m:
            items = re.sub(r"//[^\n]*", "", m.group(1)).split(",")
            return [item.split()[-1] for item in items if item.strip()]
    raise ValueError(f"module {toplevel} not found in {', '.join(map(str, sources))}")


#: A Verilog escaped identifier's mark, which Verilator's variable names drop.
BACKSLASH = "\\"


def ports_config(sources: Sequence[Path], toplevel: str, build_dir: str | Path) -> Path:
    """A Verilator configuration file in ``build_dir`` that makes the ports of ``toplevel``
    (and nothing else) readable and writable through VPI: what cocotb drives and samples."""
    lines = ["`verilator_config"] + [
        f'public_flat_rw -module "{toplevel}" -var "{name.lstrip(BACKSLASH)}"'
        for name in port_names(sources, toplevel)]
    return write_if_changed(Path(build_dir) / "ports.vlt", "\n".join(lines) + "\n")


def build(sources: Sequence[Path], toplevel: str, build_dir: str | Path, *,
          extra_args: Sequence[str] = (), runner=None, cxx_opt: bool = True) -> float:
    """Verilate and compile ``sources`` with cocotb's runner into ``build_dir``; returns seconds.

    Only the top's ports are VPI signals (:data:`VERILATOR_SPEED`, :func:`ports_config`).
    ``cxx_opt=False`` compiles the C++ at -O0 (:data:`NO_CXX_OPT`).
    """
    setup_verilator()
    from cocotb_tools.runner import get_runner

    runner = runner or get_runner("verilator")
    vlt = ports_config(sources, toplevel, build_dir)
    t0 = time.perf_counter()
    saved = os.environ.get("MAKEFLAGS", "")
    if not cxx_opt:
        os.environ["MAKEFLAGS"] = f"{saved} {NO_CXX_OPT}".strip()
    try:
        runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                     build_dir=str(build_dir), always=False,
                     build_args=[*VERILATOR_WAIVERS, *VERILATOR_SPEED, str(vlt), *extra_args],
                     log_file=None)
    finally:
        os.environ["MAKEFLAGS"] = saved
    return time.perf_counter() - t0


def run_cocotb(sources: Sequence[Path], toplevel: str, test_module: str, build_dir: str | Path, *,
               test_dir: str | Path, env: Mapping[str, str] | None = None,
               extra_args: Sequence[str] = (), cxx_opt: bool = True) -> CosimResult:
    """Build (if needed) and run the cocotb tests of ``test_module`` against ``toplevel``.

    Parameters
    ----------
    sources : Verilog files.
    toplevel : the Verilog top module.
    test_module : the Python module (importable from ``test_dir``) holding ``@cocotb.test``s.
    build_dir : where Verilator builds (one per parameter set).
    test_dir : the folder holding ``test_module``; put first on the simulator's ``PYTHONPATH``.
    env : extra environment for the simulation (how benches pass parameters to the test module).
    cxx_opt : False compiles the simulator's C++ at -O0 (see :func:`build`).

    Raises
    ------
    RuntimeError
        If a cocotb test failed (the message names the results file).
    """
    setup_verilator()
    from cocotb_tools.runner import get_results, get_runner

    runner = get_runner("verilator")
    with build_lock(build_dir):
        return _build_and_run(runner, sources, toplevel, test_module, build_dir, test_dir,
                              env, extra_args, cxx_opt)


def _build_and_run(runner, sources, toplevel, test_module, build_dir, test_dir, env, extra_args,
                   cxx_opt) -> CosimResult:
    from cocotb_tools.runner import get_results

    build_s = build(sources, toplevel, build_dir, extra_args=extra_args, runner=runner,
                    cxx_opt=cxx_opt)
    xml = Path(build_dir).resolve() / f"{test_module}.results.xml"
    # The runner hands the simulator PYTHONPATH = sys.path (it overrides any PYTHONPATH given in
    # extra_env), so the test module's folder goes onto sys.path for the call.
    sys.path.insert(0, str(test_dir))
    t0 = time.perf_counter()
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=str(build_dir),
                    test_dir=str(build_dir), extra_env=dict(env or {}), results_xml=str(xml))
    except SystemExit as e:      # the runner exits on failures when it runs under pytest
        raise RuntimeError(f"cocotb tests in {test_module} failed (exit {e.code}); see {xml}") from None
    finally:
        sys.path.remove(str(test_dir))
    test_s = time.perf_counter() - t0
    total, failed = get_results(xml)
    if failed or total == 0:
        raise RuntimeError(f"{failed} of {total} cocotb tests in {test_module} failed; see {xml}")
    return CosimResult(build_s, test_s, xml)
