"""Shared helpers of the RTL tests: build folders and the module path of cocotb test modules.

Verilator builds go to ``build/rtl/<name>`` in the checkout (git-ignored), one folder per design
and parameter set, so that an unchanged design is not rebuilt (Verilator skips identical
inputs) and concurrent pytest runs that rotate /tmp/pytest-of-* cannot delete a build mid-way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

if str(HERE) not in sys.path:       # fpref and the cocotb modules import each other flatly
    sys.path.insert(0, str(HERE))


@pytest.fixture
def quiet_unused():
    """Collects, with UnusedElaboratable silenced, the components that constructor-check tests
    build half-way (Amaranth would warn about them later, attributed to another test)."""
    import gc
    import warnings

    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


@pytest.fixture
def rtl_build():
    """``rtl_build(name) -> Path``: the build folder for one design/parameter set."""
    def make(name: str) -> Path:
        d = ROOT / "build" / "rtl" / name
        d.mkdir(parents=True, exist_ok=True)
        return d
    return make
