"""The compiler's small op IR: one enum is its vocabulary, one frozen dataclass its node.

A :class:`Graph` describes the forward pass of a block of ``rows`` consecutive token positions
(the prompt in prefill, one token in decode) as a list of ops over named activation buffers;
``head`` is the part run on the last row only (final LayerNorm, LM head, arg-max, token out).
Loop control (prefill tiles, the decode loop) is added by code generation, which owns registers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import CompileError

__all__ = ["OpKind", "Op", "Graph", "verify_graph", "ACTIVATIONS"]


class OpKind(enum.Enum):
    EMBED = "embed"            # x = wte[token] + wpe[pos]
    LOAD_PARAMS = "params"     # bring one layer's vectors (LN gains, biases) on chip
    LAYERNORM = "layernorm"
    LINEAR = "linear"          # dst = src @ W + b, W^T streamed from HBM in chunks
    ATTENTION = "attention"    # causal multi-head attention over the HBM KV cache
    GELU = "gelu"
    ADD = "add"                # residual
    LM_HEAD = "lm_head"        # logits = h @ wte^T (a LINEAR over the tied embedding)
    ARGMAX = "argmax"          # next token -> R2, stored to tokens_out


#: Activation buffers ops may name, with their width in terms of the spec.
ACTIVATIONS = ("x", "h", "qkv", "attn", "ffn", "logits")


@dataclass(frozen=True)
class Op:
    """One IR node. ``attrs`` holds the kind-specific operands (buffer names, region names,
    sizes); passes change a node only through :meth:`with_attrs`."""

    kind: OpKind
    name: str
    layer: int = -1
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)

    def with_attrs(self, **changes: Any) -> "Op":
        return replace(self, attrs={**self.attrs, **changes})

    def __getitem__(self, key: str) -> Any:
        return self.attrs[key]


@dataclass(frozen=True)
class Graph:
    body: tuple[Op, ...]
    head: tuple[Op, ...]

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.body + self.head

    def replace_ops(self, fn) -> "Graph":
        return Graph(tuple(fn(o) for o in self.body), tuple(fn(o) for o in self.head))


_REQUIRED = {
    OpKind.EMBED: ("dst",),
    OpKind.LOAD_PARAMS: ("region",),
    OpKind.LAYERNORM: ("src", "dst", "gamma", "beta"),
    OpKind.LINEAR: ("src", "dst", "weight", "k", "n"),
    OpKind.ATTENTION: ("qkv", "dst", "k_cache", "v_cache"),
    OpKind.GELU: ("buf",),
    OpKind.ADD: ("dst", "src"),
    OpKind.LM_HEAD: ("src", "dst", "weight", "k", "n"),
    OpKind.ARGMAX: ("src",),
}


def verify_graph(graph: Graph) -> None:
    """Check that every op has its operands, names known buffers, and that a buffer is written
    before it is read (``x`` first by EMBED); raises :class:`CompileError` naming the op."""
    written: set[str] = set()
    for op in graph.ops:
        missing = [k for k in _REQUIRED[op.kind] if k not in op.attrs]
        if missing:
            raise CompileError(f"IR op {op.name!r} ({op.kind.value}) lacks attribute {missing[0]!r}")
        reads = [op.attrs[k] for k in ("src", "qkv", "buf") if k in op.attrs]
        if op.kind is OpKind.ADD:
            reads.append(op["dst"])
        for b in reads + [op.attrs[k] for k in ("dst",) if k in op.attrs]:
            if b not in ACTIVATIONS:
                raise CompileError(f"IR op {op.name!r} names unknown buffer {b!r}; "
                                   f"buffers: {', '.join(ACTIVATIONS)}")
        for b in reads:
            if b not in written:
                raise CompileError(f"IR op {op.name!r} reads buffer {b!r} before any op writes it")
        if "chunks" in op.attrs:
            rows = sum(n for _, n in op["chunks"])
            if rows != op["n"] or any(r0 != sum(n for _, n in op["chunks"][:i])
                                      for i, (r0, _) in enumerate(op["chunks"])):
                raise CompileError(f"IR op {op.name!r}: chunks {op['chunks'][:3]}... do not tile "
                                   f"its {op['n']} output rows exactly once")
        if "dst" in op.attrs:
            written.add(op["dst"])
        if op.kind is OpKind.GELU:
            written.add(op["buf"])
