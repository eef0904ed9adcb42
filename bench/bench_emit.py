"""Time to write a core's Verilog, with the lanes emitted once (fpgpt.hw.shared) and without.

    .venv/bin/python bench/bench_emit.py [--hw tiny] [--u280-top]

Prints JSON: for ``--hw``'s core, flattened as the Verilator benches build it
(``write_verilog(Core, flat=True)``), the seconds and bytes with ``share=True`` and without, and
the hierarchical core with sharing; with ``--u280-top`` also ``write_top`` of the u280 preset
(what ``fpgpt rtl --hw u280`` writes). Wall time of one run each, on whatever else the machine
is doing: run it on an idle machine (docs/rtl.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fpgpt.config import load_config
from fpgpt.hw.cosim import write_verilog
from fpgpt.hw.top import Core, write_top


def _timed(fn) -> dict:
    t = time.perf_counter()
    path = fn()
    return {"seconds": round(time.perf_counter() - t, 1), "bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="tiny", help="preset or TOML file (default tiny)")
    ap.add_argument("--u280-top", action="store_true", help="also the u280 top (about 100 s)")
    args = ap.parse_args()
    hw = load_config(args.hw)
    out: dict = {"hw": hw.artifact_name}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for share in (True, False):
            out[f"flat_core_share_{share}"] = _timed(lambda: write_verilog(
                Core(hw=hw, probes=True), "core", d / f"flat_{share}.v", flat=True, share=share))
        out["hierarchical_core_shared"] = _timed(
            lambda: write_verilog(Core(hw=hw), "core", d / "hier.v", share=True))
        if args.u280_top:
            out["u280_top"] = _timed(lambda: write_top(load_config("u280"), d / "u280_top.v"))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
