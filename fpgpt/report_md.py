"""Writes the project report (``reports/README.md``, ``report.json``, ``performance.md``, PNGs)
from the data :func:`fpgpt.report.build_report` gathered; nothing here simulates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import load_preset
from . import report_plots as rp

__all__ = ["write_report_files", "fmt_span"]

DFX_CLAIM = {"speedup": 5.58, "energy": 3.99,
             "source": "DFX (Hong et al., MICRO 2022): 5.58x lower latency and 3.99x better "
                       "energy efficiency than 4 x V100 (reference/dfx.md)"}


def fmt_span(s: dict[str, float], digits: int = 2) -> str:
    """``value [lo-hi]``, or the value alone when the range is a point."""
    v, lo, hi = s["value"], s["lo"], s["hi"]
    f = f"{{:.{digits}f}}"
    if abs(hi - lo) <= 1e-9 * max(abs(v), 1.0):
        return f.format(v)
    return f"{f.format(v)} [{f.format(lo)}–{f.format(hi)}]"


def _rows_table(rows: list[dict]) -> list[str]:
    out = ["| system | kind | ms/token | tokens/s | TTFT ms | avg power W | "
           "tokens/J [range] | J/token |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['label']} | {r['kind']} | {fmt_span(r['ms_per_token'])} | "
                   f"{r['tokens_per_s']:.0f} | {fmt_span(r['ttft_ms'], 1)} | "
                   f"{fmt_span(r['avg_power_w'], 0)} | {fmt_span(r['tokens_per_j'])} | "
                   f"{r['j_per_token']['value']:.3f} |")
    return out


def _ratio_table(comps: list[dict]) -> list[str]:
    out = ["| design | GPU (model) | speed-up [range] | energy-efficiency ratio [range] |",
           "|---|---|---|---|"]
    for c in comps:
        for g in c["gpus"]:
            out.append(f"| {c['design']['label']} | {g['label']} | "
                       f"{fmt_span(g['speedup'])}x | {fmt_span(g['energy_efficiency_ratio'])}x |")
    return out


def write_report_files(data: dict[str, Any], out: Path) -> Path:
    from .report import write_performance_report
    out.mkdir(parents=True, exist_ok=True)
    plots = [rp.plot_latency_vs_size(data, out), rp.plot_tokens_per_joule(data, out),
             rp.plot_roofline(data, out), rp.plot_energy_split(data, out),
             rp.plot_scaling(data, out), rp.plot_clock(data, out), rp.plot_layer_timeline(data, out)]
    data["plots"] = [p for p in plots if p]
    perf_rows = [{k: v for k, v in r.items() if k not in ("energy",)} for r in data["decode"]]
    if data.get("ttft"):
        write_performance_report(perf_rows, data["ttft"], out)
    (out / "report.json").write_text(json.dumps(data, indent=1, default=float) + "\n")

    pl, gl, head = data["prompt_len"], data["gen_len"], data["headline"]
    mc = data["multi_card"]
    u280 = load_preset("u280")
    L = ["# fpgpt report: GPT-2 on FPGA designs against GPUs, per token and per joule", "",
         "Regenerate with `fpgpt report --out reports/` (or `make reports`); every number is in",
         "[report.json](report.json). Kinds: **simulated** = fpgpt's compiler + timing model on a",
         "preset, with the energy model (fpgpt/energy) over its results; **model** = the",
         "calibrated GPU model (fpgpt/energy/gpus.toml); **published** = a paper's measurement;",
         "**measured** = an `fpgpt gpu-bench` baseline. Ranges `[lo–hi]` come from the `[power]`",
         "constants' ranges (design) and from the GPU power brackets, all-reduce latency and",
         "calibration residual (GPUs): they are the honest spread, not error bars of a measurement.",
         f"Batch 1, FP16, prompt {pl} tokens, {gl} generated.", "",
         "**Clock.** Every design figure is at its preset's `clock_mhz`: for u280 and u55c that is",
         f"what `fpgpt synth` estimates their Verilog supports today ({u280.clock_mhz:g} MHz: its slowest",
         "blocks are in docs/rtl-clock.md), not the 300 MHz the architecture",
         "targets; `dfx` keeps DFX's own published 200 MHz. At that clock the u280's HBM ports",
         f"deliver {u280.hbm_peak_bytes_per_s / 1e9:.0f} GB/s of the HBM's 460. `fpgpt simulate --hw examples/u280-300mhz.toml` gives",
         "the 300 MHz what-if.", ""]
    if not mc["available"]:
        L += [f"> **One card.** {mc['note']}.", ""]
    ev = {r["energy"]["events"] for r in data["decode"]}
    if "estimated" in ev:
        L += ["> **Estimated events.** The simulator's event counts (MACs, VPU operations, "
              "scratchpad and HBM traffic) were not available; the energy model used counts "
              "estimated from the model's shapes and the simulated HBM bytes "
              "(`fpgpt.energy.estimate_events`).", ""]
    L += [f"## {head['model']}: the designs against GPUs", ""]
    L += _rows_table(head["rows"])
    L += ["", "Ratios (design / GPU; > 1 means the design is faster or more efficient):", ""]
    L += _ratio_table(head["comparisons"])
    L += ["", "![ms per token against model size](latency_vs_size.png)", "",
          "![tokens per joule](tokens_per_joule.png)", ""]

    # DFX
    L += ["## The `dfx` preset beside DFX's published claims", "",
          f"DFX reports {DFX_CLAIM['speedup']}x the speed and {DFX_CLAIM['energy']}x the energy "
          f"efficiency of 4 x V100 on GPT-2 1.5B ({DFX_CLAIM['source']}).", "",
          "| what | vs 4 x V100 (model, FasterTransformer-class) | vs 4 x V100 (model, HF eager) |",
          "|---|---|---|"]
    dfxc = [c for c in head["comparisons"] if c["design"]["hw"] == "dfx"]
    for c in dfxc:
        g = {x["label"]: x for x in c["gpus"]}
        ft, eg = g.get("4 x v100"), g.get("4 x v100 (hf-eager)")
        if ft and eg:
            L.append(f"| {c['design']['label']}: speed-up | {fmt_span(ft['speedup'])}x | "
                     f"{fmt_span(eg['speedup'])}x |")
            L.append(f"| {c['design']['label']}: energy efficiency | "
                     f"{fmt_span(ft['energy_efficiency_ratio'])}x | "
                     f"{fmt_span(eg['energy_efficiency_ratio'])}x |")
    pub = next((p for p in data["published"] if p["model"] == head["model"]), None)
    ft = eg = None
    if pub:
        v = {r["label"]: r for r in head["rows"]}
        ft, eg = v.get("4 x v100"), v.get("4 x v100 (hf-eager)")
        if ft and eg:
            L.append(f"| DFX published {pub['ms_per_token']} ms/token ({pub['cards']} cards): "
                     f"speed-up | {ft['ms_per_token']['value'] / pub['ms_per_token']:.2f}x | "
                     f"{eg['ms_per_token']['value'] / pub['ms_per_token']:.2f}x |")
    L += [f"| DFX's own claim | {DFX_CLAIM['speedup']}x speed, {DFX_CLAIM['energy']}x energy | |",
          ""]
    if pub and ft and eg:
        L += [f"DFX's published {pub['ms_per_token']} ms/token is "
              f"{eg['ms_per_token']['value'] / pub['ms_per_token']:.1f}x the modelled HF-eager "
              f"4 x V100 ({eg['ms_per_token']['value']:.1f} ms/token) and "
              f"{ft['ms_per_token']['value'] / pub['ms_per_token']:.2f}x the modelled "
              f"fused-kernel 4 x V100 ({ft['ms_per_token']['value']:.2f} ms/token): its "
              f"{DFX_CLAIM['speedup']}x is closer to the "
              + ("first (its GPU baseline paid an eager framework's per-layer overhead)."
                 if abs(eg['ms_per_token']['value'] / pub['ms_per_token'] - DFX_CLAIM['speedup'])
                 < abs(ft['ms_per_token']['value'] / pub['ms_per_token'] - DFX_CLAIM['speedup'])
                 else "second (a fused-kernel GPU baseline)."), ""]
    dfx_multi = [c for c in dfxc if c["design"]["cards"] > 1]
    if pub and eg and dfx_multi:
        ratio = DFX_CLAIM["speedup"] / DFX_CLAIM["energy"]
        d4 = dfx_multi[0]["design"]
        n = d4["cards"]
        implied = ratio * eg["avg_power_w"]["value"] / pub["cards"]
        w = d4["avg_power_w"]
        L += [f"Power check: DFX's two ratios imply its cards drew {ratio:.2f}x the power of the "
              f"four V100s; with the modelled HF-eager 4 x V100 at {eg['avg_power_w']['value']:.0f} W "
              f"that is {implied:.0f} W per U280, against this energy model's "
              f"{w['value'] / n:.0f} [{w['lo'] / n:.0f}–{w['hi'] / n:.0f}] W per `dfx` card.", ""]
    L += [f"The `dfx` preset runs on {dfxc[0]['design']['cards'] if dfxc else 1} card(s) here"
          + ("" if mc["available"] else " (the multi-card simulator has not landed)") + ".", ""]

    # calibration
    cal = data["calibration"]
    L += ["## GPU model: calibration on published batch-1 measurements", "",
          "| GPU | stack | model | published ms/token | model ms/token | error | points fitted |",
          "|---|---|---|---|---|---|---|"]
    for r in cal["rows"]:
        L.append(f"| {r['gpu']} | {r['stack']} | {r['model']} | {r['published_ms']} | "
                 f"{r['model_ms']:.2f} | {100 * r['error']:+.1f} % | {r['fitted_points']} |")
    L += [""] + [f"- `{k}`: achieved bandwidth {100 * p['eta']:.1f} % of peak, "
                 f"{p['overhead_per_layer_s'] * 1e6:.0f} µs overhead per layer, time spread "
                 f"±{100 * p['time_spread']:.0f} %" for k, p in cal["params"].items()]
    L += ["", "The FasterTransformer stack has 2 parameters fitted on 3 points; the HF-eager "
          "stack's overhead is fitted on its single point (exact by construction), so its spread "
          "is taken from the FasterTransformer fit.", ""]

    # energy split
    L += ["## Energy per decoded token by component (mJ, value [range])", "",
          "| hw | cards | model | " + " | ".join(rp._COLORS) + " | total |",
          "|---|---|---|" + "---|" * (len(rp._COLORS) + 1)]
    for r in data["energy_split"]:
        tot = {k: sum(r["split"][c][k] for c in rp._COLORS) * 1e3 for k in ("value", "lo", "hi")}
        L.append(f"| {r['hw']} | {r['cards']} | {r['model']} | " + " | ".join(
            fmt_span({k: v * 1e3 for k, v in r["split"][c].items()}) for c in rp._COLORS)
            + f" | {fmt_span(tot)} |")
    L += ["", "![energy split](energy_split.png)", ""]

    # per-model design table
    L += ["## Every design and model", "",
          "| hw | cards | model | ms/token | TTFT ms | decode W [range] | tokens/J [range] |",
          "|---|---|---|---|---|---|---|"]
    for r in data.get("decode_multi", []) + data["decode"]:
        e = r["energy"]
        L.append(f"| {r['hw']} | {r['devices']} | {r['model']} | {r['ms_per_token']:.3f} | "
                 f"{r['ttft_ms']:.1f} | {fmt_span(e['decode_avg_power_w'], 1)} | "
                 f"{fmt_span(e['decode_tokens_per_j'])} |")
    L += ["", "## Roofline", "", "![roofline](roofline.png)", ""]
    if "scaling.png" in data["plots"]:
        L += ["## Scaling with cards", "", "![scaling](scaling.png)", ""]
    else:
        L += ["## Scaling with cards", "", f"Not drawn: {mc['note'] or 'one card only'}.", ""]
    if "clock.png" in data["plots"]:
        c = data["clock"]
        designs = sorted({(r["model"], r["cards"]) for r in c["rows"]})
        L += [f"## What a faster clock would give ({c['hw']})", "",
              f"The {c['hw']} design at other clocks with the pipeline latencies its Verilog needs "
              f"at {c['preset_clock_mhz']:g} MHz: a design that closes timing at a higher clock "
              "needs more registers, so each figure above that clock is a lower bound of its "
              "time. ms/token / time to first token in ms:", "",
              "| MHz | " + " | ".join(f"{m} x {n}" for m, n in designs) + " |",
              "|---|" + "---|" * len(designs)]
        for mhz in sorted({r["clock_mhz"] for r in c["rows"]}):
            cells = []
            for m, n in designs:
                r = next(r for r in c["rows"] if (r["model"], r["cards"], r["clock_mhz"]) == (m, n, mhz))
                cells.append(f"{r['ms_per_token']:.3f} / {r['ttft_ms']:.1f}")
            L.append(f"| {mhz:g} | " + " | ".join(cells) + " |")
        L += ["", "![clock](clock.png)", ""]
    tl = data["timeline"]
    L += ["## One decoder layer, unit by unit", "", tl["title"] + ". Busy fraction: " +
          ", ".join(f"{u} {100 * f:.0f} %" for u, f in tl["busy_fraction"].items()) + ".", "",
          "![layer timeline](layer_timeline.png)", ""]
    # constants
    L += ["## Energy constants (`[power]` of the `u280` preset) and their sources", "",
          "| constant | value | range | source |", "|---|---|---|---|"]
    consts = next(r["energy"]["constants"] for r in data["decode"])
    for k, c in consts.items():
        L.append(f"| {k} | {c['value']:g} | {c['range'][0]:g}–{c['range'][1]:g} | "
                 f"{c['source'].replace('|', '/')} |")
    L += ["", "GPU constants and their sources: `fpgpt/energy/gpus.toml`; the method: "
          "docs/energy.md. Timing of each preset in detail: [performance.md](performance.md).", ""]
    md = out / "README.md"
    md.write_text("\n".join(L))
    return md
