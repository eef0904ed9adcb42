"""The compiler's error type."""

from __future__ import annotations

__all__ = ["CompileError"]


class CompileError(ValueError):
    """A model / hardware / request combination the compiler cannot map; the message names the
    value that does not fit and what to change."""
