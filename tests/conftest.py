"""Suite-wide settings.

Hypothesis: no per-example deadline and no "too slow" health check. The suite runs on parallel
workers (pytest-xdist) on a 2-core machine shared with Verilator builds, where an example's
wall time says nothing about the code under test; the properties themselves are unchanged.
"""

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("fpgpt", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fpgpt")


# --- parallel workers (pytest-xdist, `make test`: --dist loadgroup) ---------------------------
#: Test files that build and run the whole tiny core's Verilator model: one worker runs them
#: all, so the core's Verilog is emitted (minutes) and built once, and they never wait on each
#: other's build lock from two workers.
CORE_FILES = {"test_hw_core.py", "test_hw_program.py", "test_decode_floor_program.py",
              "test_hw_ring.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test gets an ``xdist_group``: its file's, or "core_tiny" for :data:`CORE_FILES`
    (so that ``--dist loadgroup`` keeps a file on one worker, as ``loadfile`` would, and puts
    the core's files together). Runs before xdist reads the marks."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        path = item.nodeid.split("::")[0]
        name = path.rsplit("/", 1)[-1]
        item.add_marker(pytest.mark.xdist_group("core_tiny" if name in CORE_FILES else path))


# --- the u280 design at its 300 MHz target (examples/u280-300mhz.toml) ------------------------
@pytest.fixture(scope="session")
def u280_target():
    """The u280 design at the 300 MHz its architecture targets (a what-if: the u280 preset runs
    at the clock its Verilog supports, docs/rtl-clock.md). Tests of the HBM-bound regime and of
    the decode schedule's figures use it: at today's clock the DMA ports, not the HBM, bound."""
    from pathlib import Path

    from fpgpt.config import load_config
    return load_config(str(Path(__file__).parents[1] / "examples" / "u280-300mhz.toml"))
