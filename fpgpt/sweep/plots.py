"""PNG plots of a sweep's Pareto front (matplotlib, no display needed)."""

from __future__ import annotations

from typing import Any

__all__ = ["plot_front"]

_PRESET_MARKERS = {"u280": "*", "u55c": "D", "dfx": "s"}


def _xy(rows: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    pts = [(r.get(x), r.get(y)) for r in rows]
    pts = [(a, b) for a, b in pts if a is not None and b is not None]
    return [a for a, _ in pts], [b for _, b in pts]


def plot_front(run, spec) -> dict[str, str]:
    """``front_lut.png`` (ms/token against LUT %) and, when energy is there, ``front_energy.png``
    (ms/token against tokens/J): every ok point, those meeting the constraints, the Pareto front
    of the spec's objectives, and the shipped presets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in run.rows if r.get("status") == "ok"]
    files = {}
    for xcol, xlabel, name in (("lut_pct", "LUT (% of the device, resource model)"
                                 if not ok or ok[0].get("resources_source") != "synth"
                                 else "LUT (% of the device, Yosys)", "front_lut"),
                                ("tokens_per_j", "decode tokens per joule", "front_energy")):
        if not any(r.get(xcol) is not None for r in ok):
            continue
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs, ys = _xy([r for r in ok if not r["meets_constraints"]], xcol, "ms_per_token")
        ax.scatter(xs, ys, s=10, c="0.75", label="outside the constraints")
        xs, ys = _xy([r for r in ok if r["meets_constraints"]], xcol, "ms_per_token")
        ax.scatter(xs, ys, s=12, c="tab:blue", label="meets the constraints")
        # the front in this plane: the points not dominated in (x, ms/token)
        cand = [r for r in ok if r["meets_constraints"] and r.get(xcol) is not None]
        sense_x = -1 if xcol == "tokens_per_j" else 1
        cand.sort(key=lambda r: (sense_x * r[xcol], r["ms_per_token"]))
        front, best = [], float("inf")
        for r in cand:
            if r["ms_per_token"] < best:
                front.append(r)
                best = r["ms_per_token"]
        if front:
            ax.plot([r[xcol] for r in front], [r["ms_per_token"] for r in front], "-o",
                    c="tab:red", ms=4, label="Pareto front (this plane)")
        for r in run.presets:
            if r.get("status") == "ok" and r.get(xcol) is not None:
                ax.scatter([r[xcol]], [r["ms_per_token"]], marker=_PRESET_MARKERS.get(
                    r["preset"], "x"), s=120, edgecolors="k", c="gold", zorder=5,
                    label=f"preset {r['preset']}")
        for col, c in spec.constraints.items():
            if col == xcol and "max" in c:
                ax.axvline(c["max"], ls="--", c="k", lw=0.8, label=f"{col} <= {c['max']:g}")
        ys_all = [r["ms_per_token"] for r in ok if r.get("ms_per_token")]
        if ys_all and max(ys_all) > 20 * min(ys_all):
            ax.set_yscale("log")       # designs off the DMA's stripe path are ~100x slower
        model = ok[0]["model"] if ok else ""
        ax.set_xlabel(xlabel)
        ax.set_ylabel("decode ms/token (simulated)")
        ax.set_title(f"{spec.name}: {len(ok)} designs, {model} "
                     f"{ok[0]['prompt_len'] if ok else ''}:{ok[0]['gen_len'] if ok else ''}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = run.out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files[name] = str(path)
    return files
