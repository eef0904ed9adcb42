"""GPU baselines: batch-1 GPT-2 decode time, time to first token and energy, modelled.

The constants live in one file, ``fpgpt/energy/gpus.toml``, each with its source. Decode time per
token on ``N`` GPUs (tensor parallel, Megatron-style) is::

    t = max(bytes / N / (bandwidth x eta), 2 x MACs / N / (peak x gemm_efficiency))
        + n_layer x overhead_per_layer                               (kernel launches, host)
        + 2 x n_layer x (alpha + 2 (N - 1) / N x d_model x 2 B / link)   (N > 1: all-reduces)

``eta`` (the achieved fraction of peak bandwidth) and ``overhead_per_layer`` are calibrated per
software stack on the published batch-1 measurements in ``gpus.toml`` (:func:`calibration`
says how well the calibrated model reproduces each). Prefill is the same with the prompt's
``P`` rows: weights once, ``P`` times the MACs, ``P x d_model`` all-reduce messages.

Power: each GPU has two published batch-1 averages (each a range): ``launch_bound_w`` (a small
model whose time goes to kernel launches: idle + a loaded context) and ``bandwidth_bound_w``
(a 7B model streaming its weights). The modelled power is ``P(u) = launch + (bandwidth -
launch) x u`` with ``u`` the fraction of the token's time spent streaming memory; its range
takes both ends' ranges and ``u`` from half to one and a half times its value (the linear
interpolation is an assumption). Energy per token takes its range from that, the all-reduce
latency range and the calibration's worst residual.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import Span

if TYPE_CHECKING:
    from ..models import ModelSpec

__all__ = ["GPU", "GPUError", "GPUEstimate", "gpu_table", "parse_gpu", "estimate", "calibration",
           "load_baseline", "DEFAULT_GPUS"]

DEFAULT_GPUS = ("v100x4", "a100-80", "h100")


class GPUError(ValueError):
    """An unknown GPU name or stack, or a malformed baseline file."""


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    bandwidth_gb_s: float
    fp16_tflops: float
    tdp_w: float
    memory_gb: float
    interconnect: str
    link_gb_s: float
    launch_bound_w: tuple[float, float]
    bandwidth_bound_w: tuple[float, float]
    source: str


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return tomllib.loads(resources.files("fpgpt.energy").joinpath("gpus.toml").read_text())


def gpu_table() -> dict[str, GPU]:
    """Every GPU in gpus.toml, by key."""
    return {k: GPU(key=k, **{**v, "launch_bound_w": tuple(v["launch_bound_w"]),
                             "bandwidth_bound_w": tuple(v["bandwidth_bound_w"])})
            for k, v in _data()["gpu"].items()}


def stacks() -> dict[str, dict[str, Any]]:
    return dict(_data()["stack"])


def parse_gpu(text: str) -> tuple[str, int, str]:
    """``"v100x4"`` -> ``("v100", 4, "ft")``; ``"a100-80:hf-eager"`` names the stack."""
    name, _, stack = text.strip().partition(":")
    stack = stack or "ft"
    count = 1
    base, sep, n = name.rpartition("x")
    if sep and n.isdigit() and base:
        name, count = base, int(n)
    table = gpu_table()
    if name not in table:
        raise GPUError(f"unknown GPU {text!r}; known: {', '.join(table)} (append xN for N-way "
                       f"tensor parallelism, :STACK for {' or '.join(stacks())})")
    if stack not in stacks():
        raise GPUError(f"unknown GPU software stack {stack!r} in {text!r}; known: {', '.join(stacks())}")
    if count < 1 or count > 16:
        raise GPUError(f"GPU count must be 1..16, not {count} in {text!r}")
    return name, count, stack


# ---------------------------------------------------------------------------------- calibration
def _weight_bytes(n_layer: int, d: int, vocab: int, dtype_bytes: int) -> float:
    """Weights read per decoded token (blocks + LM head), for the calibration's GPT shapes."""
    return (12 * n_layer * d * d + vocab * d) * dtype_bytes


@lru_cache(maxsize=1)
def _fit() -> dict[str, Any]:
    """Calibrate (eta, overhead per layer) per stack on the published measurements."""
    import numpy as np
    table = gpu_table()
    meas = _data()["measurement"]
    ft = [m for m in meas if m["stack"] == "ft"]
    # t = bytes / bw * (1 / eta) + n_layer * c: linear in (1/eta, c); relative least squares
    a = np.array([[_weight_bytes(m["n_layer"], m["d_model"], m["vocab"], m["dtype_bytes"])
                   / (table[m["gpu"]].bandwidth_gb_s * 1e9), m["n_layer"]] for m in ft])
    t = np.array([m["ms_per_token"] / 1e3 for m in ft])
    w = 1.0 / t
    (inv_eta, c_ft), *_ = np.linalg.lstsq(a * w[:, None], t * w, rcond=None)
    eta = float(1.0 / inv_eta)
    fit = {"ft": {"eta": eta, "overhead_per_layer_s": float(c_ft)}}
    for m in meas:
        if m["stack"] == "ft":
            continue
        g = table[m["gpu"]]
        t_mem = _weight_bytes(m["n_layer"], m["d_model"], m["vocab"], m["dtype_bytes"]) / (
            g.bandwidth_gb_s * 1e9 * eta)
        fit[m["stack"]] = {"eta": eta,
                           "overhead_per_layer_s": (m["ms_per_token"] / 1e3 - t_mem) / m["n_layer"]}
    rows = []
    for m in meas:
        g, p = table[m["gpu"]], fit[m["stack"]]
        model_s = (_weight_bytes(m["n_layer"], m["d_model"], m["vocab"], m["dtype_bytes"])
                   / (g.bandwidth_gb_s * 1e9 * p["eta"]) + m["n_layer"] * p["overhead_per_layer_s"])
        rows.append({"gpu": m["gpu"], "stack": m["stack"], "model": m["model"],
                     "published_ms": m["ms_per_token"], "model_ms": model_s * 1e3,
                     "error": model_s * 1e3 / m["ms_per_token"] - 1.0, "source": m["source"],
                     "fitted_points": sum(x["stack"] == m["stack"] for x in meas)})
    for s in fit:
        errs = [abs(r["error"]) for r in rows if r["stack"] == s]
        # one calibration point fits exactly: keep the ft stack's worst residual as its spread
        fit[s]["time_spread"] = max(max(errs), max(abs(r["error"]) for r in rows if r["stack"] == "ft"),
                                    0.05)
    return {"params": fit, "rows": rows}


def calibration() -> dict[str, Any]:
    """Fitted parameters per stack and each published measurement against the model."""
    f = _fit()
    return {"params": {k: dict(v) for k, v in f["params"].items()},
            "rows": [dict(r) for r in f["rows"]]}


# ---------------------------------------------------------------------------------- estimates
@dataclass
class GPUEstimate:
    """Modelled (or measured) batch-1 generation on one GPU configuration."""

    label: str
    gpu: str
    count: int
    stack: str
    kind: str                     # "model" or "measured"
    ms_per_token: Span
    ttft_ms: Span
    power_w: Span                 # all GPUs together, during decode
    j_per_token: Span
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return 1e3 / self.ms_per_token.value

    @property
    def tokens_per_j(self) -> Span:
        return self.j_per_token.inverse()

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "gpu": self.gpu, "count": self.count, "stack": self.stack,
                "kind": self.kind, "ms_per_token": self.ms_per_token.to_json(),
                "tokens_per_s": self.tokens_per_s, "ttft_ms": self.ttft_ms.to_json(),
                "avg_power_w": self.power_w.to_json(), "j_per_token": self.j_per_token.to_json(),
                "tokens_per_j": self.tokens_per_j.to_json(), "detail": self.detail}


def _times(spec: "ModelSpec", g: GPU, count: int, p: dict[str, float], dtype_bytes: int,
           alpha_s: float, *, rows: int, ctx: int) -> tuple[float, float]:
    """(seconds, seconds streaming memory) for one forward pass of ``rows`` positions."""
    d = _data()
    L, dm = spec.n_layer, spec.d_model
    kv = 2 * L * dm * dtype_bytes * ctx
    bytes_gpu = (spec.weight_bytes_per_token(dtype_bytes) + kv) / count
    t_mem = bytes_gpu / (g.bandwidth_gb_s * 1e9 * p["eta"])
    macs = spec.flops_per_token(min(max(ctx, 1), spec.n_ctx)) / 2 * rows
    gemm_eff = d["prefill"]["gemm_efficiency"]
    t_comp = 2 * macs / count / (g.fp16_tflops * 1e12 * gemm_eff)
    t = max(t_mem, t_comp) + L * p["overhead_per_layer_s"]
    if count > 1:
        msg = rows * dm * dtype_bytes
        t += 2 * L * (alpha_s + 2 * (count - 1) / count * msg / (g.link_gb_s * 1e9))
    return t, min(t_mem, t)


def estimate(spec: "ModelSpec", gpu: str, *, prompt_len: int = 128, gen_len: int = 128) -> GPUEstimate:
    """Model batch-1 generation of ``spec`` on ``gpu`` (``"v100x4"``, ``"h100:hf-eager"``)."""
    key, count, stack = parse_gpu(gpu)
    g = gpu_table()[key]
    p = _fit()["params"][stack]
    dtype_bytes = int(stacks()[stack]["dtype_bytes"])
    ar = _data()["allreduce"]
    alphas = (ar["alpha_us"] * 1e-6, ar["alpha_us_range"][0] * 1e-6, ar["alpha_us_range"][1] * 1e-6)
    ctx = prompt_len + gen_len // 2          # mean context over the decode
    dec = [_times(spec, g, count, p, dtype_bytes, a, rows=1, ctx=ctx) for a in alphas]
    pre = [_times(spec, g, count, p, dtype_bytes, a, rows=prompt_len, ctx=prompt_len)
           for a in alphas]
    spread = p["time_spread"]
    t_dec = Span(dec[0][0], dec[1][0] * (1 - spread), dec[2][0] * (1 + spread))
    t_pre = Span(pre[0][0], pre[1][0] * (1 - spread), pre[2][0] * (1 + spread))
    u = dec[0][1] / dec[0][0]
    (l0, l1), (b0, b1) = g.launch_bound_w, g.bandwidth_bound_w
    P = lambda launch, bw, x: launch + (bw - launch) * min(max(x, 0.0), 1.0)   # noqa: E731
    power = Span(P((l0 + l1) / 2, (b0 + b1) / 2, u) * count, P(l0, b0, 0.5 * u) * count,
                 P(l1, b1, 1.5 * u) * count)
    j = Span(power.value * t_dec.value, power.lo * t_dec.lo, power.hi * t_dec.hi)
    label = f"{count} x {key}" if count > 1 else key
    if stack != "ft":
        label += f" ({stack})"
    return GPUEstimate(label=label, gpu=key, count=count, stack=stack, kind="model",
                       ms_per_token=t_dec.scale(1e3), ttft_ms=t_pre.scale(1e3), power_w=power,
                       j_per_token=j,
                       detail={"gpu_name": g.name, "stack_name": stacks()[stack]["name"],
                               "eta": p["eta"], "overhead_per_layer_us": p["overhead_per_layer_s"] * 1e6,
                               "memory_bound_fraction": u, "mean_ctx": ctx,
                               "fits_memory": spec.weight_bytes(dtype_bytes) / count
                               <= g.memory_gb * 1e9, "source": g.source})


def load_baseline(path: str | Path) -> GPUEstimate:
    """A ``fpgpt gpu-bench --json`` baseline file as an estimate marked ``measured``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"GPU baseline {str(p)!r} not found")
    try:
        d = json.loads(p.read_text())
        if d.get("kind") != "fpgpt-gpu-baseline":
            raise KeyError("kind")
        ms, ttft, w, j = (float(d[k]) for k in ("ms_per_token", "ttft_ms", "avg_power_w",
                                                "j_per_token"))
        gpu_name, model = str(d["provenance"]["gpu_name"]), str(d["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise GPUError(f"{p}: not an fpgpt gpu-bench baseline ({e})") from None
    s = lambda x: Span(x, x, x)   # noqa: E731 - a measurement carries no model range
    return GPUEstimate(label=f"{gpu_name} (measured)", gpu=gpu_name, count=int(d.get("gpus", 1)),
                       stack=str(d.get("stack", "hf")), kind="measured", ms_per_token=s(ms),
                       ttft_ms=s(ttft), power_w=s(w), j_per_token=s(j),
                       detail={"model": model, "provenance": d["provenance"], "file": str(p)})
