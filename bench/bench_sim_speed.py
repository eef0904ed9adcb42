"""Speed of the simulator itself (issue: compiler and single-device simulator, point 4; issue 10
part 3).

Measures, on this machine:

0. the whole command ``fpgpt simulate --model gpt2-xl --hw u280 --prompt-len 128 --gen-len 128``
   as a user runs it (a fresh Python process: wall and CPU seconds), and its parts: Python
   start-up with the CLI's imports, compiling, simulating (in-process);
1. timing-only GPT-2 XL, 128-token prompt + 128 generated tokens, one u280 device (wall seconds of
   ``simulate``; compiling is reported apart);
2. how the timing cost grows with gen-len (64, 128, 256: doubling gen-len should about double it);
3. the shipped model's 64-token generation in exact mode (compile + functional run), and in fast
   mode.

Run: ``.venv/bin/python bench/bench_sim_speed.py [--json] [--command-only]``. Numbers are measured,
never assumed; on a shared machine, also look at the CPU seconds.

Before and after issue 10 part 3 (the XL command, ``--command-only``, measured back to back on
this 2-core machine shared by several sessions, load average ~15; "before" is commit 68094fb,
"after" bab2f7a, each run from an exported tree through PYTHONPATH, on the same compiled program:
prefill 272,288,815.19 and decode 403,494,880.79 cycles in both):

    before: whole command 104.5 s wall, 37.1 s CPU (start-up + imports 0.37 s CPU, compile 1.16,
            simulate 36.7)
    after:  whole command  14.8 s wall,  4.8 s CPU (start-up + imports 0.41 s CPU, compile 1.18,
            simulate 3.15)

Session 6 (a compile cache, a tighter dispatch loop; same cycles), load average 6.8: the XL
command 5.42 s CPU without the cache, 4.08 s with a warm one; ``--devices 4`` 8.80 s CPU warm
(docs/sim-speed-events.md, "Session 6"). ``--command-only`` now also runs both commands twice on
an empty temporary compile cache (cold, then warm).

Session 7 (less interpreter work per dispatch, a faster compile-cache entry and StreamPlan;
same cycles), ``--baseline`` against c2aa36d's tree at load average ~10: the XL command with a
warm cache 3.50 -> 2.97 s CPU (6.71 -> 5.91 s wall), ``--devices 4`` 7.86 -> 6.67 s CPU
(15.94 -> 13.46 s wall). ``--baseline TREE`` runs an older tree (``git archive <commit> | tar -x
-C TREE``) and this one interleaved, from a temporary folder so that PYTHONPATH decides which.

(docs/sim-speed-events.md). The
DMA engine's cycles walked every row of every transfer in Python (``costs.dma_cycles``: 41 M
generator steps for XL); they are closed forms now, costs are computed once per distinct shape
and shared between layers, and the dispatch loop does less per instruction.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fpgpt.compiler import compile_model
from fpgpt.config import load_preset
from fpgpt.models import ByteTokenizer, load_model
from fpgpt.sim import fastloop, generate, simulate


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


XL_COMMAND = ["simulate", "--model", "gpt2-xl", "--hw", "u280", "--prompt-len", "128",
              "--gen-len", "128", "--json"]


XL4_COMMAND = XL_COMMAND[:-1] + ["--devices", "4", "--json"]


def _child(args: list[str], env: dict | None = None,
           cwd: str | None = None) -> tuple[str, float, float]:
    """Run ``python -c ...`` in a fresh process: (stdout, wall s, CPU s of the child)."""
    before = os.times()
    w = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, check=True,
                         env=env, cwd=cwd)
    wall = time.perf_counter() - w
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return out.stdout, wall, cpu


def cached_runs(command: list[str], tree: str | None = None, warm: int = 1) -> dict:
    """``command`` in a fresh process on an empty compile cache (a temporary
    ``FPGPT_COMPILE_CACHE``): once cold (it compiles and fills the cache), then ``warm`` times
    finding the Programs (the best of them is reported). ``tree``: run that fpgpt source tree
    instead (an exported older commit, put first on PYTHONPATH)."""
    import tempfile
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, FPGPT_COMPILE_CACHE=tmp)
        cwd = None
        if tree is not None:
            # run in the temporary folder: ``python -c`` puts the working directory first on
            # sys.path, and a checkout there would win over PYTHONPATH
            env["PYTHONPATH"] = os.path.abspath(tree)
            cwd = tmp
        _, wall, cpu = _child(["from fpgpt.cli import main; main()", *command], env, cwd)
        out["cold_wall_s"], out["cold_cpu_s"] = round(wall, 3), round(cpu, 3)
        runs = [_child(["from fpgpt.cli import main; main()", *command], env, cwd)[1:]
                for _ in range(max(warm, 1))]
        out["warm_wall_s"] = round(min(w for w, _ in runs), 3)
        out["warm_cpu_s"] = round(min(c for _, c in runs), 3)
    return out


def before_after(tree: str, warm: int = 3) -> dict:
    """The XL command on 1 and 4 cards, warm compile cache, for the fpgpt tree ``tree`` (e.g.
    ``git archive <commit> | tar -x -C /tmp/old``) and for this one, interleaved so that both
    see the same machine load: the best of ``warm`` runs each."""
    here = str(Path(__file__).resolve().parents[1])        # this checkout
    out: dict = {"load_average_before": os.getloadavg()}
    for name, cmd in (("devices1", XL_COMMAND), ("devices4", XL4_COMMAND)):
        out[name] = {"before": cached_runs(cmd, tree, warm), "after": cached_runs(cmd, here, warm)}
    out["load_average_after"] = os.getloadavg()
    return out


def command_run() -> dict:
    """The XL command end to end in a fresh process (compile cache cold, then warm), its parts,
    and the 4-card XL command (issue 11 asks < 10 s)."""
    cache = cached_runs(XL_COMMAND)
    ring = cached_runs(XL4_COMMAND)
    os.environ[fastloop.LOOP_ENV] = "python"           # the reference loop, for comparison
    try:
        python_loop = cached_runs(XL_COMMAND)
    finally:
        del os.environ[fastloop.LOOP_ENV]
    out, wall, cpu = _child(["from fpgpt.cli import main; main()", *XL_COMMAND],
                            dict(os.environ, FPGPT_COMPILE_CACHE="off"))
    d = json.loads(out)
    _, start_wall, start_cpu = _child(["import fpgpt.cli, fpgpt.compiler, fpgpt.sim.timing"])
    hw = load_preset("u280")
    os.environ["FPGPT_COMPILE_CACHE"] = "off"          # the compiler's own time
    program, cw, cc = _timed(lambda: compile_model("gpt2-xl", hw, prompt_len=128))
    r, sw, sc = _timed(lambda: simulate(program, hw, prompt_len=128, gen_len=128))
    assert r.decode.cycles == d["cycles"]["decode"]
    return {"command": "fpgpt " + " ".join(XL_COMMAND), "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "startup_imports_wall_s": round(start_wall, 3),
            "startup_imports_cpu_s": round(start_cpu, 3), "compile_wall_s": round(cw, 3),
            "compile_cpu_s": round(cc, 3), "simulate_wall_s": round(sw, 3),
            "simulate_cpu_s": round(sc, 3), "cycles": d["cycles"],
            "ms_per_token": d["ms_per_token"], "load_average": os.getloadavg(),
            "loop": fastloop.status(), "cache": cache, "python_loop": python_loop,
            "devices4": ring}


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
    ap.add_argument("--command-only", action="store_true",
                    help="Only the XL command and its parts (item 0).")
    ap.add_argument("--baseline", metavar="TREE",
                    help="Only the XL command on 1 and 4 cards (warm compile cache, best of 3), "
                         "run by the fpgpt source tree TREE (an exported older commit) and by "
                         "this one, interleaved.")
    args = ap.parse_args(argv)
    if args.baseline:
        ba = before_after(args.baseline)
        if args.json:
            print(json.dumps(ba, indent=1))
            return 0
        print(f"load average {ba['load_average_before'][0]:.1f} -> {ba['load_average_after'][0]:.1f}")
        for name in ("devices1", "devices4"):
            for when in ("before", "after"):
                r = ba[name][when]
                print(f"  {name} {when:6s}: warm {r['warm_wall_s']:.2f} s wall, "
                      f"{r['warm_cpu_s']:.2f} s CPU; cold {r['cold_wall_s']:.2f} s wall, "
                      f"{r['cold_cpu_s']:.2f} s CPU")
        return 0
    cmd = command_run()
    if args.command_only:
        print(json.dumps(cmd, indent=1) if args.json else
              f"{cmd['command']}\n  whole command {cmd['wall_s']:.2f} s wall, {cmd['cpu_s']:.2f} s CPU"
              f" (load average {cmd['load_average'][0]:.1f})\n  start-up + imports "
              f"{cmd['startup_imports_wall_s']:.2f} s wall ({cmd['startup_imports_cpu_s']:.2f} CPU), "
              f"compile {cmd['compile_wall_s']:.2f} ({cmd['compile_cpu_s']:.2f}), simulate "
              f"{cmd['simulate_wall_s']:.2f} ({cmd['simulate_cpu_s']:.2f})\n  cycles {cmd['cycles']}\n"
              f"  compile cache cold {cmd['cache']['cold_wall_s']:.2f} s wall "
              f"({cmd['cache']['cold_cpu_s']:.2f} CPU), warm {cmd['cache']['warm_wall_s']:.2f} "
              f"({cmd['cache']['warm_cpu_s']:.2f})\n  loop: {cmd['loop']}; the Python loop "
              f"(FPGPT_TIMING_LOOP=python), warm: {cmd['python_loop']['warm_wall_s']:.2f} s wall "
              f"({cmd['python_loop']['warm_cpu_s']:.2f} CPU)\n  --devices 4: cold "
              f"{cmd['devices4']['cold_wall_s']:.2f} s wall ({cmd['devices4']['cold_cpu_s']:.2f} CPU), "
              f"warm {cmd['devices4']['warm_wall_s']:.2f} ({cmd['devices4']['warm_cpu_s']:.2f})")
        return 0
    timing = timing_runs()
    gen = shipped_generation()
    if args.json:
        print(json.dumps({"command": cmd, "timing": timing, "generation": gen}, indent=1))
        return 0
    print(f"{cmd['command']}: {cmd['wall_s']:.2f} s wall, {cmd['cpu_s']:.2f} s CPU (start-up + "
          f"imports {cmd['startup_imports_wall_s']:.2f}, compile {cmd['compile_wall_s']:.2f}, "
          f"simulate {cmd['simulate_wall_s']:.2f} s wall)")
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
