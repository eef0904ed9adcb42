"""Pass 7, emit: the :class:`~fpgpt.isa.Program` (streams, regions, memory image, registers, meta)."""

from __future__ import annotations

import dataclasses

from fpgpt.config import HardwareConfig
from fpgpt.isa import Instr, Program
from fpgpt.models import ModelSpec

from .codegen import POS
from .layout import Layout

__all__ = ["emit_program", "COMPILER_VERSION"]

COMPILER_VERSION = "0.1"


def emit_program(spec: ModelSpec, hw: HardwareConfig, layout: Layout,
                 streams: dict[str, list[Instr]], *, prompt_len: int,
                 segments: list[tuple[int, bytes]] | None, plans: dict) -> Program:
    spec_dict = dataclasses.asdict(spec)
    meta = {
        "model": spec.name, "spec": spec_dict, "vocab": spec.vocab, "n_ctx": spec.n_ctx,
        "prompt_len": prompt_len, "hw": hw.name, "artifact_name": hw.artifact_name,
        "config": hw.to_dict(), "compiler": COMPILER_VERSION,
        "weights": segments is not None,
        "buffers": {s: {"tiles": len(p.tiles), "rows": p.rows, "group": p.group,
                        "slot_elems": p.slot_elems, "used_elems": p.used_elems}
                    for s, p in plans.items()},
    }
    return Program(streams=streams, regions=dict(layout.regions), segments=segments or [],
                   registers={"prefill": {POS: 0}, "decode": {}}, meta=meta)
