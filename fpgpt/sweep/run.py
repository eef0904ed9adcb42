"""Run a sweep on Dask: an embedded ``LocalCluster`` (one worker process per core) or an
existing scheduler; results written point by point (:mod:`.store`), so a stopped sweep or a
lost worker loses nothing that finished.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import load_preset
from .point import one_line, evaluate_point, failed_row, point_key
from .spec import SweepSpec
from .store import ResultStore, mark_table

__all__ = ["SweepRun", "SHIPPED_PRESETS", "NO_DASHBOARD", "make_tasks", "run_sweep",
           "start_client",
           "write_table"]

#: Presets evaluated beside the sweep (same model and lengths) and marked on its plots.
SHIPPED_PRESETS = ("u280", "u55c", "dfx")

#: LocalCluster arguments for no dashboard. ``dashboard_address=None`` alone is not enough
#: (distributed 2026.8): the scheduler still starts its HTTP server (health, metrics) on the
#: default port 8787 and warns "Port 8787 is already in use" when a second cluster runs on the
#: machine; ":0" gives it a free port.
NO_DASHBOARD = {"dashboard_address": None,
                "scheduler_kwargs": {"dashboard": False, "dashboard_address": ":0"}}

#: Columns that describe the run, not the point: left out when rows are compared.
RUN_COLUMNS = ("wall_s", "cpu_s", "worker")


@dataclass
class SweepRun:
    """What :func:`run_sweep` did."""

    out: Path
    rows: list[dict[str, Any]]              # the spec's points, in spec order, marked
    presets: list[dict[str, Any]]           # the shipped presets' rows (not on the front)
    computed: int                           # points evaluated by this run
    reused: int                             # points found already done
    wall_s: float
    workers: int
    scheduler: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out


def make_tasks(spec: SweepSpec, *, sample: int | None = None, resources: str = "model",
               synth_dir: str | None = None, presets: bool = True) -> tuple[list[dict], list[dict]]:
    """(the spec's tasks, the shipped presets' tasks): each ``{key, point, base, resources,
    synth_dir}``, keyed by :func:`~fpgpt.sweep.point.point_key`."""
    base = spec.base.to_dict()
    tasks = []
    for p in spec.points(sample):
        tasks.append({"key": point_key(spec.base, p, resources), "point": p, "base": base,
                      "resources": resources, "synth_dir": synth_dir})
    extra = []
    if presets:
        for name in SHIPPED_PRESETS:
            hw = load_preset(name)
            p = dict(spec.defaults)
            extra.append({"key": point_key(hw, p, resources), "point": p, "base": hw.to_dict(),
                          "resources": resources, "synth_dir": synth_dir, "preset": name})
    return tasks, extra


def start_client(scheduler: str | None = None, workers: int | None = None,
                 memory_limit: str = "4GiB", dashboard: str | None = None):
    """A ``distributed.Client``: to ``scheduler`` when given, else to a new ``LocalCluster`` of
    ``workers`` processes (default: one per core), one thread each, with no dashboard unless
    ``dashboard`` gives its address (":8787"): a second sweep on the machine would otherwise
    warn that the port is taken."""
    import dask
    from distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler, timeout="20s")
    n = workers or os.cpu_count() or 1
    # a lost worker's task is rescheduled; only after this many losses is it a failed row
    dask.config.set({"distributed.scheduler.allowed-failures": 3})
    quiet = {"dashboard_address": dashboard} if dashboard else NO_DASHBOARD
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           memory_limit=memory_limit, silence_logs=50, **quiet)
    return Client(cluster)


def run_sweep(spec: SweepSpec, out: str | Path, *, scheduler: str | None = None,
              workers: int | None = None, sample: int | None = None, synth: bool = False,
              presets: bool = True, client=None, serial: bool = False,
              progress: Callable[[dict[str, Any]], None] | None = None,
              memory_limit: str = "4GiB", plots: bool = True,
              synth_work: str | Path | None = None, dashboard: str | None = None) -> SweepRun:
    """Evaluate the spec's points that are not done yet in ``out`` and write the table.

    Parameters
    ----------
    spec : the sweep.
    out : its folder (``points/`` per point, ``results.parquet``, ``results.csv``, plots).
    scheduler : address of an existing Dask scheduler; default a LocalCluster started here.
    workers : LocalCluster worker processes (default one per core).
    sample : evaluate ``sample`` points drawn with the spec's seed instead of all.
    synth : real Yosys per-block synthesis (Dask tasks sharing ``synth_work``'s cache) instead of
        the fitted resource model; the Fmax columns then come from its netlists.
    presets : also evaluate the shipped presets (marked on the plots).
    client : an existing ``distributed.Client`` (the caller keeps it).
    serial : evaluate in this process, no Dask (the reference the tests compare with).
    progress : called after every point with ``{done, failed, total, rate_per_min}``.
    memory_limit : per LocalCluster worker.
    dashboard : the LocalCluster's dashboard address (default: none).
    plots : write the PNG plots of the front.
    synth_work : the Yosys work folder (``fpgpt synth --work``; its ``cache`` is shared by
        every block of every point). With ``synth``: where the blocks synthesize (default
        ``out/synth``). Without: where each point's Fmax is looked up (fpgpt/sweep/clock.py);
        None (the default without ``synth``): not looked up.
    """
    t0 = time.perf_counter()
    out = Path(out)
    store = ResultStore(out)
    resources = "synth" if synth else "model"
    work = (synth_work or out / "synth") if synth else synth_work
    synth_dir = str(Path(work).resolve()) if work is not None else None
    tasks, extra = make_tasks(spec, sample=sample, resources=resources, synth_dir=synth_dir,
                              presets=presets)
    done = {r["key"] for r in store.read()}        # a half-written file is not done
    todo, seen = [], set()
    for t in tasks + extra:
        if t["key"] not in done and t["key"] not in seen:
            todo.append(t)
            seen.add(t["key"])
    total = len(todo)
    state = {"done": 0, "failed": 0, "total": total, "rate_per_min": 0.0}

    def record(row):
        store.write(row)
        state["done"] += 1
        state["failed"] += row["status"] != "ok"
        el = time.perf_counter() - t0
        state["rate_per_min"] = 60.0 * state["done"] / el if el else 0.0
        if progress:
            progress(dict(state))

    own = None
    n_workers, address = 0, "serial (this process)"
    if serial or not todo:
        for t in todo:
            record(evaluate_point(t))
    else:
        if client is None:
            client = own = start_client(scheduler, workers, memory_limit, dashboard)
        info = client.scheduler_info()
        n_workers = len(info.get("workers", {}))
        address = scheduler or "LocalCluster"
        try:
            _run_dask(client, todo, record)
        finally:
            if own is not None:
                cluster = getattr(own, "cluster", None)
                own.close()
                if cluster is not None:
                    cluster.close()
    by_key = {r["key"]: r for r in store.read({t["key"] for t in tasks + extra})}
    _refresh_resources(by_key, tasks + extra)
    rows = [dict(by_key[t["key"]], **t["point"]) for t in tasks if t["key"] in by_key]
    mark_table(rows, spec.constraints, spec.objectives)
    preset_rows = []
    for t in extra:
        if t["key"] in by_key:
            preset_rows.append(dict(by_key[t["key"]], preset=t["preset"]))
    run = SweepRun(out=out, rows=rows, presets=preset_rows, computed=total,
                   reused=len(tasks) + len(extra) - total, wall_s=time.perf_counter() - t0,
                   workers=n_workers, scheduler=address)
    run.files = write_table(run, spec, plots=plots)
    return run


def _refresh_resources(by_key: dict[str, dict], tasks: list[dict]) -> None:
    """Rows sized by the resource model take the current model's figures and the design's own
    columns (instant), so a refit model applies to a finished sweep without simulating again."""
    from ..config import HardwareConfig
    from .point import _resources, build_config, design_columns
    for t in tasks:
        r = by_key.get(t["key"])
        if r is None or r.get("status") != "ok" or r.get("resources_source") != "model":
            continue
        hw = build_config(HardwareConfig.from_dict(t["base"], origin="sweep base"), t["point"])
        r.update(_resources(hw, t))
        r.update(design_columns(hw))


#: Times a point whose result was lost on the way (its worker died after the task finished,
#: or the future was cancelled or lost) is submitted again before it is a failed row. A task
#: that raised, or that killed ``allowed-failures`` workers (KilledWorker, an error of the
#: task), is not retried.
LOST_RESULT_RETRIES = 2


def _run_dask(client, todo: list[dict], record) -> None:
    from distributed import as_completed
    futures, tries = {}, {}

    def submit(t, n=0):
        key = f"fpgpt-point-{t['key']}" + (f"-again{n}" if n else "")
        f = client.submit(evaluate_point, t, key=key, pure=False)
        futures[f.key] = (f, t)
        tries[f.key] = n
        return f

    for t in todo:
        submit(t)
    ac = as_completed(list(f for f, _ in futures.values()))
    try:
        for f in ac:
            _, t = futures[f.key]
            lost = None
            if f.status == "finished":
                try:
                    row = f.result()
                except Exception as e:  # noqa: BLE001 - lost in transfer
                    lost = one_line(e)
            else:
                try:
                    exc = f.exception()
                    msg = one_line(exc)
                except Exception as e:  # noqa: BLE001 - cancelled or lost: no exception to read
                    exc, msg = None, one_line(e)
                if f.status == "error" and exc is not None:   # it raised, or KilledWorker
                    row = failed_row(t, "failed", f"the task did not finish: {msg}")
                else:
                    lost = msg
            if lost is not None:
                if tries[f.key] < LOST_RESULT_RETRIES:
                    ac.add(submit(t, tries[f.key] + 1))
                    f.release()
                    continue
                row = failed_row(t, "failed", f"its result was lost {tries[f.key] + 1} times: {lost}")
            record(row)
            f.release()
    except BaseException:
        client.cancel([f for f, _ in futures.values()])
        raise


def write_table(run: SweepRun, spec: SweepSpec, *, plots: bool = True) -> dict[str, str]:
    """``results.parquet`` + ``results.csv`` (spec rows, then the presets' rows with their
    ``preset`` column) and the plots; returns their paths."""
    import pandas as pd
    rows = [dict(r, preset="") for r in run.rows] + [
        dict(r, meets_constraints=False, pareto=False) for r in run.presets]
    df = pd.DataFrame(rows)
    files = {}
    if len(df):
        first = ["key", "status", "reason", *spec.axes, "model", "prompt_len", "gen_len",
                 "preset", "meets_constraints", "pareto"]
        cols = [c for c in dict.fromkeys(first) if c in df.columns]
        df = df[cols + [c for c in df.columns if c not in cols]]
        for c in df.columns:       # mixed-type columns (e.g. an axis of strings) as text
            if df[c].dtype == object and df[c].dropna().map(type).nunique() > 1:
                df[c] = df[c].map(lambda v: None if v is None else str(v))
        pq = run.out / "results.parquet"
        df.to_parquet(pq, engine="pyarrow", index=False)
        csv = run.out / "results.csv"
        df.to_csv(csv, index=False)
        files = {"parquet": str(pq), "csv": str(csv)}
        if plots:
            from .plots import plot_front
            files.update(plot_front(run, spec))
    return files
