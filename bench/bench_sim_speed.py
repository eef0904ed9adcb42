"""Speed of the simulator itself (issue: compiler and single-device simulator, point 4).

Measures, on this machine:

1. timing-only GPT-2 XL, 128-token prompt + 128 generated tokens, one u280 device (wall seconds of
   ``simulate``; compiling is reported apart);
2. how the timing cost grows with gen-len (64, 128, 256: doubling gen-len should about double it);
3. the shipped model's 64-token generation in exact mode (compile + functional run), and in fast
   mode.

Run: ``.venv/bin/python bench/bench_sim_speed.py [--json]``. Numbers are measured, never assumed;
on a shared machine, also look at the CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import time

from fpgpt.compiler import compile_model
from fpgpt.config import load_preset
from fpgpt.models import ByteTokenizer, load_model
from fpgpt.sim import generate, simulate


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def timing_runs(model: str = "gpt2-xl", hw_name: str = "u280", prompt: int = 128,
                gens=(64, 128, 256)) -> list[dict]:
    hw = load_preset(hw_name)
    program, cw, _ = _timed(lambda: compile_model(model, hw, prompt_len=prompt, verify=False))
    rows = []
    for g in gens:
        r, wall, cpu = _timed(lambda: simulate(program, hw, prompt_len=prompt, gen_len=g))
        n = r.prefill.instructions + (r.decode.instructions if r.decode else 0)
        rows.append({"model": model, "hw": hw_name, "prompt_len": prompt, "gen_len": g,
                     "compile_s": round(cw, 3), "simulate_wall_s": round(wall, 3),
                     "simulate_cpu_s": round(cpu, 3), "instructions": n,
                     "instructions_per_s": round(n / wall), "ms_per_token": r.ms_per_token})
    return rows


def shipped_generation(model: str = "tiny", n: int = 64) -> list[dict]:
    weights = load_model(model)
    ids = ByteTokenizer().encode("The assert statement")
    hw = load_preset("u280")
    rows = []
    for mode in ("exact", "fast"):
        def run():
            program = compile_model(weights, hw, prompt_len=len(ids))
            return generate(program, ids, n, mode=mode)
        g, wall, cpu = _timed(run)
        rows.append({"model": model, "mode": mode, "new_tokens": n, "wall_s": round(wall, 3),
                     "cpu_s": round(cpu, 3), "instructions": g.instructions})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="simulator speed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    timing = timing_runs()
    gen = shipped_generation()
    if args.json:
        print(json.dumps({"timing": timing, "generation": gen}, indent=1))
        return 0
    print("timing-only GPT-2 XL on u280 (compile "
          f"{timing[0]['compile_s']:.2f} s, not included):")
    print(f"{'prompt:gen':>11} {'instructions':>13} {'wall s':>8} {'cpu s':>7} {'instr/s':>9}")
    for r in timing:
        print(f"{r['prompt_len']:>5}:{r['gen_len']:<5} {r['instructions']:>13,} {r['simulate_wall_s']:>8.2f} "
              f"{r['simulate_cpu_s']:>7.2f} {r['instructions_per_s']:>9,}")
    ratio = timing[-1]["simulate_wall_s"] / timing[-2]["simulate_wall_s"]
    print(f"gen-len {timing[-2]['gen_len']} -> {timing[-1]['gen_len']}: wall x{ratio:.2f}")
    print("shipped model, 64 new tokens (compile + run):")
    for r in gen:
        print(f"  {r['mode']:5s} {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s cpu, {r['instructions']:,} instructions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
