"""Pass 2, layout: where every tensor lives in HBM, and the memory image when weights are given.

Every weight matrix is stored transposed, ``W^T`` [N, K] row-major FP16: a chunk of output rows
is then one contiguous transfer, which the channel interleaving (``hbm.interleave_bytes``)
spreads over every pseudo-channel. ``wte`` [V, D] already is the LM head's [N, K]. Each layer's
vectors (LN gains and shifts, biases) sit in one block ``layerI.vec`` so one LOAD brings them.
The K cache is [H, n_ctx, d_head] per layer; the V cache is stored transposed, [H, d_head, n_ctx],
so that P @ V is a matrix times transposed matrix like every other MM. Regions are aligned to the
interleave granule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpgpt.config import HardwareConfig
from fpgpt.isa import Region
from fpgpt.models import ModelSpec

from .errors import CompileError

__all__ = ["Layout", "plan_layout", "memory_image", "VEC_FIELDS"]

#: The layer vector block, in order (name, length in units of d_model or "f" for d_ff).
VEC_FIELDS = (("ln1_g", "d"), ("ln1_b", "d"), ("b_qkv", "3d"), ("b_proj", "d"),
              ("ln2_g", "d"), ("ln2_b", "d"), ("b_fc", "f"), ("b_fc2", "d"))


@dataclass(frozen=True)
class Layout:
    """HBM regions and the element offsets of the fields of a layer vector block."""

    regions: dict[str, Region]
    vec_offsets: dict[str, int]
    vec_len: int
    total_bytes: int

    def __getitem__(self, name: str) -> Region:
        return self.regions[name]

    @property
    def writable(self) -> list[tuple[int, int]]:
        """Byte ranges that programs write (KV caches, tokens_out): the ones dependencies track."""
        return [(r.addr, r.end) for n, r in self.regions.items()
                if n.endswith("_cache") or n == "tokens_out"]


def _vec_offsets(spec: ModelSpec) -> tuple[dict[str, int], int]:
    size = {"d": spec.d_model, "3d": 3 * spec.d_model, "f": spec.d_ff}
    out, off = {}, 0
    for name, unit in VEC_FIELDS:
        out[name] = off
        off += size[unit]
    return out, off


def plan_layout(spec: ModelSpec, hw: HardwareConfig) -> Layout:
    """Place every region of ``spec`` in ``hw``'s HBM.

    Raises
    ------
    CompileError
        If the model, its KV cache and the token buffers exceed ``hbm.capacity_bytes``.
    """
    align = hw.hbm.interleave_bytes
    d, f, H, dh, T = spec.d_model, spec.d_ff, spec.n_head, spec.d_head, spec.n_ctx
    vec_offsets, vec_len = _vec_offsets(spec)
    regions: dict[str, Region] = {}
    addr = 0

    def add(name: str, shape: tuple[int, ...], dtype: str = "f16") -> None:
        nonlocal addr
        nbytes = int(np.prod(shape)) * (4 if dtype == "i32" else 2)
        regions[name] = Region(name, addr, nbytes, shape, dtype)
        addr += -(-nbytes // align) * align

    add("tokens_in", (T,), "i32")
    add("tokens_out", (T,), "i32")
    add("wte", (spec.vocab, d))
    add("wpe", (T, d))
    add("lnf", (2 * d,))
    for i in range(spec.n_layer):
        p = f"layer{i}"
        add(f"{p}.vec", (vec_len,))
        add(f"{p}.w_qkv", (3 * d, d))
        add(f"{p}.w_proj", (d, d))
        add(f"{p}.w_fc", (f, d))
        add(f"{p}.w_fc2", (d, f))
    for i in range(spec.n_layer):
        add(f"layer{i}.k_cache", (H, T, dh))
        add(f"layer{i}.v_cache", (H, dh, T))
    cap = hw.hbm.capacity_bytes
    if addr > cap:
        raise CompileError(
            f"{spec.name} needs {addr / 1e9:.2f} GB of HBM (weights, KV cache for n_ctx {T}) but "
            f"{hw.name} has {cap / 1e9:.2f} GB (hbm.capacity_mib = {hw.hbm.capacity_mib}); use "
            f"more devices or a card with more HBM")
    return Layout(regions, vec_offsets, vec_len, addr)


def memory_image(layout: Layout, weights) -> list[tuple[int, bytes]]:
    """HBM segments (address, FP16 bytes) holding ``weights`` (a GPT2Weights) in ``layout``."""
    t = weights.tensors
    spec = weights.spec

    def f16(a: np.ndarray) -> bytes:
        return np.ascontiguousarray(a, dtype=np.float16).tobytes()

    segs = [(layout["wte"].addr, f16(t["wte"])), (layout["wpe"].addr, f16(t["wpe"])),
            (layout["lnf"].addr, f16(np.concatenate([t["lnf_g"], t["lnf_b"]])))]
    for i in range(spec.n_layer):
        p, w = f"layer{i}", weights.layer(i)
        vec = np.concatenate([w[name] for name, _ in VEC_FIELDS])
        segs.append((layout[f"{p}.vec"].addr, f16(vec)))
        for name in ("w_qkv", "w_proj", "w_fc", "w_fc2"):
            segs.append((layout[f"{p}.{name}"].addr, f16(w[name].T)))
    return segs
