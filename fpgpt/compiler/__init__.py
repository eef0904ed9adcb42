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
from .partition import check_devices
from .pipeline import PASSES, run_pipeline

__all__ = ["compile_model", "compile_devices", "CompileError", "PASSES", "COMPILER_VERSION"]


def _spec_and_weights(model) -> tuple[ModelSpec, GPT2Weights | None]:
    if isinstance(model, str):
        model = get_spec(model)
    if isinstance(model, GPT2Weights):
        return model.spec, model
    if isinstance(model, ModelSpec):
        return model, None
    raise CompileError(f"model must be a ModelSpec, GPT2Weights or preset name, not "
                       f"{type(model).__name__}")


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
    spec, weights = _spec_and_weights(model)
    if hw.devices != 1:
        raise CompileError(f"hw.devices = {hw.devices}: compile_model maps a model onto one "
                           f"device; use compile_devices for a ring of cards")
    return run_pipeline(spec, hw, prompt_len=prompt_len, weights=weights, verify=verify)


def compile_devices(model: "ModelSpec | GPT2Weights | str", hw: HardwareConfig, *,
                    prompt_len: int, devices: int | None = None,
                    verify: bool = True) -> list[Program]:
    """Compile GPT-2 for a ring of cards (docs/multi-device.md): one Program per card.

    Parameters
    ----------
    model, prompt_len, verify
        As for :func:`compile_model`.
    hw : HardwareConfig
        One card's design (every card is the same); its ``[link]`` section is the ring's.
    devices : int, optional
        Cards in the ring (default ``hw.devices``); at least 1, at most the model's heads.

    Returns
    -------
    list of Program
        Card ``d``'s Program at index ``d``: its share of the weights and KV cache in its HBM
        image, its streams (with the NET instructions that gather the slices), ``meta["device"]``,
        ``meta["devices"]``, ``meta["partition"]`` and the config with ``devices`` set. One card:
        ``[compile_model(...)]``, bit for bit.

    Raises
    ------
    CompileError
        Bad device count (below 1, above the head count), a card's share does not fit, or any
        :func:`compile_model` error.
    """
    spec, weights = _spec_and_weights(model)
    n = check_devices(spec, hw.devices if devices is None else devices)
    if n > 1 and hw.link.count == 0:
        raise CompileError(f"devices = {n} needs a ring, but {hw.name!r} has no links "
                           f"(link.count = 0); use a config with link.count = 2")
    if n > 1 and hw.link.count < 2:
        raise CompileError(f"devices = {n}: a ring needs two links per card (both neighbours), "
                           f"but {hw.name!r} has link.count = {hw.link.count}")
    hw_n = hw.replace(devices=n) if hw.devices != n else hw
    out = []
    for d in range(n):
        p = run_pipeline(spec, hw_n, prompt_len=prompt_len, weights=weights, verify=verify,
                         device=d)
        p.meta["device"], p.meta["devices"] = d, n
        out.append(p)
    return out
