"""Pass 5, codegen: IR ops to instructions, in natural (unscheduled) order, with zero waits.

Register ABI (docs/execution.md): R1 POS, R2 TOKEN, R3 COUNT, R4 OUT; the program keeps
R5 KPOS = d_head·R1 itself (set to 0 at the start of prefill, advanced with R1), the element
count of a head's cached K rows, so that the K load is one contiguous run per head; a prefill
tile attended by query halves (:meth:`_Gen.attention`) sets R6 QPOS = R1 + the first row of its
second half, that half's causal-mask offset. The row block at
positions R1 .. R1 + rows - 1 is computed the same way in both streams, so the decode step is
the prefill code with rows = 1: K and V of the block are stored to the HBM caches at row R1
(V transposed), then rows 0 .. R1 + rows - 1 of the caches are loaded back and attended with the
causal mask offset R1. Weight chunks cycle through the weight slots; their LOADs are marked
``hoist`` so that :mod:`.schedule` can start them early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from fpgpt.config import HardwareConfig
from fpgpt.geometry import (allgather_steps, chunk_elements, dma_stripe_aligned, weight_run_rows,
                            weight_stride)
from fpgpt.isa import Instr
from fpgpt.models import ModelSpec

from .buffers import (PICK_RECORD, STAGE_OF, WEIGHT_SLOTS, BufferPlan, attn_staged_in_place,
                      b_stride, pick_offsets, scores_stride, stage_count, vt_heads_per_row)
from .ir import Graph, Op, OpKind
from .layout import Layout
from .partition import Shard, shard as make_shard

__all__ = ["Item", "codegen_stream", "POS", "TOKEN", "COUNT", "OUT", "KPOS", "QPOS", "WIN"]

POS, TOKEN, COUNT, OUT, KPOS, QPOS, WIN = 1, 2, 3, 4, 5, 6, 7


@dataclass
class Item:
    """An instruction and what scheduling may do with it: ``hoist`` (a LOAD of read-only data
    into a slot, free to move up), ``chunk`` (its index in the stream of weight chunks),
    ``unpack`` (a DMA transfer of an all-gather's unpack, which a weight chunk may pass:
    :func:`.schedule.hoist`)."""
    instr: Instr
    hoist: bool = False
    chunk: int | None = None
    unpack: bool = False


#: Width of each buffer an all-gather fills (the split op's output, or the residual ``x`` after
#: add_slice) in terms of the spec.
def _width(spec: ModelSpec, buf: str) -> int:
    return {"attn": spec.d_model, "h": spec.d_model, "x": spec.d_model, "ffn": spec.d_ff,
            "logits": spec.vocab}[buf]


#: The most all-gather steps (:func:`fpgpt.geometry.allgather_steps`) at which a prefill
#: tile's P V, all-gather and projection go in four parts, not two (:meth:`_Gen.pv_parts`).
PV_SPLIT_MAX_STEPS = 2


class _Gen:
    def __init__(self, spec: ModelSpec, layout: Layout, plan: BufferPlan, hw: HardwareConfig,
                 sh: Shard) -> None:
        self.spec, self.layout, self.plan, self.hw, self.sh = spec, layout, plan, hw, sh
        self.items: list[Item] = []
        self.chunks = 0
        # an output slice not gathered yet: its op, rows and the buffer the gather fills (the
        # op's own, or the residual when the ADD ran on the slice: add_slice)
        self.pending: tuple[Op, int, str] | None = None
        # (first row, rows) of the block's row parts: a prefill tile's halves; on a ring, finer
        # around the attention's all-gathers and before the MLP (pv_parts, _norm_parts)
        self.parts: list[tuple[int, int]] = [(0, 1)]
        self._slots: dict[str, list[int]] = {}     # a linear's chunk slots, from its first part
        # the LM head's chunks (first logit, logits) whose ARGMAX is still to emit, when its
        # logits are reduced chunk by chunk (_argmax_pieces)
        self._argmax_todo: list[tuple[int, int]] = []

    # -- multi-device: where a card writes its slice, and the all-gather (partition.py) --------
    def target(self, op: Op, rows: int, q0: int = 0, nq: int | None = None) -> tuple[int, int]:
        """(scratchpad address of row ``q0``, row stride) where this card writes its slice of
        ``op``'s output, rows ``q0 .. q0+nq-1`` of ``rows`` (default: all of them): the buffer
        itself on one card; in place at its columns when one row is split evenly; else its
        chunk of the staging of those rows (:meth:`_stage_at`), packed."""
        sh, buf = self.sh, op["dst"]
        nq = rows - q0 if nq is None else nq
        if sh.devices == 1 or "split" not in op.attrs:     # the whole output (qkv: its own)
            ld = op.attrs.get("n", self.spec.d_model)
            return self.a(buf) + q0 * ld, ld
        c0, n = sh.local(op["split"])
        if not stage_count(sh, op["split"], rows):
            return self.a(buf) + c0 + q0 * self.spec.d_model, n
        return self._stage_at(op, sh.device, q0, nq, rows), n

    def _stage_at(self, op: Op, card: int, q0: int, nq: int, rows: int) -> int:
        """Where card ``card``'s packed slice of rows ``q0 .. q0+nq-1`` of a ``rows``-row output
        sits in the staging. The staging is laid out by row part, then by card (each card's
        chunk ``nq`` rows of the widest card's width), so that each part (a prefill tile's half)
        is all-gathered on its own, as soon as its rows are done; one part (all rows) is the
        layout ``ALLGATHER`` needs for the whole tile. A decode row's attention is staged in
        its own buffer (:func:`.buffers.attn_staged_in_place`)."""
        w = self.sh.widest(op["split"])
        if op["split"] == "attn" and attn_staged_in_place(self.sh, rows):
            return self.a(op["dst"]) + card * w
        return self.a(self._stage(op)) + self.sh.devices * w * q0 + card * nq * w

    def _row_parts(self, rows: int) -> list[tuple[int, int]]:
        """The parts a ``rows``-row output is produced and gathered in: the tile's halves when
        it has them, else all rows at once (a decode row, the LM head)."""
        if len(self.parts) > 1 and sum(n for _, n in self.parts) == rows:
            return self.parts
        return [(0, rows)]

    def _norm_after(self, body: list[Op], i: int) -> int | None:
        """With the rows in halves, the index of the LAYERNORM that normalises the sum of the
        residual ADD ``body[i]`` (only LOAD_PARAMS between them), else None."""
        if len(self.parts) < 2 or body[i].kind is not OpKind.ADD:
            return None
        j = i + 1
        while j < len(body) and body[j].kind is OpKind.LOAD_PARAMS:
            j += 1
        if (j < len(body) and body[j].kind is OpKind.LAYERNORM
                and body[j]["src"] == body[i]["dst"] and not body[j].attrs.get("last_row")):
            return j
        return None

    def _norm_parts(self, body: list[Op], ln: int, rows: int) -> list[tuple[int, int]]:
        """The row parts of the LAYERNORM ``body[ln]`` and of what follows it up to the next
        one. Before the attention (its QKV product next): the tile's halves. Before the MLP:
        the first half in two quarters, then the second half, so that the fc product of the
        first quarter starts while the VPU normalises the second. Between the projection and
        the fc product the MPU has only the second half's projection to run beside the first
        half's residual add, all-gather, unpack and LAYERNORM, and waits for them."""
        q, h = self._halves(rows)
        j = ln + 1
        while j < len(body) and body[j].kind is OpKind.LOAD_PARAMS:
            j += 1
        qkv = (j + 1 < len(body) and body[j].kind is OpKind.LINEAR
               and body[j + 1].kind is OpKind.ATTENTION)
        if qkv or q[1] < 2 or self.sh.devices == 1:
            return [q, h]
        return [*self._halves(q[1]), h]

    @staticmethod
    def _halves(rows: int, first: int = 0) -> list[tuple[int, int]]:
        """(first row, rows) of the two halves of rows ``first .. first+rows-1``, the first
        one row longer when ``rows`` is odd."""
        half = -(-rows // 2)
        return [(first, half), (first + half, rows - half)]

    def _mm_rows(self, op: Op, dst: int, ldc: int, slot: int, ks: int, r0: int, nr: int,
                 q0: int, nq: int, parts: int) -> None:
        """The MM of rows ``q0..q0+nq-1`` with the chunk of W^T rows ``r0..r0+nr-1`` in ``slot``
        (``dst``: where output row ``q0`` goes)."""
        k, bias = op["k"], op.attrs.get("bias")
        self.emit("MM", dst=dst + r0, a=self.a(op["src"]) + q0 * k, b=slot,
                  bias=self._vec(op, bias) + r0 if bias else 0, has_bias=bool(bias),
                  m=nq, k=k, n=nr, lda=k, ldb=ks, ldc=ldc,
                  comment=f"{op.name}[{r0}:{r0 + nr}]" + self._rows_note(q0, nq, parts))

    def add_norm(self, add: Op, ln: Op) -> None:
        """A residual VADD and the LAYERNORM of its sum, half by half."""
        for part in self.parts:
            self.vadd(add, *part)
            self._norm_rows(ln, self.a(ln["src"]), *part, len(self.parts))

    def vadd(self, op: Op, r0: int, n: int, c0: int = 0, cols: int | None = None) -> None:
        """The residual ADD ``op`` on rows ``r0..r0+n-1`` (columns ``c0..c0+cols-1``)."""
        d = self.spec.d_model
        cols = d if cols is None else cols
        at = r0 * d + c0
        self.emit("VADD", dst=self.a(op["dst"]) + at, a=self.a(op["dst"]) + at,
                  b=self.a(op["src"]) + at, rows=n, cols=cols, ldd=d, lda=d, ldb=d,
                  comment=op.name + self._cols_note(c0, cols, cols != d)
                  + self._rows_note(r0, n, len(self.parts)))

    @staticmethod
    def _pieces(prev: Op | None, buf: str, rows: int, width: int) -> list[tuple[int, int]]:
        """Column pieces of an element-wise op (GELU, the residual VADD) on ``buf``, or on this
        card's slice of it (``width`` its columns; a ring's chunks are the card's): in decode,
        after a linear of more than two chunks that wrote ``buf``, all its chunks but the last
        two, then each of those, so that a piece runs while the next chunks' MMs do and only
        the last chunk's stays between this linear and the next op (a prefill tile's rows
        would pay each piece's per-row fill: one piece there)."""
        if (rows == 1 and prev is not None and prev.kind is OpKind.LINEAR
                and prev["dst"] == buf and len(prev["chunks"]) > 2):
            ch = prev["chunks"]
            return [(0, ch[-2][0]), ch[-2], ch[-1]]
        return [(0, width)]

    def _norm_rows(self, op: Op, src: int, r0: int, n: int, parts: int) -> None:
        d = self.spec.d_model
        self.emit("LAYERNORM", dst=self.a(op["dst"]) + r0 * d, a=src + r0 * d,
                  gamma=self._vec(op, op["gamma"]), beta=self._vec(op, op["beta"]), rows=n,
                  cols=d, ldd=d, lda=d, eps=float(self.spec.ln_eps),
                  comment=op.name + self._rows_note(r0, n, parts))

    @staticmethod
    def _rows_note(r0: int, n: int, parts: int) -> str:
        return f" rows {r0}..{r0 + n - 1}" if parts > 1 else ""

    @staticmethod
    def _cols_note(c0: int, n: int, piece: bool) -> str:
        return f"[{c0}:{c0 + n}]" if piece else ""

    def _gelu(self, op: Op, at: int, ld: int, pieces: list[tuple[int, int]], r0: int,
              nr: int) -> None:
        """GELU in place on rows ``r0 .. r0+nr-1`` (the first at ``at``, ``ld`` apart), column
        piece by piece (:meth:`_pieces`)."""
        for c0, n in pieces:
            self.emit("GELU", dst=at + c0, a=at + c0, rows=nr, cols=n, ldd=ld, lda=ld,
                      comment=op.name + self._cols_note(c0, n, len(pieces) > 1)
                      + self._rows_note(r0, nr, len(self.parts)))

    @staticmethod
    def _stage(op: Op) -> str:
        return STAGE_OF[op["split"]]

    def add_slice(self, op: Op, parts: list[tuple[int, int]] | None = None) -> None:
        """The residual ADD ``op`` on this card's slice of the pending output, before it is
        gathered, and the gather then fills the residual: each card adds its 1/N of the columns
        (every card added all of them after the gather), the same additions of the same
        values. In place, one row split evenly: the slice's columns of ``x``; staged: the sums
        packed into the card's chunk of the staging, unpacked into ``x`` after the gather.
        ``parts``: the row parts to add now (default all)."""
        src, rows, _ = self.pending
        c0, n = self.sh.local(src["split"])
        d, x = self.spec.d_model, self.a(op["dst"])
        staged = bool(stage_count(self.sh, src["split"], rows))
        pieces = self._pieces(src, src["dst"], rows, n)
        for r0, nr in self.parts if parts is None else parts:
            at, ld = self.target(src, rows, r0, nr)
            dst, ldd = (at, ld) if staged else (x + r0 * d + c0, d)
            for p0, w in pieces:
                self.emit("VADD", dst=dst + p0, a=x + r0 * d + c0 + p0, b=at + p0, rows=nr,
                          cols=w, ldd=ldd, lda=d, ldb=ld,
                          comment=f"{op.name} on this card's slice"
                          + self._cols_note(p0, w, len(pieces) > 1)
                          + self._rows_note(r0, nr, len(self.parts)))
        self.pending = (src, rows, op["dst"])

    def gather(self, part: tuple[int, int] | None = None) -> None:
        """All-gather the pending slices into the full buffer (VCOPYs, or the DMA through an
        HBM scratch, unpack a staging): every row part (:meth:`_row_parts`) in turn, or only
        ``part``; the slices stay pending until their last part is gathered."""
        if self.pending is None:
            return
        op, rows, buf = self.pending
        parts = self._row_parts(rows)
        todo = parts if part is None else [part]
        if todo[-1] == parts[-1]:
            self.pending = None
        sh, name = self.sh, op["split"]
        if not stage_count(sh, name, rows):
            # in place: each card's part at d·w, chunks of w (the last card's may run past the
            # row's end into the buffer's tail: buffers.gathered_length)
            self.emit("ALLGATHER", sram=self.a(buf), count=sh.widest(name),
                      comment=f"{op.name}: all-gather {buf}")
            return
        for q0, nq in todo:
            self._gather_rows(op, rows, buf, q0, nq)

    def _gather_rows(self, op: Op, rows: int, buf: str, q0: int, nq: int) -> None:
        """The staged all-gather of rows ``q0 .. q0+nq-1`` and their unpack into ``buf``."""
        sh, name = self.sh, op["split"]
        width = _width(self.spec, buf)
        w = sh.widest(name)
        note = self._rows_note(q0, nq, len(self._row_parts(rows)))
        stage = self._stage_at(op, 0, q0, nq, rows)
        self.emit("ALLGATHER", sram=stage, count=nq * w,
                  comment=f"{op.name}: all-gather (staged)" + note)
        scratch = self.layout.regions.get("gather")
        dst = self.a(buf) + q0 * width
        if rows > 1 and scratch is not None:
            hbm = scratch.addr + 2 * q0 * width
            if self._dma_unpack(op, q0, nq, rows, hbm, width, dst):
                # several rows: each card's packed slice to its columns of the HBM scratch,
                # then the rows back, in row order (the DMA's stripe path beats VCOPYs on the VPU)
                for c, (c0, n) in enumerate(sh.parts(name)):
                    self.emit("STORE", sram=self._stage_at(op, c, q0, nq, rows), hbm=hbm + 2 * c0,
                              rows=nq, cols=n, hstride=2 * width, sstride=n, unpack=True,
                              comment=f"{op.name}: card {c}'s slice -> gather scratch" + note)
                self.emit("LOAD", sram=dst, hbm=hbm, rows=nq, cols=width, hstride=2 * width,
                          sstride=width, unpack=True, comment=f"{op.name}: gathered {buf}" + note)
                return
        for c, (c0, n) in enumerate(sh.parts(name)):
            src = self._stage_at(op, c, q0, nq, rows)
            if src == dst + c0:
                continue            # staged in place (buffers.attn_staged_in_place)
            # in place, a later card's chunk moves down onto the columns the narrower cards
            # before it left free: the copy reads each element before writing over it
            self.emit("VCOPY", dst=dst + c0, a=src, rows=nq, cols=n,
                      ldd=width, lda=n, comment=f"{op.name}: card {c}'s slice -> {buf}" + note)

    def _dma_unpack(self, op: Op, q0: int, nq: int, rows: int, hbm: int, width: int,
                    dst: int) -> bool:
        """Whether every transfer of the DMA unpack of rows ``q0 .. q0+nq-1`` takes the DMA's
        stripe path."""
        def ok(kind: str, sram: int, h: int, cols: int, sstride: int) -> bool:
            f = {"sram": sram, "hbm": h, "rows": nq, "cols": cols, "hstride": 2 * width,
                 "sstride": sstride, "batch": 1, "hbatch": 0, "sbatch": 0, "ra": 0, "rr": 0,
                 "rc": 0, "transpose": 0}
            return dma_stripe_aligned(self.hw, kind, f)
        return (all(ok("STORE", self._stage_at(op, c, q0, nq, rows), hbm + 2 * c0, n, n)
                    for c, (c0, n) in enumerate(self.sh.parts(op["split"])))
                and ok("LOAD", dst, hbm, width, width))

    def produced(self, op: Op, rows: int) -> None:
        if self.sh.devices > 1 and "split" in op.attrs:
            self.pending = (op, rows, op["dst"])

    def emit(self, op: str, *, hoist: bool = False, chunk: int | None = None, comment: str = "",
             unpack: bool = False, **fields) -> None:
        if op in ("LOAD", "STORE") and "batch" not in fields:
            fields["batch"] = 1
        if op == "MM" and "batch" not in fields:
            fields["batch"] = 1
        self.items.append(Item(Instr.make(op, comment=comment, **fields), hoist, chunk, unpack))

    def a(self, name: str) -> int:
        return self.plan.addr[name]

    # -- ops ------------------------------------------------------------------------------
    def embed(self, rows: int, prefill: bool) -> None:
        """The token embedding. In decode its two LOADs are marked ``hoist``: they go to the
        head of the step's DMA queue, before the weight chunks the scheduler hoists there too,
        because the step's first product waits for ``wte[R2] + wpe`` and its LAYERNORM, which
        take about as long as the first chunk (session 20: GPT-2 medium 2.938 -> 2.936
        ms/token, XL on four cards 3.918 -> 3.913; the tiny core's decode of ``micro`` 18,794
        -> 18,260 cycles)."""
        d, L = self.spec.d_model, self.layout
        if prefill:
            self.emit("GATHER", sram=self.a("x"), hbm=L["wte"].addr, idx=L["tokens_in"].addr,
                      rows=rows, cols=d, hstride=L.pitch("wte"), sstride=d, ra=POS,
                      comment="wte[prompt]")
        elif self.sh.devices > 1:       # the ring's winner (ring_argmax)
            self.emit("GATHER", hoist=True, sram=self.a("x"), hbm=L["wte"].addr,
                      idx=self._tokens_hbm()[1], rows=1, cols=d, hstride=L.pitch("wte"),
                      sstride=d, ra=WIN, comment="wte[winner's token]")
        else:
            self.emit("LOAD", hoist=True, sram=self.a("x"), hbm=L["wte"].addr, rows=1, cols=d,
                      hstride=L.pitch("wte"), sstride=d, ra=TOKEN, comment="wte[R2]")
        self.emit("LOAD", hoist=not prefill, sram=self.a("h"), hbm=L["wpe"].addr, rows=rows,
                  cols=d, hstride=2 * d, sstride=d, ra=POS, comment="wpe[R1:]")
        self.emit("VADD", dst=self.a("x"), a=self.a("x"), b=self.a("h"), rows=rows, cols=d,
                  ldd=d, lda=d, ldb=d, comment="embed")

    def params(self, op: Op) -> None:
        r = self.layout[op["region"]]
        n = r.nbytes // 2
        dst = self.a("lnf") if op.layer < 0 else self.a(f"params{op.layer % 2}")
        self.emit("LOAD", hoist=True, sram=dst, hbm=r.addr, rows=1, cols=n, hstride=2 * n,
                  sstride=n, comment=op.name)

    def _vec(self, op: Op, name: str) -> int:
        if op.layer < 0:
            return self.a("lnf") + (0 if name == "lnf_g" else self.spec.d_model)
        return self.a(f"params{op.layer % 2}") + self.layout.vec_offsets[name]

    def layernorm(self, op: Op, rows: int) -> None:
        if op.attrs.get("last_row"):
            self._norm_rows(op, self.a(op["src"]) + (rows - 1) * self.spec.d_model, 0, 1, 1)
            return
        for part in self.parts:
            self._norm_rows(op, self.a(op["src"]), *part, len(self.parts))

    def linear(self, op: Op, rows: int, part: int | None = None,
               after_mm: Callable[[int], None] | None = None) -> None:
        """The linear ``op`` over every row part, or only part number ``part`` (the parts in
        order, each in a call of its own: the first loads the chunks); ``after_mm(j)`` after
        each chunk ``j``'s product."""
        k = op["k"]
        w = self.layout[op["weight"]]
        pitch = self.layout.pitch(op["weight"])   # bytes from one row of W^T to the next
        w0 = op.attrs.get("row0", 0)          # first row of W^T this card uses (LM head)
        ks = weight_stride(k, self.hw)
        run = weight_run_rows(k, self.hw) if pitch == 2 * k else 0
        m = 1 if op.kind is OpKind.LM_HEAD else rows
        parts = [(0, 1)] if op.kind is OpKind.LM_HEAD else self.parts
        chunks = op["chunks"]
        # With the rows in halves, the first half's products over all chunks, then the
        # second's, so that the VPU has a whole half's products to work beside. W^T stays in
        # its slots for the second half when every chunk has a slot of its own; else it is
        # loaded again (a prefill's DMA is mostly idle: it waits on the MPU).
        reload = len(chunks) > WEIGHT_SLOTS
        slots: list[int] = self._slots.pop(op.name) if part else []
        if part is not None and part < len(parts) - 1:
            self._slots[op.name] = slots        # for the next part's call

        def load(r0: int, nr: int) -> int:
            slot = self.plan.slots[self.chunks % WEIGHT_SLOTS]
            whole = nr - nr % run if run else 0
            if whole:
                # rows dense on both sides: runs of `run` rows, each whole stripes
                # (geometry.weight_run_rows), not a row at a time; the rows left, one a row
                self.emit("LOAD", hoist=True, chunk=self.chunks, sram=slot,
                          hbm=w.addr + (w0 + r0) * pitch, rows=whole // run, cols=run * k,
                          hstride=run * pitch, sstride=run * ks,
                          comment=f"{op.name}[{r0}:{r0 + nr}]")
            if whole < nr:
                self.emit("LOAD", hoist=True, chunk=self.chunks, sram=slot + whole * ks,
                          hbm=w.addr + (w0 + r0 + whole) * pitch, rows=nr - whole, cols=k,
                          hstride=pitch, sstride=ks,
                          comment=f"{op.name}[{r0}:{r0 + nr}]"
                          + (f" rows {r0 + whole}.." if whole else ""))
            self.chunks += 1
            return slot
        for i, (q0, nq) in enumerate(parts):
            if part is not None and i != part:
                continue
            dst, ldc = self.target(op, m, q0, nq)
            for j, (r0, nr) in enumerate(chunks):
                slot = load(r0, nr) if i == 0 or reload else slots[j]
                if i == 0:
                    slots.append(slot)
                self._mm_rows(op, dst, ldc, slot, ks, r0, nr, q0, nq, len(parts))
                if after_mm is not None:
                    after_mm(j)
        if part is None or part == len(parts) - 1:
            self.produced(op, m)

    def query_halves(self, op: Op, rows: int) -> bool:
        """Whether the attention ``op`` runs by query halves (:meth:`attention`): a prefill
        tile in halves, this card's heads in one group."""
        return len(self._row_parts(rows)) > 1 and self.sh.n_head <= self.plan.group

    def attention(self, op: Op, rows: int, qkv_second: Callable[[], None] | None = None) -> list:
        """The attention ``op``. Returns, by query halves (:meth:`query_halves`), one function
        per half that emits that half's ``P V`` (the caller puts each half's all-gather and
        projection after it, so that the MPU projects the first half while the VPU runs the
        second half's softmax); else an empty list, everything emitted.

        By query halves each half's ``Q K^T`` and softmax cover only the keys up to its last
        row (causal), R1 + its first row as the mask offset (R6 QPOS for the second half); the
        columns left out are the masked ones, whose probabilities are exact zeros, so every
        row's result is the whole tile's, bit for bit. ``qkv_second`` emits the QKV product's
        second half: the first half's K and V are stored and loaded, and its ``Q K^T`` and
        softmax emitted, before it, so that the first half's softmax runs beside it."""
        if self.query_halves(op, rows):
            return self._attention_halves(op, rows, qkv_second)
        s, p = self.spec, self.plan
        # this card's heads (all of them on one card): qkv holds their Q | K | V, d wide each
        d, H, dh, ctx = self.sh.d_attn, self.sh.n_head, s.d_head, p.ctx
        dhs, cs = b_stride(dh, self.hw), b_stride(ctx, self.hw)     # B row strides (buffers.py)
        ss = scores_stride(ctx, self.hw)        # the scores' rows: A of P V, not a B operand
        qkv = self.a(op["qkv"])
        # The first half's V^T store first: it needs only that half's products, so it runs
        # while the MPU multiplies the second half (the DMA queue is in order)
        vparts = self._row_parts(rows)
        if len(vparts) > 1:
            self._cache_store(op, *vparts[0], v=True)
        self._cache_store(op, 0, rows, v=False)
        out, ldo = self.target(op, rows)
        for h0 in range(0, H, p.group):
            g = min(p.group, H - h0)
            tag = f"{op.name} heads {h0}..{h0 + g - 1}"
            self._load_k(op, h0, g, rows)
            if h0 == 0:
                # V's transposed store (the rest of it) after the first K load: Q K^T and the
                # softmax need only K, so the store overlaps them instead of delaying them
                for q0, nq in vparts[1:] if len(vparts) > 1 else vparts:
                    self._cache_store(op, q0, nq, v=True)
            blocks = self._load_vt(op, h0, g, rows)
            sc = self.a("scores")
            self.emit("MM", dst=sc, a=qkv + h0 * dh, b=self.a("kst"), m=rows, k=dh, n=rows,
                      rn=POS, lda=3 * d, ldb=dhs, ldc=ss, batch=g, bsa=dh, bsb=ctx * dhs,
                      bsc=rows * ss, mask=True, comment=f"{tag}: Q K^T")
            self.emit("SOFTMAX", dst=sc, a=sc, rows=g * rows, cols=rows, rc=POS, ldd=ss, lda=ss,
                      scale=1.0 / math.sqrt(dh), comment=f"{tag}: softmax")
            for j, nb, at, hs in blocks:
                self.emit("MM", dst=out + (h0 + j) * dh, a=sc + j * rows * ss, b=at, m=rows,
                          k=rows, rk=POS, n=dh, lda=ss, ldb=cs, ldc=ldo, batch=nb,
                          bsa=rows * ss, bsb=hs, bsc=dh, comment=f"{tag}: P V"
                          + (f" heads {h0 + j}..{h0 + j + nb - 1}" if nb < g else ""))
        self.produced(op, rows)
        return []

    def _cache_store(self, op: Op, q0: int, nq: int, *, v: bool) -> None:
        """Rows ``q0 .. q0+nq-1`` of this card's K (``v``: V, transposed, an element a cycle)
        to the HBM cache at position R1 + q0."""
        d, H, dh, T = self.sh.d_attn, self.sh.n_head, self.spec.d_head, self.spec.n_ctx
        qkv, at = self.a(op["qkv"]), f"R1{f'+{q0}' if q0 else ''}"
        note = self._rows_note(q0, nq, 2 if nq < sum(n for _, n in self.parts) else 1)
        if v:
            self.emit("STORE", sram=qkv + q0 * 3 * d + 2 * d, hbm=self.layout[op["v_cache"]].addr
                      + 2 * q0, rows=nq, cols=dh, hstride=2 * T, sstride=3 * d, batch=H,
                      hbatch=2 * dh * T, sbatch=dh, ra=POS, transpose=True,
                      comment=f"{op.name} V -> V^T cache[:, {at}:]{note}")
        else:
            self.emit("STORE", sram=qkv + q0 * 3 * d + d, hbm=self.layout[op["k_cache"]].addr
                      + 2 * dh * q0, rows=nq, cols=dh, hstride=2 * dh, sstride=3 * d, batch=H,
                      hbatch=2 * T * dh, sbatch=dh, ra=POS,
                      comment=f"{op.name} K -> cache[{at}:]{note}")

    def _load_k(self, op: Op, h0: int, g: int, n: int) -> None:
        """K rows 0 .. R1+n-1 of heads ``h0 .. h0+g-1`` into the K staging."""
        dh, T, ctx = self.spec.d_head, self.spec.n_ctx, self.plan.ctx
        dhs, kst = b_stride(dh, self.hw), self.a("kst")
        hbm = self.layout[op["k_cache"]].addr + 2 * h0 * T * dh
        tag = f"{op.name} heads {h0}..{h0 + g - 1}: K[0:R1+{n}]"
        if dhs == dh:
            # a head's cached rows are contiguous on both sides: one run of d_head·(R1+n)
            # elements per head (R5 = d_head·R1), a stripe per cycle instead of one per row
            self.emit("LOAD", sram=kst, hbm=hbm, rows=1, cols=dh * n, rc=KPOS,
                      hstride=2 * dh * T, sstride=ctx * dhs, batch=g, hbatch=2 * T * dh,
                      sbatch=ctx * dhs, comment=tag)
        else:
            self.emit("LOAD", sram=kst, hbm=hbm, rows=n, rr=POS, cols=dh, hstride=2 * dh,
                      sstride=dhs, batch=g, hbatch=2 * T * dh, sbatch=ctx * dhs, comment=tag)

    def _load_vt(self, op: Op, h0: int, g: int, n: int) -> list[tuple[int, int, int, int]]:
        """V^T columns 0 .. R1+n-1 of heads ``h0 .. h0+g-1`` into the V^T staging, a LOAD per
        block (:meth:`_vt_blocks`); returns the blocks."""
        dh, T = self.spec.d_head, self.spec.n_ctx
        cs, vc = b_stride(self.plan.ctx, self.hw), self.layout[op["v_cache"]].addr
        blocks = self._vt_blocks(g)
        for j, nb, at, hs in blocks:
            self.emit("LOAD", sram=at, hbm=vc + 2 * (h0 + j) * dh * T, rows=dh, cols=n, rc=POS,
                      hstride=2 * T, sstride=cs, batch=nb, hbatch=2 * dh * T, sbatch=hs,
                      comment=f"{op.name} heads {h0}..{h0 + g - 1}: V^T[:, 0:R1+{n}]"
                      + (f" heads {h0 + j}..{h0 + j + nb - 1}" if nb < g else ""))
        return blocks

    def _vt_blocks(self, g: int) -> list[tuple[int, int, int, int]]:
        """The V^T staging's blocks for a group of ``g`` heads: (first head, heads, address,
        head stride). :func:`.buffers.vt_heads_per_row` heads side by side in each row."""
        dh, ctx, vst = self.spec.d_head, self.plan.ctx, self.a("vst")
        cs, hp = b_stride(ctx, self.hw), vt_heads_per_row(ctx, self.hw)
        if hp == 1:
            return [(0, g, vst, dh * cs)]
        return [(j, min(hp, g - j), vst + (j // hp) * dh * cs, scores_stride(ctx, self.hw))
                for j in range(0, g, hp)]

    def _attention_halves(self, op: Op, rows: int,
                          qkv_second: Callable[[], None] | None) -> list:
        """:meth:`attention` by query halves, this card's heads in one group. The first half:
        K stored and loaded up to its last row, V^T stored and loaded likewise, ``Q K^T`` and
        softmax; then ``qkv_second``; then the second half's K (all rows loaded), ``Q K^T`` and
        softmax. The second half's V^T store goes right after the QKV product on one card; on a
        ring after the first half's projection (the DMA unpacks the first half's all-gather
        before it), with V^T loaded whole again before the second half's ``P V``."""
        s, hw = self.spec, self.hw
        d, H, dh, ctx = self.sh.d_attn, self.sh.n_head, s.d_head, self.plan.ctx
        dhs, cs = b_stride(dh, hw), b_stride(ctx, hw)
        ss = scores_stride(ctx, hw)
        qkv, kst = self.a(op["qkv"]), self.a("kst")
        tag = f"{op.name} heads 0..{H - 1}"
        (_, h0), (q1, h1) = self._row_parts(rows)
        blocks = self._vt_blocks(H)

        def heads(j: int, nb: int) -> str:
            return f" heads {j}..{j + nb - 1}" if nb < H else ""

        def store(q0: int, nq: int, v: bool) -> None:
            self._cache_store(op, q0, nq, v=v)

        def load_k(n: int) -> None:      # K rows 0 .. R1+n-1 of every head
            self._load_k(op, 0, H, n)

        def load_vt(n: int) -> None:     # V^T columns 0 .. R1+n-1 of every head
            self._load_vt(op, 0, H, n)

        def scores(q0: int, nq: int, reg: int) -> int:
            # the half's scores at rows H·q0 of the scores buffer (each head's nq rows
            # together), over keys 0 .. R1+q0+nq-1 with the mask offset R1+q0
            sc, note = self.a("scores") + H * q0 * ss, self._rows_note(q0, nq, 2)
            self.emit("MM", dst=sc, a=qkv + q0 * 3 * d, b=kst, m=nq, k=dh, n=nq, rn=reg,
                      lda=3 * d, ldb=dhs, ldc=ss, batch=H, bsa=dh, bsb=ctx * dhs, bsc=nq * ss,
                      mask=True, comment=f"{tag}: Q K^T" + note)
            self.emit("SOFTMAX", dst=sc, a=sc, rows=H * nq, cols=nq, rc=reg, ldd=ss, lda=ss,
                      scale=1.0 / math.sqrt(dh), comment=f"{tag}: softmax" + note)
            return sc

        def pv(q0: int, nq: int, reg: int, sc: int, r0: int, nr: int) -> None:
            # rows r0 .. r0+nr-1 of the half q0 .. q0+nq-1 (its scores at sc, each head's nq
            # rows together; the keys are the half's for each of its rows)
            out, ldo = self.target(op, rows, r0, nr)
            for j, nb, at, hs in blocks:
                self.emit("MM", dst=out + j * dh, a=sc + (j * nq + r0 - q0) * ss, b=at, m=nr,
                          k=nq, rk=reg, n=dh, lda=ss, ldb=cs, ldc=ldo, batch=nb, bsa=nq * ss,
                          bsb=hs, bsc=dh, comment=f"{tag}: P V" + self._rows_note(r0, nr, 2)
                          + heads(j, nb))

        one_card = self.sh.devices == 1
        store(0, h0, v=False)
        load_k(h0)
        sc0 = scores(0, h0, POS)
        if qkv_second is not None:
            qkv_second()
        # the first half's V^T after the second half's QKV product in program order: the
        # product's reloaded chunks (more chunks than slots) go ahead of the store in the
        # DMA queue, and the store still runs beside the product
        store(0, h0, v=True)
        load_vt(h0)
        store(q1, h1, v=False)
        load_k(rows)
        if one_card:
            store(q1, h1, v=True)
        self.emit("ADDI", rd=QPOS, rs=POS, imm=q1, comment=f"R6 = R1 + {q1}")
        sc1 = scores(q1, h1, QPOS)
        self.produced(op, rows)

        # the P V parts (:meth:`pv_parts`): the first half's, then the second's, whose first
        # one stores the second half's V^T and loads V^T whole
        first_half, second_half = self.pv_parts(rows)
        fns = [lambda r0=r0, nr=nr: pv(0, h0, POS, sc0, r0, nr) for r0, nr in first_half]

        def second(r0: int, nr: int, first: bool) -> None:
            if first:
                if not one_card:
                    store(q1, h1, v=True)
                load_vt(rows)
            pv(q1, h1, QPOS, sc1, r0, nr)
        fns += [lambda r0=r0, nr=nr, i=i: second(r0, nr, i == 0)
                for i, (r0, nr) in enumerate(second_half)]
        return fns

    def pv_parts(self, rows: int) -> list[list[tuple[int, int]]]:
        """The row parts, half by half, a tile attended by query halves is multiplied by V,
        all-gathered and projected in: on one card its halves; on a ring of up to 5 cards each
        half in two, so that a part's all-gather runs while the MPU multiplies the next part
        (or projects the one before) instead of the MPU waiting for a whole half's gather
        before its projection. An all-gather takes ``floor(D/2)`` steps, each paying the link's hop
        latency whatever its size: from 6 cards on (3 steps or more) twice the gathers cost
        more than they hide (measured, docs/multi-device.md "Session 21": XL's TTFT on 6
        cards 233.1 ms by halves, 238.0 in parts; on 4, 309.5 and 306.6)."""
        halves = self._halves(rows)
        if self.sh.devices == 1 or allgather_steps(self.sh.devices) > PV_SPLIT_MAX_STEPS:
            return [[h] for h in halves]
        return [self._halves(nq, q0) if nq > 1 else [(q0, nq)] for q0, nq in halves]

    def _attend_and_project(self, body: list[Op], i: int, rows: int,
                            qkv_second: Callable[[], None] | None = None) -> bool:
        """The attention ``body[i]``; by query halves, then each half's ``P V``, its all-gather
        and the projection ``body[i + 1]``'s half in turn. Whether it emitted the projection."""
        att = body[i]
        pvs = self.attention(att, rows, qkv_second)
        if not pvs:
            return False
        proj = body[i + 1]
        assert proj.kind is OpKind.LINEAR and proj["src"] == att["dst"]
        # Half by half: each of its parts' P V and all-gather, then their projections, so that
        # a part's gather runs beside the next part's P V or the part before's projection.
        halves = self.pv_parts(rows)
        self.parts = [p for half in halves for p in half]
        first = 0
        for half in halves:
            group = range(first, first + len(half))
            first += len(half)
            for p in group:
                pvs[p]()
                self.gather(self.parts[p])
            for p in group:
                self.linear(proj, rows, p)
        return True

    def block(self, graph: Graph, rows: int, prefill: bool) -> None:
        d, f = self.spec.d_model, self.spec.d_ff
        prev = None
        # A prefill tile's row-wise ops (LAYERNORM, the linears, GELU, VADD) go in two halves
        # of its rows, each unit's in the order first half, second half: the MPU starts on the
        # first half's product while the VPU normalises the second, and the VPU adds, normalises
        # or applies GELU to the first while the MPU multiplies the second. A residual VADD
        # and the LAYERNORM of its sum go half by half (VADD, LAYERNORM of the first half, then
        # of the second), so that the first half's product waits for the first half only. The
        # attention goes by query halves when this card's heads are one group
        # (:meth:`_attention_halves`). On a ring the halves' P V, all-gathers and projections go
        # in quarters (:meth:`pv_parts`) and the MLP's first half in two (:meth:`_norm_parts`),
        # so that the MPU does not wait for a whole half's all-gather and unpack. Each row's
        # arithmetic is unchanged.
        self.parts = self._halves(rows) if prefill and rows > 1 else [(0, rows)]
        body, done = list(graph.body), set()
        for i, op in enumerate(body):
            if i in done:
                continue
            k = op.kind
            on_slice = (self.pending is not None and self.pending[2] == self.pending[0]["dst"]
                        and k in (OpKind.GELU, OpKind.ADD)
                        and op.attrs.get("buf", op.attrs.get("src")) == self.pending[0]["dst"])
            if not on_slice:
                self.gather()
            ln = self._norm_after(body, i)
            if on_slice and k is OpKind.ADD and ln is not None and len(self.parts) > 1:
                # the residual add on this card's slice, its gather and the LAYERNORM of the
                # sum, half by half: the first half is normalised while the MPU multiplies the
                # second, and the next product starts on it
                for j in range(i + 1, ln):
                    self.params(body[j])
                after = self._norm_parts(body, ln, rows)
                normed = 0
                for part in self.parts:
                    self.add_slice(op, [part])
                    self.gather(part)
                    # each LAYERNORM part once the gathered rows reach its last one
                    while normed < len(after) and sum(after[normed]) <= sum(part):
                        self._norm_rows(body[ln], self.a(body[ln]["src"]), *after[normed],
                                        len(after))
                        normed += 1
                self.parts = after
                done.update(range(i + 1, ln + 1))
            elif on_slice and k is OpKind.ADD:
                self.add_slice(op)
            elif ln is not None:
                for j in range(i + 1, ln):          # the next layer's parameters first
                    self.params(body[j])
                self.add_norm(op, body[ln])
                done.update(range(i + 1, ln + 1))
            elif k is OpKind.EMBED:
                self.embed(rows, prefill)
            elif k is OpKind.LOAD_PARAMS:
                self.params(op)
            elif k is OpKind.LAYERNORM:
                self.layernorm(op, rows)
            elif (k is OpKind.LINEAR and i + 1 < len(body)
                  and body[i + 1].kind is OpKind.ATTENTION and body[i + 1]["qkv"] == op["dst"]
                  and self.query_halves(body[i + 1], rows)):
                # the QKV product's first half, the first half's attention, its second half
                self.linear(op, rows, 0)
                self._attend_and_project(body, i + 1, rows, lambda: self.linear(op, rows, 1))
                done.update((i + 1, i + 2))
                prev = body[i + 2]
                continue
            elif k is OpKind.LINEAR:
                self.linear(op, rows)
            elif k is OpKind.ATTENTION:
                if self._attend_and_project(body, i, rows):
                    done.add(i + 1)
                    prev = body[i + 1]
                    continue
            elif k is OpKind.GELU and on_slice:
                # on this card's slice of the fc output, before it is gathered
                fc, _, _ = self.pending
                parts = self._row_parts(rows)
                for r0, n in parts:
                    at, ld = self.target(fc, rows, r0, n)
                    self._gelu(op, at, ld, self._pieces(prev, fc["dst"], rows, ld), r0, n)
                    if len(parts) > 1:
                        self.gather((r0, n))     # each half's gather behind its GELU
                self.gather()
            elif k is OpKind.GELU:
                buf = self.a(op["buf"])
                pieces = self._pieces(prev, op["buf"], rows, f)
                for r0, nr in self.parts:
                    self._gelu(op, buf + r0 * f, f, pieces, r0, nr)
            elif k is OpKind.ADD:
                for c0, n in self._pieces(prev, op["src"], rows, d):
                    for part in self.parts:
                        self.vadd(op, *part, c0, n)
            else:
                raise AssertionError(f"op {op.name} ({k}) cannot appear in a block")
            prev = op
        self.gather()

    def head(self, graph: Graph, rows: int) -> None:
        self.gather()
        ops = list(graph.head)
        for i, op in enumerate(ops):
            self.gather()
            if op.kind is OpKind.LOAD_PARAMS:
                self.params(op)
            elif op.kind is OpKind.LAYERNORM:
                self.layernorm(op, rows)
            elif op.kind is OpKind.LM_HEAD:
                nxt = ops[i + 1] if i + 1 < len(ops) else None
                self._argmax_todo = (self._argmax_pieces(op) if nxt is not None
                                     and nxt.kind is OpKind.ARGMAX and nxt["src"] == op["dst"]
                                     else [])

                def lag(j: int) -> None:        # chunk j-1's ARGMAX behind chunk j's product
                    if j:
                        self._argmax_piece(op["dst"], "argmax")
                self.linear(op, rows, after_mm=lag if self._argmax_todo else None)
            elif op.kind is OpKind.ARGMAX and self.sh.devices > 1:
                self.ring_argmax(op)
            elif op.kind is OpKind.ARGMAX:
                self.argmax_rest(op["src"], self.spec.vocab, "next token -> R2")
            else:
                raise AssertionError(f"op {op.name} ({op.kind}) cannot appear in the head")

    def _argmax_pieces(self, lm: Op) -> list[tuple[int, int]]:
        """The LM head's chunks when its logits are reduced chunk by chunk, each chunk's
        ARGMAX (``cont = 1`` after the first) behind the next chunk's product, so that only
        the last chunk's is left after the LM head: every chunk but the last a multiple of
        ``vpu.width`` logits (isa table, ARGMAX), at least two chunks; else none."""
        chunks = list(lm["chunks"])
        w = self.hw.vpu.width
        if len(chunks) < 2 or any(n % w for _, n in chunks[:-1]):
            return []
        return chunks

    def _argmax_piece(self, src: str, comment: str) -> None:
        """The next chunk's ARGMAX, continuing the previous chunk's (all but the first)."""
        r0, n = self._argmax_todo.pop(0)
        self.emit("ARGMAX", rd=TOKEN, a=self.a(src) + r0, cols=n, cont=int(r0 > 0),
                  comment=f"{comment}: logits [{r0}:{r0 + n}]")

    def argmax_rest(self, src: str, n: int, comment: str) -> None:
        """R2 = the first index of the largest of the ``n`` logits at ``src``: the ARGMAX of
        the last chunk, continuing those of the LM head's other chunks (:meth:`head`), or of
        them all."""
        if not self._argmax_todo:
            self.emit("ARGMAX", rd=TOKEN, a=self.a(src), cols=n, comment=comment)
        while self._argmax_todo:
            self._argmax_piece(src, comment)

    def ring_argmax(self, op: Op) -> None:
        """The arg-max of logits split by vocabulary over the ring (partition.py): each card's
        best, then the first card with the largest logit, the one-card ``ARGMAX``'s
        tie-breaking (the slices are in vocabulary order; a card whose logits are all NaN
        offers a NaN, which never wins). Card ``d`` writes its (logit, token) record at
        ``pick + 4d``. The logit comes back through HBM: the card stores its logits there (one
        stripe-path ``STORE``) and the DMA reads the one at the local index ``R2`` (no
        instruction moves a scratchpad element by a register's value). The token, ``R2`` plus
        the slice's first row, goes through ``STR`` and a ``LOAD``. After the all-gather of the
        records every card compacts their logits (``VCOPY``), takes their ``ARGMAX`` into
        ``R7`` (WIN) and stores the records' tokens to the ``argmax`` region; the winner's is
        ``I32[cands + 4·R7]``, which the stream's end stores to ``tokens_out`` and the next
        step's embedding ``GATHER`` reads. ``R2`` keeps this card's token."""
        sh, D = self.sh, self.sh.devices
        c0, n = sh.local("vocab")
        mine, cands = self._tokens_hbm()
        logits, pick = self.a(op["src"]), self.a("pick")
        vals, rec = pick + pick_offsets(D)[0], pick + PICK_RECORD * sh.device
        base = self.layout["argmax"].addr
        lg = base + 2 * ((logits - base // 2) % chunk_elements(self.hw))    # the stripe path
        self.emit("STORE", sram=logits, hbm=lg, rows=1, cols=n, hstride=2 * n, sstride=n,
                  comment="this card's logits -> HBM (argmax)")
        self.argmax_rest(op["src"], n, "this card's best -> R2")
        self.emit("LOAD", sram=rec, hbm=lg, rows=1, cols=1, hstride=2, sstride=1, ra=TOKEN,
                  comment="its logit -> this card's record")
        self.emit("ADDI", rd=TOKEN, rs=TOKEN, imm=c0, comment=f"R2 += {c0}: its token")
        self.emit("STR", rs=TOKEN, hbm=mine, ra=0, comment="R2 -> HBM (argmax)")
        self.emit("LOAD", sram=rec + 1, hbm=mine, rows=1, cols=2, hstride=4, sstride=2,
                  comment="its token -> this card's record")
        self.emit("ALLGATHER", sram=pick, count=PICK_RECORD,
                  comment="argmax: all-gather the records")
        self.emit("VCOPY", dst=vals, a=pick, rows=D, cols=1, ldd=1, lda=PICK_RECORD,
                  comment="argmax: the cards' logits side by side")
        self.emit("ARGMAX", rd=WIN, a=vals, cols=D, comment="the winning card -> R7")
        self.emit("STORE", sram=pick + 1, hbm=cands, rows=D, cols=2, hstride=4,
                  sstride=PICK_RECORD, comment="argmax: the cards' tokens -> HBM")

    def _tokens_hbm(self) -> tuple[int, int]:
        """HBM byte addresses of this card's token and of every card's (``argmax_tokens``,
        layout.py)."""
        mine = self.layout["argmax_tokens"].addr
        return mine, mine + 4

    def store_token(self, out: int, ra: int) -> None:
        """``tokens_out[R[ra]]`` = the next token: ``R2`` on one card; on a ring the winner's
        token (:meth:`ring_argmax`), through the winner's row of the tokens in HBM."""
        if self.sh.devices == 1:
            self.emit("STR", rs=TOKEN, hbm=out, ra=ra, comment=f"tokens_out[R{ra}] = R2")
            return
        tok, cands = self.a("pick") + pick_offsets(self.sh.devices)[1], self._tokens_hbm()[1]
        self.emit("LOAD", sram=tok, hbm=cands, rows=1, cols=2, hstride=4, sstride=2, ra=WIN,
                  comment="the winner's token")
        self.emit("STORE", sram=tok, hbm=out, rows=1, cols=2, hstride=4, sstride=2, ra=ra,
                  comment=f"tokens_out[R{ra}] = it")


def codegen_stream(stream: str, graph: Graph, spec: ModelSpec, layout: Layout,
                   plan: BufferPlan, hw: HardwareConfig, sh: Shard | None = None) -> list[Item]:
    """Instructions of ``stream`` ("prefill" or "decode") in natural order, for card ``sh``
    (default: the whole model on one card)."""
    g = _Gen(spec, layout, plan, hw, sh if sh is not None else make_shard(spec, 1, 0))
    out = layout["tokens_out"].addr
    dh = spec.d_head
    if stream == "prefill":
        g.emit("SETI", rd=KPOS, imm=0, comment="R5 = d_head * R1 = 0")
        for i, (_, rows) in enumerate(plan.tiles):
            g.block(graph, rows, prefill=True)
            if i == len(plan.tiles) - 1:
                g.head(graph, rows)
            g.emit("ADDI", rd=POS, rs=POS, imm=rows, comment="R1 += rows")
            g.emit("ADDI", rd=KPOS, rs=KPOS, imm=dh * rows, comment="R5 += d_head * rows")
        g.store_token(out, 0)
        g.emit("SETI", rd=OUT, imm=1, comment="R4 = 1")
        g.emit("HALT")
    else:
        g.emit("SYNC", comment="loop: everything of the previous token is done")
        g.block(graph, 1, prefill=False)
        g.head(graph, 1)
        g.store_token(out, OUT)
        g.emit("ADDI", rd=POS, rs=POS, imm=1)
        g.emit("ADDI", rd=KPOS, rs=KPOS, imm=dh)
        g.emit("ADDI", rd=OUT, rs=OUT, imm=1)
        g.emit("ADDI", rd=COUNT, rs=COUNT, imm=-1)
        g.emit("BNZ", rs=COUNT, target=0)
        g.emit("HALT")
    return g.items
