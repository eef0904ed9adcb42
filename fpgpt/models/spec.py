"""Model shapes: :class:`ModelSpec` and the GPT-2 presets.

A spec is only shapes; weights live in :class:`fpgpt.models.weights.GPT2Weights`. The compiler,
simulator and energy model size everything from a spec, so a preset can be simulated without its
weights (GPT-2 XL's 1.5 B parameters are never needed to time it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelError", "ModelSpec", "PRESETS", "model_names", "get_spec"]


class ModelError(ValueError):
    """A model, checkpoint, tokenizer or generation request that fpgpt cannot use."""


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(f"ModelSpec.{name} must be a positive integer, not {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """Shapes of a GPT-2-architecture decoder (pre-LayerNorm, learned positions, tied LM head).

    Parameters
    ----------
    name : str
        Preset name or a free label.
    n_layer, n_head, d_model, d_ff : int
        Blocks, attention heads, residual width and MLP hidden width. ``d_model`` must be a
        multiple of ``n_head``; any head count is allowed (GPT-2 XL keeps its 25 heads).
    vocab : int
        Vocabulary size (GPT-2: 50257; the shipped byte-level models: 257).
    n_ctx : int
        Maximum sequence length (rows of the position embedding).
    ln_eps : float
        LayerNorm epsilon (GPT-2: 1e-5).
    """

    name: str
    n_layer: int
    n_head: int
    d_model: int
    d_ff: int
    vocab: int
    n_ctx: int
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        for f in ("n_layer", "n_head", "d_model", "d_ff", "vocab", "n_ctx"):
            _check_positive(f, getattr(self, f))
        if self.d_model % self.n_head:
            raise ModelError(f"ModelSpec.d_model ({self.d_model}) must be a multiple of n_head "
                             f"({self.n_head}); pick a d_model divisible by the head count")
        if not (isinstance(self.ln_eps, (int, float)) and 0 < self.ln_eps < 1):
            raise ModelError(f"ModelSpec.ln_eps must be a number in (0, 1), not {self.ln_eps!r}")

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_head

    @property
    def layer_param_count(self) -> int:
        """Parameters of one block: two LayerNorms, QKV and output projections, the MLP."""
        d, f = self.d_model, self.d_ff
        return (2 * d                      # ln_1 gain + bias
                + d * 3 * d + 3 * d        # c_attn (Q, K, V)
                + d * d + d                # attn c_proj
                + 2 * d                    # ln_2
                + d * f + f                # mlp c_fc
                + f * d + d)               # mlp c_proj

    @property
    def param_count(self) -> int:
        """All parameters, counting the tied token embedding / LM head once.

        Includes ``wte`` and ``wpe`` (GPT-2 small: 124,439,808).
        """
        d = self.d_model
        return self.vocab * d + self.n_ctx * d + self.n_layer * self.layer_param_count + 2 * d

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        """Bytes to store every weight once, at ``dtype_bytes`` each.

        The token embedding ``wte`` is tied to the LM head and stored (counted) once; the LM head
        nevertheless re-reads all of it for every decoded token (see :meth:`weight_bytes_per_token`).
        """
        return self.param_count * dtype_bytes

    def weight_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """Weight bytes one decode step reads with no weight reuse across tokens.

        Every block weight and the final LayerNorm are read once; the LM head re-reads the whole
        tied ``wte`` matrix (``vocab x d_model``) every token, while the embedding look-up reads
        one row of ``wte`` and one of ``wpe``.
        """
        d = self.d_model
        words = self.n_layer * self.layer_param_count + 2 * d + self.vocab * d + 2 * d
        return words * dtype_bytes

    def flops_per_token(self, ctx_len: int) -> int:
        """Forward FLOPs (a multiply-add counts 2) to decode one token attending to ``ctx_len`` positions.

        Counts the matrix products only: the four weight matrices of every block, the attention
        scores ``q . k`` and the weighted sum of ``v`` over ``ctx_len`` cached positions, and the
        LM head (``vocab x d_model``). Element-wise work (LayerNorm, softmax, GELU, residuals)
        is O(d_model) per token and left out.
        """
        if not isinstance(ctx_len, int) or isinstance(ctx_len, bool) or not 1 <= ctx_len <= self.n_ctx:
            raise ModelError(f"ctx_len must be an integer in 1..{self.n_ctx} for model "
                             f"'{self.name}', not {ctx_len!r}")
        d, f = self.d_model, self.d_ff
        per_layer = 2 * (4 * d * d + 2 * d * f) + 2 * 2 * ctx_len * d
        return self.n_layer * per_layer + 2 * self.vocab * d


_GPT2_VOCAB = 50257
_BYTE_VOCAB = 257   # 256 byte values + <|endoftext|>


def _gpt2(name: str, n_layer: int, n_head: int, d: int) -> ModelSpec:
    return ModelSpec(name, n_layer, n_head, d, 4 * d, _GPT2_VOCAB, 1024)


PRESETS: dict[str, ModelSpec] = {
    s.name: s for s in (
        _gpt2("gpt2", 12, 12, 768),
        _gpt2("gpt2-medium", 24, 16, 1024),
        _gpt2("gpt2-large", 36, 20, 1280),
        _gpt2("gpt2-xl", 48, 25, 1600),
        # The models that ship in fpgpt/models/shipped/ (trained by scripts/train_tiny.py).
        ModelSpec("tiny", 4, 4, 128, 512, _BYTE_VOCAB, 256),
        ModelSpec("micro", 2, 2, 64, 256, _BYTE_VOCAB, 128),
    )
}


def model_names() -> list[str]:
    """Names accepted by :func:`get_spec`."""
    return list(PRESETS)


def get_spec(name: str) -> ModelSpec:
    """Return the preset named ``name``.

    Raises
    ------
    ModelError
        If ``name`` is not a preset; the message lists the known names.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(PRESETS)}") from None
