"""The trained models that ship with fpgpt, and :func:`load_model`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .spec import PRESETS, ModelError, ModelSpec
from .weights import GPT2Weights, load_checkpoint, random_weights

__all__ = ["SHIPPED_MODELS", "shipped_model_path", "load_model"]

# Trained by scripts/train_tiny.py; each folder's README.md records its run.
SHIPPED_MODELS = ("tiny", "micro")


def shipped_model_path(name: str = "tiny") -> Path:
    """Folder of the shipped model ``name`` (``"tiny"`` or ``"micro"``)."""
    if name not in SHIPPED_MODELS:
        raise ModelError(f"no shipped model {name!r}; shipped models: {', '.join(SHIPPED_MODELS)}")
    path = Path(str(resources.files("fpgpt.models") / "shipped" / name))
    if not (path / "model.safetensors").exists():
        raise ModelError(f"{path}: shipped model '{name}' is missing; regenerate it with "
                         f"python scripts/train_tiny.py --size {name}")
    return path


def load_model(spec_or_path: str | Path | ModelSpec, *, seed: int = 0) -> GPT2Weights:
    """Weights of a shipped model, a local checkpoint, or random weights for a spec.

    Parameters
    ----------
    spec_or_path : str, Path or ModelSpec
        ``"tiny"`` / ``"micro"``: the shipped trained models. A folder path: a Hugging Face
        GPT-2 checkpoint (see :func:`load_checkpoint`). A :class:`ModelSpec`: random weights of
        that shape (``seed``), for compiling and simulating presets whose weights are not here.
    seed : int
        Seed for the random weights of a ``ModelSpec``.

    Raises
    ------
    ModelError
        For a name that is neither shipped nor an existing folder.
    """
    if isinstance(spec_or_path, ModelSpec):
        return random_weights(spec_or_path, seed)
    if isinstance(spec_or_path, str) and spec_or_path in SHIPPED_MODELS:
        return load_checkpoint(shipped_model_path(spec_or_path))
    path = Path(spec_or_path)
    if path.is_dir():
        return load_checkpoint(path)
    if isinstance(spec_or_path, str) and spec_or_path in PRESETS:
        raise ModelError(f"model {spec_or_path!r} has no weights in fpgpt (they cannot be downloaded "
                         f"here); pass a local checkpoint folder, or get_spec({spec_or_path!r}) for "
                         f"its shapes")
    raise ModelError(f"{spec_or_path}: not a shipped model ({', '.join(SHIPPED_MODELS)}) nor a "
                     f"checkpoint folder")
