"""Sweep results on disk: one JSON file per finished point, then the table (Parquet + CSV).

``OUT/points/<key>.json`` is written (atomically: a temporary file renamed) as soon as a point's
row arrives, so a sweep stopped at any moment keeps every finished point, and a restart skips
the keys it finds. ``OUT/results.parquet`` and ``OUT/results.csv`` hold the points of the
spec, one row each, with the Pareto front and the constraints marked (:func:`finish`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

__all__ = ["ResultStore", "pareto_mask", "mark_table"]


class ResultStore:
    """The per-point files of a sweep folder."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.points_dir = self.out / "points"
        self.points_dir.mkdir(parents=True, exist_ok=True)

    def done_keys(self) -> set[str]:
        return {p.stem for p in self.points_dir.glob("*.json")}

    def write(self, row: dict[str, Any]) -> None:
        key = row["key"]
        tmp = self.points_dir / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(row, default=_default, sort_keys=False))
        tmp.replace(self.points_dir / f"{key}.json")

    def read(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        if keys is None:
            paths = sorted(self.points_dir.glob("*.json"))
        else:
            paths = [self.points_dir / f"{k}.json" for k in keys]
        out = []
        for p in paths:
            if p.is_file():
                try:
                    out.append(json.loads(p.read_text()))
                except json.JSONDecodeError:      # never written whole: recomputed on restart
                    p.unlink(missing_ok=True)
        return out


def _default(o: Any) -> Any:
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def pareto_mask(values: list[list[float]], senses: list[str]) -> list[bool]:
    """True for the rows no other row dominates (``senses``: "min"/"max" per column; a row with
    a missing value is never on the front)."""
    sign = [1.0 if s == "min" else -1.0 for s in senses]
    pts = []
    for v in values:
        ok = all(x is not None and not (isinstance(x, float) and math.isnan(x)) for x in v)
        pts.append([s * float(x) for s, x in zip(sign, v)] if ok else None)
    mask = []
    for i, p in enumerate(pts):
        if p is None:
            mask.append(False)
            continue
        dominated = False
        for j, q in enumerate(pts):
            if j != i and q is not None and all(a <= b for a, b in zip(q, p)) \
                    and any(a < b for a, b in zip(q, p)):
                dominated = True
                break
        mask.append(not dominated)
    return mask


def mark_table(rows: list[dict[str, Any]], constraints: dict[str, dict[str, Any]],
               objectives: dict[str, str]) -> list[dict[str, Any]]:
    """Add ``meets_constraints`` and ``pareto`` (the front among ``ok`` rows that meet the
    constraints) to every row. A constraint is ``{min, max}`` or ``{eq: True/False}``; a row
    with the column missing (None: e.g. an Fmax not estimated) does not meet it."""
    for r in rows:
        ok = r.get("status") == "ok"
        for col, c in constraints.items():
            v = r.get(col)
            if v is None or ("eq" in c and v != c["eq"]) or \
                    ("min" in c and v < c["min"]) or ("max" in c and v > c["max"]):
                ok = False
        r["meets_constraints"] = ok
    cand = [r for r in rows if r["meets_constraints"]]
    cols = list(objectives)
    mask = pareto_mask([[r.get(c) for c in cols] for r in cand], [objectives[c] for c in cols])
    for r in rows:
        r["pareto"] = False
    for r, m in zip(cand, mask):
        r["pareto"] = m
    return rows
