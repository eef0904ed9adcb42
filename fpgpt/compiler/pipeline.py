"""The compiler pipeline: named passes, in order, with the verifiers before and after.

    lower      GPT-2 spec -> op IR                       (lower.py)
    partition  one card's share of the IR                (partition.py)
    layout     HBM regions (+ memory image)              (layout.py)
    buffers    scratchpad plan per stream                (buffers.py)
    tile       linears -> weight chunks                  (tile.py)
    codegen    IR -> instructions, natural order         (codegen.py)
    schedule   hoist weight loads, wait counts           (schedule.py)
    emit       Program                                   (emit.py)
"""

from __future__ import annotations

from fpgpt.config import HardwareConfig
from fpgpt.isa import Program
from fpgpt.isa.verify import ProgramError, verify_stream
from fpgpt.models import ModelSpec

from .buffers import plan_buffers
from .codegen import COUNT, KPOS, OUT, POS, TOKEN, codegen_stream
from .emit import emit_program
from .errors import CompileError
from .ir import verify_graph
from .layout import memory_image, plan_layout
from .lower import lower
from .partition import partition_graph, shard
from .schedule import schedule
from .tile import tile_graph

__all__ = ["PASSES", "run_pipeline", "stream_regmax"]

PASSES = ("lower", "partition", "layout", "buffers", "tile", "codegen", "schedule", "emit")
STREAMS = ("prefill", "decode")


def stream_regmax(spec: ModelSpec, stream: str, tiles: list[tuple[int, int]]) -> dict[int, int]:
    """The largest value each register holds while ``stream`` runs (for footprints and checks)."""
    if stream == "prefill":
        return {POS: tiles[-1][0], TOKEN: spec.vocab - 1, OUT: 1, KPOS: spec.d_head * tiles[-1][0]}
    return {POS: spec.n_ctx - 1, TOKEN: spec.vocab - 1, OUT: spec.n_ctx - 1, COUNT: spec.n_ctx,
            KPOS: spec.d_head * (spec.n_ctx - 1)}


def run_pipeline(spec: ModelSpec, hw: HardwareConfig, *, prompt_len: int, weights=None,
                 verify: bool = True, device: int = 0) -> Program:
    """Card ``device``'s Program of ``spec`` on a ring of ``hw.devices`` cards (one card: the
    whole model)."""
    sh = shard(spec, hw.devices, device)
    if not isinstance(prompt_len, int) or isinstance(prompt_len, bool) or not 1 <= prompt_len < spec.n_ctx:
        raise CompileError(f"prompt_len must be an integer in 1..{spec.n_ctx - 1} for model "
                           f"'{spec.name}' (n_ctx {spec.n_ctx}), not {prompt_len!r}")
    graph = partition_graph(lower(spec), sh)
    verify_graph(graph)
    layout = plan_layout(spec, hw, sh)
    segments = memory_image(layout, weights, sh) if weights is not None else None
    regions = [(r.addr, r.end) for r in layout.regions.values()]
    streams, plans = {}, {}
    for name in STREAMS:
        plan = plan_buffers(spec, hw, name, prompt_len=prompt_len, vec_len=layout.vec_len, sh=sh)
        tiled = tile_graph(graph, hw, plan.slot_elems)
        verify_graph(tiled)
        items = codegen_stream(name, tiled, spec, layout, plan, hw, sh)
        regmax = stream_regmax(spec, name, plan.tiles)
        if verify:
            _verify(name, [it.instr for it in items], hw, regions, regmax, "before scheduling")
        streams[name] = schedule(items, regmax, layout.writable, devices=sh.devices)
        plans[name] = plan
        if verify:
            _verify(name, streams[name], hw, regions, regmax, "after scheduling")
    program = emit_program(spec, hw, layout, streams, prompt_len=prompt_len, segments=segments,
                           plans=plans)
    if sh.devices > 1:
        program.meta["partition"] = sh.to_dict()
    return program


def _verify(name, instrs, hw, regions, regmax, when) -> None:
    try:
        verify_stream(name, instrs, hw, regions=regions, max_regs=regmax)
    except ProgramError as e:
        raise CompileError(f"internal compiler error {when}: {e}") from None
