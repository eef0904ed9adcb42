"""fpgpt.models: GPT-2 shapes, checkpoints, tokenizers, the numpy reference and the shipped models.

>>> from fpgpt.models import load_model, load_tokenizer, shipped_model_path, Reference
>>> tok = load_tokenizer(shipped_model_path("tiny"))
>>> ref = Reference(load_model("tiny"))
>>> print(tok.decode(ref.generate(tok.encode("The assert statement"), 40)))   # doctest: +SKIP
"""

from .reference import Reference, gelu_new, layer_norm, softmax
from .shipped import SHIPPED_MODELS, load_model, shipped_model_path
from .spec import PRESETS, ModelError, ModelSpec, get_spec, model_names
from .tokenizer import ByteTokenizer, HFTokenizer, Tokenizer, load_tokenizer
from .weights import (GPT2Weights, expected_shapes, load_checkpoint, random_weights,
                      save_checkpoint, spec_from_hf_config)

__all__ = [
    "ModelError", "ModelSpec", "PRESETS", "get_spec", "model_names",
    "GPT2Weights", "expected_shapes", "spec_from_hf_config", "load_checkpoint", "save_checkpoint",
    "random_weights",
    "Tokenizer", "ByteTokenizer", "HFTokenizer", "load_tokenizer",
    "Reference", "gelu_new", "layer_norm", "softmax",
    "SHIPPED_MODELS", "shipped_model_path", "load_model",
]
