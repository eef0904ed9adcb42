"""The project report: simulate GPT-2 on the presets, add energy and GPU baselines, and write
markdown + PNG + JSON under reports/.

``fpgpt report --out reports/`` (``make reports``, ``python -m fpgpt.report``) regenerates
``reports/README.md`` (speed and energy against GPUs, the DFX comparison, the GPU model's
calibration, energy split, plots), ``reports/report.json`` (every number in it) and
``reports/performance.md`` (per-preset timing). Every figure comes from a simulation run by that
command ("simulated"), the energy model over it, or the GPU model ("model"), except rows marked
"published" (DFX, ../shared/reference/dfx.md) or "measured" (``fpgpt gpu-bench`` baselines).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from .compiler import compile_model
from .config import HardwareConfig, load_preset
from .energy import energy_of
from .models import ModelSpec, get_spec
from .sim import simulate

__all__ = ["sweep", "write_performance_report", "DFX_PUBLISHED", "simulate_design", "compare",
           "clock_series", "build_report", "write_report", "main"]

SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
PRESETS = ("u280", "dfx")

#: What DFX published (reference/dfx.md): batch 1, FP16.
DFX_PUBLISHED = {
    ("gpt2-medium", 1): {"ms_per_token": 5.40, "ttft_ms": {32: 177.2, 128: 692.8},
                         "source": "DFX, MICRO 2022 (345M, 1 x U280), as quoted in reference/dfx.md"},
    ("gpt2-xl", 4): {"ms_per_token": 6.9, "ttft_ms": {64: 447.0},
                     "source": "DFX, MICRO 2022 (1.5B with 24 heads, 4 x U280), reference/dfx.md"},
}


#: The report's clock series: u280 at these clocks (MHz), for these (model, cards).
CLOCKS = (160, 180, 200, 220, 240, 260, 280, 300)
CLOCK_DESIGNS = (("gpt2-medium", 1), ("gpt2-xl", 1), ("gpt2-xl", 4))


def run_one(size: str, hw: HardwareConfig, prompt_len: int, gen_len: int,
            devices: int = 1) -> dict[str, Any]:
    spec = get_spec(size)
    t0 = time.perf_counter()
    r, note = simulate_design(spec, hw, devices=devices, prompt_len=prompt_len, gen_len=gen_len)
    n_decode = r.decode.counts if r.decode else {}
    hw = r.hw
    row = r.to_json()
    e = energy_of(r, hw, spec=spec)
    pre_flops = sum(spec.flops_per_token(p) for p in range(1, prompt_len + 1))
    dec_flops = spec.flops_per_token(min(prompt_len + gen_len // 2, spec.n_ctx))
    row.update({"energy": e.to_json(), "cards_note": note, "params": spec.param_count,
                "roofline": {"prefill_flops": pre_flops, "prefill_hbm_bytes": r.prefill.hbm_bytes,
                             "decode_flops_per_token": dec_flops}})
    row.update({
        "model": size, "wall_s": round(time.perf_counter() - t0, 2),
        "weight_gb_per_token": spec.weight_bytes_per_token() / 1e9,
        "floor_ms_per_token": spec.weight_bytes_per_token() / hw.hbm_peak_bytes_per_s * 1e3,
        "decode_instructions_per_token": getattr(r, "decode_stream_len", None)
        or sum(n_decode.values()) // max(r.tokens_decoded, 1),
        "prefill_mpu_busy": r.prefill.utilization["mpu"],
        "decode_dma_busy": r.decode.utilization["dma"] if r.decode else None,
        "decode_breakdown_ms": ({u: {op: c / (hw.clock_mhz * 1e3) for op, c in d.items()}
                                 for u, d in r.decode.breakdown.items()} if r.decode else {}),
        "clock_mhz": hw.clock_mhz,
    })
    row["fraction_of_floor"] = row["floor_ms_per_token"] / row["ms_per_token"]
    return row


def sweep(*, sizes=SIZES, presets=PRESETS, prompt_len: int = 128, gen_len: int = 128,
          on_row: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Simulate every size on every preset (prompt_len : gen_len)."""
    rows = []
    for p in presets:
        hw = load_preset(p)
        for s in sizes:
            row = run_one(s, hw, prompt_len, gen_len)
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def ttft_sweep(size: str = "gpt2-medium", prompt_lens=(32, 64, 128, 256), presets=PRESETS):
    out = []
    for p in presets:
        hw = load_preset(p)
        for n in prompt_lens:
            program = compile_model(get_spec(size), hw, prompt_len=n, verify=False)
            r = simulate(program, hw, prompt_len=n, gen_len=1)
            out.append({"hw": p, "model": size, "prompt_len": n, "ttft_ms": r.ttft_ms,
                        "prefill_mpu_busy": r.prefill.utilization["mpu"]})
    return out


def _plots(rows: list[dict], ttft: list[dict], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    # 1. decode latency per size, with floors and DFX's published point
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for p, marker in zip(PRESETS, "os"):
        rs = [r for r in rows if r["hw"] == p]
        ax.plot([r["model"] for r in rs], [r["ms_per_token"] for r in rs], marker=marker,
                label=f"{p} (simulated)")
        ax.plot([r["model"] for r in rs], [r["floor_ms_per_token"] for r in rs], ls=":",
                label=f"{p} HBM floor")
    ax.scatter(["gpt2-medium"], [DFX_PUBLISHED[("gpt2-medium", 1)]["ms_per_token"]], color="k",
               marker="*", s=120, zorder=5, label="DFX published (1 x U280)")
    ax.set_ylabel("ms per token (batch 1)")
    ax.set_title("GPT-2 decode on one card")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "decode_latency.png", dpi=120)
    plt.close(fig)
    files.append("decode_latency.png")

    # 2. time to first token vs prompt length
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for p, marker in zip(PRESETS, "os"):
        rs = [r for r in ttft if r["hw"] == p]
        ax.plot([r["prompt_len"] for r in rs], [r["ttft_ms"] for r in rs], marker=marker,
                label=f"{p} (simulated)")
    pub = DFX_PUBLISHED[("gpt2-medium", 1)]["ttft_ms"]
    ax.plot(list(pub), list(pub.values()), "k*--", ms=10, label="DFX published")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("time to first token, ms")
    ax.set_title("GPT-2 medium prefill on one card")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ttft.png", dpi=120)
    plt.close(fig)
    files.append("ttft.png")

    # 3. where decode time goes (busy ms per token by unit and operation), u280
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rs = [r for r in rows if r["hw"] == "u280"]
    ops = sorted({(u, op) for r in rs for u, d in r["decode_breakdown_ms"].items() for op in d})
    bottom = [0.0] * len(rs)
    ntok = [max(r["gen_len"] - 1, 1) for r in rs]
    for u, op in ops:
        vals = [r["decode_breakdown_ms"].get(u, {}).get(op, 0.0) / n for r, n in zip(rs, ntok)]
        if max(vals) <= 0:
            continue
        ax.bar([r["model"] for r in rs], vals, bottom=bottom, label=f"{u}: {op}")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("unit busy time per token, ms (units overlap)")
    ax.set_title("u280 decode: busy time by unit and instruction")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "decode_breakdown.png", dpi=120)
    plt.close(fig)
    files.append("decode_breakdown.png")
    return files


def write_performance_report(rows: list[dict], ttft: list[dict], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _plots(rows, ttft, out)
    (out / "performance.json").write_text(json.dumps({"decode": rows, "ttft": ttft}, indent=1,
                                                     default=float) + "\n")
    pl, gl = rows[0]["prompt_len"], rows[0]["gen_len"]
    lines = [
        "# Simulated GPT-2 performance on one card",
        "",
        "Regenerate with `make reports` (`python -m fpgpt.report`). Every number below is a",
        "simulation by that command (fpgpt's compiler + timing model) except the rows marked",
        "*published*, quoted from DFX (MICRO 2022) via ../shared/reference/dfx.md. The `dfx` preset",
        "is DFX's published architecture parameters compiled by fpgpt; docs/dfx.md explains why it",
        "is faster than DFX's published measurements.",
        "",
        f"## Decode, batch 1, prompt {pl}, generate {gl}",
        "",
        "| hw | model | ms/token | tokens/s | HBM floor ms | % of floor speed | HBM BW used | "
        "TTFT ms | prefill MPU busy | instr/token |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['hw']} | {r['model']} | {r['ms_per_token']:.3f} | {r['tokens_per_s']:.0f} | "
            f"{r['floor_ms_per_token']:.3f} | {100 * r['fraction_of_floor']:.1f} % | "
            f"{100 * r['hbm_bw_utilization']:.1f} % | {r['ttft_ms']:.1f} | "
            f"{100 * r['prefill_mpu_busy']:.1f} % | {r['decode_instructions_per_token']:,} |")
    for (model, cards), pub in DFX_PUBLISHED.items():
        lines.append(f"| DFX *published*, {cards} x U280 | {model} | {pub['ms_per_token']} | "
                     f"{1e3 / pub['ms_per_token']:.0f} | | | | "
                     f"{'; '.join(f'{v} @ {k}' for k, v in pub['ttft_ms'].items())} | | |")
    lines += ["", "![decode latency](decode_latency.png)", "",
              "## Time to first token, GPT-2 medium", "",
              "| hw | prompt tokens | TTFT ms | prefill MPU busy |", "|---|---|---|---|"]
    for r in ttft:
        lines.append(f"| {r['hw']} | {r['prompt_len']} | {r['ttft_ms']:.1f} | "
                     f"{100 * r['prefill_mpu_busy']:.1f} % |")
    pub = DFX_PUBLISHED[("gpt2-medium", 1)]["ttft_ms"]
    for k, v in pub.items():
        lines.append(f"| DFX *published* | {k} | {v} | |")
    lines += ["", "![time to first token](ttft.png)", "",
              "## Where decode time goes (u280)", "", "![decode breakdown](decode_breakdown.png)", ""]
    md = out / "performance.md"
    md.write_text("\n".join(lines))
    return md


# ------------------------------------------------------------------------------- simulation
def _multi_card_simulator():
    """The multi-card timing entry point of fpgpt.sim, when that work has landed (else None)."""
    try:
        from .sim.system import simulate_system
    except ImportError:
        return None
    return simulate_system


def simulate_design(spec: ModelSpec, hw: HardwareConfig, *, devices: int = 1, prompt_len: int,
                    gen_len: int, trace=None, progress=None):
    """Compile and time ``spec`` on ``devices`` cards of ``hw``: ``(SimResult, note)``.

    ``note`` is None when the result is what was asked for; when several cards are asked for
    and fpgpt.sim cannot time a ring yet, the result is one card and ``note`` says so. A ring's
    result is the system's (each stream as long as its slowest card), its streams carrying
    ``events_per_device`` (every card's event counts) for the energy model.
    """
    import copy
    note = None
    if devices > 1:
        multi = _multi_card_simulator()
        if multi is not None:
            from .compiler import compile_devices
            hwn = hw.replace(devices=devices)
            programs = compile_devices(spec, hwn, prompt_len=prompt_len, verify=False)
            sr = multi(programs, prompt_len=prompt_len, gen_len=gen_len, hw=hwn,
                       progress=progress)
            r = copy.copy(sr.result)
            for name in ("prefill", "decode"):
                st = getattr(r, name)
                if st is None:
                    continue
                st = copy.copy(st)
                evs = [getattr(getattr(c, name), "events", None) for c in sr.cards]
                if all(evs):
                    st.events_per_device = evs
                setattr(r, name, st)
            r.decode_stream_len = len(programs[0].streams["decode"])
            r.system = sr
            return r, None
        note = (f"{devices} cards asked for, but fpgpt.sim cannot time a ring of cards yet: "
                f"every figure is ONE card")
    hw1 = hw.replace(devices=1) if hw.devices != 1 else hw
    program = compile_model(spec, hw1, prompt_len=prompt_len, verify=False)
    r = simulate(program, hw1, prompt_len=prompt_len, gen_len=gen_len, trace=trace,
                 progress=progress)
    r.decode_stream_len = len(program.streams["decode"])
    return r, note


def compare(spec: ModelSpec, hw: HardwareConfig, *, devices: int = 1,
            gpus: tuple[str, ...] = ("v100x4", "a100-80", "h100"), baselines: tuple[str, ...] = (),
            prompt_len: int = 128, gen_len: int = 128, label: str | None = None,
            progress=None) -> dict[str, Any]:
    """Simulate the design and set it beside GPU models and measured baselines (JSON-ready)."""
    from .energy import estimate, load_baseline
    from .energy.compare import comparison
    ests = [estimate(spec, g, prompt_len=prompt_len, gen_len=gen_len) for g in gpus]
    ests += [load_baseline(b) for b in baselines]
    r, note = simulate_design(spec, hw, devices=devices, prompt_len=prompt_len, gen_len=gen_len,
                              progress=progress)
    e = energy_of(r, r.hw, spec=spec)
    cards = r.hw.devices
    name = label or f"fpgpt {hw.name} x {cards}"
    out = comparison(r, e, r.hw, ests, label=name, note=note)
    out["model"] = spec.name
    out["cards_asked"] = devices
    out["cards_simulated"] = cards
    out["energy_constants"] = e.constants
    return out


# ----------------------------------------------------------------------------------- report
GPU_SET = ("v100x4", "v100x4:hf-eager", "a100-40", "a100-80", "a100-40x4", "h100", "l4")


def _layer_timeline(spec: ModelSpec, hw: HardwareConfig, prompt_len: int) -> dict[str, Any]:
    """Trace one decoded token and keep a window one layer long (token time / n_layer) from the
    middle of the stack: what each unit does in a decoder layer."""
    from .sim.results import UNITS
    from .sim.trace import TraceRecorder
    tr = TraceRecorder(max_events=1_000_000)
    r, _ = simulate_design(spec, hw, prompt_len=prompt_len, gen_len=2, trace=tr)
    t0 = r.prefill.ms * 1e3
    layer_us = r.decode.ms * 1e3 / spec.n_layer
    k = spec.n_layer // 2
    w0, w1 = t0 + k * layer_us, t0 + (k + 1) * layer_us
    evs = []
    for ev in tr.events:
        if ev.get("ph") != "X" or ev.get("tid", 99) >= len(UNITS):
            continue
        a, b = ev["ts"], ev["ts"] + ev["dur"]
        if b <= w0 or a >= w1:
            continue
        evs.append({"unit": UNITS[ev["tid"]], "op": ev["name"], "start_us": max(a, w0) - w0,
                    "dur_us": min(b, w1) - max(a, w0)})
    busy = {u: sum(e["dur_us"] for e in evs if e["unit"] == u) / layer_us for u in UNITS}
    return {"model": spec.name, "hw": hw.name, "prompt_len": prompt_len, "layer": k,
            "layer_us": layer_us, "units": list(UNITS), "events": evs, "busy_fraction": busy,
            "title": f"{spec.name} on {hw.name}: decoder layer {k} of the first decoded token "
                     f"(a {layer_us:.1f} µs window = token time / {spec.n_layer} layers)"}


def clock_series(preset: str = "u280", designs=CLOCK_DESIGNS, clocks=CLOCKS, *,
                 prompt_len: int = 128, gen_len: int = 128, log=print) -> dict[str, Any]:
    """The preset's design at other clocks with its own pipeline latencies (the ones its Verilog
    needs at its ``clock_mhz``), so every figure above that clock is a lower bound of the time
    a design closing there would take (it would need more registers): what a faster clock could
    give, and where decode stops following the clock (examples/sweep-clock.toml sweeps the same
    on Dask)."""
    base = load_preset(preset)
    rows = []
    for model, cards in designs:
        spec = get_spec(model)
        for mhz in clocks:
            r, _ = simulate_design(spec, base.replace(clock_mhz=float(mhz)), devices=cards,
                                   prompt_len=prompt_len, gen_len=gen_len)
            rows.append({"model": model, "cards": cards, "clock_mhz": mhz,
                         "ms_per_token": r.ms_per_token, "ttft_ms": r.ttft_ms})
        log(f"clock series: {model} x{cards} at {clocks[0]}-{clocks[-1]} MHz")
    return {"hw": preset, "preset_clock_mhz": base.clock_mhz, "rows": rows}


def build_report(*, sizes=SIZES, presets=PRESETS, prompt_len: int = 128, gen_len: int = 128,
                 gpus: tuple[str, ...] = GPU_SET, multi_cards: int = 4,
                 headline_model: str | None = None, timeline_model: str = "gpt2-medium",
                 ttft_lens=(32, 64, 128, 256), log=print) -> dict[str, Any]:
    """Everything the report shows, as plain data (``reports/report.json``)."""
    from .energy import calibration, estimate
    from .energy.compare import comparison
    headline_model = headline_model or sizes[-1]
    data: dict[str, Any] = {"prompt_len": prompt_len, "gen_len": gen_len, "sizes": list(sizes),
                            "presets": list(presets)}
    data["models"] = [{"model": m, "params": get_spec(m).param_count} for m in sizes]
    rows: list[dict] = []
    for pname in presets:
        hw = load_preset(pname)
        for m in sizes:
            row = run_one(m, hw, prompt_len, gen_len)
            rows.append(row)
            log(f"{pname:5s} x1 {m:12s} {row['ms_per_token']:.3f} ms/token, "
                f"{row['energy']['decode_tokens_per_j']['value']:.1f} tokens/J "
                f"({row['wall_s']:.1f} s)")
    data["decode"] = rows
    # multi-card series, when fpgpt.sim can time a ring
    multi = _multi_card_simulator() is not None and multi_cards > 1
    data["multi_card"] = {"available": multi, "cards": multi_cards if multi else 1,
                          "note": None if multi else
                          f"fpgpt.sim cannot time a ring of cards yet: the {multi_cards}-card "
                          f"series and the scaling plot are left out; every design figure is one card"}
    multi_rows, scaling = [], []
    if multi:
        first = presets[0]
        for m in sizes:
            row = run_one(m, load_preset(first), prompt_len, gen_len, devices=multi_cards)
            multi_rows.append(row)
            log(f"{first:5s} x{multi_cards} {m:12s} {row['ms_per_token']:.3f} ms/token, "
                f"{row['energy']['decode_tokens_per_j']['value']:.1f} tokens/J")
        for pname in presets[1:]:       # the other presets on the headline model only
            row = run_one(headline_model, load_preset(pname), prompt_len, gen_len,
                          devices=multi_cards)
            multi_rows.append(row)
            log(f"{pname:5s} x{multi_cards} {headline_model:12s} {row['ms_per_token']:.3f} ms/token")
        by_cards = {1: next(r for r in rows if r["hw"] == first and r["model"] == headline_model),
                    multi_cards: next(r for r in multi_rows if r["hw"] == first
                                      and r["model"] == headline_model)}
        for n in range(2, multi_cards):
            if n not in by_cards and get_spec(headline_model).n_head >= n:
                by_cards[n] = run_one(headline_model, load_preset(first), prompt_len, gen_len,
                                      devices=n)
        scaling = [{"hw": first, "model": headline_model, "cards": n,
                    "ms_per_token": r["ms_per_token"], "ttft_ms": r["ttft_ms"],
                    "tokens_per_j": r["energy"]["decode_tokens_per_j"],
                    "avg_power_w": r["energy"]["decode_avg_power_w"]}
                   for n, r in sorted(by_cards.items())]
    data["decode_multi"] = multi_rows
    data["designs"] = [{"label": f"{p} x 1", "rows": [r for r in rows if r["hw"] == p]}
                       for p in presets]
    if multi_rows:
        data["designs"].insert(1, {"label": f"{presets[0]} x {multi_cards}",
                                   "rows": [r for r in multi_rows if r["hw"] == presets[0]]})
    data["published"] = [{"model": m, "cards": c, "ms_per_token": v["ms_per_token"],
                          "source": v["source"]} for (m, c), v in DFX_PUBLISHED.items()]
    # GPU models for every size
    data["gpu_rows"] = []
    for m in sizes:
        for g in gpus:
            e = estimate(get_spec(m), g, prompt_len=prompt_len, gen_len=gen_len).to_json()
            e["model"] = m
            data["gpu_rows"].append(e)
    data["calibration"] = calibration()
    # headline: the largest model, each design against each GPU
    spec = get_spec(headline_model)
    head_rows, comps = [], []
    design_rows = [r for r in (multi_rows or []) if r["model"] == headline_model]
    design_rows += [r for r in rows if r["model"] == headline_model]
    ests = [estimate(spec, g, prompt_len=prompt_len, gen_len=gen_len) for g in gpus]
    for dr in design_rows:
        hw = load_preset(dr["hw"]).replace(devices=dr["devices"]) if dr["devices"] > 1 \
            else load_preset(dr["hw"])
        c = comparison(_ResultView(dr), _energy_from_row(dr), hw, ests,
                       label=f"fpgpt {dr['hw']} x {dr['devices']}")
        comps.append(c)
        head_rows.append(c["design"])
    head_rows += [g.to_json() for g in ests]
    data["headline"] = {"model": headline_model, "rows": head_rows, "comparisons": comps}
    # roofline points
    data["rooflines"] = []
    for pname in presets:
        hw = load_preset(pname)
        pts = []
        for r in (x for x in rows if x["hw"] == pname):
            rf = r["roofline"]
            pts.append({"model": r["model"], "stream": "decode",
                        "intensity": rf["decode_flops_per_token"] / max(r["hbm_bytes_per_token"], 1),
                        "tflops": rf["decode_flops_per_token"] / (r["ms_per_token"] / 1e3) / 1e12})
            pts.append({"model": r["model"], "stream": "prefill",
                        "intensity": rf["prefill_flops"] / max(rf["prefill_hbm_bytes"], 1),
                        "tflops": rf["prefill_flops"] / (r["ttft_ms"] / 1e3) / 1e12})
        data["rooflines"].append({"hw": pname, "hbm_gb_s": hw.hbm_peak_bytes_per_s / 1e9,
                                  "mpu_peak_tflops": hw.mpu_peak_flops / 1e12, "points": pts})
    data["energy_split"] = [{"hw": r["hw"], "model": r["model"], "cards": r["devices"],
                             "split": {c: {k: v / r["energy"]["decode"]["tokens"] for k, v in j.items()}
                                       for c, j in r["energy"]["decode"]["joules"].items()}}
                            for r in (multi_rows + rows)]
    data["scaling"] = scaling
    data["ttft"] = (ttft_sweep(timeline_model, prompt_lens=ttft_lens, presets=presets)
                    if ttft_lens else [])
    data["clock"] = clock_series(presets[0], prompt_len=prompt_len, gen_len=gen_len, log=log)
    log(f"timeline: {timeline_model} on u280")
    data["timeline"] = _layer_timeline(get_spec(timeline_model), load_preset(presets[0]),
                                       min(prompt_len, 128))
    return data


class _ResultView:
    """What :func:`fpgpt.energy.compare.comparison` reads, from a report row."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.model, self.prompt_len, self.gen_len = row["model"], row["prompt_len"], row["gen_len"]
        self.ms_per_token, self.ttft_ms = row["ms_per_token"], row["ttft_ms"]


def _energy_from_row(row: dict[str, Any]):
    """Rebuild the decode StreamEnergy of a report row (for :func:`comparison`)."""
    from .energy.model import EnergyResult, Span, StreamEnergy

    def se(d):
        return StreamEnergy(name=d["name"], seconds=d["seconds"], tokens=d["tokens"],
                            cards=d["cards"], events=d["events"],
                            joules={c: Span(**v) for c, v in d["joules"].items()})
    e = row["energy"]
    return EnergyResult(model=e["model"], hw=e["hw"], cards=e["cards"], prompt_len=e["prompt_len"],
                        gen_len=e["gen_len"], prefill=se(e["prefill"]),
                        decode=se(e["decode"]) if e["decode"] else None, constants=e["constants"])


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="reports")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=128)
    args = ap.parse_args(argv)
    data = build_report(prompt_len=args.prompt_len, gen_len=args.gen_len)
    md = write_report(data, args.out)
    print(f"wrote {md}")
    return 0


def write_report(data: dict[str, Any], out_dir: str | Path) -> Path:
    """Write README.md, report.json, performance.md and the PNGs of ``data`` into ``out_dir``."""
    from .report_md import write_report_files
    return write_report_files(data, Path(out_dir))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
