"""Pass 4, tile: split every LINEAR / LM_HEAD into weight chunks of whole rows of W^T.

A chunk is ``rows`` consecutive output rows (all of K), one contiguous HBM transfer into one
weight slot, its rows ``buffers.b_stride(K)`` apart there (the MPU's fast B layout). ``rows`` is the most that fit a slot, rounded down to a multiple of ``mpu.lanes``
(the MPU computes ``lanes`` output rows at a time) when at least ``lanes`` rows fit; the last
chunk takes what is left.
"""

from __future__ import annotations

from fpgpt.config import HardwareConfig

from .buffers import b_stride
from .errors import CompileError
from .ir import Graph, Op, OpKind

__all__ = ["chunk_rows", "tile_graph"]


def chunk_rows(n: int, k: int, slot_elems: int, lanes: int, stride: int | None = None
               ) -> list[tuple[int, int]]:
    """(first row, rows) of each chunk of an [n, k] W^T for slots of ``slot_elems`` elements
    whose rows lie ``stride`` elements apart (default ``k``)."""
    per = slot_elems // (stride or k)
    if per < 1:
        raise CompileError(f"a weight slot of {slot_elems} elements cannot hold one row of "
                           f"{k} elements; use a config with a larger scratchpad")
    if per >= lanes:
        per -= per % lanes
    per = min(per, n)
    return [(r0, min(per, n - r0)) for r0 in range(0, n, per)]


def tile_graph(graph: Graph, hw: HardwareConfig, slot_elems: int) -> Graph:
    """``graph`` with ``chunks`` set on every LINEAR and LM_HEAD op."""
    def tile(op: Op) -> Op:
        if op.kind in (OpKind.LINEAR, OpKind.LM_HEAD):
            return op.with_attrs(chunks=chunk_rows(op["n"], op["k"], slot_elems, hw.mpu.lanes,
                                                   b_stride(op["k"], hw)))
        return op
    return graph.replace_ops(tile)
