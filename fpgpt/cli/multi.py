"""Multi-card commands (docs/multi-device.md): ``fpgpt scale``, and the ``--devices N`` paths of
``compile``, ``simulate`` and ``generate`` (their options live in :mod:`fpgpt.cli.core`, which
hands a ring of cards to the functions here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .core import (UsageProblem, _breakdown_table, _check_output, _emit_json, _guard,
                   _resolve_model, _sim_progress, _simulation_inputs, _timing_table, console,
                   err_console, main)

__all__ = ["compile_ring", "simulate_ring", "generate_ring", "scale_rows"]


def _devices(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageProblem(f"--devices must be a positive integer, not {n!r}")
    return n


def _ring_progress(progress, label: str, programs, gen_len: int):
    """A task over card 0's instructions (every card runs about as many) and its callback."""
    pre = len(programs[0].streams["prefill"])
    dec = max(len(programs[0].streams["decode"]), 1)
    task = progress.add_task(label, total=pre + dec * (gen_len - 1), info="")
    base = {"prefill": 0, "decode": pre}

    def cb(stream: str, n: int) -> None:
        progress.update(task, completed=base.get(stream, 0) + n, info=stream)
    return cb


# ------------------------------------------------------------------------------------ compile
def compile_ring(model: str, hw_name: str, prompt_len: int, output: str, force: bool,
                 as_json: bool, devices: int) -> None:
    """``fpgpt compile --devices N``: one Program per card in folder ``output`` + manifest."""
    from ..compiler import compile_devices
    from ..config import load_config
    n = _devices(devices)
    hwc = load_config(hw_name)
    spec, weights, _, label = _resolve_model(model, need_weights=False)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageProblem(f"{out} is a file; with --devices, -o names a folder for the cards' "
                           f"programs and manifest.json")
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not force:
        raise FileExistsError(f"{manifest_path} exists; pass --force to overwrite")
    programs = compile_devices(weights if weights is not None else spec, hwc,
                               prompt_len=prompt_len, devices=n)
    out.mkdir(parents=True, exist_ok=True)
    cards = []
    for d, p in enumerate(programs):
        f = out / f"card{d}.fpx"
        p.save(f, overwrite=True)
        part = p.meta.get("partition", {})
        cards.append({"device": d, "file": f.name, "bytes": f.stat().st_size,
                      "hbm_bytes": p.hbm_bytes,
                      "heads": part.get("heads", [[0, spec.n_head]])[d] if part else [0, spec.n_head],
                      "streams": {k: len(v) for k, v in p.streams.items()}})
    manifest = {"model": label, "hw": hwc.name, "artifact": hwc.artifact_name,
                "devices": n, "prompt_len": prompt_len, "weights": weights is not None,
                "partition": programs[0].meta.get("partition"), "cards": cards}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    if as_json:
        _emit_json(dict(manifest, output=str(out)))
        return
    t = Table(title=f"{label} on {n} x {hwc.name}: {out}")
    for c in ("card", "file", "heads", "prefill", "decode", "HBM MiB"):
        t.add_column(c, justify="right")
    for c in cards:
        t.add_row(str(c["device"]), c["file"], f"{c['heads'][0]}..{c['heads'][0] + c['heads'][1] - 1}",
                  str(c["streams"]["prefill"]), str(c["streams"]["decode"]),
                  f"{c['hbm_bytes'] / 2**20:,.1f}")
    console.print(t)


# ----------------------------------------------------------------------------------- simulate
def _ring_rows(res) -> list[tuple[str, str]]:
    j = res.to_json()
    rows = [("devices", str(j["devices"])),
            ("link bytes per decoded token (all links)", f"{j['link_bytes_per_token'] / 1e6:,.3f} MB"),
            ("link utilisation (decode, tx_next)", f"{100 * j['link_utilization']:.2f} %"),
            ("collectives per token", f"{j['collectives_per_token']:.0f}")]
    for d, (w, p) in enumerate(zip(j["ring_wait_share"], j["partner_wait_share"])):
        rows.append((f"card {d}: NET busy / waiting for partners",
                     f"{100 * w:.1f} % / {100 * p:.1f} %"))
    if j["hbm_floor_ms_per_token"] is not None:
        rows.append((f"HBM floor on {j['devices']} cards", f"{j['hbm_floor_ms_per_token']:.4f} ms/token"))
    return rows


def simulate_ring(model: str, hw_name: str, prompt_len: int, gen_len: int, json_out: str | None,
                  trace_path: str | None, force: bool, devices: int,
                  breakdown: bool = False) -> None:
    """``fpgpt simulate --devices N``: the ring's timing (docs/multi-device.md)."""
    from ..compiler import compile_devices
    from ..sim.system import simulate_system, write_system_trace
    n = _devices(devices)
    hwc, spec, label = _simulation_inputs(model, hw_name, prompt_len, gen_len,
                                          (json_out, trace_path), force)
    with err_console.status(f"compiling {label} for {n} x {hwc.name}"):
        programs = compile_devices(spec, hwc, prompt_len=prompt_len, devices=n)
    progress = _sim_progress("simulating")
    with progress:
        cb = _ring_progress(progress, f"{label} on {n} x {hwc.name}", programs, gen_len)
        res = simulate_system(programs, prompt_len=prompt_len, gen_len=gen_len,
                              trace=trace_path is not None, progress=cb)
    data = res.to_json()
    data["model"] = label
    if trace_path:
        write_system_trace(res, trace_path, overwrite=True)
        err_console.print(f"wrote {trace_path} (open in https://ui.perfetto.dev)")
    if json_out is not None:
        _emit_json(data, json_out)
        if json_out == "-":
            return
    t = _timing_table(res.result, f"{label} on {n} x {hwc.name} ({hwc.artifact_name}), "
                                  f"prompt {prompt_len}, generate {gen_len}")
    for r in _ring_rows(res):
        t.add_row(*r)
    console.print(t)
    if breakdown:
        # prefill (time to first token) in ms, decode in ms per token, each card's own
        for stream, per, unit in (("prefill", 1, "ms"),
                                  ("decode", res.result.tokens_decoded, "ms per token")):
            if getattr(res.result, stream) is None:
                continue
            for d, card in enumerate(res.cards):
                console.print(_breakdown_table(getattr(card, stream), per,
                                               f"card {d}, {stream}: {unit} (% of the stream)"))
            console.print(_busy_by_op_by_card(res.cards, per, stream, unit))


def _busy_by_op_by_card(cards, per: int, stream: str = "decode",
                        unit: str = "ms per token") -> Table:
    """A stream's busy time by instruction (in ``unit``: ms per ``per``), a column per card: the
    work each card repeats (LAYERNORM, VADD, ARGMAX: every card holds the whole residual) beside
    the work the ring divides (MM, SOFTMAX, GELU)."""
    from ..sim.results import UNITS
    first = getattr(cards[0], stream)
    scale = 1.0 / (first.clock_mhz * 1e3 * max(per, 1))
    t = Table(title=f"{stream}: busy time by instruction, {unit}, per card")
    t.add_column("unit")
    t.add_column("instruction")
    for d in range(len(cards)):
        t.add_column(f"card {d}", justify="right")
    rows = {(u, op): [0.0] * len(cards) for c in cards
            for u, ops in getattr(c, stream).breakdown.items() for op in ops}
    for d, c in enumerate(cards):
        for u, ops in getattr(c, stream).breakdown.items():
            for op, v in ops.items():
                rows[(u, op)][d] = v
    order = {u: i for i, u in enumerate(UNITS)}
    for (u, op), vs in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], len(order)),
                                                            -max(kv[1]))):
        if any(vs):
            t.add_row(u.upper(), op, *(f"{v * scale:.4f}" for v in vs))
    return t


# ----------------------------------------------------------------------------------- generate
def generate_ring(weights, tok, label: str, ids: list[int], max_new_tokens: int, mode: str,
                  hw_name: str, devices: int) -> dict:
    """``fpgpt generate --devices N``: tokens and latencies of the simulated ring (the caller
    checked the request and prints the dict)."""
    from ..compiler import compile_devices
    from ..config import load_config
    from ..sim.system import generate_system, simulate_system
    n = _devices(devices)
    hwc = load_config(hw_name)
    programs = compile_devices(weights, hwc, prompt_len=len(ids), devices=n)
    with err_console.status(f"running {label} on {n} simulated {hwc.name} cards ({mode} mode)"):
        gen = generate_system(programs, ids, max_new_tokens, mode=mode)
        timing = simulate_system(programs, prompt_len=len(ids), gen_len=max_new_tokens)
    j = timing.to_json()
    return {"engine": f"simulated {n} x {hwc.name} ({mode})", "hw": hwc.name, "mode": mode,
            "devices": n, "tokens": [int(t) for t in gen.tokens], "ttft_ms": j["ttft_ms"],
            "ms_per_token": j["ms_per_token"], "tokens_per_s": j["tokens_per_s"],
            "total_ms": j["total_ms"], "link_bytes_per_token": j["link_bytes_per_token"],
            "instructions_executed": gen.instructions}


# -------------------------------------------------------------------------------------- scale
def scale_rows(spec, hwc, counts: list[int], *, prompt_len: int, gen_len: int,
               progress=None) -> list[dict]:
    """Strong scaling of ``spec`` on ``hwc``: one row per card count (docs/multi-device.md)."""
    from ..compiler import compile_devices
    from ..sim.system import simulate_system
    rows: list[dict] = []
    for n in counts:
        programs = compile_devices(spec, hwc, prompt_len=prompt_len, devices=n)
        cb = progress(n, programs) if progress is not None else None
        res = simulate_system(programs, prompt_len=prompt_len, gen_len=gen_len, progress=cb)
        j = res.to_json()
        waits = j["ring_wait_share"]
        rows.append({"devices": n, "ms_per_token": j["ms_per_token"], "ttft_ms": j["ttft_ms"],
                     "comm_share": sum(waits) / len(waits),
                     "partner_wait_share": max(j["partner_wait_share"]),
                     "link_bytes_per_token": j["link_bytes_per_token"],
                     "link_utilization": j["link_utilization"],
                     "hbm_floor_ms_per_token": j["hbm_floor_ms_per_token"],
                     "collectives_per_token": j["collectives_per_token"],
                     "sim_wall_s": res.wall_s})
    base = next((r for r in rows if r["devices"] == 1), None)
    for r in rows:
        if base is not None and r["ms_per_token"] > 0:
            r["speedup"] = base["ms_per_token"] / r["ms_per_token"]
            r["efficiency"] = r["speedup"] / r["devices"]
            r["ttft_speedup"] = base["ttft_ms"] / r["ttft_ms"] if r["ttft_ms"] else None
        else:
            r["speedup"] = r["efficiency"] = r["ttft_speedup"] = None
    return rows


def _plot(rows: list[dict], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = [r["devices"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, [r["ms_per_token"] for r in rows], "o-", label="simulated decode")
    a.plot(n, [r["hbm_floor_ms_per_token"] for r in rows], "k:", label="HBM floor")
    a.set_xscale("log", base=2)
    a.set_yscale("log")
    a.set_xticks(n, [str(x) for x in n])
    a.set_xlabel("cards")
    a.set_ylabel("ms / token")
    a.legend()
    a.set_title("decode latency")
    if rows[0].get("efficiency") is not None:
        b.plot(n, [100 * r["efficiency"] for r in rows], "o-", label="scaling efficiency")
    b.plot(n, [100 * r["comm_share"] for r in rows], "s--", label="NET busy (mean card)")
    b.set_xscale("log", base=2)
    b.set_xticks(n, [str(x) for x in n])
    b.set_ylim(0, 105)
    b.set_xlabel("cards")
    b.set_ylabel("%")
    b.legend()
    b.set_title("efficiency and communication")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@main.command()
@click.option("--model", required=True, help="GPT-2 preset name, shipped model or checkpoint folder.")
@click.option("--hw", "hw_name", default="u280", show_default=True, help="Preset or TOML file.")
@click.option("--devices", "devices", default="1,2,4,8", show_default=True,
              help="Comma-separated card counts (include 1 for speed-up and efficiency).")
@click.option("--prompt-len", type=int, default=128, show_default=True)
@click.option("--gen-len", type=int, default=128, show_default=True)
@click.option("--json", "json_out", is_flag=False, flag_value="-", default=None,
              help="Write JSON to a file (or stdout when given no file).")
@click.option("--plot", "plot_path", default=None, help="Write a PNG of the scaling.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@_guard
def scale(model: str, hw_name: str, devices: str, prompt_len: int, gen_len: int,
          json_out: str | None, plot_path: str | None, force: bool) -> None:
    """Strong scaling over a ring of cards: ms/token, time to first token, speed-up,
    efficiency, share of time in communication and the HBM floor per card count."""
    from ..config import load_config
    try:
        counts = [int(x) for x in devices.replace(" ", "").split(",") if x]
    except ValueError:
        raise UsageProblem(f"--devices must be comma-separated integers, not {devices!r}") from None
    if not counts:
        raise UsageProblem("--devices is empty; give card counts such as 1,2,4,8")
    for c in counts:
        _devices(c)
    counts = sorted(set(counts))
    hwc = load_config(hw_name)
    spec, _, _, label = _resolve_model(model, need_weights=False)
    if prompt_len < 1 or gen_len < 1 or prompt_len + gen_len - 1 > spec.n_ctx:
        raise UsageProblem(f"--prompt-len and --gen-len must be at least 1 and fit {label}'s "
                           f"context of {spec.n_ctx}")
    for p in (json_out, plot_path):
        if p not in (None, "-"):
            _check_output(p, force)
    from ..compiler import CompileError
    from ..compiler.partition import check_devices
    for c in counts:           # fail before minutes of simulation
        check_devices(spec, c)
    if max(counts) > 1 and hwc.link.count < 2:
        raise CompileError(f"a ring needs two links per card, but {hwc.name!r} has "
                           f"link.count = {hwc.link.count}")
    progress = _sim_progress("scaling")
    with progress:
        rows = scale_rows(spec, hwc, counts, prompt_len=prompt_len, gen_len=gen_len,
                          progress=lambda n, programs: _ring_progress(
                              progress, f"{label} on {n} x {hwc.name}", programs, gen_len))
    title = f"{label} on {hwc.name}, prompt {prompt_len}, generate {gen_len}"
    if plot_path:
        _plot(rows, title, Path(plot_path))
        err_console.print(f"wrote {plot_path}")
    data = {"model": label, "hw": hwc.name, "prompt_len": prompt_len, "gen_len": gen_len,
            "rows": rows}
    if json_out is not None:
        _emit_json(data, json_out)
        if json_out == "-":
            return
    t = Table(title=title)
    for c in ("cards", "ms/token", "TTFT ms", "speed-up", "efficiency", "comm %",
              "HBM floor ms", "% of floor speed"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(str(r["devices"]), f"{r['ms_per_token']:.3f}", f"{r['ttft_ms']:.1f}",
                  f"{r['speedup']:.2f}" if r["speedup"] else "-",
                  f"{100 * r['efficiency']:.0f} %" if r["efficiency"] else "-",
                  f"{100 * r['comm_share']:.1f}",
                  f"{r['hbm_floor_ms_per_token']:.3f}" if r["hbm_floor_ms_per_token"] else "-",
                  f"{100 * r['hbm_floor_ms_per_token'] / r['ms_per_token']:.0f} %"
                  if r["hbm_floor_ms_per_token"] and r["ms_per_token"] else "-")
    console.print(t)
