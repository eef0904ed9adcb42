"""Sweep throughput on Dask (fpgpt.sweep): points per minute, speed-up, scheduler overhead.

Run: ``.venv/bin/python bench/bench_sweep.py [--points 8] [--full500] [--json]``.

1. GPT-2 medium 128:128 on u280 variants, without --synth (the fitted resource model):
   the same ``--points`` points (drawn with one seed) on a LocalCluster of 1 worker, then of 2
   workers (fresh output folders, so nothing is reused); points per minute and the speed-up.
   The cluster's start is timed apart (it is paid once per sweep).
2. Scheduler overhead per point: 200 points of the shipped micro model on tiny (a few ms of
   work each) on 2 workers; overhead = (wall x workers - the points' own compute time) / points.
3. The 500-point sweep of GPT-2 medium: ``--full500`` runs it on 2 workers; otherwise the time
   is extrapolated from (1)'s 2-worker rate and labelled so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from fpgpt.sweep.run import run_sweep, start_client
from fpgpt.sweep.spec import load_spec

MEDIUM = """
[sweep]
base = "u280"
model = "gpt2-medium"
prompt_len = 128
gen_len = 128
seed = {seed}

[axes]
"mpu.lanes" = [8, 16, 32]
"mpu.width" = [32, 64, 128]
"vpu.width" = [2, 4, 8]
"hbm.channels" = [16, 20, 24, 28, 32]
clock_mhz = [200, 225, 250, 275, 300]
"""

CHEAP = """
[sweep]
base = "tiny"
model = "micro"
prompt_len = 8
gen_len = 2

[axes]
clock_mhz = {start = 50, stop = 249, step = 1}
"""


def _spec(tmp: Path, text: str, name: str):
    p = tmp / f"{name}.toml"
    p.write_text(text)
    return load_spec(p)


def _timed(spec, out: Path, workers: int, sample: int | None) -> dict:
    t0 = time.perf_counter()
    client = start_client(workers=workers)
    start_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        run = run_sweep(spec, out, client=client, sample=sample, presets=False)
        wall = time.perf_counter() - t1
    finally:
        client.close()
        client.cluster.close()
    work = sum(r.get("wall_s", 0.0) for r in run.rows)
    cpu = sum(r.get("cpu_s", 0.0) for r in run.rows)
    n = run.computed
    return {"workers": workers, "points": n, "status": run.counts,
            "cluster_start_s": round(start_s, 2), "wall_s": round(wall, 2),
            "points_per_min": round(60 * n / wall, 2) if wall else None,
            "mean_point_s": round(work / n, 3) if n else None,
            "mean_point_cpu_s": round(cpu / n, 3) if n else None,
            "overhead_per_point_s": round((wall * workers - work) / n, 4) if n else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8, help="GPT-2 medium points per run")
    ap.add_argument("--full500", action="store_true", help="run the 500-point sweep")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    out = {}
    try:
        one = _timed(_spec(tmp, MEDIUM.format(seed=1), "m1"), tmp / "m1", 1, args.points)
        two = _timed(_spec(tmp, MEDIUM.format(seed=1), "m2"), tmp / "m2", 2, args.points)
        out["gpt2_medium_128_128"] = {"1_worker": one, "2_workers": two,
                                      "speedup": round(two["points_per_min"]
                                                       / one["points_per_min"], 2)}
        out["scheduler_overhead"] = _timed(_spec(tmp, CHEAP, "cheap"), tmp / "cheap", 2, None)
        if args.full500:
            r = _timed(_spec(tmp, MEDIUM.format(seed=5), "m500"), tmp / "m500", 2, 500)
            out["sweep_500"] = {"measured": True, "minutes": round(r["wall_s"] / 60, 2), **r}
        else:
            cpu = one["mean_point_cpu_s"]
            out["sweep_500"] = {"measured": False, "extrapolated_from": "2-worker rate above",
                                "minutes": round(500 / two["points_per_min"], 1),
                                "minutes_if_2_free_cores": round(500 * cpu / 2 / 60, 1),
                                "point_cpu_s": cpu}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    g = out["gpt2_medium_128_128"]
    for k in ("1_worker", "2_workers"):
        r = g[k]
        print(f"GPT-2 medium 128:128, {r['workers']} worker(s): {r['points']} points in "
              f"{r['wall_s']} s = {r['points_per_min']} points/min (a point: {r['mean_point_s']} s "
              f"of compute; cluster start {r['cluster_start_s']} s) {r['status']}")
    print(f"speed-up 2 vs 1 worker: {g['speedup']}x")
    o = out["scheduler_overhead"]
    print(f"scheduler overhead: {o['overhead_per_point_s'] * 1e3:.1f} ms per point "
          f"({o['points']} micro points of {o['mean_point_s'] * 1e3:.1f} ms on 2 workers, "
          f"{o['points_per_min']} points/min)")
    s = out["sweep_500"]
    print(f"500-point GPT-2 medium sweep on 2 workers: {s['minutes']} min "
          + ("(measured)" if s["measured"] else "(EXTRAPOLATED from the 2-worker rate, not run)"))
    if not s["measured"]:
        print(f"  with two free cores: {s['minutes_if_2_free_cores']} min (EXTRAPOLATED: 500 x "
              f"{s['point_cpu_s']} s of CPU per point / 2)")


if __name__ == "__main__":
    main()
