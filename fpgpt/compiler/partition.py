"""Pass 0, partition: which share of GPT-2 each of ``D`` cards computes (intra-layer model
parallelism, DESIGN.md contract 6).

The split is *by output columns* everywhere, and every output element is computed with its full
reduction length on one card, so an N-card run is bit for bit the one-card run
(docs/multi-device.md, "Why column splits"):

- attention by heads: card ``d`` holds Q, K, V of its heads (rows of ``W_qkv^T``), their KV
  cache, and computes their attention output;
- the projection, the MLP's ``fc`` and ``fc2`` by output columns (rows of ``W^T``);
- the LM head by vocabulary (rows of ``wte``).

After each layer's four (attention, projection, fc, fc2) the cards all-gather the slices, so
every card holds the full activation for the next LayerNorm / matmul (the projection's and fc2's
slices go into the residual first, each card adding its own columns, so what is gathered is the
residual's new value): four ``ALLGATHER`` per layer (plus ``VCOPY`` s that pack padded slices
when the split is uneven or a prefill tile has several rows). The logits are not gathered: each
card finds the best of its own vocabulary slice, the ring all-gathers each card's (logit, token)
record and every card picks the first card with the largest logit (codegen ``_Gen.ring_argmax``;
the one-card ``ARGMAX``'s tie-breaking, since the slices are in vocabulary order). Embedding
tables (``wte``, ``wpe``), LayerNorm parameters and the residual stream are replicated.

Splits put ``w = ceil(n / D)`` items on every card but the last, which takes the rest, when
that rest is at least one item (``split(25, 4)`` = 7, 7, 7, 4 heads; the vocabulary on four
cards 12,565 x 3 and 12,562): the slowest card has ``w`` either way, and each card's slice of a
gathered row then starts at ``d·w``, where ``ALLGATHER`` of equal ``w``-element chunks puts it,
so a decode row's slices are gathered in place with nothing to unpack (buffers.gathered_length;
session 20: XL on four cards 3.990 -> 3.918 ms/token). Otherwise (25 heads on 6 or 8 cards)
as even as they can be, the first ``n mod D`` cards one more (5, 4, 4, 4, 4, 4).
"""

from __future__ import annotations

from dataclasses import dataclass

from fpgpt.models import ModelSpec

from .errors import CompileError
from .ir import Graph, Op, OpKind

__all__ = ["split", "Shard", "shard", "check_devices", "partition_graph", "MAX_DEVICES"]

#: Largest ring the compiler maps onto (a bound on the ISA's chunk indexing, not a hardware one).
MAX_DEVICES = 64


def split(n: int, devices: int) -> tuple[tuple[int, int], ...]:
    """``(first, count)`` of each card's share of ``n`` items: ``ceil(n / devices)`` each and
    the rest on the last card when it gets at least one, else the first cards one larger
    (module docstring)."""
    w = -(-n // devices)
    if n - (devices - 1) * w >= 1:
        counts = [w] * (devices - 1) + [n - (devices - 1) * w]
    else:
        base, extra = divmod(n, devices)
        counts = [base + (1 if d < extra else 0) for d in range(devices)]
    out, at = [], 0
    for c in counts:
        out.append((at, c))
        at += c
    return tuple(out)


def check_devices(spec: ModelSpec, devices: object) -> int:
    """``devices`` as an int, or :class:`CompileError` naming why this model cannot use it."""
    if isinstance(devices, bool) or not isinstance(devices, int):
        raise CompileError(f"devices must be an integer, not {devices!r}")
    if devices < 1:
        raise CompileError(f"devices must be at least 1, not {devices}")
    if devices > MAX_DEVICES:
        raise CompileError(f"devices = {devices}: at most {MAX_DEVICES} cards are supported")
    if devices > spec.n_head:
        raise CompileError(f"devices = {devices} is more than the {spec.n_head} attention heads of "
                           f"{spec.name!r}: attention is split by heads, so use at most "
                           f"{spec.n_head} devices")
    return devices


@dataclass(frozen=True)
class Shard:
    """Card ``device``'s share of the model on a ring of ``devices`` cards.

    Attributes
    ----------
    device, devices : int
    heads : tuple of (first, count)
        Attention heads of every card.
    proj, fc, fc2, vocab : tuple of (first, count)
        Output columns of the attention projection (of ``d_model``), of ``fc`` (of ``d_ff``),
        of ``fc2`` (of ``d_model``) and LM-head rows (of ``vocab``) of every card.
    d_head : int
    """

    device: int
    devices: int
    heads: tuple[tuple[int, int], ...]
    proj: tuple[tuple[int, int], ...]
    fc: tuple[tuple[int, int], ...]
    fc2: tuple[tuple[int, int], ...]
    vocab: tuple[tuple[int, int], ...]
    d_head: int

    # -- this card's share -------------------------------------------------------------------
    @property
    def n_head(self) -> int:
        return self.heads[self.device][1]

    @property
    def head0(self) -> int:
        return self.heads[self.device][0]

    @property
    def d_attn(self) -> int:
        """Width of this card's attention output (its heads times ``d_head``)."""
        return self.n_head * self.d_head

    def parts(self, name: str) -> tuple[tuple[int, int], ...]:
        """Column parts of every card for a gathered split (``attn``, ``proj``, ``fc``, ``fc2``,
        ``vocab``), in elements of the gathered buffer's row."""
        if name == "attn":
            return tuple((h0 * self.d_head, n * self.d_head) for h0, n in self.heads)
        return getattr(self, name)

    def local(self, name: str) -> tuple[int, int]:
        """(first, count) of this card in ``parts(name)``."""
        return self.parts(name)[self.device]

    def widest(self, name: str) -> int:
        return max(n for _, n in self.parts(name))

    def aligned(self, name: str) -> bool:
        """Whether every card's part starts at ``d·w`` (``w`` the widest): where ``ALLGATHER``
        of equal ``w``-element chunks puts it (even splits, and :func:`split`'s uneven ones
        whose rest is on the last card)."""
        w = self.widest(name)
        return all(c0 == d * w for d, (c0, _) in enumerate(self.parts(name)))

    def to_dict(self) -> dict:
        return {"device": self.device, "devices": self.devices,
                **{k: [list(p) for p in getattr(self, k)]
                   for k in ("heads", "proj", "fc", "fc2", "vocab")}}


def shard(spec: ModelSpec, devices: int, device: int) -> Shard:
    """Card ``device``'s :class:`Shard` of ``spec`` on ``devices`` cards (module docstring)."""
    check_devices(spec, devices)
    if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < devices:
        raise CompileError(f"device must be an integer in 0..{devices - 1}, not {device!r}")
    return Shard(device, devices, split(spec.n_head, devices), split(spec.d_model, devices),
                 split(spec.d_ff, devices), split(spec.d_model, devices),
                 split(spec.vocab, devices), spec.d_head)


#: The split of each weight's output columns (by the weight region's name suffix).
_SPLIT_OF_WEIGHT = {"w_proj": "proj", "w_fc": "fc", "w_fc2": "fc2", "wte": "vocab"}


def partition_graph(graph: Graph, sh: Shard) -> Graph:
    """``graph`` as card ``sh`` computes it: every LINEAR / LM_HEAD with this card's output
    width ``n`` and the ``split`` whose slices are gathered after it, the LM head with its
    vocabulary slice (``row0``: the first row of the shared ``wte`` it reads; not gathered), the
    attention with its ``split``. One card: the graph unchanged."""
    if sh.devices == 1:
        return graph

    def part(op: Op) -> Op:
        if op.kind is OpKind.ATTENTION:
            return op.with_attrs(split="attn")
        if op.kind not in (OpKind.LINEAR, OpKind.LM_HEAD):
            return op
        key = op["weight"].rsplit(".", 1)[-1]
        if key == "w_qkv":
            return op.with_attrs(n=3 * sh.d_attn)
        name = _SPLIT_OF_WEIGHT[key]
        c0, n = sh.local(name)
        if name == "vocab":         # this card's logits stay here: the ring picks the best
            return op.with_attrs(n=n, row0=c0)
        return op.with_attrs(n=n, split=name)
    return graph.replace_ops(part)
