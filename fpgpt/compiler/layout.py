"""Pass 2, layout: where every tensor lives in HBM, and the memory image when weights are given.

Every weight matrix is stored transposed, ``W^T`` [N, K] row-major FP16: a chunk of output rows
is then one contiguous transfer, which the channel interleaving (``hbm.interleave_bytes``)
spreads over every pseudo-channel. ``wte`` [V, D] already is the LM head's [N, K]. Each layer's
vectors (LN gains and shifts, biases) sit in one block ``layerI.vec`` so one LOAD brings them.
The K cache is [H, n_ctx, d_head] per layer; the V cache is stored transposed, [H, d_head, n_ctx],
so that P @ V is a matrix times transposed matrix like every other MM. Regions are aligned to the
interleave granule.

A weight matrix's rows (and ``wte``'s, which the LM head reads as one) are ``2K`` bytes apart, or
a whole number of DMA stripes apart, from a stripe boundary, when that makes a row cheaper to
load (:func:`row_pitch`; docs/compiler.md, "Weight rows on whole stripes"): the DMA's stripe
path pays a cycle for every stripe a row touches, and a dense row whose length is not a whole
number of stripes starts anywhere in one (GPT-2 XL's 3,200-byte rows touch 2.5 stripes on
average for 1.56 stripes of data, 2 when padded). The padding is never read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fpgpt.config import HardwareConfig
from fpgpt.geometry import chunk_elements, stripe_elements, stripes_ok, weight_run_rows
from fpgpt.isa import Region
from fpgpt.models import ModelSpec

from .errors import CompileError
from .partition import Shard, shard as make_shard

__all__ = ["Layout", "plan_layout", "memory_image", "row_pitch", "row_cycles", "VEC_FIELDS"]

#: The layer vector block, in order (name, length: "d" d_model, else the card's share of a split:
#: "qkv" 3 x its heads' width, "proj" / "fc" / "fc2" its output columns; on one card these are
#: 3 d_model, d_model, d_ff, d_model).
VEC_FIELDS = (("ln1_g", "d"), ("ln1_b", "d"), ("b_qkv", "qkv"), ("b_proj", "proj"),
              ("ln2_g", "d"), ("ln2_b", "d"), ("b_fc", "fc"), ("b_fc2", "fc2"))


@dataclass(frozen=True)
class Layout:
    """HBM regions and the element offsets of the fields of a layer vector block."""

    regions: dict[str, Region]
    vec_offsets: dict[str, int]
    vec_len: int
    total_bytes: int
    #: Bytes from one row to the next of the matrices whose rows are padded (:func:`row_pitch`).
    pitches: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Region:
        return self.regions[name]

    def pitch(self, name: str) -> int:
        """Bytes from one row of the FP16 matrix ``name`` to the next in HBM."""
        return self.pitches.get(name, 2 * self.regions[name].shape[-1])

    @property
    def writable(self) -> list[tuple[int, int]]:
        """Byte ranges that programs write (KV caches, tokens_out, the multi-card ``gather``
        and ``argmax`` scratch): the ones dependencies track."""
        return [(r.addr, r.end) for n, r in self.regions.items()
                if n.endswith("_cache") or n.startswith("argmax")
                or n in ("tokens_out", "gather")]


def _vec_offsets(spec: ModelSpec, sh: Shard) -> tuple[dict[str, int], int]:
    size = {"d": spec.d_model, "qkv": 3 * sh.d_attn, "proj": sh.local("proj")[1],
            "fc": sh.local("fc")[1], "fc2": sh.local("fc2")[1]}
    out, off = {}, 0
    for name, unit in VEC_FIELDS:
        out[name] = off
        off += size[unit]
    return out, off


def row_pitch(k: int, hw: HardwareConfig) -> int:
    """Bytes from one row of a weight matrix ``W^T [N, K]`` to the next in HBM: ``2K``, or ``2K``
    rounded up to whole stripes (the region then starts on a stripe) when that loads a row in
    fewer cycles.

    A stripe is ``S = channels · interleave_bytes`` bytes, one AXI beat from every pseudo-channel,
    and the DMA's stripe path moves one a cycle, paying for every stripe a row touches
    (``costs.dma_cycles``). Dense rows of ``L = 2K`` bytes start at every offset a multiple of
    ``gcd(L, S)`` into a stripe and touch ``(L + S - gcd(L, S)) / S`` stripes on average; padded
    rows touch ``⌈L/S⌉``. Padding also puts each row's partial stripe on the first channels, so
    that the busiest channel serves ``⌈L/S⌉`` beats a row where dense rows spread ``L/S`` over
    every channel. A row costs the later of the two in core cycles (a channel's beat takes
    ``interleave_bytes / (channel_gbps · efficiency)``), and the pitch is padded only when that
    is less: GPT-2 small's 1,536-byte rows on u280 (1.5 -> 1 cycle a row), not at the 300 MHz
    what-if, where the channels bound it.

    Rows that the DMA moves in runs of whole stripes (:func:`fpgpt.geometry.weight_run_rows`:
    ``K`` a chunk count the MPU's fast B path takes, so dense in the weight slot too) stay dense, the matrix starting
    on a stripe: GPT-2 XL's 3,200-byte rows cost 1.5625 stripes a row that way (session 19;
    padded to 4,096 bytes, 2 before).
    """
    length, s = 2 * k, 2 * stripe_elements(hw)
    if k <= 0 or not stripes_ok(hw) or length % s == 0 or weight_run_rows(k, hw):
        return length
    dense, padded = row_cycles(k, hw)
    return -(-length // s) * s if max(padded) < max(dense) else length


def row_cycles(k: int, hw: HardwareConfig) -> tuple[tuple[float, float], tuple[float, float]]:
    """What :func:`row_pitch` weighs for a row of ``K`` FP16 elements, dense and padded: each
    ``(DMA stripe cycles, the busiest channel's cycles)`` a row, on average (the stripe path
    needs :func:`fpgpt.geometry.stripes_ok`: an interleave piece is one port beat)."""
    h = hw.hbm
    length, s = 2 * k, 2 * stripe_elements(hw)
    n = -(-length // s)
    beat = h.interleave_bytes * hw.clock_mhz / (h.channel_gbps * h.efficiency * 1e3)
    return (((length + s - math.gcd(length, s)) / s, length / s * beat), (n, n * beat))


def plan_layout(spec: ModelSpec, hw: HardwareConfig, sh: Shard | None = None) -> Layout:
    """Place every region of ``spec`` (card ``sh``'s share of it; default: all of it on one
    card) in ``hw``'s HBM: weight rows padded to :func:`row_pitch` when the padded layout fits,
    dense otherwise.

    Raises
    ------
    CompileError
        If the model, its KV cache and the token buffers exceed ``hbm.capacity_bytes``.
    """
    sh = sh if sh is not None else make_shard(spec, 1, 0)
    padded = _place(spec, hw, sh, pad=True)
    if padded.total_bytes <= hw.hbm.capacity_bytes or not padded.pitches:
        layout = padded
    else:
        layout = _place(spec, hw, sh, pad=False)
    addr, cap = layout.total_bytes, hw.hbm.capacity_bytes
    if addr > cap and sh.devices > 1:
        raise CompileError(
            f"{spec.name} on {sh.devices} devices needs {addr / 1e9:.2f} GB of HBM on card "
            f"{sh.device} (its share of the weights and KV cache for n_ctx {spec.n_ctx}, and the "
            f"replicated embeddings) but {hw.name} has {cap / 1e9:.2f} GB (hbm.capacity_mib = "
            f"{hw.hbm.capacity_mib}); use more devices or a card with more HBM")
    if addr > cap:
        raise CompileError(
            f"{spec.name} needs {addr / 1e9:.2f} GB of HBM (weights, KV cache for n_ctx "
            f"{spec.n_ctx}) but {hw.name} has {cap / 1e9:.2f} GB (hbm.capacity_mib = "
            f"{hw.hbm.capacity_mib}); use more devices or a card with more HBM")
    return layout


def _place(spec: ModelSpec, hw: HardwareConfig, sh: Shard, *, pad: bool) -> Layout:
    """Every region in order from address 0 (:func:`plan_layout`), weight rows at
    :func:`row_pitch` when ``pad``."""
    align = hw.hbm.interleave_bytes
    if sh.devices > 1:
        # a card's shares have any size: keep every region on the DMA's stripe path, whose rows'
        # HBM and scratchpad element addresses agree modulo a chunk (geometry.dma_stripe_aligned)
        align = math.lcm(align, 2 * hw.mpu.width)
    stripe = math.lcm(align, 2 * stripe_elements(hw))      # a padded matrix starts on a stripe
    d, f, H, dh, T = spec.d_model, spec.d_ff, sh.n_head, spec.d_head, spec.n_ctx
    da = sh.d_attn
    vec_offsets, vec_len = _vec_offsets(spec, sh)
    regions: dict[str, Region] = {}
    pitches: dict[str, int] = {}
    addr = 0

    def add(name: str, shape: tuple[int, ...], dtype: str = "f16", weight: bool = False) -> None:
        nonlocal addr
        nbytes = int(np.prod(shape)) * (4 if dtype == "i32" else 2)
        pitch = row_pitch(shape[-1], hw) if pad and weight else 2 * shape[-1]
        # a padded matrix, or one loaded in runs of whole stripes, starts on a stripe
        if pitch != 2 * shape[-1] or (weight and weight_run_rows(shape[-1], hw)):
            addr = -(-addr // stripe) * stripe
        if pitch != 2 * shape[-1]:
            nbytes = shape[0] * pitch
            pitches[name] = pitch
        regions[name] = Region(name, addr, nbytes, shape, dtype)
        addr += -(-nbytes // align) * align

    add("tokens_in", (T,), "i32")
    add("tokens_out", (T,), "i32")
    add("wte", (spec.vocab, d), weight=True)           # the LM head's W^T
    add("wpe", (T, d))
    add("lnf", (2 * d,))
    for i in range(spec.n_layer):
        p = f"layer{i}"
        add(f"{p}.vec", (vec_len,))
        add(f"{p}.w_qkv", (3 * da, d), weight=True)
        add(f"{p}.w_proj", (sh.local("proj")[1], d), weight=True)
        add(f"{p}.w_fc", (sh.local("fc")[1], d), weight=True)
        add(f"{p}.w_fc2", (sh.local("fc2")[1], f), weight=True)
    for i in range(spec.n_layer):
        add(f"layer{i}.k_cache", (H, T, dh))
        add(f"layer{i}.v_cache", (H, dh, T))
    if sh.devices > 1:
        # where a prefill tile's gathered slices are put back in row order by two DMA transfers
        # (codegen.py, _Gen.gather): n_ctx rows of the widest gathered buffer
        add("gather", (T, max(d, f)))
        # the ring arg-max (codegen.py, _Gen.ring_argmax): a row where the card stores its
        # logits (a vocabulary, plus up to a chunk so that the row can start at the logits'
        # scratchpad address mod C: the DMA's stripe path); this card's token, then every card's
        add("argmax", (chunk_elements(hw) + spec.vocab,))
        add("argmax_tokens", (1 + sh.devices,), "i32")
    return Layout(regions, vec_offsets, vec_len, addr, pitches)


def memory_image(layout: Layout, weights, sh: Shard | None = None) -> list[tuple[int, bytes]]:
    """HBM segments (address, FP16 bytes) holding card ``sh``'s share of ``weights`` (a
    GPT2Weights; default: all of it) in ``layout``."""
    t = weights.tensors
    spec = weights.spec
    sh = sh if sh is not None else make_shard(spec, 1, 0)
    d = spec.d_model
    q0, qn = sh.local("attn")
    qkv_rows = np.concatenate([np.arange(q0, q0 + qn) + i * d for i in range(3)])
    rows = {"w_qkv": qkv_rows, "b_qkv": qkv_rows}
    for w, b, part in (("w_proj", "b_proj", "proj"), ("w_fc", "b_fc", "fc"),
                       ("w_fc2", "b_fc2", "fc2")):
        c0, n = sh.local(part)
        rows[w] = rows[b] = np.arange(c0, c0 + n)

    def mine(name: str, a: np.ndarray) -> np.ndarray:
        """The card's rows of W^T (or entries of a bias); everything on one card."""
        return a[rows[name]] if name in rows and sh.devices > 1 else a

    def f16(a: np.ndarray) -> bytes:
        return np.ascontiguousarray(a, dtype=np.float16).tobytes()

    def pitched(name: str, a: np.ndarray) -> bytes:
        """A matrix's rows at the region's pitch (zeros between them)."""
        p = layout.pitch(name) // 2
        if p == a.shape[1]:
            return f16(a)
        out = np.zeros((a.shape[0], p), np.float16)
        out[:, :a.shape[1]] = a
        return out.tobytes()

    segs = [(layout["wte"].addr, pitched("wte", t["wte"])), (layout["wpe"].addr, f16(t["wpe"])),
            (layout["lnf"].addr, f16(np.concatenate([t["lnf_g"], t["lnf_b"]])))]
    for i in range(spec.n_layer):
        p, w = f"layer{i}", weights.layer(i)
        vec = np.concatenate([mine(name, w[name]) for name, _ in VEC_FIELDS])
        segs.append((layout[f"{p}.vec"].addr, f16(vec)))
        for name in ("w_qkv", "w_proj", "w_fc", "w_fc2"):
            segs.append((layout[f"{p}.{name}"].addr,
                         pitched(f"{p}.{name}", mine(name, w[name].T))))
    return segs
