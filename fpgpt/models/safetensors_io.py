"""Read safetensors files into numpy, with one-line errors for damaged files.

The format (https://huggingface.co/docs/safetensors) is an 8-byte little-endian header length, a
JSON header mapping tensor names to dtype, shape and byte offsets, then the raw data. We parse it
ourselves rather than through ``safetensors.numpy`` so that BF16 checkpoints load too (numpy has no
bfloat16) and so that each kind of damage gets its own message. Writing goes through the
``safetensors`` library.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .spec import ModelError

__all__ = ["read_safetensors"]

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),   # widened to float32 below
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024   # the format's own limit


def _bad(path: Path, why: str) -> ModelError:
    return ModelError(f"{path.parent}: {path.name} is not a valid safetensors file ({why})")


def read_safetensors(path: Path, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Return the tensors of a safetensors file as float32 arrays (integer tensors unchanged).

    Parameters
    ----------
    path : Path
        The ``.safetensors`` file.
    names : set of str, optional
        Read only these tensors (others are skipped without being read).

    Raises
    ------
    ModelError
        ``"<folder>: <file> is not a valid safetensors file (<reason>)"`` for a truncated file, a
        header that is not JSON, an unknown dtype or offsets outside the file.
    """
    path = Path(path)
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    except ValueError:        # numpy cannot map an empty file
        raise _bad(path, "file is empty") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror})") from None
    if raw.size < 8:
        raise _bad(path, f"file is {raw.size} bytes, shorter than the 8-byte header length")
    n = int(np.frombuffer(raw[:8].tobytes(), "<u8")[0])
    if n > _MAX_HEADER or 8 + n > raw.size:
        raise _bad(path, f"header length {n} does not fit in a {raw.size}-byte file")
    try:
        header = json.loads(raw[8:8 + n].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if names is not None and name not in names:
            continue
        try:
            dtype_name, shape, (lo, hi) = info["dtype"], list(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise _bad(path, f"tensor {name!r} has a malformed header entry") from None
        if dtype_name not in _DTYPES:
            raise _bad(path, f"tensor {name!r} has unsupported dtype {dtype_name!r}")
        dtype = _DTYPES[dtype_name]
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= lo <= hi <= data.size) or hi - lo != count * dtype.itemsize:
            raise _bad(path, f"tensor {name!r} bytes {lo}..{hi} do not match shape {shape} "
                             f"{dtype_name} within {data.size} data bytes (truncated?)")
        arr = np.frombuffer(data[lo:hi].tobytes(), dtype).reshape(shape)
        if dtype_name == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        out[name] = arr
    return out
