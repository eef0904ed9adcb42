"""The ``fpgpt`` command.

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

from . import __version__

console = Console()
err_console = Console(stderr=True)


class UsageProblem(Exception):
    """Bad input from the user: exit code 2."""


def _input_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'your input is wrong' (exit 2)."""
    from .config import ConfigError
    from .isa import ISAError
    types: list[type[BaseException]] = [ConfigError, ISAError, UsageProblem, FileExistsError,
                                        FileNotFoundError, IsADirectoryError]
    try:
        from .models import ModelError
        types.append(ModelError)
    except ImportError:
        pass
    try:
        from .compiler import CompileError
        types.append(CompileError)
    except ImportError:
        pass
    return tuple(types)


def _run_errors() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    try:
        from .sim import SimError
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
            if isinstance(e, _input_errors()):
                code = 2
            elif isinstance(e, _run_errors()):
                code = 1
            elif isinstance(e, (OSError, MemoryError)):
                code = 1
            else:
                code = 1
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
    from .config import load_preset, preset_names
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
    from .config import load_config
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
    from .config import load_config
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
    from .isa import assemble_file, encode_many
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
    from .isa import Program, decode_many, disassemble, format_program
    from .isa.program import MAGIC
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


if __name__ == "__main__":  # pragma: no cover
    main()
