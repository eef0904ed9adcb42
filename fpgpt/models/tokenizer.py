"""Tokenizers: the byte-level one of the shipped models and a user's local GPT-2 BPE files.

A checkpoint folder says which tokenizer it uses:

- ``fpgpt_tokenizer.json`` with ``{"type": "byte"}``: :class:`ByteTokenizer` (the shipped models);
- ``tokenizer.json`` (Hugging Face ``tokenizers`` format), or ``vocab.json`` + ``merges.txt``
  (GPT-2's byte-level BPE): :class:`HFTokenizer`;
- none of these: an ids-only checkpoint, :func:`load_tokenizer` returns None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

from .spec import ModelError

__all__ = ["Tokenizer", "ByteTokenizer", "HFTokenizer", "load_tokenizer", "MARKER_FILE"]

MARKER_FILE = "fpgpt_tokenizer.json"
EOT_TEXT = "<|endoftext|>"


@runtime_checkable
class Tokenizer(Protocol):
    """What fpgpt needs from a tokenizer."""

    eot_id: int | None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``."""
        ...


class ByteTokenizer:
    """Ids 0..255 are the UTF-8 bytes of the text; 256 is ``<|endoftext|>``.

    ``encode`` does not parse the literal string ``"<|endoftext|>"`` (it is just bytes);
    ``decode`` writes it for id 256 and replaces invalid UTF-8 with U+FFFD.
    """

    eot_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        parts: list[str] = []
        buf = bytearray()
        for i in ids:
            i = int(i)
            if 0 <= i < 256:
                buf.append(i)
            elif i == self.eot_id:
                parts.append(buf.decode("utf-8", errors="replace"))
                parts.append(EOT_TEXT)
                buf.clear()
            else:
                raise ModelError(f"token id {i} is outside the byte vocabulary 0..256")
        parts.append(buf.decode("utf-8", errors="replace"))
        return "".join(parts)

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer read from local files.

    Parameters
    ----------
    folder : str or Path
        Holds ``tokenizer.json``, or ``vocab.json`` and ``merges.txt`` (GPT-2 byte-level BPE).
    """

    def __init__(self, folder: str | Path) -> None:
        import tokenizers

        folder = Path(folder)
        self.folder = folder
        try:
            if (folder / "tokenizer.json").exists():
                self._tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
            elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
                self._tok = tokenizers.ByteLevelBPETokenizer(
                    str(folder / "vocab.json"), str(folder / "merges.txt"))
            else:
                raise ModelError(f"{folder}: has no tokenizer.json or vocab.json + merges.txt")
        except ModelError:
            raise
        except Exception as e:   # tokenizers raises bare Exception for malformed files
            raise ModelError(f"{folder}: cannot read the tokenizer files ({str(e).splitlines()[0]})") from None
        self.eot_id = self._tok.token_to_id(EOT_TEXT)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.folder)!r})"


def load_tokenizer(folder: str | Path) -> Tokenizer | None:
    """The tokenizer a checkpoint folder declares, or None for an ids-only checkpoint.

    Raises
    ------
    ModelError
        If the marker file or the tokenizer files are malformed.
    """
    folder = Path(folder)
    marker = folder / MARKER_FILE
    if marker.exists():
        try:
            kind = json.loads(marker.read_text()).get("type")
        except (json.JSONDecodeError, AttributeError) as e:
            raise ModelError(f"{marker}: is not a JSON object ({e})") from None
        if kind != "byte":
            raise ModelError(f"{marker}: unknown tokenizer type {kind!r}; fpgpt knows 'byte'")
        return ByteTokenizer()
    if (folder / "tokenizer.json").exists() or (
            (folder / "vocab.json").exists() and (folder / "merges.txt").exists()):
        return HFTokenizer(folder)
    return None
