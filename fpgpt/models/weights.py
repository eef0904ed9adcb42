"""GPT-2 weights in numpy: loading and saving Hugging Face checkpoints, random weights for tests.

Tensor names are short and layout-explicit. Matrices keep the Hugging Face ``Conv1D`` layout,
``[in, out]``, so a layer computes ``x @ W + b``:

=============  ===============  ===========================
fpgpt name     shape            Hugging Face name
=============  ===============  ===========================
wte            [vocab, d]       wte.weight (tied LM head)
wpe            [n_ctx, d]       wpe.weight
h.I.ln1_g/b    [d]              h.I.ln_1.weight / bias
h.I.w_qkv      [d, 3d]          h.I.attn.c_attn.weight
h.I.b_qkv      [3d]             h.I.attn.c_attn.bias
h.I.w_proj     [d, d]           h.I.attn.c_proj.weight
h.I.b_proj     [d]              h.I.attn.c_proj.bias
h.I.ln2_g/b    [d]              h.I.ln_2.weight / bias
h.I.w_fc       [d, d_ff]        h.I.mlp.c_fc.weight
h.I.b_fc       [d_ff]           h.I.mlp.c_fc.bias
h.I.w_fc2      [d_ff, d]        h.I.mlp.c_proj.weight
h.I.b_fc2      [d]              h.I.mlp.c_proj.bias
lnf_g/b        [d]              ln_f.weight / bias
=============  ===============  ===========================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .safetensors_io import read_safetensors
from .spec import ModelError, ModelSpec

__all__ = ["GPT2Weights", "LAYER_NAMES", "expected_shapes", "spec_from_hf_config",
           "load_checkpoint", "save_checkpoint", "random_weights"]

LAYER_NAMES = ("ln1_g", "ln1_b", "w_qkv", "b_qkv", "w_proj", "b_proj",
               "ln2_g", "ln2_b", "w_fc", "b_fc", "w_fc2", "b_fc2")
_HF_LAYER = dict(zip(LAYER_NAMES, (
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
    "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias")))
_HF_TOP = {"wte": "wte.weight", "wpe": "wpe.weight", "lnf_g": "ln_f.weight", "lnf_b": "ln_f.bias"}


def expected_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """fpgpt tensor name -> shape for every weight of ``spec``, in checkpoint order."""
    d, f = spec.d_model, spec.d_ff
    layer = dict(zip(LAYER_NAMES, ((d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,),
                                   (d,), (d,), (d, f), (f,), (f, d), (d,))))
    shapes = {"wte": (spec.vocab, d), "wpe": (spec.n_ctx, d)}
    for i in range(spec.n_layer):
        shapes.update({f"h.{i}.{k}": s for k, s in layer.items()})
    shapes.update({"lnf_g": (d,), "lnf_b": (d,)})
    return shapes


def _hf_name(name: str) -> str:
    if name.startswith("h."):
        _, i, short = name.split(".", 2)
        return f"h.{i}.{_HF_LAYER[short]}"
    return _HF_TOP[name]


@dataclass(frozen=True)
class GPT2Weights:
    """A :class:`ModelSpec` and its float32 weights, keyed by the names in the module docstring.

    Construction checks that every tensor is present with the spec's shape.

    Attributes
    ----------
    spec : ModelSpec
    tensors : dict of str to numpy.ndarray
        float32 arrays.
    source : Path or None
        The checkpoint folder these came from (None for generated weights).
    """

    spec: ModelSpec
    tensors: dict[str, np.ndarray]
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        want = expected_shapes(self.spec)
        missing = [k for k in want if k not in self.tensors]
        if missing:
            raise ModelError(f"{where}missing weights {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''} for model '{self.spec.name}'")
        for k, shape in want.items():
            a = self.tensors[k]
            if tuple(a.shape) != shape:
                raise ModelError(f"{where}weight {k} has shape {tuple(a.shape)}, expected {shape} "
                                 f"for model '{self.spec.name}' ({self.spec.n_layer} layers, "
                                 f"d_model {self.spec.d_model})")
        object.__setattr__(self, "tensors",
                           {k: np.ascontiguousarray(self.tensors[k], np.float32) for k in want})

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def layer(self, i: int) -> dict[str, np.ndarray]:
        """Weights of block ``i`` under their short names (``w_qkv``, ``ln1_g`` ...)."""
        if not 0 <= i < self.spec.n_layer:
            raise ModelError(f"layer {i} out of range 0..{self.spec.n_layer - 1}")
        return {k: self.tensors[f"h.{i}.{k}"] for k in LAYER_NAMES}


def spec_from_hf_config(config: dict, name: str = "checkpoint") -> ModelSpec:
    """Build a :class:`ModelSpec` from the dict of a Hugging Face GPT-2 ``config.json``."""
    model_type = config.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ModelError(f"{name}: config.json has model_type {model_type!r}; fpgpt runs GPT-2 "
                         f"checkpoints (model_type 'gpt2')")
    act = config.get("activation_function", "gelu_new")
    if act != "gelu_new":
        raise ModelError(f"{name}: config.json has activation_function {act!r}; fpgpt implements "
                         f"GPT-2's 'gelu_new' (tanh approximation) only")
    try:
        d = config["n_embd"]
        return ModelSpec(name=name, n_layer=config["n_layer"], n_head=config["n_head"], d_model=d,
                         d_ff=config.get("n_inner") or 4 * d, vocab=config["vocab_size"],
                         n_ctx=config.get("n_positions", config.get("n_ctx")),
                         ln_eps=config.get("layer_norm_epsilon", 1e-5))
    except KeyError as e:
        raise ModelError(f"{name}: config.json lacks {e.args[0]!r}; expected a Hugging Face "
                         f"GPT-2 config") from None


def _read_tensors(folder: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.exists():
        return read_safetensors(single, wanted)
    if index.exists():   # sharded checkpoint: weight_map names the shard of each tensor
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelError(f"{folder}: {index.name} is not a valid shard index ({e})") from None
        out: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            out.update(read_safetensors(folder / shard, wanted))
        return out
    hint = (" (found pytorch_model.bin: re-save it with save_pretrained(folder, "
            "safe_serialization=True))" if (folder / "pytorch_model.bin").exists() else "")
    raise ModelError(f"{folder}: has no model.safetensors{hint}")


def load_checkpoint(path: str | Path) -> GPT2Weights:
    """Load a local Hugging Face GPT-2 checkpoint folder (config.json + model.safetensors).

    Tensor names may carry the ``transformer.`` prefix of ``GPT2LMHeadModel`` or not (``GPT2Model``
    and the original OpenAI conversions). A separate ``lm_head.weight`` is accepted when it equals
    ``wte`` (GPT-2 ties them) and used as ``wte`` when that is absent. Causal-mask buffers
    (``attn.bias``, ``attn.masked_bias``) are ignored.

    Raises
    ------
    ModelError
        On a missing folder, config.json or weights file, a corrupt file, missing tensors or
        shapes that disagree with config.json.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such checkpoint folder")
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise ModelError(f"{folder}: has no config.json; expected a Hugging Face GPT-2 "
                         f"checkpoint folder")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{folder}: config.json is not valid JSON ({e})") from None
    spec = spec_from_hf_config(config, name=folder.name)
    names = {k: _hf_name(k) for k in expected_shapes(spec)}
    wanted = {p + n for n in names.values() for p in ("", "transformer.")} | {"lm_head.weight"}
    raw = _read_tensors(folder, wanted)
    tensors: dict[str, np.ndarray] = {}
    for ours, hf in names.items():
        for candidate in (hf, "transformer." + hf):
            if candidate in raw:
                tensors[ours] = raw[candidate]
                break
    head = raw.get("lm_head.weight")
    if head is not None:
        if "wte" not in tensors:
            tensors["wte"] = head
        elif head.shape != tensors["wte"].shape or not np.array_equal(head, tensors["wte"]):
            raise ModelError(f"{folder}: lm_head.weight differs from wte.weight; fpgpt runs GPT-2 "
                             f"with its LM head tied to the token embedding")
    missing = [hf for ours, hf in names.items() if ours not in tensors]
    if missing:
        raise ModelError(f"{folder}: model.safetensors lacks {len(missing)} GPT-2 tensor(s): "
                         f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    return GPT2Weights(spec, tensors, source=folder)


def save_checkpoint(weights: GPT2Weights, folder: str | Path, *, dtype: str = "float32",
                    overwrite: bool = False) -> Path:
    """Write ``weights`` as a Hugging Face GPT-2 checkpoint that ``GPT2LMHeadModel.from_pretrained`` loads.

    Parameters
    ----------
    weights : GPT2Weights
    folder : str or Path
        Created if needed.
    dtype : {"float32", "float16"}
        Storage type of the tensors.
    overwrite : bool
        Replace an existing config.json / model.safetensors in ``folder``; refused by default.

    Returns
    -------
    Path
        The folder.
    """
    from safetensors.numpy import save_file

    if dtype not in ("float32", "float16"):
        raise ModelError(f"dtype must be 'float32' or 'float16', not {dtype!r}")
    folder = Path(folder)
    existing = [p for p in (folder / "config.json", folder / "model.safetensors") if p.exists()]
    if existing and not overwrite:
        raise ModelError(f"{existing[0]} already exists; pass overwrite=True or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    s = weights.spec
    config = {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": s.vocab, "n_positions": s.n_ctx, "n_ctx": s.n_ctx, "n_embd": s.d_model,
        "n_layer": s.n_layer, "n_head": s.n_head, "n_inner": s.d_ff,
        "activation_function": "gelu_new", "layer_norm_epsilon": s.ln_eps,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": True,
        "bos_token_id": s.vocab - 1, "eos_token_id": s.vocab - 1, "torch_dtype": dtype,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {"transformer." + _hf_name(k): np.ascontiguousarray(v.astype(dtype))
               for k, v in weights.tensors.items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def random_weights(spec: ModelSpec, seed: int = 0, *, std: float = 0.02) -> GPT2Weights:
    """Random weights with GPT-2's initial scale; biases and LayerNorm parameters are non-trivial
    (so that tests exercise every term), matrices are N(0, ``std``)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for k, shape in expected_shapes(spec).items():
        short = k.rsplit(".", 1)[-1]
        if short.endswith("_g"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif short.startswith("b_") or short.endswith("_b"):
            a = 0.02 * rng.standard_normal(shape)
        else:
            a = std * rng.standard_normal(shape)
        tensors[k] = a.astype(np.float32)
    return GPT2Weights(spec, tensors)
