"""The project report's PNG plots (matplotlib, Agg): each function takes the report's data
(plain dicts, as in ``reports/report.json``) and writes one file; nothing here simulates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_latency_vs_size", "plot_tokens_per_joule", "plot_roofline", "plot_energy_split",
           "plot_scaling", "plot_clock", "plot_layer_timeline"]

_COLORS = {"static": "#9e9e9e", "hbm": "#1f77b4", "mac": "#d62728", "vpu": "#ff7f0e",
           "scratchpad": "#2ca02c", "link": "#9467bd"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    _plt().close(fig)
    return name


def plot_latency_vs_size(data: dict[str, Any], out: Path) -> str:
    """ms/token against parameters: fpgpt designs (simulated), DFX (published), GPUs (model)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    params = {m["model"]: m["params"] / 1e6 for m in data["models"]}
    for series in data["designs"]:
        xs = [params[r["model"]] for r in series["rows"]]
        ax.plot(xs, [r["ms_per_token"] for r in series["rows"]], marker="o", lw=2,
                label=f"{series['label']} (simulated)")
    gpus: dict[str, list] = {}
    for g in data["gpu_rows"]:
        gpus.setdefault(g["label"], []).append(g)
    for label, rows in gpus.items():
        ax.plot([params[r["model"]] for r in rows], [r["ms_per_token"]["value"] for r in rows],
                ls="--", marker="^", ms=5, alpha=0.8, label=f"{label} (model)")
    for p in data["published"]:
        if p["model"] in params:
            ax.scatter([params[p["model"]]], [p["ms_per_token"]], marker="*", s=160, color="k",
                       zorder=6)
            ax.annotate(f"DFX {p['cards']} card{'s' if p['cards'] > 1 else ''} (published)",
                        (params[p["model"]], p["ms_per_token"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model parameters, millions")
    ax.set_ylabel("decode ms per token (batch 1)")
    ax.set_title("GPT-2 decode latency: fpgpt designs, DFX, GPUs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, ncol=2)
    return _save(fig, out, "latency_vs_size.png")


def plot_tokens_per_joule(data: dict[str, Any], out: Path) -> str:
    """Tokens per joule for the headline model, error bars from the constants' ranges."""
    plt = _plt()
    rows = data["headline"]["rows"]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    labels = [f"{r['label'].replace(' (', chr(10) + '(')}\n[{r['kind']}]" for r in rows]
    vals = [r["tokens_per_j"]["value"] for r in rows]
    err = [[r["tokens_per_j"]["value"] - r["tokens_per_j"]["lo"] for r in rows],
           [r["tokens_per_j"]["hi"] - r["tokens_per_j"]["value"] for r in rows]]
    colors = ["#2ca02c" if r["kind"] == "simulated" else "#1f77b4" if r["kind"] == "model"
              else "#ff7f0e" for r in rows]
    ax.bar(range(len(rows)), vals, yerr=err, capsize=4, color=colors)
    ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=35, ha="right")
    ax.set_ylabel("tokens per joule (decode, batch 1)")
    ax.set_title(f"{data['headline']['model']}: energy efficiency (bars: low-high range)")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out, "tokens_per_joule.png")


def plot_roofline(data: dict[str, Any], out: Path) -> str:
    """The design's roofline (HBM bandwidth, MPU peak) with each model's decode/prefill points."""
    import numpy as np
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    models = sorted({pt["model"] for rf in data["rooflines"] for pt in rf["points"]},
                    key=lambda m: [x["model"] for x in data["models"]].index(m)
                    if m in [x["model"] for x in data["models"]] else 0)
    marks = dict(zip(models, "osD^vP*X"))
    for i, rf in enumerate(data["rooflines"]):
        bw, peak = rf["hbm_gb_s"] * 1e9, rf["mpu_peak_tflops"] * 1e12
        x = np.logspace(-1, 3, 200)
        ax.plot(x, np.minimum(x * bw, peak) / 1e12, color=f"C{i}", lw=2,
                label=f"{rf['hw']}: {rf['hbm_gb_s']:.0f} GB/s, {rf['mpu_peak_tflops']:.2f} TFLOP/s")
        for pt in rf["points"]:
            dec = pt["stream"] == "decode"
            ax.scatter([pt["intensity"]], [pt["tflops"]], marker=marks[pt["model"]], s=34,
                       zorder=5, edgecolors=f"C{i}", facecolors=f"C{i}" if dec else "none")
    for m in models:
        ax.scatter([], [], marker=marks[m], color="k", label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity, FLOP per HBM byte")
    ax.set_ylabel("achieved TFLOP/s (simulated)")
    ax.set_title("Roofline: decode (filled, intensity ~1) and prefill (hollow) per model")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out, "roofline.png")


def plot_energy_split(data: dict[str, Any], out: Path) -> str:
    """Decode joules per token by component, per design and model (value; ranges in the table)."""
    plt = _plt()
    rows = data["energy_split"]
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    comps = list(_COLORS)
    bottom = [0.0] * len(rows)
    for c in comps:
        vals = [r["split"][c]["value"] * 1e3 for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, color=_COLORS[c], label=c)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)), [f"{r['hw']}\n{r['model']}" for r in rows], fontsize=7)
    ax.set_ylabel("mJ per decoded token (all cards)")
    ax.set_title("Where a token's energy goes (decode; constants at their values)")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out, "energy_split.png")


def plot_scaling(data: dict[str, Any], out: Path) -> str | None:
    """ms/token and tokens/J against cards (only when multi-card results exist)."""
    rows = data.get("scaling") or []
    if len({r["cards"] for r in rows}) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot([r["cards"] for r in rows], [r["ms_per_token"] for r in rows], "o-", label="ms/token")
    ax.set_xlabel("cards")
    ax.set_ylabel("decode ms per token")
    ax2 = ax.twinx()
    ax2.errorbar([r["cards"] for r in rows], [r["tokens_per_j"]["value"] for r in rows],
                 yerr=[[r["tokens_per_j"]["value"] - r["tokens_per_j"]["lo"] for r in rows],
                       [r["tokens_per_j"]["hi"] - r["tokens_per_j"]["value"] for r in rows]],
                 color="C1", marker="s", capsize=3, label="tokens/J")
    ax2.set_ylabel("tokens per joule")
    ax.set_xticks([r["cards"] for r in rows])
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center")
    ax.set_title(f"Scaling {rows[0]['model']} on {rows[0]['hw']} (simulated; tokens/J with its range)")
    ax.grid(True, alpha=0.3)
    return _save(fig, out, "scaling.png")


def plot_clock(data: dict[str, Any], out: Path) -> str | None:
    """Decode ms/token and time to first token against the clock (the clock series)."""
    c = data.get("clock")
    if not c or not c["rows"]:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    designs = sorted({(r["model"], r["cards"]) for r in c["rows"]}, key=lambda d: (d[0], d[1]))
    for i, (model, cards) in enumerate(designs):
        rs = [r for r in c["rows"] if r["model"] == model and r["cards"] == cards]
        label = f"{model} x {cards}"
        for ax, key in zip(axes, ("ms_per_token", "ttft_ms")):
            ax.plot([r["clock_mhz"] for r in rs], [r[key] for r in rs], "o-", color=f"C{i}",
                    label=label)
    for ax, ylabel in zip(axes, ("decode ms per token", "time to first token, ms")):
        ax.axvline(c["preset_clock_mhz"], color="0.5", ls=":", lw=1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("clock, MHz")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{c['hw']} at other clocks with its {c['preset_clock_mhz']:g} MHz latencies "
                 f"(simulated; dotted: the preset's clock)", fontsize=10)
    return _save(fig, out, "clock.png")


def plot_layer_timeline(data: dict[str, Any], out: Path) -> str:
    """One decoder layer's instructions per unit (from fpgpt.sim.trace events)."""
    plt = _plt()
    tl = data["timeline"]
    units = tl["units"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for i, u in enumerate(units):
        bars = [(e["start_us"], e["dur_us"]) for e in tl["events"] if e["unit"] == u]
        ax.broken_barh(bars, (i - 0.4, 0.8), color=f"C{i}", alpha=0.85)
    ax.set_yticks(range(len(units)), units)
    ax.set_xlabel("µs from the layer's start")
    ax.set_title(tl["title"], fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, out, "layer_timeline.png")
