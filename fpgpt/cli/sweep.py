"""``fpgpt sweep`` (design-space sweeps on Dask) and ``fpgpt sweep-resources`` (the resource
model the sweep uses without ``--synth``)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from .core import UsageProblem, _emit_json, _guard, console, err_console, main


def _fmt(v, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


@main.command()
@click.argument("spec_path", metavar="SPEC.toml")
@click.option("--out", default=None, help="Output folder (default build/sweep/<spec name>); "
              "a sweep started again in it recomputes nothing that finished.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="An existing Dask scheduler (tcp://host:8786); default: a LocalCluster "
                   "started here, one worker process per core.")
@click.option("--workers", type=int, default=None, help="LocalCluster worker processes.")
@click.option("--sample", type=int, default=None,
              help="Run N points drawn from the spec with its seed (a quick look).")
@click.option("--synth", is_flag=True,
              help="Real Yosys per-block synthesis as Dask tasks (slow: minutes to an hour per "
                   "new design) instead of the fitted resource model.")
@click.option("--synth-work", default="build/synth", show_default=True, metavar="DIR",
              help="The Yosys work folder of `fpgpt synth --work` (its cache is shared): with "
                   "--synth the blocks synthesize there; with --fmax-lookup each point's Fmax "
                   "is looked up in its cached netlists.")
@click.option("--fmax-lookup", is_flag=True,
              help="Without --synth: look each point's blocks up in the --synth-work cache "
                   "and time their netlists (elaborates the blocks: about 10 s a tiny point, "
                   "30 s a u280 one).")
@click.option("--no-presets", is_flag=True, help="Do not evaluate the shipped presets beside it.")
@click.option("--no-plots", is_flag=True, help="Do not write the PNG plots.")
@click.option("--memory-limit", default="4GiB", show_default=True,
              help="Per LocalCluster worker.")
@click.option("--dashboard", default=None, metavar="ADDRESS",
              help="Serve the LocalCluster's Dask dashboard there (e.g. :8787); default none.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (rows in the files).")
@_guard
def sweep(spec_path: str, out: str | None, scheduler: str | None, workers: int | None,
          sample: int | None, synth: bool, synth_work: str, fmax_lookup: bool,
          no_presets: bool, no_plots: bool,
          memory_limit: str, dashboard: str | None, as_json: bool) -> None:
    """Sweep a design space (docs/sweep.md): every point compiled, simulated, costed, sized;
    results in OUT/results.parquet and .csv, the Pareto front marked, PNG plots."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..sweep.run import run_sweep
    from ..sweep.spec import load_spec
    spec = load_spec(spec_path)
    if workers is not None and workers < 1:
        raise UsageProblem(f"--workers must be at least 1, not {workers}")
    if scheduler and dashboard:
        raise UsageProblem("--dashboard is the embedded LocalCluster's; an existing scheduler "
                           "serves its own")
    if scheduler and workers:
        raise UsageProblem("--workers sizes the embedded LocalCluster; with --scheduler the "
                           "cluster's own workers run the points")
    outp = Path(out) if out else Path("build/sweep") / Path(spec_path).stem
    if outp.exists() and not outp.is_dir():
        raise UsageProblem(f"--out {outp} is a file; give a folder")
    work = Path(synth_work) if (synth or fmax_lookup) else None
    if work is not None and work.exists() and not work.is_dir():
        raise UsageProblem(f"--synth-work {work} is a file; give a folder")
    n = min(sample, spec.size) if sample else spec.size
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("failed {task.fields[failed]}"),
                        TextColumn("{task.fields[rate]:.1f} points/min"), TimeElapsedColumn(),
                        console=err_console, disable=as_json)
    with progress:
        task = progress.add_task(f"sweep {spec.name} ({n} points)", total=None, failed=0, rate=0.0)

        def cb(s):
            progress.update(task, total=s["total"], completed=s["done"], failed=s["failed"],
                            rate=s["rate_per_min"])
        run = run_sweep(spec, outp, scheduler=scheduler, workers=workers, sample=sample,
                        synth=synth, presets=not no_presets, progress=cb,
                        memory_limit=memory_limit, plots=not no_plots, synth_work=work,
                        dashboard=dashboard)
    front = [r for r in run.rows if r.get("pareto")]
    front.sort(key=lambda r: r.get("ms_per_token") or 0)
    summary = {"spec": spec_path, "out": str(outp), "points": len(run.rows),
               "computed": run.computed, "reused": run.reused, "status": run.counts,
               "meets_constraints": sum(bool(r.get("meets_constraints")) for r in run.rows),
               "pareto": len(front),
               "fmax": {"estimated": sum(r.get("fmax_mhz") is not None for r in run.rows),
                        "clock_within": sum(r.get("clock_within_fmax") is True for r in run.rows),
                        "clock_above": sum(r.get("clock_within_fmax") is False for r in run.rows)},
               "wall_s": round(run.wall_s, 2), "workers": run.workers,
               "scheduler": run.scheduler, "files": run.files,
               "front": [{k: r.get(k) for k in (*spec.axes, "ms_per_token", "lut_pct",
                                                 "tokens_per_j", "fmax_mhz", "clock_within_fmax",
                                                 "key")} for r in front]}
    if as_json:
        _emit_json(summary)
        return
    t = Table(title=f"{spec.name}: Pareto front of {', '.join(f'{k} ({v})' for k, v in spec.objectives.items())}"
                    f" among {summary['meets_constraints']} designs meeting the constraints")
    cols = [*spec.axes, "ms_per_token", "ttft_ms", "pct_hbm_floor", "lut_pct", "dsp_pct",
            "uram_pct", "tokens_per_j", "fmax_mhz", "clock_within_fmax"]
    for c in cols:
        t.add_column(c, justify="right")
    for r in front[:25]:
        t.add_row(*(_fmt(r.get(c)) for c in cols))
    console.print(t)
    if len(front) > 25:
        console.print(f"... {len(front) - 25} more on the front (results.csv, column pareto)")
    st = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()))
    console.print(f"{len(run.rows)} points ({st}); computed {run.computed}, reused "
                  f"{run.reused}; {run.wall_s:.1f} s on {run.workers or 'no'} Dask workers "
                  f"({run.scheduler})")
    fm = summary["fmax"]
    console.print(f"Fmax estimated for {fm['estimated']} of {len(run.rows)} points (clock within "
                  f"it: {fm['clock_within']}, above: {fm['clock_above']}; column fmax_reason)")
    for k, v in run.files.items():
        console.print(f"wrote {v}")
    failed = [r for r in run.rows if r["status"] != "ok"]
    for r in failed[:5]:
        console.print(f"[yellow]{r['status']}[/yellow] {r['key']}: {r.get('reason', '')}")


@main.command("sweep-resources")
@click.option("--collect", is_flag=True,
              help="Synthesize the measured blocks at the small configurations again (Yosys, "
                   "minutes; cache in build/synth) and rewrite the data file.")
@click.option("--fit", is_flag=True, help="Refit the model on the data file and rewrite it.")
@click.option("--hw", "hw_name", default=None, help="Show the model's estimate for a config.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard
def sweep_resources(collect: bool, fit: bool, hw_name: str | None, as_json: bool) -> None:
    """The per-block resource model used by sweeps without --synth: its data, fit and
    measured error on held-out configurations (docs/sweep.md)."""
    from ..sweep import resources as rm
    if collect:
        from ..sweep.synth_data import collect as do_collect
        with err_console.status("yosys per block") as status:
            do_collect(progress=lambda line: status.update(f"yosys: {line}"))
    if collect or fit:
        model = rm.fit_model()
        rm.save_model(model)
        err_console.print(f"wrote {rm.MODEL_PATH}")
    model = rm.load_model()
    if hw_name:
        from ..config import load_config
        est = rm.estimate(load_config(hw_name))
        if as_json:
            _emit_json(est)
            return
        t = Table(title=f"resource model estimate, {hw_name}")
        t.add_column("resource")
        for c in ("estimate", "capacity", "%"):
            t.add_column(c, justify="right")
        for r, v in est["total"].items():
            cap = est["capacity"][r]
            t.add_row(r, f"{v:,.0f}", f"{cap:,}", f"{100 * v / cap:.1f}" if cap else "-")
        console.print(t)
        console.print(est["note"])
        return
    if as_json:
        _emit_json(model["error"])
        return
    t = Table(title="resource model against real synthesis (Yosys per block) on held-out "
                    "configurations: per block, then the sum of the measured blocks and FP operators")
    for c in ("config", "block", "resource", "synthesized", "model", "error %"):
        t.add_column(c, justify="right")
    err = model["error"]
    for e in err["blocks"] + [dict(e, block="measured sum") for e in err["total"]]:
        t.add_row(e["config"], e["block"], e["resource"], f"{e['synth']:,.0f}",
                  f"{e['model']:,.0f}", "-" if e["error_pct"] is None else f"{e['error_pct']:+.1f}")
    console.print(t)
    console.print(err["summary"])
    console.print("fitted on: " + ", ".join(sorted({c for b in model["blocks"].values()
                                                    for c in b["fitted_on"]})))
