"""The ``fpgpt`` command, one module per command group (DESIGN.md: ``cli`` sits on top).

:mod:`fpgpt.cli.core` holds the group, the shared helpers (``_guard``, ``_emit_json``,
``_check_output``, ``UsageProblem``) and the first commands; every other module adds its
commands to :data:`main` when imported here.
"""

from __future__ import annotations

from .core import main
from . import multi  # noqa: F401,E402 - registers fpgpt scale (and the --devices paths)
from . import energy  # noqa: F401,E402 - registers fpgpt compare, gpu-bench, report
from . import sweep  # noqa: F401,E402 - registers fpgpt sweep, sweep-resources

__all__ = ["main"]
