"""Pass 1, lower: a GPT-2 :class:`~fpgpt.models.ModelSpec` to the op IR (:mod:`.ir`)."""

from __future__ import annotations

from fpgpt.models import ModelSpec

from .ir import Graph, Op, OpKind

__all__ = ["lower"]


def lower(spec: ModelSpec) -> Graph:
    """The GPT-2 forward pass (pre-LayerNorm blocks, tied LM head) as IR ops.

    Buffers: ``x`` residual [rows, d], ``h`` LayerNorm / projection output [rows, d], ``qkv``
    [rows, 3d], ``attn`` attention / MLP output [rows, d], ``ffn`` [rows, d_ff], ``logits`` [vocab].
    Weight names are HBM region names of :mod:`.layout`; LN / bias names index the layer's vector
    block (``layerI.vec``).
    """
    d, f = spec.d_model, spec.d_ff
    body: list[Op] = [Op(OpKind.EMBED, "embed", attrs={"dst": "x"})]
    for i in range(spec.n_layer):
        p = f"layer{i}"
        body += [
            Op(OpKind.LOAD_PARAMS, f"{p}.params", i, {"region": f"{p}.vec"}),
            Op(OpKind.LAYERNORM, f"{p}.ln1", i, {"src": "x", "dst": "h", "gamma": "ln1_g", "beta": "ln1_b"}),
            Op(OpKind.LINEAR, f"{p}.qkv", i, {"src": "h", "dst": "qkv", "weight": f"{p}.w_qkv",
                                              "bias": "b_qkv", "k": d, "n": 3 * d}),
            Op(OpKind.ATTENTION, f"{p}.attn", i, {"qkv": "qkv", "dst": "attn",
                                                  "k_cache": f"{p}.k_cache", "v_cache": f"{p}.v_cache"}),
            Op(OpKind.LINEAR, f"{p}.proj", i, {"src": "attn", "dst": "h", "weight": f"{p}.w_proj",
                                               "bias": "b_proj", "k": d, "n": d}),
            Op(OpKind.ADD, f"{p}.res1", i, {"dst": "x", "src": "h"}),
            Op(OpKind.LAYERNORM, f"{p}.ln2", i, {"src": "x", "dst": "h", "gamma": "ln2_g", "beta": "ln2_b"}),
            Op(OpKind.LINEAR, f"{p}.fc", i, {"src": "h", "dst": "ffn", "weight": f"{p}.w_fc",
                                             "bias": "b_fc", "k": d, "n": f}),
            Op(OpKind.GELU, f"{p}.gelu", i, {"buf": "ffn"}),
            Op(OpKind.LINEAR, f"{p}.fc2", i, {"src": "ffn", "dst": "attn", "weight": f"{p}.w_fc2",
                                              "bias": "b_fc2", "k": f, "n": d}),
            Op(OpKind.ADD, f"{p}.res2", i, {"dst": "x", "src": "attn"}),
        ]
    head = (
        Op(OpKind.LOAD_PARAMS, "lnf.params", attrs={"region": "lnf"}),
        Op(OpKind.LAYERNORM, "ln_f", attrs={"src": "x", "dst": "h", "gamma": "lnf_g",
                                            "beta": "lnf_b", "last_row": True}),
        Op(OpKind.LM_HEAD, "lm_head", attrs={"src": "h", "dst": "logits", "weight": "wte",
                                             "k": d, "n": spec.vocab}),
        Op(OpKind.ARGMAX, "argmax", attrs={"src": "logits"}),
    )
    return Graph(tuple(body), head)
