"""A sweep specification (TOML): base design, axes, constraints, objectives; its points.

::

    [sweep]
    base = "u280"                # preset name or TOML file (relative to the spec file)
    model = "gpt2-medium"        # defaults for what no axis varies
    prompt_len = 128
    gen_len = 128
    seed = 0                     # for --sample

    [axes]                       # any HardwareConfig field (dotted), devices, model, lengths
    "mpu.lanes" = [8, 16, 32]
    "vpu.width" = {start = 2, stop = 16, factor = 2}    # 2, 4, 8, 16
    clock_mhz = {start = 200, stop = 300, step = 50}     # 200, 250, 300

    [constraints]                # on result columns: a row outside is marked, not dropped
    lut_pct = {max = 70}
    clock_within_fmax = true     # a true/false column

    [objectives]                 # the Pareto front: "min" or "max" per column
    ms_per_token = "min"
    lut_pct = "min"

Points are the Cartesian product of the axes, in a fixed order; ``--sample N`` draws N of them
with the spec's seed.
"""

from __future__ import annotations

import itertools
import math
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, HardwareConfig, load_config
from .point import BOOL_COLUMNS, NUMERIC_COLUMNS

__all__ = ["SpecError", "SweepSpec", "RUN_AXES", "load_spec"]

#: Axes that are not HardwareConfig fields.
RUN_AXES = ("model", "prompt_len", "gen_len")

_DEFAULT_OBJECTIVES = {"ms_per_token": "min", "lut_pct": "min"}


class SpecError(ConfigError):
    """A sweep specification that is malformed (a usage error: exit 2)."""


def _expand(name: str, v: Any) -> list[Any]:
    """An axis's values: a list, or a range table ``{start, stop, step | factor}`` (inclusive)."""
    if isinstance(v, list):
        if not v:
            raise SpecError(f"axis {name!r} is an empty list")
        return list(v)
    if isinstance(v, dict):
        keys = set(v)
        if "values" in v and keys == {"values"}:
            return _expand(name, v["values"])
        if not {"start", "stop"} <= keys or len(keys & {"step", "factor"}) != 1 \
                or keys - {"start", "stop", "step", "factor"}:
            raise SpecError(f"axis {name!r}: a range is {{start, stop, step}} or "
                            f"{{start, stop, factor}}, not {v!r}")
        start, stop = v["start"], v["stop"]
        for k in ("start", "stop", "step", "factor"):
            x = v.get(k)
            if x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool)):
                raise SpecError(f"axis {name!r}: {k} must be a number, not {x!r}")
        out, x = [], start
        if "step" in v:
            if v["step"] <= 0:
                raise SpecError(f"axis {name!r}: step must be > 0, not {v['step']!r}")
            n = int(math.floor((stop - start) / v["step"] + 1e-9)) + 1
            out = [start + i * v["step"] for i in range(max(n, 0))]
        else:
            if v["factor"] <= 1 or start <= 0:
                raise SpecError(f"axis {name!r}: factor must be > 1 and start > 0")
            while x <= stop * (1 + 1e-9):
                out.append(x)
                x = x * v["factor"]
        if not out:
            raise SpecError(f"axis {name!r}: the range {v!r} is empty")
        if all(isinstance(a, int) for a in (start, v.get("step", 1), v.get("factor", 2))):
            out = [int(a) for a in out]
        return out
    return [v]


@dataclass
class SweepSpec:
    """A parsed spec. ``axes`` keeps the file's order; ``points()`` is their product."""

    base: HardwareConfig
    base_name: str
    axes: dict[str, list[Any]]
    defaults: dict[str, Any]
    constraints: dict[str, dict[str, Any]] = field(default_factory=dict)
    objectives: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_OBJECTIVES))
    seed: int = 0
    name: str = "sweep"

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def points(self, sample: int | None = None) -> list[dict[str, Any]]:
        """Every point (axis name -> value), or ``sample`` of them drawn with ``seed``."""
        names = list(self.axes)
        if sample is not None:
            if not isinstance(sample, int) or sample < 1:
                raise SpecError(f"--sample must be a positive integer, not {sample!r}")
            if sample < self.size:
                rng = random.Random(self.seed)
                idx = sorted(rng.sample(range(self.size), sample))
                lens = [len(self.axes[n]) for n in names]
                out = []
                for i in idx:
                    combo, rest = [], i
                    for L in reversed(lens):
                        combo.append(rest % L)
                        rest //= L
                    combo.reverse()
                    out.append({**self.defaults,
                                **{n: self.axes[n][c] for n, c in zip(names, combo)}})
                return out
        return [{**self.defaults, **dict(zip(names, combo))}
                for combo in itertools.product(*(self.axes[n] for n in names))]


def _constraint(p: Path, col: str, c: Any, numeric: set[str]) -> dict[str, Any]:
    """One constraint: ``{min = x, max = y}`` on a numeric column, or ``true``/``false`` on a
    true/false one (``clock_within_fmax = true``)."""
    if isinstance(c, bool):
        if col not in BOOL_COLUMNS:
            raise SpecError(f"{p}: constraint {col} = {str(c).lower()}: only "
                            f"{', '.join(BOOL_COLUMNS)} take true/false")
        return {"eq": c}
    if col in BOOL_COLUMNS:
        raise SpecError(f"{p}: constraint {col!r} takes true or false, not {c!r}")
    if col not in numeric:
        raise SpecError(f"{p}: constraint on {col!r}, which is not a result column (e.g. "
                        "lut_pct, ms_per_token, fmax_mhz, or an axis; docs/sweep.md)")
    if not isinstance(c, dict) or not c or set(c) - {"min", "max"}:
        raise SpecError(f"{p}: constraint {col!r} must be a table {{min = x, max = y}}, "
                        f"not {c!r}")
    for k, v in c.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            raise SpecError(f"{p}: constraint {col}.{k} must be a number, not {v!r}")
    if "min" in c and "max" in c and c["min"] > c["max"]:
        raise SpecError(f"{p}: constraint {col!r} can never hold: min {c['min']} > max "
                        f"{c['max']}")
    return {k: float(v) for k, v in c.items()}


def _numeric_hw_fields(hw: HardwareConfig) -> set[str]:
    d = hw.to_dict()
    out = {k for k in ("clock_mhz", "devices") if isinstance(d.get(k), (int, float))}
    for k, v in d.items():
        if isinstance(v, dict) and k != "sources":
            out |= {f"{k}.{leaf}" for leaf, x in v.items()
                    if isinstance(x, (int, float)) and not isinstance(x, bool)}
    return out


def _hw_fields(hw: HardwareConfig) -> set[str]:
    d = hw.to_dict()
    out = {"clock_mhz", "devices"}
    for k, v in d.items():
        if isinstance(v, dict) and k != "sources":
            out |= {f"{k}.{leaf}" for leaf in v}
    return out


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep spec (:class:`SpecError` names what is wrong)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"sweep spec {str(p)!r} not found")
    try:
        doc = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: not valid TOML ({e})") from None
    unknown = sorted(set(doc) - {"sweep", "axes", "constraints", "objectives"})
    if unknown:
        raise SpecError(f"{p}: unknown table [{unknown[0]}]; known: sweep, axes, constraints, "
                        "objectives")
    for t in ("sweep", "axes", "constraints", "objectives"):
        if not isinstance(doc.get(t, {}), dict):
            raise SpecError(f"{p}: {t} must be a table [{t}], not {doc[t]!r}")
    sw = doc.get("sweep", {})
    bad = sorted(set(sw) - {"base", "model", "prompt_len", "gen_len", "seed", "name"})
    if bad:
        raise SpecError(f"{p}: unknown key sweep.{bad[0]}")
    base_name = sw.get("base", "u280")
    if not isinstance(base_name, str):
        raise SpecError(f"{p}: sweep.base must be a preset name or a TOML file, not {base_name!r}")
    base_path = p.parent / base_name
    base = load_config(str(base_path) if base_name.endswith(".toml") and base_path.exists()
                       else base_name)
    defaults = {"model": sw.get("model", "gpt2-medium"), "prompt_len": sw.get("prompt_len", 128),
                "gen_len": sw.get("gen_len", 128)}
    fields_ = _hw_fields(base)
    axes: dict[str, list[Any]] = {}
    for name, v in doc.get("axes", {}).items():
        if name not in fields_ and name not in RUN_AXES:
            raise SpecError(f"{p}: axis {name!r} is neither a HardwareConfig field (e.g. "
                            f"'mpu.lanes', 'hbm.channels', 'clock_mhz', 'devices') nor one of "
                            f"{', '.join(RUN_AXES)}")
        axes[name] = _expand(name, v)
    if not axes:
        raise SpecError(f"{p}: [axes] is empty; give at least one axis")
    numeric = set(NUMERIC_COLUMNS) | _numeric_hw_fields(base) | {"prompt_len", "gen_len"}
    cons: dict[str, dict[str, Any]] = {}
    for col, c in doc.get("constraints", {}).items():
        cons[col] = _constraint(p, col, c, numeric)
    objs = dict(doc.get("objectives", _DEFAULT_OBJECTIVES))
    for col, d in objs.items():
        if d not in ("min", "max"):
            raise SpecError(f"{p}: objective {col!r} must be \"min\" or \"max\", not {d!r}")
        if col not in numeric:
            raise SpecError(f"{p}: objective {col!r} is not a numeric result column (e.g. "
                            "ms_per_token, ttft_ms, tokens_per_j, lut_pct, fmax_mhz; docs/sweep.md)")
    seed = sw.get("seed", 0)
    if not isinstance(seed, int):
        raise SpecError(f"{p}: sweep.seed must be an integer, not {seed!r}")
    return SweepSpec(base=base, base_name=base_name, axes=axes, defaults=defaults,
                     constraints=cons, objectives=objs, seed=seed,
                     name=str(sw.get("name", p.stem)))
