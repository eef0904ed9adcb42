"""The resource model a sweep uses without ``--synth``: per block, per parameter, fitted on
per-block Yosys results (:mod:`.synth_data`), with its error measured on held-out
configurations.

The core is the sum of the rows of :func:`fpgpt.hw.synth.synth_report` (docs/rtl.md,
"Synthesis estimate"); the model keeps that structure:

* each **block** costs, per instance, a linear function of a few features of the
  configuration (:data:`BLOCK_FEATURES`: e.g. the scratchpad arbiter's LUTs grow with the line
  width ``lanes x width x 16`` bits times the ``log2(lanes)`` levels of its rotators), fitted by
  least squares on the measured and published records, times its instance count
  (``mpu.lanes`` MPU lanes, ``vpu.width`` VPU lanes);
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
        "lanes": L,
        "lane_bits": L * W,
        "queue_depth": p["queue_depth"],
    }


#: Per block: its instance count and the features its per-instance cost is linear in. Blocks
#: not listed are constant (the same Verilog for every configuration).
BLOCK_FEATURES: dict[str, dict[str, Any]] = {
    "dispatcher": {"count": "1", "features": ["1", "queue_depth"]},
    "dma": {"count": "1", "features": ["1", "line_bits", "axi_bits"]},
    "scratchpad_arbiter": {"count": "1", "features": ["line_rot", "line_bits"]},
    "mpu_engine": {"count": "1", "features": ["1", "line_rot", "line_bits"]},
    "mpu_lane": {"count": "lanes", "features": ["1", "width"]},
    "net": {"count": "1", "features": ["1", "line_bits"]},
    "vpu_engine": {"count": "1", "features": ["1", "line_bits", "vpu_width"]},
    "vpu": {"count": "1", "features": ["1", "vpu_width"]},
    "vpu_lane": {"count": "vpu_width", "features": ["1"]},
    "core": {"count": "1", "features": ["1"]},
    "control": {"count": "1", "features": ["1"]},
    "program_loader": {"count": "1", "features": ["1"]},
}

#: Features the FP operator counts (per block instance) are linear in.
OP_FEATURES = ["1", "width", "vpu_width"]


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
        rs = [r for r in fit_recs if r["block"] == b]
        if not rs:
            raise ValueError(f"no synthesis record of block {b!r} to fit on")
        names = spec["features"]
        X = [[features(r["params"])[f] for f in names] for r in rs]
        coef = {res: _lstsq(X, [r["per_instance"][res] for r in rs]) for res in RESOURCES}
        blocks[b] = {"count": spec["count"], "features": names, "coef": coef,
                     "fitted_on": sorted({r["config"] for r in rs})}
    # FP operators: per-instance cost from any record; counts per block instance fitted
    op_cost = {k: v for k, v in data.get("fp_operators", {}).items()}
    op_counts: dict[str, dict[str, list[float]]] = {}
    for b in BLOCK_FEATURES:
        rs = [r for r in fit_recs if r["block"] == b and r.get("fp_ops") is not None]
        kinds = sorted({k for r in rs for k in r["fp_ops"]})
        for kind in kinds:
            X = [[features(r["params"])[f] for f in OP_FEATURES] for r in rs]
            op_counts.setdefault(b, {})[kind] = _lstsq(X, [r["fp_ops"].get(kind, 0) for r in rs])
    model = {"provenance": data.get("provenance", {}), "held_out": list(held_out),
             "blocks": blocks, "op_features": OP_FEATURES, "op_counts": op_counts,
             "op_cost": op_cost}
    model["error"] = _errors(model, recs, held_out, data)
    return model


def _synth_total(recs: list[dict], config: str, data: dict) -> tuple[dict, dict] | None:
    """The whole core at ``config`` from real synthesis: its measured blocks, the constant
    blocks' records, FP operators by the counts its elaboration gave. None if incomplete."""
    rs = {r["block"]: r for r in recs if r["config"] == config}
    if not rs:
        return None
    p = next(iter(rs.values()))["params"]
    const = {r["block"]: r for r in recs if r["source"] == "published"}
    total = dict.fromkeys(RESOURCES, 0.0)
    ops: dict[str, float] = {}
    for b in BLOCK_FEATURES:
        r = rs.get(b) or (const.get(b) if BLOCK_FEATURES[b]["features"] == ["1"] else None)
        if r is None:
            return None
        n = _count(b, p)
        for res in RESOURCES:
            total[res] += n * r["per_instance"][res]
        for kind, k in (rs.get(b, {}).get("fp_ops") or {}).items():
            ops[kind] = ops.get(kind, 0.0) + n * k
    if any(rs[b].get("fp_ops") is None for b in rs):
        return None
    for kind, k in ops.items():
        for res in RESOURCES:
            total[res] += k * data["fp_operators"][kind][res]
    return total, p


def _errors(model: dict, recs: list[dict], held_out: tuple[str, ...], data: dict) -> dict:
    per_block, totals = [], []
    for cfg in held_out:
        for r in (r for r in recs if r["config"] == cfg):
            est = _block_estimate(model, r["block"], r["params"])
            for res in ("LUT", "FF", "DSP48E2", "BRAM36"):
                syn = r["per_instance"][res]
                if syn or est[res] > 0.5:
                    per_block.append({"config": cfg, "block": r["block"], "resource": res,
                                      "synth": syn, "model": est[res],
                                      "error_pct": 100 * (est[res] - syn) / syn if syn else None})
        got = _synth_total(recs, cfg, data)
        if got is None:
            continue
        syn_total, p = got
        est_total = _estimate_params(model, p)
        for res in ("LUT", "FF", "DSP48E2", "BRAM36"):
            totals.append({"config": cfg, "resource": res, "synth": syn_total[res],
                           "model": est_total[res],
                           "error_pct": 100 * (est_total[res] - syn_total[res]) / syn_total[res]
                           if syn_total[res] else 0.0})
    worst = max((abs(e["error_pct"]) for e in totals), default=None)
    lut = [e for e in totals if e["resource"] == "LUT"]
    summary = (f"held out {', '.join(held_out)}: whole-core error "
               + ", ".join(f"{e['resource']} {e['error_pct']:+.1f} %" for e in totals)
               + (f" (worst {worst:.1f} %)" if worst is not None else " (no complete record)"))
    return {"total": totals, "blocks": per_block, "summary": summary,
            "lut_error_pct": lut[0]["error_pct"] if lut else None}


def _block_estimate(model: dict, block: str, p: dict[str, float]) -> dict[str, float]:
    m = model["blocks"][block]
    f = features(p)
    x = [f[n] for n in m["features"]]
    return {res: max(0.0, sum(c * v for c, v in zip(m["coef"][res], x))) for res in RESOURCES}


def _estimate_params(model: dict, p: dict[str, float], *, sram_uram: float = 0.0
                     ) -> dict[str, float]:
    total = dict.fromkeys(RESOURCES, 0.0)
    f = features(p)
    xo = [f[n] for n in model["op_features"]]
    for b in model["blocks"]:
        n = _count(b, p)
        est = _block_estimate(model, b, p)
        for res in RESOURCES:
            total[res] += n * est[res]
        for kind, coef in model["op_counts"].get(b, {}).items():
            k = max(0.0, round(sum(c * v for c, v in zip(coef, xo))))
            for res in RESOURCES:
                total[res] += n * k * model["op_cost"][kind][res]
    total["URAM"] += sram_uram
    return total


def save_model(model: dict[str, Any], path: str | Path = MODEL_PATH) -> None:
    Path(path).write_text(json.dumps(model, indent=1) + "\n")


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
    note = ("resource model (fitted per block on Yosys results"
            + (f"; held-out whole-core LUT error {err:+.1f} %" if err is not None else "")
            + "), not synthesis")
    return {"total": total, "capacity": hw.device.capacity(), "note": note}


def published_u280() -> HardwareConfig:
    return load_preset("u280")
