"""Strong scaling on a ring of cards (docs/multi-device.md): GPT-2 XL and medium on 1/2/4/8
u280 cards, 128:128, with the simulator's wall time, and the modelled per-layer communication of
the column split (what fpgpt compiles) against Megatron's column-then-row split.

    .venv/bin/python bench/bench_multi.py [--models gpt2-xl,gpt2-medium] [--devices 1,2,4,8]
                                          [--json build/bench_multi.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fpgpt.cli.multi import scale_rows
from fpgpt.config import load_preset
from fpgpt.models import get_spec


def layer_comm_us(spec, hw, n: int) -> dict[str, float]:
    """Modelled link time per layer and token on ``n`` cards, ring collectives one way:
    column split: 4 all-gathers (d, d, d_ff, d FP16 elements, n-1 hops each); Megatron: 2
    all-reduces of d FP32 partial sums (reduce-scatter + all-gather: 2(n-1) hops of d/n)."""
    lk = hw.link
    rate = lk.payload_bytes_per_s

    def hop_us(nbytes: float) -> float:
        return (lk.latency_ns + nbytes / rate * 1e9 + -(-nbytes // lk.packet_bytes) * lk.packet_overhead_ns) / 1e3

    d, f = spec.d_model, spec.d_ff
    if n == 1:
        return {"column_us": 0.0, "megatron_us": 0.0, "column_bytes": 0, "megatron_bytes": 0}
    col = sum((n - 1) * hop_us(2 * -(-w // n)) for w in (d, d, f, d))
    meg = 2 * 2 * (n - 1) * hop_us(4 * -(-d // n))
    return {"column_us": col, "megatron_us": meg,
            "column_bytes": sum((n - 1) * 2 * -(-w // n) for w in (d, d, f, d)),
            "megatron_bytes": 2 * 2 * (n - 1) * 4 * -(-d // n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gpt2-xl,gpt2-medium")
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--hw", default="u280")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=128)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args()
    hw = load_preset(a.hw)
    counts = [int(x) for x in a.devices.split(",")]
    out = {}
    for name in a.models.split(","):
        spec = get_spec(name)
        t0 = time.perf_counter()
        rows = scale_rows(spec, hw, counts, prompt_len=a.prompt_len, gen_len=a.gen_len)
        for r in rows:
            r.update(layer_comm_us(spec, hw, r["devices"]))
        out[name] = rows
        print(f"\n{name} on {a.hw}, {a.prompt_len}:{a.gen_len} ({time.perf_counter() - t0:.0f} s)")
        print("| cards | ms/token | TTFT ms | speed-up | efficiency | NET busy % | partner wait % "
              "| HBM floor ms | link MB/token | column us/layer | Megatron us/layer | sim wall s |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['devices']} | {r['ms_per_token']:.3f} | {r['ttft_ms']:.1f} | "
                  f"{r['speedup']:.2f} | {100 * r['efficiency']:.0f} % | "
                  f"{100 * r['comm_share']:.1f} | {100 * r['partner_wait_share']:.1f} | "
                  f"{r['hbm_floor_ms_per_token']:.3f} | {r['link_bytes_per_token'] / 1e6:.2f} | "
                  f"{r['column_us']:.1f} | {r['megatron_us']:.1f} | {r['sim_wall_s']:.1f} |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
