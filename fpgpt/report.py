"""Performance reports: simulate GPT-2 on the presets and write markdown + PNG under reports/.

``python -m fpgpt.report`` (or ``make reports``) regenerates ``reports/performance.md`` and its
plots from scratch; every figure in them comes from a simulation run by that command, except the
rows marked "published", which quote DFX (../shared/reference/dfx.md) for comparison.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from .compiler import compile_model
from .config import HardwareConfig, load_preset
from .models import get_spec
from .sim import simulate

__all__ = ["sweep", "write_performance_report", "DFX_PUBLISHED", "main"]

SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
PRESETS = ("u280", "dfx")

#: What DFX published (reference/dfx.md): batch 1, FP16.
DFX_PUBLISHED = {
    ("gpt2-medium", 1): {"ms_per_token": 5.40, "ttft_ms": {32: 177.2, 128: 692.8},
                         "source": "DFX, MICRO 2022 (345M, 1 x U280), as quoted in reference/dfx.md"},
    ("gpt2-xl", 4): {"ms_per_token": 6.9, "ttft_ms": {64: 447.0},
                     "source": "DFX, MICRO 2022 (1.5B with 24 heads, 4 x U280), reference/dfx.md"},
}


def run_one(size: str, hw: HardwareConfig, prompt_len: int, gen_len: int) -> dict[str, Any]:
    spec = get_spec(size)
    t0 = time.perf_counter()
    program = compile_model(spec, hw, prompt_len=prompt_len, verify=False)
    r = simulate(program, hw, prompt_len=prompt_len, gen_len=gen_len)
    row = r.to_json()
    row.update({
        "model": size, "wall_s": round(time.perf_counter() - t0, 2),
        "weight_gb_per_token": spec.weight_bytes_per_token() / 1e9,
        "floor_ms_per_token": spec.weight_bytes_per_token() / hw.hbm_peak_bytes_per_s * 1e3,
        "decode_instructions_per_token": len(program.streams["decode"]),
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
    files = _plots(rows, ttft, out)
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


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="reports")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=128)
    args = ap.parse_args(argv)
    rows = sweep(prompt_len=args.prompt_len, gen_len=args.gen_len,
                 on_row=lambda r: print(f"{r['hw']:5s} {r['model']:12s} {r['ms_per_token']:.3f} ms/token "
                                        f"(floor {r['floor_ms_per_token']:.3f}), TTFT {r['ttft_ms']:.1f} ms",
                                        flush=True))
    ttft = ttft_sweep()
    md = write_performance_report(rows, ttft, args.out)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
