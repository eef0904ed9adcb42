"""What-if, not the RTL: `fpgpt scale` figures with a bidirectional ALLGATHER (half the chunks
each way, ceil((D-1)/2) steps, both directions on the one scratchpad port), by patching the
timing model's NET cost (docs/multi-device.md, "Both ring directions"). The RTL moves one
direction and the timing model charges that; this bench only sizes the gain.

Usage: python bench/bench_allgather_bidir.py [MODEL] [COUNTS]   (default gpt2-xl 1,4,8)"""
import json, math, sys, time
from fpgpt.config import load_preset
from fpgpt.sim import costs, timing
from fpgpt.cli.multi import scale_rows

orig = costs.net_cycles

def bidir(hw, op, f):
    if op != "ALLGATHER":
        return orig(hw, op, f)
    n, d, a = int(f["count"]), hw.devices, int(f.get("sram", 0))
    if n == 0 or d <= 1:
        return 1.0
    cyc = hw.clock_mhz / 1e3
    lat = hw.link.latency_ns * cyc
    busy = costs._link_busy_ns(hw, 2 * n) * cyc
    B = costs._net_blocks
    fwd, bwd = -(-(d - 1) // 2), (d - 1) // 2
    total = 1
    for s in range(fwd):
        best = 0
        for i in range(d):
            r = B(hw, a + ((i - s) % d) * n, n); w = B(hw, a + ((i - s - 1) % d) * n, n)
            if s < bwd:
                r += B(hw, a + ((i + s) % d) * n, n); w += B(hw, a + ((i + s + 1) % d) * n, n)
            best = max(best, r + w + 6, lat + max(w, busy) + 8)
        total += best
    return max(1.0, math.ceil(total - 1e-9))

from fpgpt.cli.multi import _resolve_model
model = sys.argv[1] if len(sys.argv) > 1 else "gpt2-xl"
counts = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,2,4,8").split(",")]
spec = _resolve_model(model, need_weights=False)[0]
hwc = load_preset("u280")
out = {}
for name, fn in (("one-direction", orig), ("bidirectional", bidir)):
    timing.net_cycles = fn
    t0 = time.process_time()
    rows = scale_rows(spec, hwc, counts, prompt_len=128, gen_len=128)
    out[name] = [{k: r[k] for k in ("devices", "ms_per_token", "ttft_ms", "efficiency", "comm_share")} for r in rows]
    print(name, round(time.process_time() - t0, 1), "s cpu", flush=True)
    for r in out[name]:
        print("  ", r, flush=True)
print(json.dumps(out))
