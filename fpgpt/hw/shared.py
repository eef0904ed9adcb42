"""Components a design instantiates many times, emitted once.

Amaranth elaborates and converts every instance of a component on its own: the tiny core's eight
VPU lanes are eight copies of the same 2 MB of RTLIL, most of the minute its Verilog takes, and
the u280 core's sixteen MPU lanes most of its 27 MB. A parent that builds such a component with
:func:`shared` gets the component itself, except inside :func:`convert`, where it gets a
stand-in: an ``Instance`` of one RTLIL module per distinct component (its class and constructor
arguments), converted once and appended to the design. Flattened (Yosys ``flatten``) the result
is the same netlist; unflattened it is ordinary hierarchical Verilog.

Simulation (``amaranth.sim``) elaborates the components themselves; only :func:`convert` uses
stand-ins, so the two cannot disagree on anything but names.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from typing import Any

from amaranth.back import rtlil
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import wiring

__all__ = ["shared", "convert"]

#: While :func:`convert` runs: module name -> its RTLIL (and whether it has clk / rst ports).
_MODULES: contextvars.ContextVar[dict[str, tuple[str, bool]] | None] = contextvars.ContextVar(
    "fpgpt_shared_modules", default=None)


class _StandIn(wiring.Component):
    """An ``Instance`` of ``module`` with ``proto``'s ports; other attributes are ``proto``'s
    (an MPU lane's ``latency``, say), which the parent may read while it elaborates."""

    def __init__(self, proto: wiring.Component, module: str, clocked: bool):
        super().__init__(proto.signature)     # the ports: before proto's attributes show
        self._proto, self._module, self._clocked = proto, module, clocked

    def __getattr__(self, name: str) -> Any:
        proto = self.__dict__.get("_proto")
        if proto is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(proto, name)

    def elaborate(self, platform):
        m = Module()
        args = [("i", "clk", ClockSignal()), ("i", "rst", ResetSignal())] if self._clocked else []
        for path, member, value in self.signature.flatten(self):
            args.append(("i" if member.flow == wiring.In else "o",
                         "__".join(map(str, path)), value))
        m.submodules.inst = Instance(self._module, *args)
        return m


def shared(cls: type, **kwargs) -> wiring.Component:
    """``cls(**kwargs)``; inside :func:`convert`, a stand-in for the one module that all
    instances with equal ``cls`` and ``kwargs`` (compared by ``repr``) share."""
    proto = cls(**kwargs)
    modules = _MODULES.get()
    if modules is None:
        return proto
    proto._MustUse__silence = True          # only the stand-in is elaborated
    key = f"{cls.__module__}.{cls.__qualname__}{sorted(kwargs.items())!r}"
    name = f"fpgpt_{cls.__name__}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if name not in modules:          # the prototype itself: the stand-in has its own ports
        text = rtlil.convert(proto, name=name, emit_src=False)
        clocked = re.search(r"^\s*wire width 1 input \d+\s+\\clk$", text, re.M) is not None
        modules[name] = (_untop(text), clocked)
    return _StandIn(proto, name, modules[name][1])


def _untop(text: str) -> str:
    # Amaranth marks the module it converted as the design's top; a shared one is not.
    return text.replace("attribute \\top 1\n", "", 1)


def convert(component: wiring.Component, name: str) -> str:
    """RTLIL of ``component`` as module ``name``, with one module per :func:`shared`
    component after it."""
    modules: dict[str, tuple[str, bool]] = {}
    token = _MODULES.set(modules)
    try:
        text = rtlil.convert(component, name=name, emit_src=False)
    finally:
        _MODULES.reset(token)
    return "\n".join([text, *(t for t, _ in modules.values())])
