"""A ring of cores in cosimulation: one Verilator process per card, joined in lock step.

The ``D`` cards of a ring are ``D`` runs of the *same* Verilator build of one core (the build
``tests/rtl/test_hw_core.py`` and ``test_hw_program.py`` make: no extra build for a ring of any
size), started side by side, one cocotb test module per card. Each card's ring ports
(``tx_next``/``rx_prev``/``tx_prev``/``rx_next``, fpgpt.hw.net's wiring: ``d.tx_next`` drives
``(d+1).rx_prev``, ``d.tx_prev`` drives ``(d-1).rx_next``) are driven by a link model in its own
process (tests/rtl/cocotb_ring.py ``RingLinks``) that exchanges the beats, and the link's flow
control, with the other cards' processes through named pipes.

Lock step without a message per cycle: a beat that crosses a link at cycle ``t`` reaches the far
card at ``t + L``, ``L`` the link's latency in cycles (``hw.link.latency_ns`` at ``hw.clock_mhz``;
60 cycles on ``tiny``). So every card runs ``L`` cycles on its own, then sends each other card
the beats and credits of those ``L`` cycles and reads theirs, which take effect at the earliest
in the next ``L`` cycles (conservative parallel simulation with lookahead ``L``). The result is
the same cycle for cycle whatever the processes' speeds; the two CPUs of a small machine run two
cards at once.

:func:`run_ring` is the launcher; the protocol of the pipes is the test module's.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

from ..config import HardwareConfig
from .cosim import CosimResult, build, build_lock
from .verilator_env import setup_verilator

__all__ = ["link_latency_cycles", "pipe_name", "run_ring"]


def link_latency_cycles(hw: HardwareConfig) -> int:
    """One hop of the ring in core cycles: ``hw.link.latency_ns`` at ``hw.clock_mhz``, rounded
    up, at least 1 (the lock step's lookahead must be positive)."""
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
    cycles = hw.link.latency_ns * hw.clock_mhz / 1e3
    return max(1, int(-(-round(cycles, 6) // 1)))


def pipe_name(src: int, dst: int) -> str:
    """The named pipe that carries card ``src``'s messages to card ``dst``."""
    return f"ring_{src}_to_{dst}"


def run_ring(sources: Sequence[Path], toplevel: str, test_module: str, build_dir: str | Path, *,
             cards: int, work_dir: str | Path, test_dir: str | Path,
             env: Sequence[Mapping[str, str]], cxx_opt: bool = True,
             timeout_s: float = 1800.0) -> list[CosimResult]:
    """Build ``toplevel`` once (if needed) and run ``test_module`` on ``cards`` copies at once.

    Parameters
    ----------
    sources, toplevel, build_dir, cxx_opt
        As :func:`fpgpt.hw.cosim.run_cocotb` (the same arguments reuse its build).
    test_module : str
        The cocotb module each card runs; it reads ``RING_INDEX``, ``RING_COUNT`` and
        ``RING_PIPES`` (the folder holding the pipes) from its environment.
    cards : int
        Ring size ``D >= 1``.
    work_dir : path
        Gets the pipes and one folder per card (``card{d}``: the simulator's working folder and
        its results file).
    test_dir : path
        The folder holding ``test_module``.
    env : sequence of mappings
        Each card's extra environment (``len(env) == cards``).
    timeout_s : float
        A card's run is abandoned (the others then fail on their pipes) after this long.

    Returns
    -------
    list of CosimResult
        Per card: build seconds (the one build, for every card) and run seconds.

    Raises
    ------
    RuntimeError
        If a card's cocotb test failed (the message names every failing card's results file).
    """
    if not isinstance(cards, int) or cards < 1:
        raise ValueError(f"cards must be a positive integer, not {cards!r}")
    if len(env) != cards:
        raise ValueError(f"env must give one mapping per card ({cards}), not {len(env)}")
    setup_verilator()
    from cocotb_tools.runner import get_results

    with build_lock(build_dir):     # no other worker rebuilds the core under the cards
        build_s, outcome = _build_and_run(sources, toplevel, test_module, build_dir, cards,
                                          work_dir, test_dir, env, cxx_opt, timeout_s)
    bad, results = [], []
    for d, got in enumerate(outcome):
        if got is None:
            bad.append(f"card {d}: still running after {timeout_s:.0f} s")
            continue
        run_s, xml, err = got
        if err is None and xml.is_file():
            total, failed = get_results(xml)
            if failed or total == 0:
                err = f"{failed} of {total} tests failed"
        elif err is None:
            err = "no results file"
        if err is not None:
            bad.append(f"card {d}: {err} (see {xml})")
        results.append(CosimResult(build_s, run_s, xml))
    if bad:
        raise RuntimeError(f"ring of {cards} cards ({test_module}): " + "; ".join(bad))
    return results


def _build_and_run(sources, toplevel, test_module, build_dir, cards, work_dir, test_dir, env,
                   cxx_opt, timeout_s):
    from cocotb_tools.runner import get_runner

    built = get_runner("verilator")
    build_s = build(sources, toplevel, build_dir, cxx_opt=cxx_opt, runner=built)
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for s in range(cards):
        for t in range(cards):
            p = work / pipe_name(s, t)
            if s != t and not p.exists():
                os.mkfifo(p)
    outcome: list[tuple[float, Path, str | None]] = [None] * cards   # type: ignore[list-item]

    def card(d: int) -> None:
        runner = copy.copy(built)        # test() needs the attributes build() set
        xml = work / f"card{d}" / f"{test_module}.results.xml"
        t0 = time.perf_counter()
        err = None
        try:
            runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=str(build_dir),
                        test_dir=str(work / f"card{d}"), results_xml=str(xml),
                        extra_env={**env[d], "RING_INDEX": str(d), "RING_COUNT": str(cards),
                                   "RING_PIPES": str(work)})
        except SystemExit as e:      # the runner exits on failures when it runs under pytest
            err = f"exit {e.code}"
        except Exception as e:       # noqa: BLE001 - reported with the card's number below
            err = repr(e)
        outcome[d] = (time.perf_counter() - t0, xml, err)

    # The runner hands the simulator PYTHONPATH = sys.path: the test module's folder goes first.
    sys.path.insert(0, str(test_dir))
    try:
        threads = [threading.Thread(target=card, args=(d,), daemon=True) for d in range(cards)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout_s)
    finally:
        sys.path.remove(str(test_dir))
    return build_s, outcome
