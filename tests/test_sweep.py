"""Design-space sweeps (fpgpt.sweep): spec parsing, point rows, the Pareto front, resume, a
two-worker LocalCluster with a worker killed mid-sweep, failures as rows, the CLI."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest

from fpgpt.config import load_preset
from fpgpt.sweep.point import evaluate_point, point_key
from fpgpt.sweep.run import NO_DASHBOARD, RUN_COLUMNS, make_tasks, run_sweep
from fpgpt.sweep.spec import SpecError, load_spec
from fpgpt.sweep.store import ResultStore, mark_table, pareto_mask

distributed = pytest.importorskip("distributed")

# micro on tiny, 8 prompt + 4 generated tokens: tens of ms a point
SPEC = """
[sweep]
base = "tiny"
model = "micro"
prompt_len = 8
gen_len = 4
seed = 3

[axes]
"mpu.lanes" = [2, 4, 8]
"mpu.width" = {start = 4, stop = 16, factor = 2}
"vpu.width" = [4, 8]

[constraints]
lut_pct = {max = 70}

[objectives]
ms_per_token = "min"
lut_pct = "min"
"""


SMALL = SPEC.replace("{start = 4, stop = 16, factor = 2}", "[4, 8]")     # 12 points


@pytest.fixture(scope="module")
def client():
    """A two-worker LocalCluster (processes, small memory limits) shared by the Dask tests."""
    c = distributed.Client(distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
        silence_logs=50, **NO_DASHBOARD))
    yield c
    c.close()
    c.cluster.close()


def _spec(tmp_path, text=SPEC, name="s.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return load_spec(p)


def _strip(rows):
    return {r["key"]: {k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in rows}


def test_spec_axes_ranges_and_sample(tmp_path):
    s = _spec(tmp_path)
    assert s.axes["mpu.width"] == [4, 8, 16]
    assert s.size == 18 and len(s.points()) == 18
    a, b = s.points(sample=5), s.points(sample=5)
    assert a == b and len(a) == 5 and all(p in s.points() for p in a)
    assert all(p["model"] == "micro" and p["gen_len"] == 4 for p in a)
    assert _spec(tmp_path, SPEC.replace('"vpu.width" = [4, 8]',
                                        'clock_mhz = {start = 200, stop = 300, step = 50}')
                 ).axes["clock_mhz"] == [200, 250, 300]


@pytest.mark.parametrize("bad, msg", [
    ('"mpu.lane" = [1]', "axis 'mpu.lane' is neither a HardwareConfig field"),
    ('"vpu.width" = []', "axis 'vpu.width' is an empty list"),
    ('"vpu.width" = {start = 1, stop = 4}', "a range is {start, stop, step}"),
    ('"vpu.width" = {start = 1, stop = "4", step = 1}', "stop must be a number, not '4'"),
    ('"vpu.width" = [4, 8', "not valid TOML"),
])
def test_spec_errors_name_the_problem(tmp_path, bad, msg):
    import re
    with pytest.raises(SpecError, match=re.escape(msg)):
        _spec(tmp_path, SPEC.replace('"vpu.width" = [4, 8]', bad))
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize("bad, msg", [
    ("lut_pct = {min = 80, max = 70}", "constraint 'lut_pct' can never hold: min 80 > max 70"),
    ('lut_pct = {max = "70"}', "constraint lut_pct.max must be a number, not '70'"),
    ("lut_pct = {max = true}", "constraint lut_pct.max must be a number, not True"),
    ("lut_pct = {below = 70}", "constraint 'lut_pct' must be a table {min = x, max = y}"),
    ("lut_pct = true", "only stripe_path, clock_within_fmax take true/false"),
    ("clock_within_fmax = {max = 1}", "constraint 'clock_within_fmax' takes true or false"),
    ("lut_percent = {max = 70}", "constraint on 'lut_percent', which is not a result column"),
])
def test_impossible_or_unknown_constraints_are_spec_errors(tmp_path, bad, msg):
    import re
    with pytest.raises(SpecError, match=re.escape(msg)):
        _spec(tmp_path, SPEC.replace("lut_pct = {max = 70}", bad))


def test_spec_tables_objectives_and_boolean_constraints(tmp_path):
    import re
    s = _spec(tmp_path, SPEC.replace("lut_pct = {max = 70}",
                                     "lut_pct = {max = 70}\nclock_within_fmax = true\n"
                                     "clock_mhz = {max = 150}"))
    assert s.constraints == {"lut_pct": {"max": 70.0}, "clock_within_fmax": {"eq": True},
                             "clock_mhz": {"max": 150.0}}
    with pytest.raises(SpecError, match=re.escape("objective 'lut_percent' is not a numeric")):
        _spec(tmp_path, SPEC.replace('lut_pct = "min"', 'lut_percent = "min"'))
    with pytest.raises(SpecError, match=re.escape("axes must be a table [axes], not 3")):
        _spec(tmp_path, "axes = 3\n" + SPEC[:SPEC.index("[axes]")])
    with pytest.raises(SpecError, match=re.escape("sweep.base must be a preset name")):
        _spec(tmp_path, SPEC.replace('base = "tiny"', "base = 4"))
    # an unknown preset is the config's one-line error
    from fpgpt.config import ConfigError
    with pytest.raises(ConfigError):
        _spec(tmp_path, SPEC.replace('base = "tiny"', 'base = "u999"'))
    # a boolean constraint: None (not estimated) and False do not meet it
    rows = [{"status": "ok", "a": 1, "clock_within_fmax": True},
            {"status": "ok", "a": 0.5, "clock_within_fmax": None},
            {"status": "ok", "a": 0.2, "clock_within_fmax": False}]
    mark_table(rows, {"clock_within_fmax": {"eq": True}}, {"a": "min"})
    assert [r["meets_constraints"] for r in rows] == [True, False, False]
    assert [r["pareto"] for r in rows] == [True, False, False]


def test_the_shipped_examples_load():
    from pathlib import Path
    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("sweep-*.toml"))
    assert examples
    for p in examples:
        s = load_spec(p)
        assert s.size >= 2 and s.points()[0]["model"]
    assert load_spec(examples[0].with_name("sweep-u280.toml")).size == 216    # docs/sweep.md


def test_key_is_the_full_configuration_and_version():
    tiny = load_preset("tiny")
    p = {"model": "micro", "prompt_len": 8, "gen_len": 4, "mpu.lanes": 4}
    assert point_key(tiny, p, "model") == point_key(tiny, dict(p), "model")
    # the same design reached two ways has one key
    assert point_key(tiny, p, "model") == point_key(tiny.replace(**{"mpu.lanes": 2}), p, "model")
    assert point_key(tiny, {**p, "gen_len": 5}, "model") != point_key(tiny, p, "model")
    assert point_key(tiny, p, "synth") != point_key(tiny, p, "model")


def test_points_become_rows_with_a_status(tmp_path):
    s = _spec(tmp_path, SPEC.replace('"vpu.width" = [4, 8]', '"vpu.width" = [4, 6]'))
    tasks, _ = make_tasks(s, presets=False)
    by = {(t["point"]["mpu.lanes"], t["point"]["mpu.width"], t["point"]["vpu.width"]): t
          for t in tasks}
    ok = evaluate_point(by[(4, 8, 4)])
    assert ok["status"] == "ok", ok["reason"]
    for col in ("ms_per_token", "ttft_ms", "tokens_per_s", "pct_hbm_floor", "util_mpu", "lut",
                "lut_pct", "uram_pct", "resources_source"):
        assert ok[col] is not None, col
    # no synthesis work folder given: the Fmax is not looked up, and the row says so
    assert ok["fmax_mhz"] is None and ok["fmax_source"] == "not estimated"
    assert ok["clock_within_fmax"] is None and "not looked up" in ok["fmax_reason"]
    # every numeric column of a row is one a spec may constrain (NUMERIC_COLUMNS) or an axis
    from fpgpt.sweep.point import BOOL_COLUMNS, NUMERIC_COLUMNS
    numeric = {k for k, v in ok.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric - set(NUMERIC_COLUMNS) <= {"mpu.lanes", "mpu.width", "vpu.width",
                                              "prompt_len", "gen_len"}
    assert {k for k, v in ok.items() if isinstance(v, bool)} <= set(BOOL_COLUMNS)
    assert ok["tokens_per_j"] is not None or ok["energy_reason"]
    bad = evaluate_point(by[(4, 8, 6)])
    assert bad["status"] == "invalid" and bad["reason"] == "vpu.width must be a power of two, not 6"
    boom = evaluate_point({**by[(4, 8, 4)], "point": {**by[(4, 8, 4)]["point"], "_raise": "x!"}})
    assert boom["status"] == "failed" and boom["reason"] == "RuntimeError: x!"


def test_a_design_that_does_not_fit_is_a_row_with_one_line():
    """GPT-2 XL (3 GB of FP16 weights) on tiny's 64 MiB of HBM, and a prompt past the context."""
    base = load_preset("tiny").to_dict()
    big = evaluate_point({"key": "k", "point": {"model": "gpt2-xl", "prompt_len": 8,
                                                "gen_len": 4}, "base": base,
                          "resources": "model", "synth_dir": None})
    assert big["status"] == "infeasible" and big["reason"] and "\n" not in big["reason"]
    assert big.get("ms_per_token") is None
    long = evaluate_point({"key": "k", "point": {"model": "micro", "prompt_len": 120,
                                                 "gen_len": 20}, "base": base,
                           "resources": "model", "synth_dir": None})
    assert long["status"] == "invalid" and "micro has 128" in long["reason"]


def test_several_cards_are_a_row_not_a_crash():
    t = {"key": "k", "point": {"model": "micro", "prompt_len": 8, "gen_len": 4, "devices": 2},
         "base": load_preset("tiny").to_dict(), "resources": "model", "synth_dir": None}
    r = evaluate_point(t)
    assert r["status"] in ("ok", "unsupported", "infeasible"), r
    assert r["status"] == "ok" or r["reason"]


def test_pareto_and_constraints():
    assert pareto_mask([[1, 5], [2, 2], [3, 3], [5, 1], [None, 0]], ["min", "min"]) == \
        [True, True, False, True, False]
    assert pareto_mask([[1, 5], [2, 6]], ["min", "max"]) == [True, True]
    rows = [{"status": "ok", "a": 1, "b": 9}, {"status": "ok", "a": 2, "b": 1},
            {"status": "failed"}, {"status": "ok", "a": 0.5, "b": 20}]
    mark_table(rows, {"b": {"max": 10}}, {"a": "min", "b": "min"})
    assert [r["meets_constraints"] for r in rows] == [True, True, False, False]
    assert [r["pareto"] for r in rows] == [True, True, False, False]


def test_resume_recomputes_nothing_finished(tmp_path):
    s = _spec(tmp_path)
    out = tmp_path / "out"
    first = run_sweep(s, out, sample=4, serial=True, presets=False, plots=False)
    assert first.computed == 4 and len(first.rows) == 4
    # "stopped" after 4 points: the whole sweep computes only the other 14
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    again = run_sweep(s, out, serial=True, presets=False, plots=False)
    assert again.computed == 14 and again.reused == 4 and len(again.rows) == 18
    for name, t in mtimes.items():
        assert (out / "points" / name).stat().st_mtime_ns == t
    assert run_sweep(s, out, serial=True, presets=False, plots=False).computed == 0

    # stopped mid-sweep (Ctrl-C after the 3rd point): those 3 are kept, the rest computed later
    out2 = tmp_path / "out2"

    def stop(state):
        if state["done"] == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_sweep(s, out2, sample=8, serial=True, presets=False, plots=False, progress=stop)
    assert len(ResultStore(out2).read()) == 3
    assert run_sweep(s, out2, sample=8, serial=True, presets=False, plots=False).computed == 5
    import pandas as pd
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 18 and df["pareto"].sum() >= 1 and set(df["status"]) == {"ok"}
    assert len(pd.read_csv(out / "results.csv")) == 18
    # a half-written point file is recomputed, never read as a row
    (out / "points" / f"{again.rows[0]['key']}.json").write_text('{"key": ')
    assert run_sweep(s, out, serial=True, presets=False, plots=False).computed == 1


def _disturbed_run(tmp_path, client, s, act):
    """``run_sweep`` of ``s`` (12 points) on the Dask client, ``act()`` called once after the
    first row arrives; every row must still come back ``ok``. Returns the run and what ``act``
    returned."""
    client.wait_for_workers(2, timeout=30)
    acted = []

    def progress(state):
        if not acted and state["done"] >= 1:
            acted.append(act())
    run = run_sweep(s, tmp_path / "dask", client=client, presets=False, plots=False,
                    progress=progress)
    assert acted and run.computed == 12
    assert [r["status"] for r in run.rows] == ["ok"] * 12, [
        (r["status"], r.get("reason")) for r in run.rows if r["status"] != "ok"]
    return run, acted[0]


def test_a_point_whose_result_is_lost_is_submitted_again(tmp_path, client):
    """A point future that ends without a result of its own (here cancelled after the first
    row, as a result lost with its worker would be) is submitted again, not recorded as
    failed (run.LOST_RESULT_RETRIES)."""
    def cancel_the_rest():
        keys = [k for k in client.futures if str(k).startswith("fpgpt-point-")]
        client.cancel([distributed.Future(k, client=client) for k in keys])
        return keys
    _run, cancelled = _disturbed_run(tmp_path, client, _spec(tmp_path, SMALL), cancel_the_rest)
    assert cancelled


def test_two_workers_a_killed_worker_loses_no_point(tmp_path, client):
    s = _spec(tmp_path, SMALL)
    serial = run_sweep(s, tmp_path / "serial", serial=True, presets=False, plots=False)
    client.wait_for_workers(2, timeout=30)
    pids = client.run(os.getpid)

    def kill_one():
        # one worker process dies with the points it holds
        pid = next(iter(pids.values()))
        os.kill(pid, signal.SIGKILL)
        return pid
    run, killed = _disturbed_run(tmp_path, client, s, kill_one)
    assert _strip(run.rows) == _strip(serial.rows)
    # the killed process gave at most the one row that had arrived when it was killed: the
    # points it held were computed again by the other worker (or its restart)
    assert sum(r["worker"].endswith(f":{killed}")
               for r in ResultStore(tmp_path / "dask").read()) <= 1


def test_a_raising_point_is_a_failed_row_and_the_sweep_goes_on(tmp_path, client):
    from fpgpt.sweep.run import _run_dask
    s = _spec(tmp_path, SPEC.replace('"vpu.width" = [4, 8]', '"vpu.width" = [4, 3]'))
    tasks, _ = make_tasks(s, presets=False)
    boom = dict(tasks[0], key="boom", point={**tasks[0]["point"], "_raise": "in a worker"})
    rows = []
    _run_dask(client, tasks + [boom], rows.append)
    st = {r["key"]: r for r in rows}
    assert len(rows) == 19 and st["boom"]["status"] == "failed"
    assert st["boom"]["reason"] == "RuntimeError: in a worker"
    inv = [r for r in rows if r["status"] == "invalid"]
    assert len(inv) == 9 and {r["reason"] for r in inv} == {"vpu.width must be a power of two, not 3"}
    assert sum(r["status"] == "ok" for r in rows) == 9
    # ran in the worker processes, not in this one (which of the two took each point is the
    # scheduler's choice: a loaded machine may leave one worker all of them)
    import os
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in rows if r.get("worker")}
    assert pids and os.getpid() not in pids and len(pids) <= 2


def test_cli_sweep_json_and_bad_spec(tmp_path):
    from click.testing import CliRunner

    from fpgpt.cli import main
    p = tmp_path / "s.toml"
    p.write_text(SPEC)
    # the points are done already (a serial run): the command reads, marks and writes them
    run_sweep(load_spec(p), tmp_path / "o", sample=3, serial=True, presets=False, plots=False)
    r = CliRunner().invoke(main, ["sweep", str(p), "--out", str(tmp_path / "o"), "--sample",
                                  "3", "--workers", "1", "--no-presets", "--no-plots", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert d["points"] == 3 and d["status"] == {"ok": 3} and d["pareto"] >= 1
    assert d["computed"] == 0 and d["reused"] == 3
    assert (tmp_path / "o" / "results.parquet").is_file()
    r = CliRunner().invoke(main, ["sweep", str(p), "--out", str(tmp_path / "o"), "--sample", "3",
                                  "--no-presets"])
    assert r.exit_code == 0 and "Pareto front" in r.output
    assert (tmp_path / "o" / "front_lut.png").stat().st_size > 10_000
    p.write_text(SPEC.replace("[axes]", "[axis]"))
    r = CliRunner().invoke(main, ["sweep", str(p)])
    assert r.exit_code == 2 and "unknown table [axis]" in r.output
    r = CliRunner().invoke(main, ["sweep", str(tmp_path / "none.toml")])
    assert r.exit_code == 2 and "not found" in r.output
