"""Pass 4, tile: split every LINEAR / LM_HEAD into weight chunks of whole rows of W^T.

A chunk is ``rows`` consecutive output rows (all of K), one contiguous HBM transfer into one
weight slot, its rows ``geometry.weight_stride(K)`` apart there (the MPU's fast B layout). ``rows`` is
the most that fit a slot, rounded down to a multiple of ``mpu.lanes × mpu.acc_latency`` (a
*super-group*) when that many fit and K is more than one chunk step, else to a multiple of
``mpu.lanes`` when at least ``lanes`` rows fit; the last chunk takes what is left.

Why super-groups: the MPU computes ``lanes`` output rows (a *group*) at a time, and its
accumulators are pipelined over ``acc_latency`` registers, so it interleaves ``acc_latency``
groups and pads a chunk's last, partial super-group to a whole one (``costs.mpu_cycles``,
measured equal to the RTL). A 496-row chunk (31 groups) of GPT-2 XL's K = 1,600 paid 35 groups'
steps; 480 rows pay 30. Chunks of whole super-groups leave the padding to one chunk of an op.
The price is more chunks where fewer rows fit (fc2's K = 6,400: 80-row chunks where 144 fit),
each a DMA transfer with its own cost: GPT-2 XL's DMA-bound decode on one u280 is 0.55 % slower,
on four 7 % faster (docs/compiler.md, session 18).
"""

from __future__ import annotations

from fpgpt.config import HardwareConfig

from fpgpt.geometry import weight_stride
from .errors import CompileError
from .ir import Graph, Op, OpKind

__all__ = ["chunk_rows", "tile_graph"]


def chunk_rows(n: int, k: int, slot_elems: int, lanes: int, stride: int | None = None,
               super_group: int = 1) -> list[tuple[int, int]]:
    """(first row, rows) of each chunk of an [n, k] W^T for slots of ``slot_elems`` elements
    whose rows lie ``stride`` elements apart (default ``k``), a multiple of ``lanes ×
    super_group`` rows where that many fit (module docstring)."""
    per = slot_elems // (stride or k)
    if per < 1:
        raise CompileError(f"a weight slot of {slot_elems} elements cannot hold one row of "
                           f"{k} elements; use a config with a larger scratchpad")
    for unit in (lanes * super_group, lanes):
        if per >= unit:
            per -= per % unit
            break
    per = min(per, n)
    return [(r0, min(per, n - r0)) for r0 in range(0, n, per)]


def tile_graph(graph: Graph, hw: HardwareConfig, slot_elems: int) -> Graph:
    """``graph`` with ``chunks`` set on every LINEAR and LM_HEAD op."""
    def tile(op: Op) -> Op:
        if op.kind in (OpKind.LINEAR, OpKind.LM_HEAD):
            return op.with_attrs(chunks=chunk_rows(op["n"], op["k"], slot_elems, hw.mpu.lanes,
                                                   weight_stride(op["k"], hw),
                                                   _super_group(op, hw)))
        return op
    return graph.replace_ops(tile)


def _super_group(op: Op, hw: HardwareConfig) -> int:
    """Lane groups the MPU engine interleaves over its pipelined accumulators: an MM with more
    than one chunk step (K above ``mpu.width``) pads its last super-group of ``acc_latency``
    groups (costs.mpu_cycles), so chunks of whole super-groups pay that once per op."""
    return hw.mpu.acc_latency if op["k"] > hw.mpu.width else 1
