"""fpgpt.compiler: GPT-2 (shapes or weights) + HardwareConfig -> Program.

>>> from fpgpt.compiler import compile_model
>>> from fpgpt.config import load_preset
>>> prog = compile_model("gpt2-medium", load_preset("u280"), prompt_len=128)   # doctest: +SKIP

The passes, in order, are listed in :mod:`fpgpt.compiler.pipeline`; docs/compiler.md explains them.
"""

from __future__ import annotations

from fpgpt.config import HardwareConfig
from fpgpt.isa import Program
from fpgpt.models import GPT2Weights, ModelSpec, get_spec

from .emit import COMPILER_VERSION
from .errors import CompileError
from .pipeline import PASSES, run_pipeline

__all__ = ["compile_model", "CompileError", "PASSES", "COMPILER_VERSION"]


def compile_model(model: "ModelSpec | GPT2Weights | str", hw: HardwareConfig, *, prompt_len: int,
                  verify: bool = True) -> Program:
    """Compile GPT-2 for one device.

    Parameters
    ----------
    model : ModelSpec, GPT2Weights or str
        Shapes only (a timing-only program, no memory image), weights (the program carries the
        HBM image), or a preset name (:func:`fpgpt.models.get_spec`).
    hw : HardwareConfig
    prompt_len : int
        Prompt length the ``prefill`` stream is compiled for (1 .. n_ctx - 1).
    verify : bool
        Run the Program verifier on every stream before and after scheduling.

    Returns
    -------
    Program
        Streams ``prefill`` and ``decode`` (docs/execution.md host protocol), regions, segments.

    Raises
    ------
    CompileError
        The model does not fit HBM or the scratchpad, or the request is invalid.
    """
    if isinstance(model, str):
        model = get_spec(model)
    if isinstance(model, GPT2Weights):
        return run_pipeline(model.spec, hw, prompt_len=prompt_len, weights=model, verify=verify)
    if isinstance(model, ModelSpec):
        return run_pipeline(model, hw, prompt_len=prompt_len, verify=verify)
    raise CompileError(f"model must be a ModelSpec, GPT2Weights or preset name, not "
                       f"{type(model).__name__}")
