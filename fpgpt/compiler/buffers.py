"""Pass 3, buffers: the scratchpad plan of each stream, with liveness.

Buffers (FP16 elements) and the phases of a layer they live in (0 embed, 1 LN + QKV,
2 attention, 3 projection, 4 MLP, 5 head): ``x`` residual and ``h`` (LN / projection output) all
along; ``qkv`` 1-2; ``attn`` 2-4; ``ffn`` 4; K / V^T staging and ``scores`` 2; ``logits``, ``lnf``
and, on a ring, the arg-max's ``pick`` 5; two layer-vector slots (so the next layer's vectors load while this one computes) and a
ring of weight-chunk slots, live all along. Buffers whose phases do not overlap share addresses
(interval first-fit, largest first).

The plan is searched: weight slots as large as the target (``sram / 8``, at most 2 MiB: big
transfers keep every HBM channel streaming and keep the instruction count low), all heads in one
attention group, the whole prompt in one tile; when that does not fit, the attention goes by
groups of heads, then the prompt by tiles of rows, then the slots shrink.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fpgpt.config import HardwareConfig
from fpgpt.geometry import b_stride, chunk_elements
from fpgpt.models import ModelSpec

from .errors import CompileError
from .partition import Shard, shard as make_shard

__all__ = ["BufferPlan", "plan_buffers", "WEIGHT_SLOTS", "slot_target_elems", "b_stride",
           "stage_count", "gathered_length", "attn_staged_in_place", "STAGE_OF", "scores_stride",
           "vt_heads_per_row", "PICK_RECORD", "pick_offsets"]

#: Weight-chunk slots in the ring: enough that DMA runs ahead over attention and layer seams
#: (docs/decode.md: GPT-2 medium 128:128 on u280 decodes at 2.12 ms/token with 4, 2.08 with 5).
WEIGHT_SLOTS = 5
_MAX_SLOT_BYTES = 2 << 20
_ALL, _QKV, _ATT, _MLP, _HEAD = (0, 5), (1, 2), (2, 2), (4, 4), (5, 5)


@dataclass(frozen=True)
class BufferPlan:
    """Scratchpad addresses (elements) of one stream.

    Attributes
    ----------
    stream : str
    tiles : list of (first_row, rows)
        Row blocks the stream processes (prefill: tiles of the prompt; decode: ``[(0, 1)]``).
    rows : int
        Rows of the largest tile (activation buffers are sized for it).
    ctx : int
        Positions the K / V^T staging holds (the row stride of ``scores`` and V^T).
    group : int
        Heads per attention group.
    addr, size : dict
        Every buffer's element address and size; weight slots are ``slot0``.., vector slots
        ``params0``, ``params1``.
    """

    stream: str
    tiles: list[tuple[int, int]]
    rows: int
    ctx: int
    group: int
    slot_elems: int
    addr: dict[str, int] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)

    @property
    def slots(self) -> list[int]:
        return [self.addr[f"slot{i}"] for i in range(WEIGHT_SLOTS)]

    @property
    def used_elems(self) -> int:
        return max(self.addr[k] + self.size[k] for k in self.addr)


def slot_target_elems(hw: HardwareConfig) -> int:
    return min(_MAX_SLOT_BYTES, hw.buffers.sram_bytes // 8) // 2


def scores_stride(ctx: int, hw: HardwareConfig) -> int:
    """Row stride of the attention scores: ``ctx`` rounded up to a whole MPU chunk. The scores
    are the ``Q K^T`` product's C and the ``P V`` product's A, never a B operand, so they need
    no bank-conflict-free :func:`b_stride` (a 128-token prompt's rows took 1,088 elements)."""
    c = chunk_elements(hw)
    return -(-ctx // c) * c


def vt_heads_per_row(ctx: int, hw: HardwareConfig) -> int:
    """Heads whose V^T rows share one row of the V^T staging: its rows are ``b_stride(ctx)``
    apart (``P V``'s B operand, bank-conflict-free), and each head's row holds ``ctx``
    positions, rounded up to a chunk (a 128-token prompt: 8 heads in a 1,088-element row; in
    decode, ``n_ctx`` positions: one)."""
    return max(1, b_stride(ctx, hw) // scores_stride(ctx, hw))


def stage_count(sh: Shard, name: str, rows: int) -> int:
    """Elements of one card's chunk of the all-gather staging for split ``name`` (0: the slices
    are gathered in place, as one row is when each card's part starts at ``d·w``,
    ``Shard.aligned``: every even split and most uneven ones, partition.split)."""
    if sh.devices == 1 or (rows == 1 and sh.aligned(name)):
        return 0
    return rows * sh.widest(name)


def gathered_length(sh: Shard, name: str, n: int, rows: int) -> int:
    """Elements a buffer of ``rows`` rows of ``n`` needs when split ``name``'s slices are
    all-gathered into it in place: one row of ``devices·w``, the last card's chunk running
    past the row's end when its part is narrower (what it sends there is not used)."""
    if rows == 1 and sh.devices > 1 and sh.aligned(name):
        return max(n, sh.devices * sh.widest(name))
    return rows * n


#: The staging area of each split's all-gather: the attention and fc slices in ``stage``, the
#: projection and fc2 ones (the residual's) in ``rstage``. With one
#: area a card's fc slices of a prefill tile's first half overlapped the attention's second
#: half, whose unpack they then waited for: a card that has as many heads as card 0 lost its
#: slack (session 20; GPT-2 XL 25 heads split 7, 7, 7, 4: TTFT 321.3 ms with one area, 314.6
#: with two).
STAGE_OF = {"attn": "stage", "fc": "stage", "proj": "rstage", "fc2": "rstage"}


#: Elements of a card's record in the ring arg-max's ``pick`` buffer: (logit, token low, token
#: high, unused).
PICK_RECORD = 4


def pick_offsets(devices: int) -> tuple[int, int, int]:
    """The ring arg-max's ``pick`` buffer (codegen ``_Gen.ring_argmax``): after the cards'
    records (:data:`PICK_RECORD` elements each), the offsets of the cards' logits side by side
    and of the winner's token (2 elements), and its length."""
    logits = PICK_RECORD * devices
    return logits, logits + devices, logits + devices + 2


def attn_staged_in_place(sh: Shard, rows: int) -> bool:
    """Whether the attention's all-gather of a decode row is staged in the ``attn`` buffer
    itself where its heads' parts do not start at ``d·w`` (``w`` the widest card's columns;
    partition.split's even fallback, e.g. 25 heads on 6 or 8 cards): card ``d``'s chunk at
    ``d·w``, so the cards up to the first narrower one are already where their heads go and
    only the later ones are moved down (codegen ``_gather_rows``); ``attn`` is then
    ``devices·w`` long."""
    return rows == 1 and stage_count(sh, "attn", rows) > 0


def _buffers(spec: ModelSpec, hw: HardwareConfig, rows: int, ctx: int, group: int, slot: int,
             vec_len: int, sh: Shard) -> dict[str, tuple[int, tuple[int, int]]]:
    d, f, dh = spec.d_model, spec.d_ff, spec.d_head
    dhs, cs = b_stride(dh, hw), b_stride(ctx, hw)
    in_place = attn_staged_in_place(sh, rows)
    attn = sh.devices * sh.widest("attn") if in_place else gathered_length(sh, "attn", d, rows)
    x = max(gathered_length(sh, "proj", d, rows), gathered_length(sh, "fc2", d, rows))
    b = {"x": (x, _ALL), "h": (rows * d, _ALL), "qkv": (rows * 3 * sh.d_attn, _QKV),
         "attn": (attn, (2, 4)), "ffn": (gathered_length(sh, "fc", f, rows), _MLP),
         "kst": (group * ctx * dhs, _ATT),
         "vst": (-(-group // vt_heads_per_row(ctx, hw)) * dh * cs, _ATT),
         "scores": (group * rows * scores_stride(ctx, hw), _ATT),
         "logits": (sh.local("vocab")[1], _HEAD),
         "lnf": (2 * d, _HEAD), "params0": (vec_len, _ALL), "params1": (vec_len, _ALL)}
    for i in range(WEIGHT_SLOTS):
        b[f"slot{i}"] = (slot, _ALL)
    if sh.devices > 1:      # all-gather staging (partition.py): layer outputs; the arg-max
        # two areas in turn (STAGE_OF): a split's slices are written while the previous
        # split's second half still waits for its all-gather and unpack
        for area in ("stage", "rstage"):
            n = max([stage_count(sh, s, rows) for s, a in STAGE_OF.items() if a == area
                     and not (s == "attn" and in_place)] + [0])
            if n:
                b[area] = (sh.devices * n, (2, 4))
        b["pick"] = (pick_offsets(sh.devices)[2], _HEAD)
    return b


def _allocate(bufs: dict[str, tuple[int, tuple[int, int]]], limit: int, align: int
              ) -> dict[str, int] | None:
    placed: list[tuple[int, int, tuple[int, int]]] = []
    addr: dict[str, int] = {}
    for name, (size, live) in sorted(bufs.items(), key=lambda kv: -kv[1][0]):
        busy = sorted((a, a + s) for a, s, lv in placed if lv[0] <= live[1] and live[0] <= lv[1])
        at = 0
        for lo, hi in busy:
            if at + size <= lo:
                break
            at = max(at, -(-hi // align) * align)
        if at + size > limit:
            return None
        placed.append((at, size, live))
        addr[name] = at
    return addr


def _halvings(n: int) -> list[int]:
    out = [n]
    while out[-1] > 1:
        out.append(-(-out[-1] // 2))
    return out


def plan_buffers(spec: ModelSpec, hw: HardwareConfig, stream: str, *, prompt_len: int,
                 vec_len: int, sh: Shard | None = None) -> BufferPlan:
    """The scratchpad plan of ``stream`` ("prefill" or "decode") on card ``sh`` (default: the
    whole model on one card): its heads, its ``qkv`` slice and the all-gather staging.

    Raises
    ------
    CompileError
        If not even one row, one head and the smallest weight slot fit; the message names the
        largest buffer, the sizes and ``buffers.sram_kib``.
    """
    limit = hw.buffers.sram_elements
    align = hw.mpu.width
    sh = sh if sh is not None else make_shard(spec, 1, 0)
    prefill = stream == "prefill"
    ctx = prompt_len if prefill else spec.n_ctx
    min_slot = max(spec.d_ff, spec.d_model)          # one row of the widest W^T
    slot = max(slot_target_elems(hw), min_slot)
    tried = None
    while True:
        for rows in (_halvings(prompt_len) if prefill else [1]):
            for group in _halvings(min(sh.n_head, 255)):
                bufs = _buffers(spec, hw, rows, ctx, group, slot, vec_len, sh)
                addr = _allocate(bufs, limit, align)
                tried = bufs
                if addr is not None:
                    tiles = [(r0, min(rows, prompt_len - r0)) for r0 in range(0, prompt_len, rows)] \
                        if prefill else [(0, 1)]
                    return BufferPlan(stream, tiles, rows, ctx, group, slot, addr,
                                      {k: v[0] for k, v in bufs.items()})
        if slot == min_slot:
            break
        slot = max(min_slot, slot // 2)
    big, (size, _) = max(tried.items(), key=lambda kv: kv[1][0])
    total = sum(s for s, _ in tried.values())
    raise CompileError(
        f"{spec.name} ({stream}) does not fit the scratchpad: even with 1 row, 1 head per group "
        f"and {slot}-element weight slots it needs up to {total * 2 / 1024:.0f} KiB (largest "
        f"buffer {big!r}: {size * 2 / 1024:.1f} KiB) but buffers.sram_kib = {hw.buffers.sram_kib}; "
        f"use a config with a larger scratchpad or a smaller model")
