"""The resource model a sweep uses without ``--synth``: per block, per parameter, fitted on
per-block Yosys results (:mod:`.synth_data`), with its error measured on held-out
configurations.

The core is the sum of the rows of :func:`fpgpt.hw.synth.synth_report` (docs/rtl.md,
"Synthesis estimate"); the model keeps that structure:

* each **block** costs, per instance, a linear function of a few features of the
  configuration (:data:`BLOCK_FEATURES`: e.g. the scratchpad arbiter's LUTs grow with the line
  width ``lanes x width x 16`` bits times the ``log2(lanes)`` levels of its rotators), fitted by
  least squares on the measured and published records, times its instance count
  (``mpu.lanes`` MPU lanes, ``vpu.special_lanes`` VPU lanes with the special functions and
  the rest without);
* each **FP operator** kind costs what its one synthesis measured (config-independent: the same
  Verilog), times the number of instances, a linear function of the features fitted on the
  counts the blocks' elaborations gave (exact on every measured configuration);
* the **scratchpad storage** is :func:`fpgpt.hw.synth.scratchpad_memory` (analytic URAM).

``fit_model`` fits on every configuration except :data:`HELD_OUT` and measures the error there
(the whole core: real per-block synthesis summed as ``synth_report`` sums it, against the
model); the shipped model is that fit. Regenerate: ``fpgpt sweep-resources --fit``.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..config import HardwareConfig, load_preset
from .synth_data import DATA_DIR, config_params, load_synth_data

__all__ = ["MODEL_PATH", "RESOURCES", "RESOURCE_COLUMNS", "PCT_COLUMNS", "BLOCK_FEATURES",
           "HELD_OUT", "features", "fit_model", "save_model", "load_model", "estimate"]

MODEL_PATH = DATA_DIR / "resource_model.json"
RESOURCES = ("LUT", "FF", "DSP48E2", "BRAM36", "URAM")
RESOURCE_COLUMNS = {"lut": "LUT", "ff": "FF", "dsp": "DSP48E2", "bram36": "BRAM36", "uram": "URAM"}
PCT_COLUMNS = {"lut_pct": "LUT", "ff_pct": "FF", "dsp_pct": "DSP48E2", "bram_pct": "BRAM36",
               "uram_pct": "URAM"}

#: Configurations whose synthesis is kept out of the fit, to measure the model's error on.
HELD_OUT = ("t8x16c8v2",)


def features(p: dict[str, float]) -> dict[str, float]:
    """Features of a configuration (``config_params``) the block models are linear in."""
    L, W, V = p["lanes"], p["width"], p["vpu_width"]
    line = L * W * 16                                    # scratchpad line, bits
    return {
        "1": 1.0,
        "width": W,
        "vpu_width": V,
        "line_bits": line,
        "line_rot": line * math.log2(max(L, 2)),          # an L-way rotation of a line
        "axi_bits": p["channels"] * p["port_bits"],      # all HBM ports' data
        "datapath_bits": line + p["channels"] * p["port_bits"],
        "lanes": L,
        "lane_bits": L * W,
        "queue_depth": p["queue_depth"],
    }


#: Per block: its instance count and the features its per-instance cost is linear in (and, in
#: ``per_resource``, other features for some resources). Blocks whose features are ``["1"]``
#: are constant (the same Verilog for every configuration).
BLOCK_FEATURES: dict[str, dict[str, Any]] = {
    "dispatcher": {"count": "1", "features": ["1", "queue_depth"]},
    "dma": {"count": "1", "features": ["1", "datapath_bits"]},
    "scratchpad_arbiter": {"count": "1", "features": ["line_rot", "line_bits"],
                           "per_resource": {"FF": ["1"]}},
    # the A-row buffer: BRAM in the small designs, LUTRAM in u280 (Yosys's choice by size),
    # so BRAM is fitted as a constant, the weakest figure of the model
    "mpu_engine": {"count": "1", "features": ["1", "line_bits"],
                   "per_resource": {"DSP48E2": ["1", "lanes"], "BRAM36": ["1"]}},
    "mpu_lane": {"count": "lanes", "features": ["1", "width"], "op_features": ["1", "width"]},
    "net": {"count": "1", "features": ["1", "line_bits"]},
    "vpu_engine": {"count": "1", "features": ["1", "line_bits"]},
    "vpu": {"count": "1", "features": ["1", "vpu_width"], "op_features": ["1", "vpu_width"]},
    "vpu_lane": {"count": "vpu_special", "features": ["1"]},
    # a lane without the special functions (vpu.special_ratio > 1)
    "vpu_lane_light": {"count": "vpu_light", "features": ["1"]},
    "core": {"count": "1", "features": ["1"]},
    "control": {"count": "1", "features": ["1"]},
    "program_loader": {"count": "1", "features": ["1"]},
}

#: Features a block's FP operator counts (per instance) are linear in, unless its entry gives
#: ``op_features``: the MPU lane's adder tree grows with its width, the VPU's scalar phase
#: with the lanes it reduces.
OP_FEATURES = ["1"]


def _count(block: str, p: dict[str, float]) -> float:
    c = BLOCK_FEATURES[block]["count"]
    return 1.0 if c == "1" else float(p[c])


def _lstsq(rows: list[list[float]], ys: list[float]) -> list[float]:
    A, y = np.asarray(rows, float), np.asarray(ys, float)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return [float(c) for c in coef]


def fit_model(data: dict[str, Any] | None = None,
              held_out: tuple[str, ...] = HELD_OUT) -> dict[str, Any]:
    """Fit every block's and FP operator count's coefficients on the records of ``data``
    (default: the shipped data file) except ``held_out``; measure the error there."""
    data = load_synth_data() if data is None else data
    recs = data["records"]
    fit_recs = [r for r in recs if r["config"] not in held_out]
    blocks: dict[str, Any] = {}
    for b, spec in BLOCK_FEATURES.items():
        rs = [r for r in fit_recs if r["block"] == b and r["per_instance"] is not None]
        if not rs:
            raise ValueError(f"no synthesis record of block {b!r} to fit on")
        names = {res: spec.get("per_resource", {}).get(res, spec["features"]) for res in RESOURCES}
        coef = {res: _lstsq([[features(r["params"])[f] for f in names[res]] for r in rs],
                            [r["per_instance"][res] for r in rs]) for res in RESOURCES}
        blocks[b] = {"count": spec["count"], "features": names, "coef": coef,
                     "fitted_on": sorted({r["config"] for r in rs})}
    # FP operators: per-instance cost from any record; counts per block instance fitted
    op_cost = {k: v for k, v in data.get("fp_operators", {}).items()}
    op_counts: dict[str, dict[str, list[float]]] = {}
    for b in BLOCK_FEATURES:
        rs = [r for r in fit_recs if r["block"] == b and r.get("fp_ops") is not None]
        kinds = sorted({k for r in rs for k in r["fp_ops"]})
        names = BLOCK_FEATURES[b].get("op_features", OP_FEATURES)
        for kind in kinds:
            X = [[features(r["params"])[f] for f in names] for r in rs]
            op_counts.setdefault(b, {})[kind] = _lstsq(X, [r["fp_ops"].get(kind, 0) for r in rs])
        if kinds:
            blocks[b]["op_features"] = names
    model = {"provenance": data.get("provenance", {}), "held_out": list(held_out),
             "blocks": blocks, "op_counts": op_counts, "op_cost": op_cost}
    model["error"] = _errors(model, recs, held_out, data)
    return model


def _measured_sum(model: dict, recs: list[dict], config: str, data: dict
                  ) -> tuple[dict, dict, list[str]] | None:
    """Real synthesis against the model at ``config``, over what was measured there: its
    synthesized blocks (x instances) plus every FP operator its blocks build (counts by
    elaboration, figures from the operators' own synthesis). ``(synth, model, blocks)``."""
    rs = [r for r in recs if r["config"] == config]
    ops_rec = {r["block"]: r["fp_ops"] for r in rs if r.get("fp_ops") is not None}
    if not rs or not {"mpu_lane", "net", "vpu", "vpu_lane"} <= set(ops_rec):
        return None
    p = rs[0]["params"]
    syn, est = dict.fromkeys(RESOURCES, 0.0), dict.fromkeys(RESOURCES, 0.0)
    blocks = []
    for r in rs:
        if r["per_instance"] is None:
            continue
        n = _count(r["block"], p)
        e = _block_estimate(model, r["block"], p)
        blocks.append(r["block"])
        for res in RESOURCES:
            syn[res] += n * r["per_instance"][res]
            est[res] += n * e[res]
    f = features(p)
    for b, ops in ops_rec.items():
        n = _count(b, p)
        for kind, k in ops.items():
            for res in RESOURCES:
                syn[res] += n * k * data["fp_operators"][kind][res]
        xo = [f[x] for x in model["blocks"][b].get("op_features", OP_FEATURES)]
        for kind, coef in model["op_counts"].get(b, {}).items():
            k = max(0.0, round(sum(c * v for c, v in zip(coef, xo))))
            for res in RESOURCES:
                est[res] += n * k * data["fp_operators"][kind][res]
    return syn, est, blocks


def _errors(model: dict, recs: list[dict], held_out: tuple[str, ...], data: dict) -> dict:
    def rows(cfg):
        got = _measured_sum(model, recs, cfg, data)
        if got is None:
            return []
        syn, est, blocks = got
        return [{"config": cfg, "resource": res, "synth": syn[res], "model": est[res],
                 "error_pct": 100 * (est[res] - syn[res]) / syn[res] if syn[res] else 0.0,
                 "blocks": blocks + ["fp_operators"]}
                for res in ("LUT", "FF", "DSP48E2", "BRAM36")]
    per_block = []
    for cfg in held_out:
        for r in (r for r in recs if r["config"] == cfg and r["per_instance"] is not None):
            est = _block_estimate(model, r["block"], r["params"])
            for res in ("LUT", "FF", "DSP48E2", "BRAM36"):
                syn = r["per_instance"][res]
                if syn or est[res] > 0.5:
                    per_block.append({"config": cfg, "block": r["block"], "resource": res,
                                      "synth": syn, "model": est[res],
                                      "error_pct": 100 * (est[res] - syn) / syn if syn else None})
    totals = [e for cfg in held_out for e in rows(cfg)]
    in_sample = [e for cfg in sorted({r["config"] for r in recs} - set(held_out))
                 for e in rows(cfg)]
    worst = max((abs(e["error_pct"]) for e in totals if e["synth"]), default=None)
    lut = [e for e in totals if e["resource"] == "LUT"]
    summary = (f"held out {', '.join(held_out)} ({', '.join(lut[0]['blocks']) if lut else '-'}): "
               + ", ".join(f"{e['resource']} {e['error_pct']:+.1f} %" for e in totals)
               + (f" (worst {worst:.1f} %)" if worst is not None else " (no complete record)"))
    return {"total": totals, "blocks": per_block, "in_sample": in_sample, "summary": summary,
            "lut_error_pct": lut[0]["error_pct"] if lut else None}


def _block_estimate(model: dict, block: str, p: dict[str, float]) -> dict[str, float]:
    m = model["blocks"][block]
    f = features(p)
    return {res: max(0.0, sum(c * f[n] for c, n in zip(m["coef"][res], m["features"][res])))
            for res in RESOURCES}


def _estimate_params(model: dict, p: dict[str, float], *, sram_uram: float = 0.0
                     ) -> dict[str, float]:
    total = dict.fromkeys(RESOURCES, 0.0)
    f = features(p)
    for b in model["blocks"]:
        n = _count(b, p)
        est = _block_estimate(model, b, p)
        for res in RESOURCES:
            total[res] += n * est[res]
        xo = [f[x] for x in model["blocks"][b].get("op_features", OP_FEATURES)]
        for kind, coef in model["op_counts"].get(b, {}).items():
            k = max(0.0, round(sum(c * v for c, v in zip(coef, xo))))
            for res in RESOURCES:
                total[res] += n * k * model["op_cost"][kind][res]
    total["URAM"] += sram_uram
    return total


def save_model(model: dict[str, Any], path: str | Path = MODEL_PATH) -> None:
    import hashlib
    body = {k: v for k, v in model.items() if k != "fingerprint"}
    model["fingerprint"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    Path(path).write_text(json.dumps(model, indent=1) + "\n")
    load_model.cache_clear()


@functools.lru_cache(maxsize=2)
def load_model(path: str | Path = MODEL_PATH) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"resource model {p} is missing; regenerate it with "
                                "`fpgpt sweep-resources --fit`")
    return json.loads(p.read_text())


def estimate(hw: HardwareConfig) -> dict[str, Any]:
    """The model's resource estimate of the whole core for ``hw``: ``{total, capacity, note}``."""
    from ..hw.synth import scratchpad_memory
    model = load_model()
    p = config_params(hw)
    total = _estimate_params(model, p, sram_uram=scratchpad_memory(hw)["uram288"])
    err = model["error"].get("lut_error_pct")
    held = (f"; held-out LUT error {err:+.1f} % over the blocks measured there"
            if err is not None else "")
    note = f"resource model (fitted per block on Yosys results{held}), not synthesis"
    return {"total": total, "capacity": hw.device.capacity(), "note": note,
            "model": model.get("fingerprint", "")}


def published_u280() -> HardwareConfig:
    return load_preset("u280")
