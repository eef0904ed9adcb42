"""Numpy reference forward pass of GPT-2 with a KV cache: the numerics every other part is checked against.

Two modes:

``fp32``
    Everything in float32; agrees with Hugging Face ``GPT2LMHeadModel`` to ~1e-5.
``fp16``
    Weights, activations and the KV cache are *stored* in float16 between operations, while each
    operation (matrix product, LayerNorm, softmax, GELU, residual add) computes in float32 from
    those values and rounds its result to float16, the way the accelerator keeps FP16 in HBM and
    on-chip buffers and computes in FP32 (docs/numerics.md). It is not bit-exact with the
    accelerator: numpy's float32 dot products sum in a different order.
"""

from __future__ import annotations

import math

import numpy as np

from .spec import ModelError
from .weights import GPT2Weights

__all__ = ["Reference", "gelu_new", "layer_norm", "softmax"]

_MODES = ("fp32", "fp16")


def gelu_new(x: np.ndarray) -> np.ndarray:
    """GPT-2's GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    c = np.float32(math.sqrt(2.0 / math.pi))
    return (0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))).astype(np.float32)


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis with biased variance, as torch computes it."""
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + np.float32(eps)) * g + b).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; -inf entries (masked positions) get probability 0."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class Reference:
    """GPT-2 forward pass with a KV cache, in numpy.

    Parameters
    ----------
    weights : GPT2Weights
    dtype : {"fp32", "fp16"}
        Storage precision between operations (see the module docstring).

    Examples
    --------
    >>> ref = Reference(load_model("tiny"))                      # doctest: +SKIP
    >>> ref.generate(list(b"The assert statement"), 40)           # doctest: +SKIP
    """

    def __init__(self, weights: GPT2Weights, dtype: str = "fp32") -> None:
        if dtype not in _MODES:
            raise ModelError(f"dtype must be one of {', '.join(_MODES)}, not {dtype!r}")
        self.weights = weights
        self.spec = weights.spec
        self.dtype = dtype
        # fp16 weights are kept as float32 arrays holding float16 values: the same numbers the
        # accelerator reads, without converting on every use.
        self._w = {k: self._round(v) for k, v in weights.tensors.items()}
        s = self.spec
        self._k = np.zeros((s.n_layer, s.n_head, s.n_ctx, s.d_head), np.float32)
        self._v = np.zeros_like(self._k)
        self.pos = 0

    def _round(self, x: np.ndarray) -> np.ndarray:
        if self.dtype == "fp16":
            return x.astype(np.float16).astype(np.float32)
        return x.astype(np.float32, copy=False)

    def reset(self) -> None:
        """Empty the KV cache."""
        self.pos = 0

    def _check_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise ModelError(f"token ids must be a non-empty 1-D sequence of integers, not {ids!r:.60}")
        bad = arr[(arr < 0) | (arr >= self.spec.vocab)]
        if bad.size:
            raise ModelError(f"token id {int(bad[0])} is outside the vocabulary 0..{self.spec.vocab - 1} "
                             f"of model '{self.spec.name}'")
        if self.pos + arr.size > self.spec.n_ctx:
            raise ModelError(f"{self.pos} cached + {arr.size} new tokens exceed the context of "
                             f"model '{self.spec.name}' (n_ctx {self.spec.n_ctx}); call reset() or "
                             f"shorten the input")
        return arr.astype(np.int64)

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        """Run ``ids`` at positions pos..pos+n-1, append to the cache, return logits [n, vocab]."""
        s, w, r = self.spec, self._w, self._round
        n, p0 = ids.size, self.pos
        H, dh = s.n_head, s.d_head
        x = r(w["wte"][ids] + w["wpe"][p0:p0 + n])
        T = p0 + n
        # Query i sits at position p0+i and may attend to keys 0..p0+i.
        mask = np.arange(T)[None, :] > (p0 + np.arange(n))[:, None]
        scale = np.float32(1.0 / math.sqrt(dh))
        for i in range(s.n_layer):
            pre = f"h.{i}."
            a = r(layer_norm(x, w[pre + "ln1_g"], w[pre + "ln1_b"], s.ln_eps))
            qkv = r(a @ w[pre + "w_qkv"] + w[pre + "b_qkv"])
            q, k, v = (qkv[:, j * s.d_model:(j + 1) * s.d_model].reshape(n, H, dh).transpose(1, 0, 2)
                       for j in range(3))
            self._k[i, :, p0:T] = k
            self._v[i, :, p0:T] = v
            scores = r((q @ self._k[i, :, :T].transpose(0, 2, 1)) * scale)     # [H, n, T]
            scores = np.where(mask[None], np.float32(-np.inf), scores)
            probs = r(softmax(scores))
            ctx = r(probs @ self._v[i, :, :T]).transpose(1, 0, 2).reshape(n, s.d_model)
            x = r(x + r(ctx @ w[pre + "w_proj"] + w[pre + "b_proj"]))
            a = r(layer_norm(x, w[pre + "ln2_g"], w[pre + "ln2_b"], s.ln_eps))
            hidden = r(gelu_new(r(a @ w[pre + "w_fc"] + w[pre + "b_fc"])))
            x = r(x + r(hidden @ w[pre + "w_fc2"] + w[pre + "b_fc2"]))
        x = r(layer_norm(x, w["lnf_g"], w["lnf_b"], s.ln_eps))
        self.pos = T
        return r(x @ w["wte"].T)

    def prefill(self, ids) -> np.ndarray:
        """Empty the cache, run the prompt ``ids`` and return the logits of every position, [n, vocab]."""
        self.reset()
        return self._forward(self._check_ids(ids))

    def step(self, token: int) -> np.ndarray:
        """Run one token after the cached ones and return its logits, [vocab]."""
        return self._forward(self._check_ids([token]))[0]

    def generate(self, prompt_ids, max_new_tokens: int, *, top_k: int | None = None,
                 temperature: float = 1.0, seed: int | None = None, stop_at_eot: bool = False,
                 eot_id: int | None = None) -> list[int]:
        """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens and return the new tokens.

        Parameters
        ----------
        prompt_ids : sequence of int
        max_new_tokens : int
            ``len(prompt_ids) + max_new_tokens`` must not exceed ``n_ctx``.
        top_k : int, optional
            None: greedy (arg-max, lowest id on ties). Otherwise sample from the ``top_k`` most
            likely tokens, reproducibly for a given ``seed``.
        temperature : float
            Divides the logits before top-k sampling (> 0).
        seed : int, optional
            Seed of the sampling generator.
        stop_at_eot : bool
            Stop after emitting ``eot_id`` (which is included in the result).
        eot_id : int, optional
            End-of-text id; default ``vocab - 1`` (50256 for GPT-2, 256 for the byte models).
        """
        s = self.spec
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ModelError(f"max_new_tokens must be an integer >= 0, not {max_new_tokens!r}")
        n_prompt = len(prompt_ids)
        if n_prompt + max_new_tokens > s.n_ctx:
            raise ModelError(f"prompt of {n_prompt} tokens + {max_new_tokens} new tokens = "
                             f"{n_prompt + max_new_tokens} exceeds the context of model "
                             f"'{s.name}' (n_ctx {s.n_ctx}); shorten the prompt or ask for fewer tokens")
        if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= s.vocab):
            raise ModelError(f"top_k must be None or an integer in 1..{s.vocab}, not {top_k!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ModelError(f"temperature must be a number > 0, not {temperature!r}")
        eot = s.vocab - 1 if eot_id is None else eot_id
        rng = np.random.default_rng(seed)
        out: list[int] = []
        if max_new_tokens == 0:
            return out
        logits = self.prefill(prompt_ids)[-1]
        while True:
            if top_k is None:
                tok = int(np.argmax(logits))
            else:
                z = logits.astype(np.float64) / temperature
                cand = np.argsort(-z, kind="stable")[:top_k]
                p = np.exp(z[cand] - z[cand[0]])
                tok = int(cand[rng.choice(top_k, p=p / p.sum())])
            out.append(tok)
            if len(out) == max_new_tokens or (stop_at_eot and tok == eot):
                return out
            logits = self.step(tok)
