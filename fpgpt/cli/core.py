"""The ``fpgpt`` command: the group, the shared helpers (errors, JSON, outputs) and the
commands of the first parts (hw, asm/disasm, compile, simulate, generate, rtl, synth).

Every command prints a table for people and, with ``--json``, JSON for programs. Bad input is a
one-line error (exit 2); a failure while running is a one-line error (exit 1); never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from .. import __version__

console = Console()
err_console = Console(stderr=True)


class UsageProblem(Exception):
    """Bad input from the user: exit code 2."""


def _input_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'your input is wrong' (exit 2)."""
    from ..config import ConfigError
    from ..isa import ISAError
    types: list[type[BaseException]] = [ConfigError, ISAError, UsageProblem, FileExistsError,
                                        FileNotFoundError, IsADirectoryError]
    try:
        from ..models import ModelError
        types.append(ModelError)
    except ImportError:
        pass
    try:
        from ..compiler import CompileError
        types.append(CompileError)
    except ImportError:
        pass
    return tuple(types)


def _run_errors() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    try:
        from ..sim import SimError
        types.append(SimError)
    except ImportError:
        pass
    return tuple(types)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's errors into one-line messages and exit codes."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            err_console.print("fpgpt: interrupted")
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - classify, never show a traceback
            code = 2 if isinstance(e, _input_errors()) else 1
            if not isinstance(e, _input_errors() + _run_errors() + (OSError, MemoryError)):
                e = RuntimeError(f"internal error ({type(e).__name__}: {e}); please report it")
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            click.echo(f"fpgpt: error: {msg}", err=True)
            sys.exit(code)
    return wrapper


def _emit_json(data: Any, dest: str | None = "-") -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default)
    if dest in (None, "-"):
        click.echo(text)
    else:
        Path(dest).write_text(text + "\n")
        err_console.print(f"wrote {dest}")


def _json_default(o: Any) -> Any:
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _check_output(path: str, force: bool) -> Path:
    p = Path(path)
    if p.exists() and not force:
        raise UsageProblem(f"{p} exists; pass --force to overwrite it")
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    return p


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fpgpt")
def main() -> None:
    """fpgpt: design, simulate and build a multi-FPGA accelerator for GPT-2 text generation."""


# ------------------------------------------------------------------------------------------ hw
@main.group()
def hw() -> None:
    """Hardware configurations (presets and TOML files)."""


@hw.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard
def hw_list(as_json: bool) -> None:
    """List the shipped presets."""
    from ..config import load_preset, preset_names
    rows = []
    for name in preset_names():
        c = load_preset(name)
        d = c.derived()
        rows.append({"name": name, "description": c.description, "clock_mhz": c.clock_mhz,
                     "mpu_macs_per_cycle": d["mpu_macs_per_cycle"],
                     "hbm_peak_gb_per_s": round(d["hbm_peak_gb_per_s"], 1),
                     "hbm_capacity_gib": d["hbm_capacity_gib"], "artifact": c.artifact_name})
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="hardware presets")
    for col in ("name", "clock MHz", "MACs/cycle", "HBM GB/s", "HBM GiB", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], f"{r['clock_mhz']:g}", str(r["mpu_macs_per_cycle"]),
                  f"{r['hbm_peak_gb_per_s']:g}", f"{r['hbm_capacity_gib']:g}", r["description"])
    console.print(t)


@hw.command("show")
@click.argument("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard
def hw_show(config: str, as_json: bool) -> None:
    """Show a preset (u280, dfx, u55c, tiny) or a TOML file, with derived figures and sources."""
    from ..config import load_config
    c = load_config(config)
    if as_json:
        _emit_json({**c.to_dict(), "derived": c.derived(), "artifact": c.artifact_name})
        return
    t = Table(title=f"{c.name}: {c.description}")
    t.add_column("field")
    t.add_column("value", justify="right")
    t.add_column("source")
    d = c.to_dict()

    def src(key: str) -> str:
        section = key.split(".")[0]
        return c.sources.get(key) or c.sources.get(section, "")
    for k in ("clock_mhz", "devices"):
        t.add_row(k, f"{d[k]:g}" if isinstance(d[k], float) else str(d[k]), src(k))
    for section in ("mpu", "vpu", "buffers", "hbm", "link", "power"):
        for k, v in d[section].items():
            t.add_row(f"{section}.{k}", f"{v:g}" if isinstance(v, float) else str(v), src(f"{section}.{k}"))
    for k, v in c.derived().items():
        t.add_row(f"[bold]{k}[/bold]", f"{v:,.4g}", "derived")
    console.print(t)
    console.print(f"artifact name: {c.artifact_name}")


@hw.command("save")
@click.argument("config")
@click.option("-o", "--output", required=True, help="TOML file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@_guard
def hw_save(config: str, output: str, force: bool) -> None:
    """Write a preset as a TOML file to edit and pass back with --hw FILE."""
    from ..config import load_config
    c = load_config(config)
    p = _check_output(output, force)
    p.write_text(c.to_toml())
    err_console.print(f"wrote {p}")


# ------------------------------------------------------------------------------ asm / disasm
@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True,
              help="Output: NAME.fpx for a Program file, anything else for raw 64-byte words.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@_guard
def asm(source: str, output: str, force: bool, as_json: bool) -> None:
    """Assemble a text program (see docs/isa.md, "Assembly syntax")."""
    from ..isa import assemble_file, encode_many
    program = assemble_file(source)
    out = _check_output(output, force)
    if out.suffix == ".fpx":
        data = program.to_bytes()
    else:
        if len(program.streams) != 1:
            raise UsageProblem(f"{source} has {len(program.streams)} streams "
                               f"({', '.join(program.streams)}); write them to a .fpx file")
        data = encode_many(next(iter(program.streams.values())))
    out.write_bytes(data)
    summary = {"output": str(out), "bytes": len(data),
               "streams": {k: len(v) for k, v in program.streams.items()}}
    if as_json:
        _emit_json(summary)
    else:
        counts = ", ".join(f"{k}: {n} instructions" for k, n in summary["streams"].items())
        console.print(f"wrote {out} ({len(data):,} bytes; {counts})")


@main.command()
@click.argument("binary", type=click.Path(dir_okay=False))
@click.option("--stream", default=None, help="Show only this stream of a .fpx program.")
@click.option("--json", "as_json", is_flag=True, help="Print instructions as JSON.")
@_guard
def disasm(binary: str, stream: str | None, as_json: bool) -> None:
    """Disassemble a .fpx Program or a file of raw instruction words."""
    from ..isa import Program, decode_many, disassemble, format_program
    from ..isa.program import MAGIC
    p = Path(binary)
    if not p.is_file():
        raise UsageProblem(f"{binary}: no such file")
    data = p.read_bytes()
    if data[:len(MAGIC)] == MAGIC:
        program = Program.from_bytes(data, origin=binary)
    else:
        program = Program({"main": decode_many(data)})
    if stream is not None:
        program.stream(stream)  # checks the name
        program = Program({stream: program.streams[stream]}, program.regions, [],
                          program.registers, program.meta)
    if as_json:
        _emit_json({name: [{"op": i.op, **i.fields, "waits": i.wait_map} for i in instrs]
                    for name, instrs in program.streams.items()})
    elif len(program.streams) == 1 and not program.regions and not program.meta:
        click.echo(disassemble(next(iter(program.streams.values()))), nl=False)
    else:
        click.echo(format_program(program), nl=False)


# --------------------------------------------------------------------- models and programs
def _resolve_model(model: str, *, need_weights: bool):
    """(spec, weights or None, tokenizer or None, label) for a shipped name, preset or folder."""
    from ..models import (SHIPPED_MODELS, get_spec, load_model, load_tokenizer, model_names,
                         shipped_model_path)
    if model in SHIPPED_MODELS or Path(model).is_dir():
        weights = load_model(model)
        folder = shipped_model_path(model) if model in SHIPPED_MODELS else Path(model)
        return weights.spec, weights, load_tokenizer(folder), model
    if model in model_names():
        if need_weights:
            raise UsageProblem(f"model {model!r} has shapes but no weights here (weights cannot be "
                               f"downloaded); pass a local Hugging Face checkpoint folder, or one of "
                               f"the shipped models: {', '.join(SHIPPED_MODELS)}")
        return get_spec(model), None, None, model
    raise UsageProblem(f"unknown model {model!r}: not a checkpoint folder; known models: "
                       f"{', '.join(list(SHIPPED_MODELS) + [m for m in model_names() if m not in SHIPPED_MODELS])}")


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageProblem(f"--prompt-ids must be comma-separated integers, not {text!r}") from None
    if not ids:
        raise UsageProblem("--prompt-ids is empty; give at least one token id")
    return ids


def _sim_progress(description: str):
    """A rich progress bar fed by the timing model's ``progress(stream, n)`` callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), console=err_console, transient=True,
                        disable=not err_console.is_terminal)
    return progress


def _simulation_inputs(model: str, hw_name: str, prompt_len: int, gen_len: int,
                       outputs: tuple[str | None, ...], force: bool):
    """What ``simulate`` (one card or a ring) checks before it runs: the config, the model's
    shapes and label, the lengths against the context, and the output files."""
    from ..config import load_config
    hwc = load_config(hw_name)
    spec, _, _, label = _resolve_model(model, need_weights=False)
    if prompt_len < 1 or gen_len < 1:
        raise UsageProblem("--prompt-len and --gen-len must be at least 1")
    if prompt_len + gen_len - 1 > spec.n_ctx:
        raise UsageProblem(f"prompt of {prompt_len} + {gen_len} generated tokens needs "
                           f"{prompt_len + gen_len - 1} positions but {label} has a context of "
                           f"{spec.n_ctx}; shorten --prompt-len or --gen-len")
    for p in outputs:
        if p not in (None, "-"):
            _check_output(p, force)
    return hwc, spec, label


def _timing_table(result, title: str) -> Table:
    j = result.to_json()
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("time to first token", f"{j['ttft_ms']:.3f} ms"),
        ("decode", f"{j['ms_per_token']:.4f} ms/token"),
        ("throughput", f"{j['tokens_per_s']:.1f} tokens/s"),
        ("total", f"{j['total_ms']:.3f} ms"),
        ("HBM bytes per decoded token", f"{j['hbm_bytes_per_token'] / 1e6:,.2f} MB"),
        ("HBM bandwidth utilisation (decode)", f"{100 * j['hbm_bw_utilization']:.1f} %"),
    ]
    for u, v in j["unit_utilization"].items():
        rows.append((f"{u.upper()} busy", f"{100 * v:.1f} %"))
    cyc = j["cycles"]
    rows.append(("cycles", f"{cyc.get('total', sum(v for v in cyc.values())):,.0f}"
                 if isinstance(cyc, dict) else f"{cyc:,.0f}"))
    for r in rows:
        t.add_row(*r)
    return t


@main.command("compile")
@click.option("--model", required=True, help="gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny, micro, "
              "or a Hugging Face GPT-2 checkpoint folder.")
@click.option("--hw", "hw_name", default="u280", show_default=True, help="Preset or TOML file.")
@click.option("--prompt-len", type=int, default=128, show_default=True,
              help="Prompt length the prefill stream is compiled for.")
@click.option("-o", "--output", required=True, help="Program file to write (.fpx); with "
              "--devices N, a folder for card0.fpx .. and manifest.json.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("--devices", type=int, default=None,
              help="Cards in the ring (model parallel, docs/multi-device.md).")
@_guard
def compile_cmd(model: str, hw_name: str, prompt_len: int, output: str, force: bool,
                as_json: bool, devices: int | None) -> None:
    """Compile GPT-2 to a Program (prefill + decode streams, HBM layout, memory image)."""
    if devices is not None and devices != 1:            # a ring of cards: fpgpt/cli/multi.py
        from .multi import compile_ring
        return compile_ring(model, hw_name, prompt_len, output, force, as_json, devices)
    from ..compiler import compile_model
    from ..config import load_config
    hwc = load_config(hw_name)
    spec, weights, _, label = _resolve_model(model, need_weights=False)
    out = _check_output(output, force)
    program = compile_model(weights if weights is not None else spec, hwc, prompt_len=prompt_len)
    program.save(out, overwrite=True)
    summary = {"output": str(out), "model": label, "hw": hwc.name, "artifact": hwc.artifact_name,
               "prompt_len": prompt_len, "bytes": out.stat().st_size,
               "streams": {k: len(v) for k, v in program.streams.items()},
               "hbm_bytes": program.hbm_bytes, "weights": weights is not None}
    if as_json:
        _emit_json(summary)
        return
    console.print(f"wrote {out}: {summary['streams']['prefill']} prefill + "
                  f"{summary['streams']['decode']} decode instructions, HBM layout "
                  f"{program.hbm_bytes / 2**20:,.1f} MiB"
                  + ("" if weights is not None else " (shapes only, no memory image)"))


def _breakdown_table(stream, per: int, title: str) -> Table:
    """Where a stream's time went, per unit (StreamTiming.unit_breakdown), in ms per ``per``;
    the HBM's idle time in the caption."""
    from ..sim.results import CAUSES, UNITS
    bd = stream.unit_breakdown
    scale = 1.0 / (stream.clock_mhz * 1e3 * max(per, 1))

    def cell(v: float) -> str:
        return f"{v * scale:.4f} ({100 * v / stream.cycles:.0f} %)" if v else "-"
    units = [u for u in UNITS if u != "net" or bd[u]["busy"]]
    cols = ["busy"] + [f"wait.{c}" for c in CAUSES if any(bd[u].get(f"wait.{c}") for u in units)]
    h = bd["hbm"]
    t = Table(title=title, caption=f"HBM: no transfer in flight {cell(h['idle'])}, channels not "
                                   f"serving {cell(h['channel_idle'])}")
    t.add_column("unit")
    for c in cols + ["idle"]:
        t.add_column(c.replace("wait.", "waits on "), justify="right")
    for u in units:
        t.add_row(u.upper(), *(cell(bd[u].get(c, 0.0)) for c in cols + ["idle"]))
    return t


def _busy_by_op_table(stream, per: int, title: str) -> Table:
    """Each unit's busy time by mnemonic (StreamTiming.breakdown), in ms per ``per``, largest
    first: which instructions the busy column of :func:`_breakdown_table` is made of."""
    scale = 1.0 / (stream.clock_mhz * 1e3 * max(per, 1))
    t = Table(title=title)
    for c, j in (("unit", "left"), ("instruction", "left"), ("count", "right"),
                 ("busy ms", "right"), ("% of the unit's busy", "right")):
        t.add_column(c, justify=j)
    for u, ops in stream.breakdown.items():
        total = sum(ops.values())
        for op, v in sorted(ops.items(), key=lambda kv: -kv[1]):
            if v:
                t.add_row(u.upper(), op, f"{stream.counts.get(op, 0) / max(per, 1):,.1f}",
                          f"{v * scale:.4f}", f"{100 * v / total:.0f} %")
    return t


@main.command()
@click.option("--model", required=True, help="GPT-2 preset name, shipped model or checkpoint folder.")
@click.option("--hw", "hw_name", default="u280", show_default=True, help="Preset or TOML file.")
@click.option("--prompt-len", type=int, default=128, show_default=True)
@click.option("--gen-len", type=int, default=128, show_default=True)
@click.option("--json", "json_out", is_flag=False, flag_value="-", default=None,
              help="Write JSON to a file (or stdout when given no file).")
@click.option("--trace", "trace_path", default=None, help="Write a Perfetto/Chrome trace JSON.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--devices", type=int, default=None,
              help="Cards in the ring (model parallel, docs/multi-device.md).")
@click.option("--breakdown", is_flag=True,
              help="Show per unit busy time, time waiting on each other unit, idle and idle HBM "
                   "time, per stream, and decode's busy time by instruction; with --devices, "
                   "decode's for every card (always in the JSON: docs/sim-speed-events.md).")
@_guard
def simulate(model: str, hw_name: str, prompt_len: int, gen_len: int, json_out: str | None,
             trace_path: str | None, force: bool, devices: int | None, breakdown: bool) -> None:
    """Time a generation on the simulated card (no weights needed)."""
    if devices is not None and devices != 1:            # a ring of cards: fpgpt/cli/multi.py
        from .multi import simulate_ring
        return simulate_ring(model, hw_name, prompt_len, gen_len, json_out, trace_path, force,
                             devices, breakdown)
    from ..compiler import compile_model
    from ..sim.timing import simulate as run_timing
    from ..sim.trace import TraceRecorder
    hwc, spec, label = _simulation_inputs(model, hw_name, prompt_len, gen_len,
                                          (json_out, trace_path), force)
    program = compile_model(spec, hwc, prompt_len=prompt_len)
    trace = TraceRecorder() if trace_path else None
    progress = _sim_progress("simulating")
    decode_len = max(len(program.streams["decode"]), 1)
    with progress:
        task = progress.add_task(f"{label} on {hwc.name}", total=len(program.streams["prefill"])
                                 + decode_len * (gen_len - 1), info="")
        base = {"prefill": 0, "decode": len(program.streams["prefill"])}

        def cb(stream: str, n: int) -> None:
            progress.update(task, completed=base.get(stream, 0) + n, info=stream)
        result = run_timing(program, hwc, prompt_len=prompt_len, gen_len=gen_len, trace=trace,
                            progress=cb)
    data = result.to_json()
    data["model"] = label
    data.update(result.breakdown_json())
    data["events"] = {s.name: s.events for s in result.streams}
    if trace is not None:
        trace.write_trace(trace_path, overwrite=True)
        err_console.print(f"wrote {trace_path} (open in https://ui.perfetto.dev)")
    if json_out is not None:
        _emit_json(data, json_out)
        if json_out == "-":
            return
    floor_ms = spec.weight_bytes_per_token() / hwc.hbm_peak_bytes_per_s * 1e3
    console.print(_timing_table(result, f"{label} on {hwc.name} ({hwc.artifact_name}), "
                                        f"prompt {prompt_len}, generate {gen_len}"))
    if breakdown:
        console.print(_breakdown_table(result.prefill, 1, "prefill: ms (% of the stream)"))
        if result.decode is not None:
            console.print(_breakdown_table(result.decode, result.tokens_decoded,
                                           "decode: ms per token (% of the stream)"))
            console.print(_busy_by_op_table(result.decode, result.tokens_decoded,
                                            "decode: busy time by instruction, per token"))
    console.print(f"HBM floor: {floor_ms:.3f} ms/token ({spec.weight_bytes_per_token() / 1e9:.3f} GB of weights "
                  f"read per token / {hwc.hbm_peak_bytes_per_s / 1e9:.1f} GB/s);\nsimulated decode runs at "
                  f"{100 * floor_ms / max(data['ms_per_token'], 1e-12):.1f} % of that floor's speed.")


@main.command()
@click.option("--model", default="tiny", show_default=True,
              help="Shipped model (tiny, micro) or a Hugging Face GPT-2 checkpoint folder.")
@click.option("--hw", "hw_name", default="u280", show_default=True, help="Preset or TOML file.")
@click.option("--prompt", default=None, help="Prompt text (needs a tokenizer).")
@click.option("--prompt-ids", default=None, help="Prompt as comma-separated token ids.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--mode", type=click.Choice(["exact", "fast"]), default="exact", show_default=True,
              help="exact: bit for bit what the RTL computes; fast: BLAS float32 matmuls.")
@click.option("--reference", is_flag=True,
              help="Run fpgpt's numpy reference instead of the simulated accelerator.")
@click.option("--top-k", type=int, default=None, help="With --reference: top-k sampling.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --top-k: the seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--devices", type=int, default=None,
              help="Cards in the ring (model parallel, docs/multi-device.md).")
@_guard
def generate(model: str, hw_name: str, prompt: str | None, prompt_ids: str | None,
             max_new_tokens: int, mode: str, reference: bool, top_k: int | None, seed: int,
             as_json: bool, devices: int | None) -> None:
    """Generate text on the simulated accelerator (greedy, on the device), with its latencies."""
    import time

    from ..config import load_config
    spec, weights, tok, label = _resolve_model(model, need_weights=True)
    if (prompt is None) == (prompt_ids is None):
        raise UsageProblem("give exactly one of --prompt and --prompt-ids")
    if prompt is not None:
        if tok is None:
            raise UsageProblem(f"{label} has no tokenizer files; use --prompt-ids")
        ids = tok.encode(prompt)
        if not ids:
            raise UsageProblem("--prompt is empty")
    else:
        ids = _parse_ids(prompt_ids)
    bad = [i for i in ids if not 0 <= i < spec.vocab]
    if bad:
        raise UsageProblem(f"token id {bad[0]} is outside {label}'s vocabulary of {spec.vocab}")
    if max_new_tokens < 1:
        raise UsageProblem("--max-new-tokens must be at least 1")
    if len(ids) + max_new_tokens - 1 > spec.n_ctx:
        raise UsageProblem(f"prompt of {len(ids)} tokens + {max_new_tokens} new tokens needs "
                           f"{len(ids) + max_new_tokens - 1} positions but {label} has a context of "
                           f"{spec.n_ctx}; shorten the prompt or --max-new-tokens")
    if top_k is not None and not reference:
        raise UsageProblem("the accelerator decodes greedily (argmax on the device); "
                           "--top-k needs --reference")
    out: dict[str, Any] = {"model": label, "prompt_ids": ids}
    t0 = time.perf_counter()
    if reference:
        from ..models import Reference
        new = Reference(weights).generate(ids, max_new_tokens, top_k=top_k, seed=seed)
        out.update({"engine": "reference (numpy, fp32)", "tokens": [int(t) for t in new]})
    elif devices is not None and devices != 1:          # a ring of cards: fpgpt/cli/multi.py
        from .multi import generate_ring
        out.update(generate_ring(weights, tok, label, ids, max_new_tokens, mode, hw_name, devices))
    else:
        from ..compiler import compile_model
        from ..sim import generate as sim_generate
        from ..sim.timing import simulate as run_timing
        hwc = load_config(hw_name)
        program = compile_model(weights, hwc, prompt_len=len(ids))
        with err_console.status(f"running {label} on the simulated {hwc.name} ({mode} mode)"):
            gen = sim_generate(program, ids, max_new_tokens, mode=mode)
            timing = run_timing(program, hwc, prompt_len=len(ids), gen_len=max_new_tokens)
        j = timing.to_json()
        out.update({"engine": f"simulated {hwc.name} ({mode})", "hw": hwc.name, "mode": mode,
                    "tokens": [int(t) for t in gen.tokens], "ttft_ms": j["ttft_ms"],
                    "ms_per_token": j["ms_per_token"], "tokens_per_s": j["tokens_per_s"],
                    "total_ms": j["total_ms"], "instructions_executed": gen.instructions})
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    if tok is not None:
        out["text"] = tok.decode(out["tokens"])
    if as_json:
        _emit_json(out)
        return
    if tok is not None:
        click.echo(click.style(tok.decode(ids), bold=True) + out["text"])
    else:
        console.print("tokens: " + ",".join(map(str, out["tokens"])))
    if reference:
        err_console.print(f"(numpy reference, {out['wall_s']:.2f} s wall)")
    else:
        err_console.print(
            f"{out['engine']}: time to first token {out['ttft_ms']:.3f} ms, "
            f"{out['ms_per_token']:.4f} ms/token ({out['tokens_per_s']:.0f} tokens/s) simulated; "
            f"{out['wall_s']:.2f} s wall")


# ---------------------------------------------------------------------------------- rtl, synth
@main.command()
@click.option("--hw", "hw_name", default="tiny", show_default=True, help="Preset or TOML file.")
@click.option("-o", "--output", default="build/rtl", show_default=True, help="Output folder.")
@click.option("--lint/--no-lint", default=True, show_default=True,
              help="Run Verilator --lint-only -Wall on what was written (waivers: docs/rtl.md).")
@click.option("--top/--no-top", default=True, show_default=True,
              help="Also write the whole core with Vitis port names (minutes for u280).")
@click.option("--force", is_flag=True, help="Overwrite Verilog already written for this config.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@_guard
def rtl(hw_name: str, output: str, lint: bool, top: bool, force: bool, as_json: bool) -> None:
    """Write the accelerator's Verilog and a JSON manifest (ports, parameters, config)."""
    from ..config import load_config
    from ..hw.emit import emit_verilog, lint_verilog
    hwc = load_config(hw_name)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageProblem(f"{out} is a file; -o takes a folder")
    existing = sorted(out.glob(f"{hwc.artifact_name}_*")) if out.is_dir() else []
    if existing and not force:
        raise UsageProblem(f"{out} already holds Verilog for {hwc.artifact_name} "
                           f"({existing[0].name}, ...); pass --force to overwrite it")
    with err_console.status(f"writing Verilog for {hwc.artifact_name} (the top of a full-size "
                            "design takes minutes)"):
        manifest = emit_verilog(hwc, out, top=top)
    if lint:
        with err_console.status("verilator --lint-only -Wall"):
            try:
                manifest["lint"] = lint_verilog(out, manifest)
            except RuntimeError as e:
                lines = str(e).splitlines()
                raise click.ClickException(" ".join(lines[:2])[:300]) from None
    if as_json:
        _emit_json(manifest)
        return
    t = Table(title=f"Verilog for {hwc.artifact_name} in {out}")
    for col in ("component", "file", "ports", "instances"):
        t.add_column(col)
    for c in manifest.get("components", []):
        t.add_row(str(c.get("name", c.get("top", ""))), str(c.get("file", "")),
                  str(len(c.get("ports", []))), str(c.get("instances", "")))
    console.print(t)
    if lint:
        console.print(f"verilator lint: {len(manifest['lint'])} files clean (waivers in docs/rtl.md)")


@main.command()
@click.option("--hw", "hw_name", default="tiny", show_default=True, help="Preset or TOML file.")
@click.option("--work", default="build/synth", show_default=True,
              help="Folder for the Verilog, Yosys outputs and the result cache.")
@click.option("--no-cache", is_flag=True,
              help="Synthesize every block again (cold: about 15 minutes for tiny).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Fan the blocks out as tasks of an existing Dask scheduler (tcp://host:8786); "
                   "--work must be a folder every worker sees (its cache is shared).")
@click.option("--fmax/--no-fmax", "with_fmax", default=True, show_default=True,
              help="Estimate each block's Fmax from its netlist (docs/rtl-clock.md); a cached "
                   "block without a kept netlist is synthesized again.")
@_guard
def synth(hw_name: str, work: str, no_cache: bool, as_json: bool, scheduler: str | None,
          with_fmax: bool = True) -> None:
    """Estimate FPGA resources of the whole core with Yosys (synth_xilinx -family xcup), block
    by block, summed by instance count (docs/rtl.md, "Synthesis estimate")."""
    from ..config import load_config
    from ..hw.synth import RESOURCES, synth_report
    hwc = load_config(hw_name)
    title = f"yosys synth_xilinx -family xcup, {hwc.artifact_name}"
    client = None
    if scheduler:                                   # fpgpt.sweep's Dask set-up (docs/sweep.md)
        from ..sweep.run import start_client
        try:
            client = start_client(scheduler)
        except OSError as e:
            raise UsageProblem(f"cannot reach the Dask scheduler {scheduler}: {e}") from None
        title += f" on {scheduler}"
    try:
        with err_console.status(title) as status:
            rep = synth_report(hwc, str(Path(work).resolve()), cache=not no_cache, client=client,
                               progress=lambda line: status.update(f"{title}: {line}"),
                               **({"fmax": True} if with_fmax else {}))
    finally:
        if client is not None:
            client.close()
    if as_json:
        _emit_json(rep)
        return

    def fmt(x: float) -> str:            # fractional BRAM36 (RAMB18 halves): one decimal
        return f"{x:,.1f}" if x != int(x) else f"{int(x):,}"

    t = Table(title=f"{hwc.artifact_name} on {hwc.device.part}: summed by instance count")
    t.add_column("component")
    t.add_column("instances", justify="right")
    for r in RESOURCES:
        t.add_column(r, justify="right")
    fm = rep.get("fmax")                             # fpgpt/hw/fmax.py: MHz per block
    if fm:
        t.add_column("Fmax MHz\nretimed / as written", justify="right")

    def fcell(name: str) -> tuple[str, ...]:
        if not fm:
            return ()
        b = fm["blocks"].get(name) or fm["operators"].get(name[3:] if name.startswith("fp_")
                                                         else name)
        if b is None:
            return ("",)
        if "delay_ns" in b:                          # an operator: its combinational delay
            return (f"{b['delay_ns']:.2f} ns comb.",)
        if not b.get("fmax_mhz"):
            return ("-",)
        mark = " (structural)" if b.get("status") == "structural" else ""
        return (f"{b['retimed_fmax_mhz']:,.0f} / {b['fmax_mhz']:,.0f}{mark}",)

    for name, c in rep["components"].items():
        t.add_row(name, f"{c['instances']:,}", *(fmt(c["total"][r]) for r in RESOURCES),
                  *fcell(name))
    core = fm["core"] if fm else {}
    t.add_row("[bold]total[/bold]", "", *(fmt(rep["total"][r]) for r in RESOURCES),
              *((f"[bold]{core['retimed_fmax_mhz']:,.0f} / {core['fmax_mhz']:,.0f}[/bold]"
                 if core else "",) if fm else ()))
    t.add_row("capacity", "", *(f"{rep['capacity'][r]:,}" for r in RESOURCES),
              *(("",) if fm else ()))
    t.add_row("utilisation", "", *(f"{100 * rep['utilisation'][r]:.1f} %" for r in RESOURCES),
              *(("",) if fm else ()))
    console.print(t)
    worst = max(RESOURCES, key=lambda r: rep["utilisation"][r])
    console.print(f"fits within 70 %: {'yes' if rep['fits_70'] else 'no'} "
                  f"(highest: {worst} {100 * rep['utilisation'][worst]:.1f} %)")
    console.print("not counted: " + "; ".join(rep["excluded"]))
    if core:
        verdict = "within" if fm.get("claim_ok") else "ABOVE"
        left = core.get("blocks_not_timed") or []
        console.print(
            f"estimated Fmax (UltraScale+ -2, pre-placement, docs/rtl-clock.md): core "
            f"(the minimum of its {len(core.get('blocks_timed', []))} blocks timed"
            + (f", {len(core['blocks_structural'])} estimated structurally"
               if core.get("blocks_structural") else "")
            + (f"; not timed: {', '.join(left)}" if left else "") + ") "
            f"{core['retimed_fmax_mhz']:,.1f} MHz with the FP registers retimed "
            f"({core['retimed_critical_block']}), {core['fmax_mhz']:,.1f} MHz as written "
            f"({core['critical_block']}); supported clock with the {fm['margin']:.0%} margin: "
            f"{core['supported_clock_mhz']:,.0f} MHz; the preset claims "
            f"{fm['claimed_clock_mhz']:,.0f} MHz ({verdict} it)")


