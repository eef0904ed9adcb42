"""A design beside GPU baselines: ms/token, tokens/s, TTFT, power, tokens/J and the ratios.

:func:`comparison` takes a finished timing simulation (it runs nothing) and GPU estimates or
measured baselines, and returns one JSON-ready dict; ``fpgpt compare`` prints it.
Ratios are design over GPU for speed (GPU ms/token / design ms/token) and for energy efficiency
(design tokens/J / GPU tokens/J); their ranges combine the two sides' ends (the widest spread:
the constants on both sides are independent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .gpu import GPUEstimate
from .model import EnergyResult, Span

if TYPE_CHECKING:
    from ..config import HardwareConfig

__all__ = ["comparison", "design_row"]


def design_row(result: Any, energy: EnergyResult, hw: "HardwareConfig", *, label: str) -> dict[str, Any]:
    """The design's row: simulated times (one value: the simulator is deterministic) and the
    energy model's ranges."""
    dec = energy.decode
    if dec is None:
        raise ValueError("the comparison needs a decode stream (gen_len >= 2)")
    ms = float(result.ms_per_token)
    return {"label": label, "kind": "simulated", "hw": hw.name, "cards": hw.devices,
            "ms_per_token": Span(ms, ms, ms).to_json(), "tokens_per_s": 1e3 / ms,
            "ttft_ms": Span(result.ttft_ms, result.ttft_ms, result.ttft_ms).to_json(),
            "avg_power_w": dec.avg_power_w.to_json(), "j_per_token": dec.j_per_token.to_json(),
            "tokens_per_j": dec.tokens_per_j.to_json(), "events": energy.events,
            "energy_split_j_per_token": {c: s.scale(1.0 / dec.tokens).to_json()
                                         for c, s in dec.joules.items()}}


def _ratio(num: dict[str, float], den: dict[str, float]) -> dict[str, float]:
    return {"value": num["value"] / den["value"], "lo": num["lo"] / den["hi"],
            "hi": num["hi"] / den["lo"]}


def comparison(result: Any, energy: EnergyResult, hw: "HardwareConfig",
               gpus: Sequence[GPUEstimate], *, label: str, note: str | None = None) -> dict[str, Any]:
    """Design vs each GPU (see the module docstring for the ratios)."""
    d = design_row(result, energy, hw, label=label)
    rows = []
    for g in gpus:
        gj = g.to_json()
        gj["speedup"] = _ratio(gj["ms_per_token"], d["ms_per_token"])
        gj["energy_efficiency_ratio"] = _ratio(d["tokens_per_j"], gj["tokens_per_j"])
        rows.append(gj)
    return {"model": str(result.model), "prompt_len": result.prompt_len,
            "gen_len": result.gen_len, "design": d, "gpus": rows,
            "cards_note": note, "ratios": "design / GPU: speedup = GPU ms per token / design "
                                          "ms per token; energy_efficiency_ratio = design tokens/J "
                                          "/ GPU tokens/J"}
