"""``fpgpt compare``, ``fpgpt gpu-bench`` and ``fpgpt report``: energy per token against GPUs."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from .core import UsageProblem, _check_output, _emit_json, _guard, _resolve_model, _sim_progress, \
    console, err_console, main


def _span(s: dict, digits: int = 2) -> str:
    from ..report_md import fmt_span
    return fmt_span(s, digits)


def _parse_gpus(text: str) -> tuple[str, ...]:
    from ..energy import GPUError, parse_gpu
    gpus = tuple(g.strip() for g in text.split(",") if g.strip())
    for g in gpus:
        try:
            parse_gpu(g)
        except GPUError as e:
            raise UsageProblem(str(e)) from None
    return gpus


@main.command()
@click.option("--model", required=True, help="GPT-2 preset name, shipped model or checkpoint folder.")
@click.option("--hw", "hw_name", default="u280", show_default=True, help="Preset or TOML file.")
@click.option("--devices", type=int, default=None,
              help="Cards in the ring (default: the config's devices).")
@click.option("--gpus", default="v100x4,a100-80,h100", show_default=True,
              help="GPU models, comma-separated: NAME[xN][:STACK] (v100, a100-40, a100-80, h100, "
                   "l4; xN = N-way tensor parallel; STACK ft or hf-eager).")
@click.option("--baseline", "baselines", multiple=True,
              help="A measured `fpgpt gpu-bench` baseline JSON to show beside the models.")
@click.option("--prompt-len", type=int, default=128, show_default=True)
@click.option("--gen-len", type=int, default=128, show_default=True)
@click.option("--json", "json_out", is_flag=False, flag_value="-", default=None,
              help="Write JSON to a file (or stdout when given no file).")
@click.option("--out", "out_dir", default=None, help="Also write compare.json and a tokens/J PNG here.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@_guard
def compare(model: str, hw_name: str, devices: int | None, gpus: str, baselines: tuple[str, ...],
            prompt_len: int, gen_len: int, json_out: str | None, out_dir: str | None,
            force: bool) -> None:
    """Design vs GPUs: ms/token, TTFT, power, tokens/J with ranges, and the ratios."""
    from ..config import load_config
    from ..energy import EnergyError, GPUError
    from ..report import compare as run_compare
    hwc = load_config(hw_name)
    spec, _, _, label = _resolve_model(model, need_weights=False)
    n = hwc.devices if devices is None else devices
    if n < 1:
        raise UsageProblem(f"--devices must be at least 1, not {n}")
    if prompt_len < 1 or gen_len < 2:
        raise UsageProblem("--prompt-len must be >= 1 and --gen-len >= 2 (decode is compared)")
    if prompt_len + gen_len - 1 > spec.n_ctx:
        raise UsageProblem(f"prompt of {prompt_len} + {gen_len} generated tokens exceeds {label}'s "
                           f"context of {spec.n_ctx}")
    gpu_list = _parse_gpus(gpus)
    for b in baselines:
        if not Path(b).is_file():
            raise UsageProblem(f"GPU baseline {b!r} not found")
    if json_out not in (None, "-"):
        _check_output(json_out, force)
    if out_dir is not None:
        _check_output(str(Path(out_dir) / "compare.json"), force)
    progress = _sim_progress("simulating")
    try:
        with progress:
            task = progress.add_task(f"{label} on {hwc.name}", total=None, info="")
            data = run_compare(spec, hwc, devices=n, gpus=gpu_list, baselines=baselines,
                               prompt_len=prompt_len, gen_len=gen_len,
                               progress=lambda s, k: progress.update(task, info=s))
    except (GPUError, EnergyError) as e:
        raise UsageProblem(str(e)) from None
    data["model"] = label
    if data["cards_note"]:
        err_console.print(f"[yellow]note:[/yellow] {data['cards_note']}")
    if out_dir is not None:
        _write_compare_dir(data, Path(out_dir))
    if json_out is not None:
        _emit_json(data, json_out)
        if json_out == "-":
            return
    d = data["design"]
    t = Table(title=f"{label}, batch 1, prompt {prompt_len}, generate {gen_len}: "
                    f"{d['label']} against GPUs (ranges from the constants' ranges)")
    for col in ("system", "kind", "ms/token", "tokens/s", "TTFT ms", "avg W", "tokens/J",
                "J/token", "speed-up", "energy eff."):
        t.add_column(col, justify="left" if col in ("system", "kind") else "right")
    t.add_row(d["label"], d["kind"], _span(d["ms_per_token"], 3), f"{d['tokens_per_s']:.0f}",
              _span(d["ttft_ms"], 1), _span(d["avg_power_w"], 0), _span(d["tokens_per_j"]),
              f"{d['j_per_token']['value']:.3f}", "1", "1")
    for g in data["gpus"]:
        t.add_row(g["label"], g["kind"], _span(g["ms_per_token"], 2), f"{g['tokens_per_s']:.0f}",
                  _span(g["ttft_ms"], 1), _span(g["avg_power_w"], 0), _span(g["tokens_per_j"]),
                  f"{g['j_per_token']['value']:.3f}", _span(g["speedup"]) + "x",
                  _span(g["energy_efficiency_ratio"]) + "x")
    console.print(t)
    console.print("speed-up = GPU ms/token / design ms/token; energy eff. = design tokens/J / "
                  "GPU tokens/J (> 1: the design wins)." + (
                      " Design events estimated from the model's shapes (the simulator gave none)."
                      if d["events"] == "estimated" else ""))


def _write_compare_dir(data: dict, out: Path) -> None:
    import json

    from ..report_plots import plot_tokens_per_joule
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    plot_tokens_per_joule({"headline": {"model": data["model"],
                                        "rows": [data["design"]] + data["gpus"]}}, out)
    err_console.print(f"wrote {out / 'compare.json'} and {out / 'tokens_per_joule.png'}")


@main.command("gpu-bench")
@click.option("--model", required=True, help="GPT-2 preset (random weights) or checkpoint folder.")
@click.option("--prompt-len", type=int, default=128, show_default=True)
@click.option("--gen-len", type=int, default=128, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed runs (after warm-up).")
@click.option("--no-compile", is_flag=True, help="Plain eager (skip torch.compile + CUDA graphs).")
@click.option("-o", "--output", default=None,
              help="Baseline JSON to write [default: build/gpu-baseline-<model>.json].")
@click.option("--json", "json_out", is_flag=True, help="Print the baseline JSON on stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing baseline file.")
@_guard
def gpu_bench(model: str, prompt_len: int, gen_len: int, repeats: int, no_compile: bool,
              output: str | None, json_out: bool, force: bool) -> None:
    """Measure GPT-2 decode on this machine's CUDA GPU (time + NVML energy) as a baseline."""
    from ..energy.gpu_bench import NoGPU, check_gpu, run_gpu_bench
    if prompt_len < 1 or gen_len < 2 or repeats < 1:
        raise UsageProblem("--prompt-len >= 1, --gen-len >= 2 and --repeats >= 1 are needed")
    if not Path(model).is_dir():
        _resolve_model(model, need_weights=False)      # a known preset, else a one-line error
    try:
        check_gpu()
    except NoGPU as e:
        raise UsageProblem(str(e)) from None
    name = Path(model).name if Path(model).is_dir() else model
    path = _check_output(output or f"build/gpu-baseline-{name}.json", force)
    rec = run_gpu_bench(model, prompt_len=prompt_len, gen_len=gen_len, repeats=repeats,
                        compiled=not no_compile, log=lambda s: err_console.print(s))
    _emit_json(rec, str(path))
    if json_out:
        _emit_json(rec)
        return
    p = rec["provenance"]
    console.print(f"{rec['model']} on {p['gpu_name']} ({rec['stack']}): {rec['ms_per_token']:.3f} "
                  f"ms/token, TTFT {rec['ttft_ms']:.1f} ms, {rec['avg_power_w']:.0f} W, "
                  f"{rec['tokens_per_j']:.2f} tokens/J; use it: fpgpt compare --baseline {path}")


@main.command()
@click.option("--out", "out_dir", default="reports", show_default=True, help="Report folder.")
@click.option("--sizes", default="gpt2,gpt2-medium,gpt2-large,gpt2-xl", show_default=True)
@click.option("--presets", default="u280,dfx", show_default=True)
@click.option("--gpus", default=None, help="GPU models (default: V100, 4xV100 both stacks, "
                                            "A100 40/80, 4xA100, H100, L4).")
@click.option("--prompt-len", type=int, default=128, show_default=True)
@click.option("--gen-len", type=int, default=128, show_default=True)
@click.option("--cards", type=int, default=4, show_default=True,
              help="Cards of the multi-card series and the scaling plot (when fpgpt.sim times rings).")
@click.option("--ttft-lens", default="32,64,128,256", show_default=True,
              help="Prompt lengths of the time-to-first-token sweep ('' for none).")
@click.option("--detail-model", "timeline_model", default="gpt2-medium", show_default=True,
              help="Model of the TTFT sweep and the decoder-layer timeline.")
@click.option("--json", "json_out", is_flag=True, help="Print a summary JSON on stdout.")
@_guard
def report(out_dir: str, sizes: str, presets: str, gpus: str | None, prompt_len: int,
           gen_len: int, cards: int, ttft_lens: str, timeline_model: str, json_out: bool) -> None:
    """Regenerate the project report (README.md, report.json, PNGs) into --out."""
    from ..config import load_preset
    from ..models import get_spec
    from ..report import GPU_SET, build_report, write_report
    size_t = tuple(s.strip() for s in sizes.split(",") if s.strip())
    preset_t = tuple(s.strip() for s in presets.split(",") if s.strip())
    if not size_t or not preset_t:
        raise UsageProblem("--sizes and --presets need at least one name each")
    for s in size_t + (timeline_model,):
        get_spec(s)
    for p in preset_t:
        load_preset(p)
    try:
        lens = tuple(int(x) for x in ttft_lens.split(",") if x.strip())
    except ValueError:
        raise UsageProblem(f"--ttft-lens must be comma-separated integers, not {ttft_lens!r}") from None
    gpu_t = _parse_gpus(gpus) if gpus else GPU_SET
    if prompt_len < 1 or gen_len < 2:
        raise UsageProblem("--prompt-len must be >= 1 and --gen-len >= 2")
    if cards < 1:
        raise UsageProblem(f"--cards must be at least 1, not {cards}")
    log = (lambda s: err_console.print(s)) if json_out else (lambda s: console.print(s))
    data = build_report(sizes=size_t, presets=preset_t, prompt_len=prompt_len, gen_len=gen_len,
                        gpus=gpu_t, multi_cards=cards, ttft_lens=lens,
                        timeline_model=timeline_model, log=log)
    md = write_report(data, out_dir)
    if json_out:
        _emit_json({"readme": str(md), "plots": data["plots"],
                    "multi_card": data["multi_card"], "headline": data["headline"]["rows"]})
    else:
        console.print(f"wrote {md} and {len(data['plots'])} plots")
