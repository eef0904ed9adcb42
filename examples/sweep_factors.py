"""The factors of a design-space sweep, from its results.parquet: how much of the variance of log
ms/token each axis explains (the between-group share: sum over its values of n * (mean of the
group's log ms/token - the overall mean)^2, over the total), the medians per value, the off
stripe-path cliff, and the fastest design within the constraints at each clock. docs/sweep.md
quotes its output for examples/sweep-u280.toml.

Usage: python examples/sweep_factors.py reports/sweep/u280/results.parquet
"""
import sys, numpy as np, pandas as pd
d = pd.read_parquet(sys.argv[1])
ok = d[d.status == "ok"]
sw = ok[ok.preset.fillna("") == ""]
print("points ok", len(ok), "sweep points", len(sw), "presets", ok.preset.dropna().unique().tolist() if 'preset' in ok else '')
off = sw[~sw.stripe_path.astype(bool)]; on = sw[sw.stripe_path.astype(bool)]
print("off stripe path", len(off), "ms/token range %.0f - %.0f" % (off.ms_per_token.min(), off.ms_per_token.max()))
for c in sorted(off.clock_mhz.unique()): print("   off @%g: %.0f-%.0f" % (c, off[off.clock_mhz==c].ms_per_token.min(), off[off.clock_mhz==c].ms_per_token.max()))
y = np.log(on.ms_per_token); tot = ((y - y.mean())**2).sum()
print("on stripe path", len(on))
for f in ["clock_mhz", "hbm.channels", "vpu.width", "mpu.width", "mpu.lanes", "buffers.sram_kib"]:
    g = on.groupby(f).ms_per_token
    between = sum(len(v) * (np.log(v).mean() - y.mean())**2 for _, v in g)
    print("  %-16s %4.1f %%  medians %s" % (f, 100 * between / tot, {float(k): round(float(v.median()), 2) for k, v in g}))
fit = on[on.meets_constraints.astype(bool)]
for c in sorted(on.clock_mhz.unique()):
    b = fit[fit.clock_mhz == c].sort_values("ms_per_token").iloc[0]
    print("best fitting @%g: %s ms %.3f ttft %.1f tok/J %.2f lut %.1f dsp %.1f uram %.1f" % (c, b.artifact, b.ms_per_token, b.ttft_ms, b.tokens_per_j, b.lut_pct, b.dsp_pct, b.uram_pct))
    f = on[on.clock_mhz == c].sort_values("ms_per_token").iloc[0]
    print("   fastest @%g: %s ms %.3f lut %.1f" % (c, f.artifact, f.ms_per_token, f.lut_pct))
pr = ok[ok.preset.fillna("") != ""]
for _, r in pr.iterrows(): print("preset", r.preset, r.artifact, round(r.ms_per_token, 3), "lut %.0f%%" % r.lut_pct)
