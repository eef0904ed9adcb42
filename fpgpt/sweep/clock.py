"""A sweep point's estimated Fmax, and whether its ``clock_mhz`` is within it.

The estimate is :func:`fpgpt.hw.fmax.fmax_report` on the per-block netlists Yosys mapped
(docs/rtl-clock.md). Only its public output is read: ``core.retimed_fmax_mhz``,
``core.supported_clock_mhz`` and ``blocks`` (each block's ``retimed_fmax_mhz``).

* With ``--synth`` the point's own synthesis report carries it (``synth_report(fmax=True)``):
  :func:`fmax_columns_from_report`.
* Without, :func:`design_fmax` looks each block up in the synthesis cache that ``fpgpt
  synth`` fills (``build/synth/cache``): the block is elaborated for the point's design (no
  Yosys), its cache key computed as :func:`fpgpt.hw.synth.synth_module` computes it (a hash of
  the Verilog, the black-box interfaces it uses and the Yosys script), and its kept netlist
  (``<top>-<key>.flat.net.json.gz``) timed if it is there, with the netlists of the FP
  operators it instantiates. A block that was never synthesized for this design is not timed.

The core's Fmax is its slowest block's, so a figure over some of the blocks only is an
**upper bound**: a clock above the bound's supported clock is above the whole core's too
(``clock_within_fmax = False``), but a clock within it is not proven (``None``, as when
nothing is timed). ``clock_within_fmax`` is True only when every block was timed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..config import HardwareConfig

__all__ = ["FMAX_COLUMNS", "NOT_ESTIMATED", "module_key", "block_cache_key", "design_fmax",
           "fmax_columns_from_report", "not_estimated"]

#: The columns a row gets (docs/sweep.md).
FMAX_COLUMNS = ("fmax_mhz", "fmax_supported_clock_mhz", "fmax_source", "fmax_blocks_timed",
                "fmax_critical_block", "clock_within_fmax", "fmax_reason")

#: ``fmax_source`` of a row whose Fmax was not estimated.
NOT_ESTIMATED = "not estimated"


def module_key(text: str, lib: str, top: str) -> str:
    """The cache key :func:`fpgpt.hw.synth.synth_module` gives ``top`` (its Verilog ``text``,
    the black-box interfaces ``lib`` it uses, and its Yosys script; the netlist-keeping
    ``write_json`` is not part of the key). ``tests/test_sweep_fmax.py`` checks the two agree."""
    reads = f"read_verilog {top}.src.v; "
    if lib:
        reads = f"read_verilog -lib {top}.lib.v; " + reads
    script = f"{reads}synth_xilinx -family xcup -top {top}; tee -q -o {top}.stat.json stat -json"
    return hashlib.sha256("\0".join((text, lib, script)).encode()).hexdigest()[:24]


def _design_json(hw: HardwareConfig) -> str:
    d = hw.to_dict()
    for k in ("name", "description", "sources"):
        d.pop(k, None)
    return json.dumps(d, sort_keys=True, default=str)


#: (design, block name, builder) -> block_cache_key: a worker elaborates a design's block once.
_KEYS: dict[tuple, tuple[str, str, tuple[str, ...]]] = {}


def _block_key(hw: HardwareConfig, component) -> tuple[str, str, tuple[str, ...]]:
    k = (_design_json(hw), component.name, component.build)
    if k not in _KEYS:
        _KEYS[k] = block_cache_key(hw, component)
    return _KEYS[k]


def block_cache_key(hw: HardwareConfig, component) -> tuple[str, str, tuple[str, ...]]:
    """``(top, key, FP operator kinds)`` of one block of :data:`fpgpt.hw.synth.COMPONENTS`
    for ``hw``: elaborated as :func:`fpgpt.hw.synth.synth_block` elaborates it (FP operators
    and the sub-blocks other rows count black-boxed), without Yosys."""
    from ..hw import synth as hs
    local: Counter = Counter()
    stubs: dict[str, str] = {}
    block = component.build(hw)
    top = f"fpgpt_{component.name}"
    with tempfile.TemporaryDirectory() as tmp, hs._class_black_boxes(component.boxes, stubs), \
            hs._fp_black_boxes(local):
        text = hs.write_verilog(block, top, Path(tmp) / f"{top}.v").read_text()
    lib = hs._used_stubs(hs._stubs(hw) + "".join(stubs.values()), text)
    return top, module_key(text, lib, top), tuple(sorted(local))


@functools.lru_cache(maxsize=None)
def _operator_key(kind: str) -> tuple[str, str]:
    """An FP operator's (top, key): the same Verilog in every design."""
    from ..hw import synth as hs
    top = f"fpgpt_fp_{kind}"
    with tempfile.TemporaryDirectory() as tmp:
        text = hs.write_verilog(hs.FP_OPERATORS[kind](latency=0), top,
                                Path(tmp) / f"{top}.v").read_text()
    return top, module_key(text, "", top)


def _netlist(cache: Path, top: str, key: str) -> Path | None:
    p = cache / f"{top}-{key}.flat.net.json.gz"
    return p if p.is_file() else None


def not_estimated(reason: str) -> dict[str, Any]:
    """The Fmax columns of a row whose Fmax was not estimated, with why."""
    return {"fmax_mhz": None, "fmax_supported_clock_mhz": None, "fmax_source": NOT_ESTIMATED,
            "fmax_blocks_timed": 0, "fmax_critical_block": None, "clock_within_fmax": None,
            "fmax_reason": reason}


def fmax_columns_from_report(rep: dict[str, Any] | None, hw: HardwareConfig, *, source: str,
                             untimed: list[str] | tuple[str, ...] = (),
                             n_blocks: int | None = None) -> dict[str, Any]:
    """The Fmax columns from an :func:`fpgpt.hw.fmax.fmax_report` result (``rep``; its
    ``core.retimed_fmax_mhz``, ``core.supported_clock_mhz`` and ``blocks`` only).
    ``untimed``: blocks of the design that are not in ``rep`` (the figure is then an upper
    bound)."""
    core = (rep or {}).get("core") or {}
    fmax, supported = core.get("retimed_fmax_mhz"), core.get("supported_clock_mhz")
    if not fmax or supported is None:
        return not_estimated(f"{source}: no block has a timed register-to-register path")
    blocks = rep.get("blocks", {})
    timed = {n: b.get("retimed_fmax_mhz") for n, b in blocks.items() if b.get("retimed_fmax_mhz")}
    critical = min(timed, key=timed.get) if timed else None
    n = n_blocks if n_blocks is not None else len(blocks) + len(untimed)
    over = hw.clock_mhz > supported
    if untimed:
        within = False if over else None
        reason = (f"{source}: {len(blocks)} of {n} blocks timed (not: {', '.join(untimed)}), "
                  f"so {fmax:g} MHz is an upper bound; "
                  + (f"clock {hw.clock_mhz:g} MHz is above its supported {supported:g} MHz"
                     if over else f"clock {hw.clock_mhz:g} MHz is within {supported:g} MHz "
                                  "for the blocks timed, not proven for the core"))
    else:
        within = not over
        reason = (f"{source}: every block timed; clock {hw.clock_mhz:g} MHz is "
                  f"{'above' if over else 'within'} the supported {supported:g} MHz "
                  f"(critical: {critical})")
    return {"fmax_mhz": float(fmax), "fmax_supported_clock_mhz": float(supported),
            "fmax_source": source if not untimed else f"{source} (partial)",
            "fmax_blocks_timed": len(blocks), "fmax_critical_block": critical,
            "clock_within_fmax": within, "fmax_reason": reason}


@functools.lru_cache(maxsize=64)
def _report(blocks: tuple[tuple[str, str], ...], operators: tuple[tuple[str, str], ...]
            ) -> dict[str, Any]:
    from ..hw.fmax import fmax_report
    return fmax_report(dict(blocks), dict(operators))


def design_fmax(hw: HardwareConfig, cache_dir: str | Path | None,
                components: tuple | None = None) -> dict[str, Any]:
    """The Fmax columns of ``hw`` from the netlists cached in ``cache_dir`` (module doc);
    never raises for a missing or partial cache (the columns say what was not timed)."""
    if cache_dir is None:
        return not_estimated("Fmax not looked up (fpgpt sweep --fmax-lookup, or --synth)")
    cache = Path(cache_dir)
    if not cache.is_dir() or not any(cache.glob("*.flat.net.json.gz")):
        return not_estimated(f"no synthesized netlists in {cache} (`fpgpt synth --hw H` keeps "
                             "them; or sweep with --synth)")
    from ..hw import synth as hs
    comps = hs.built(hw, None if components is None else tuple(components))
    blocks: dict[str, str] = {}
    ops: dict[str, str] = {}
    untimed: list[str] = []
    for c in comps:
        # a block never synthesized in any design is not elaborated (seconds for big designs)
        if not any(cache.glob(f"fpgpt_{c.name}-*.flat.net.json.gz")):
            untimed.append(c.name)
            continue
        try:
            top, key, kinds = _block_key(hw, c)
        except Exception as e:  # noqa: BLE001 - a block that does not elaborate is not timed
            untimed.append(f"{c.name} (elaboration failed: {type(e).__name__})")
            continue
        net = _netlist(cache, top, key)
        need = {k: _netlist(cache, *_operator_key(k)) for k in kinds}
        if net is None or any(p is None for p in need.values()):
            untimed.append(c.name)
            continue
        blocks[c.name] = str(net)
        ops.update({k: str(p) for k, p in need.items()})
    if not blocks:
        return not_estimated(f"no block of this design is in {cache} "
                             "(`fpgpt synth --hw H` with this design, or sweep with --synth)")
    rep = _report(tuple(sorted(blocks.items())), tuple(sorted(ops.items())))
    return fmax_columns_from_report(rep, hw, source="synthesis cache", untimed=untimed,
                                    n_blocks=len(comps))
