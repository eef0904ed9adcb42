"""Measure GPT-2 batch-1 decode on a real CUDA GPU (``fpgpt gpu-bench``; extra ``fpgpt[gpu]``).

Hugging Face ``GPT2LMHeadModel`` in FP16, batch 1, KV cache, greedy, after warm-up, the way a
user gets the best number: first a static KV cache with ``torch.compile(mode="reduce-overhead")``
(CUDA graphs), and plain eager with the dynamic cache when that fails (the result says which ran
and why). Energy comes from NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
millijoules since the driver loaded), read before and after the timed runs, not from sampled
power (nvidia-smi samples only part of the runtime on A100/H100: arXiv 2312.02741).

Decode figures subtract a prompt-only run from a full run: ``(full - prefill) / (gen_len - 1)``
for both time and energy, so the first token's prefill is not charged to decode.
The result is a baseline JSON (``kind: fpgpt-gpu-baseline``) with its provenance (GPU, driver,
CUDA, library versions, date) that ``fpgpt compare --baseline FILE`` reads
(:func:`fpgpt.energy.gpu.load_baseline`).
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["NoGPU", "check_gpu", "run_gpu_bench", "baseline_record", "measure", "build_model"]


class NoGPU(RuntimeError):
    """No CUDA GPU (or the ``gpu`` extra is not installed): nothing to measure here."""


def check_gpu() -> None:
    """Raise :class:`NoGPU` with a one-line reason unless torch, transformers, NVML and a CUDA
    device are all there."""
    import sys
    if sys.platform == "linux" and not (Path("/proc/driver/nvidia").exists()
                                        or Path("/dev/dxg").exists()):   # native or WSL driver
        raise NoGPU("no CUDA GPU on this machine (no NVIDIA driver loaded); gpu-bench measures a "
                    "real GPU, fpgpt compare models them")
    try:
        import torch
    except ImportError:
        raise NoGPU("no CUDA GPU to measure: torch is not installed (pip install 'fpgpt[gpu]')") from None
    if not torch.cuda.is_available():
        raise NoGPU(f"no CUDA GPU on this machine (torch {torch.__version__} sees none); "
                    "gpu-bench measures a real GPU, fpgpt compare models them")
    try:
        import pynvml  # noqa: F401  (nvidia-ml-py)
        import transformers  # noqa: F401
    except ImportError as e:
        raise NoGPU(f"a CUDA GPU is present but {e.name} is missing (pip install 'fpgpt[gpu]')") from None


def build_model(model: Any, *, device: str = "cuda", dtype: Any = None) -> tuple[Any, str]:
    """(GPT2LMHeadModel on ``device`` in ``dtype`` (FP16 by default), label) from a local checkpoint
    folder, a preset name or a :class:`~fpgpt.models.ModelSpec` (random weights: time and energy
    do not depend on the values)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    dtype = torch.float16 if dtype is None else dtype
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        m = GPT2LMHeadModel.from_pretrained(str(model))
        label = Path(model).name
    else:
        from ..models import get_spec
        s = get_spec(model) if isinstance(model, str) else model
        cfg = GPT2Config(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.d_model, n_inner=s.d_ff,
                         vocab_size=s.vocab, n_positions=s.n_ctx, layer_norm_epsilon=s.ln_eps)
        torch.manual_seed(0)
        m = GPT2LMHeadModel(cfg)
        label = s.name
    return m.to(device=device, dtype=dtype).eval(), label


def measure(m: Any, ids: Any, *, gen_len: int, repeats: int, warmup: int,
            energy_mj: Callable[[], float], sync: Callable[[], None]) -> tuple[float, float, float, float]:
    """Warm up, then time ``repeats`` greedy generations of ``gen_len`` tokens and of 1 token
    (the prompt only): ``(full_s, prefill_s, full_mj, prefill_mj)`` per run, energy from
    ``energy_mj()`` (a cumulative counter) read around each batch of runs."""
    import torch
    mask = torch.ones_like(ids)

    def gen(n: int) -> None:
        m.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                   do_sample=False, pad_token_id=0)

    def timed(n: int) -> tuple[float, float]:
        sync()
        e0, t0 = energy_mj(), time.perf_counter()
        for _ in range(repeats):
            gen(n)
        sync()
        t1, e1 = time.perf_counter(), energy_mj()
        return (t1 - t0) / repeats, (e1 - e0) / repeats

    with torch.inference_mode():
        for _ in range(warmup):
            gen(gen_len)
            gen(1)
        full_s, full_mj = timed(gen_len)
        prefill_s, prefill_mj = timed(1)
    return full_s, prefill_s, full_mj, prefill_mj


def baseline_record(*, model: str, prompt_len: int, gen_len: int, mode: str,
                    full_s: float, prefill_s: float, full_mj: float, prefill_mj: float,
                    repeats: int, provenance: dict[str, Any]) -> dict[str, Any]:
    """The baseline JSON from per-run means: ``full_*`` a whole generation, ``prefill_*`` the
    prompt and first token only (seconds and NVML millijoules per run)."""
    if gen_len < 2:
        raise ValueError(f"gen_len must be >= 2 to measure decode, not {gen_len}")
    n = gen_len - 1
    dec_s = max(full_s - prefill_s, 0.0) / n
    dec_j = max(full_mj - prefill_mj, 0.0) / 1e3 / n
    return {"kind": "fpgpt-gpu-baseline", "model": model, "prompt_len": prompt_len,
            "gen_len": gen_len, "gpus": 1, "stack": f"hf-{mode}",
            "ms_per_token": dec_s * 1e3, "tokens_per_s": 1.0 / dec_s if dec_s else 0.0,
            "ttft_ms": prefill_s * 1e3, "j_per_token": dec_j,
            "tokens_per_j": 1.0 / dec_j if dec_j else 0.0,
            "avg_power_w": dec_j / dec_s if dec_s else 0.0,
            "energy_method": "NVML nvmlDeviceGetTotalEnergyConsumption, (full - prefill) / tokens",
            "repeats": repeats, "provenance": provenance}


def run_gpu_bench(model: str, *, prompt_len: int = 128, gen_len: int = 128, repeats: int = 5,
                  warmup: int = 2, compiled: bool = True,
                  log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Measure ``model`` (preset name or checkpoint folder) on CUDA device 0; see the module doc."""
    check_gpu()
    import pynvml
    import torch
    import transformers

    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        m, label = build_model(model)
        if prompt_len + gen_len > m.config.n_positions:
            raise ValueError(f"prompt {prompt_len} + {gen_len} tokens exceed the model's context "
                             f"of {m.config.n_positions}")
        ids = torch.randint(0, m.config.vocab_size, (1, prompt_len), device="cuda")
        args = dict(gen_len=gen_len, repeats=repeats, warmup=warmup,
                    energy_mj=lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(h)),
                    sync=torch.cuda.synchronize)
        mode, why = "eager", ""
        if compiled:
            try:
                m.generation_config.cache_implementation = "static"
                m.forward = torch.compile(m.forward, mode="reduce-overhead", fullgraph=True)
                log(f"measuring {label} (static cache + torch.compile), {repeats} runs of "
                    f"{prompt_len}:{gen_len}")
                full_s, prefill_s, full_mj, prefill_mj = measure(m, ids, **args)
                mode = "compiled-static-cache"
            except Exception as e:  # noqa: BLE001 - the best path failed: measure eager, say why
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                log(f"compiled run failed ({why}); measuring eager")
                m, _ = build_model(model)
        if mode == "eager":
            log(f"measuring {label} (eager), {repeats} runs of {prompt_len}:{gen_len}")
            full_s, prefill_s, full_mj, prefill_mj = measure(m, ids, **args)
        drv = pynvml.nvmlSystemGetDriverVersion()
        name = pynvml.nvmlDeviceGetName(h)
        from .. import __version__
        prov = {"gpu_name": name.decode() if isinstance(name, bytes) else str(name),
                "driver": drv.decode() if isinstance(drv, bytes) else str(drv),
                "cuda": torch.version.cuda, "torch": torch.__version__,
                "transformers": transformers.__version__, "fpgpt": __version__,
                "nvidia_ml_py": getattr(pynvml, "__version__", "unknown"),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "host": platform.node(), "mode": mode, "fallback_reason": why,
                "weights": "checkpoint" if Path(model).is_dir() else "random (preset shapes)"}
    finally:
        pynvml.nvmlShutdown()
    return baseline_record(model=label, prompt_len=prompt_len, gen_len=gen_len, mode=mode,
                           full_s=full_s, prefill_s=prefill_s, full_mj=full_mj,
                           prefill_mj=prefill_mj, repeats=repeats, provenance=prov)
