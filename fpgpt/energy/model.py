"""Board energy per token of a simulated design: static power x time + dynamic energy from events.

The model reads a timing simulation's results (:class:`fpgpt.sim.results.SimResult` or its
``to_dict()``/JSON) and a :class:`~fpgpt.config.HardwareConfig`; it never runs the simulator.
Per card and per stream (prefill, decode)::

    static     = power.static_w x stream time
    hbm        = (hbm_read_bytes + hbm_write_bytes) x 8 x pj_per_hbm_bit
                 + hbm_activations x nj_per_hbm_activation
    mac        = mpu_macs x pj_per_mac
    vpu        = sum over OP of vpu_ops.<OP> x FP32 operations per element of OP x pj_per_vpu_op
    scratchpad = (spad_read_bytes + spad_write_bytes) x pj_per_sram_byte
    link       = link_bytes x 8 x pj_per_link_bit + link_w x link.count x time  (devices > 1)

summed over the cards. Every coefficient is non-negative, so the low (high) end of each figure
is the same sum with every constant at the low (high) end of its ``[power]`` range.

Event counts come from the simulator (``StreamTiming.events``). A result that has none (older
JSON, or a simulator without event counting) can be given estimated events instead
(:func:`estimate_events`, from the model's shapes); the result then says ``events:
"estimated"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ..config import POWER_CONSTANTS, HardwareConfig

if TYPE_CHECKING:
    from ..models import ModelSpec

__all__ = ["COMPONENTS", "VPU_FP32_OPS", "Span", "StreamEnergy", "EnergyResult", "EnergyError",
           "stream_energy", "energy_of", "estimate_events"]

#: Energy components, in the order plots stack them.
COMPONENTS = ("static", "hbm", "mac", "vpu", "scratchpad", "link")

#: FP32 operations per element of each VPU instruction, counted from the operation sequences
#: in fpgpt/isa/numerics.py (docs/numerics.md) [D]: exp = 21 (range reduction 6, Horner
#: polynomial 10, square, two adds, scale), reciprocal = 9 (seed + 2 Newton steps of 4),
#: GELU = 6 + exp + 1 + reciprocal + 1 = 38, SOFTMAX = scale, max, subtract, exp, sum, multiply
#: = 26, LAYERNORM = sum, subtract, square, sum, three multiply/add = 7 (per-row reciprocals
#: and square roots are negligible), VADD / VMUL / ARGMAX one each. VCOPY moves data only: its
#: cost is its scratchpad bytes, counted there.
VPU_FP32_OPS = {"VADD": 1, "VMUL": 1, "VCOPY": 0, "GELU": 38, "LAYERNORM": 7, "SOFTMAX": 26,
                "ARGMAX": 1}


class EnergyError(ValueError):
    """Results the energy model cannot use (no event counts and nothing to estimate them from)."""


@dataclass(frozen=True)
class Span:
    """A figure with its low-high range: ``value`` from the constants' values, ``lo``/``hi`` from
    their ranges' ends."""

    value: float
    lo: float
    hi: float

    def __add__(self, o: "Span") -> "Span":
        return Span(self.value + o.value, self.lo + o.lo, self.hi + o.hi)

    def scale(self, k: float) -> "Span":
        return Span(self.value * k, self.lo * k, self.hi * k)

    def inverse(self) -> "Span":
        """1/x: the range flips (tokens per joule from joules per token)."""
        inv = lambda x: 1.0 / x if x > 0 else float("inf")   # noqa: E731
        return Span(inv(self.value), inv(self.hi), inv(self.lo))

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi}

    @staticmethod
    def zero() -> "Span":
        return Span(0.0, 0.0, 0.0)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, Mapping) else getattr(obj, key, default)


def _stream_seconds(stream: Any) -> float:
    ms = _get(stream, "ms")
    if ms is None:
        ms = _get(stream, "cycles") / (_get(stream, "clock_mhz") * 1e3)
    return float(ms) / 1e3


def _component_energy(events: Mapping[str, float], seconds: float, hw: HardwareConfig,
                      which: int) -> dict[str, float]:
    """Joules per component for one card; ``which`` 0 = value, 1 = low, 2 = high."""
    pw = hw.power

    def c(name: str) -> float:
        return (getattr(pw, name), *pw.range_of(name))[which]

    ev = lambda k: float(events.get(k, 0.0))   # noqa: E731
    vpu_ops = sum(n * VPU_FP32_OPS.get(k.split(".", 1)[1], 1)
                  for k, n in events.items() if k.startswith("vpu_ops."))
    links_up = hw.link.count if hw.devices > 1 else 0
    return {
        "static": c("static_w") * seconds,
        "hbm": (ev("hbm_read_bytes") + ev("hbm_write_bytes")) * 8 * c("pj_per_hbm_bit") * 1e-12
               + ev("hbm_activations") * c("nj_per_hbm_activation") * 1e-9,
        "mac": ev("mpu_macs") * c("pj_per_mac") * 1e-12,
        "vpu": vpu_ops * c("pj_per_vpu_op") * 1e-12,
        "scratchpad": (ev("spad_read_bytes") + ev("spad_write_bytes")) * c("pj_per_sram_byte") * 1e-12,
        "link": ev("link_bytes") * 8 * c("pj_per_link_bit") * 1e-12 + c("link_w") * links_up * seconds,
    }


@dataclass
class StreamEnergy:
    """Energy of one stream on all cards together, per component, with ranges."""

    name: str
    seconds: float
    tokens: int                  # tokens this stream produced (decode) or consumed (prefill)
    cards: int
    joules: dict[str, Span]
    events: str                  # "simulated" or "estimated"

    @property
    def total(self) -> Span:
        t = Span.zero()
        for c in COMPONENTS:
            t = t + self.joules[c]
        return t

    @property
    def avg_power_w(self) -> Span:
        return self.total.scale(1.0 / self.seconds) if self.seconds else Span.zero()

    @property
    def j_per_token(self) -> Span:
        return self.total.scale(1.0 / self.tokens) if self.tokens else Span.zero()

    @property
    def tokens_per_j(self) -> Span:
        return self.j_per_token.inverse()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": self.seconds, "tokens": self.tokens,
                "cards": self.cards, "events": self.events,
                "joules": {c: self.joules[c].to_json() for c in COMPONENTS},
                "total_j": self.total.to_json(), "avg_power_w": self.avg_power_w.to_json(),
                "j_per_token": self.j_per_token.to_json(),
                "tokens_per_j": self.tokens_per_j.to_json()}


def stream_energy(stream: Any, hw: HardwareConfig, *, tokens: int,
                  events: Mapping[str, float] | list[Mapping[str, float]] | None = None,
                  estimated: bool = False) -> StreamEnergy:
    """Energy of one stream (a :class:`~fpgpt.sim.results.StreamTiming` or its dict).

    Parameters
    ----------
    stream
        The stream's timing: ``ms`` (or ``cycles`` and ``clock_mhz``), and ``events`` unless
        ``events`` is given here.
    hw : HardwareConfig
        The design; ``hw.devices`` cards share the stream's time.
    tokens : int
        Tokens the stream stands for (the per-token figures divide by it).
    events : dict or list of dict, optional
        One card's event counts (every card is taken to count the same: intra-layer model
        parallelism splits work evenly), or a list with one dict per card (summed).
    estimated : bool
        Mark the events as estimated rather than simulated.
    """
    if events is None:
        events = _get(stream, "events_per_device") or _get(stream, "events")
        if not events:
            raise EnergyError(f"stream {_get(stream, 'name')!r} has no event counts; pass "
                              "events=estimate_events(...) to use estimated ones")
    per_card = list(events) if isinstance(events, list) else [events] * hw.devices
    if len(per_card) != hw.devices:
        raise EnergyError(f"{len(per_card)} cards' events for a {hw.devices}-card design")
    seconds = _stream_seconds(stream)
    joules = {c: Span.zero() for c in COMPONENTS}
    for ev in per_card:
        v, lo, hi = (_component_energy(ev, seconds, hw, i) for i in range(3))
        for c in COMPONENTS:
            joules[c] = joules[c] + Span(v[c], lo[c], hi[c])
    return StreamEnergy(name=str(_get(stream, "name", "")), seconds=seconds, tokens=tokens,
                        cards=hw.devices, joules=joules,
                        events="estimated" if estimated else "simulated")


@dataclass
class EnergyResult:
    """Energy of a simulated generation: prefill and decode, per component, with ranges."""

    model: str
    hw: str
    cards: int
    prompt_len: int
    gen_len: int
    prefill: StreamEnergy
    decode: StreamEnergy | None
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def events(self) -> str:
        return self.prefill.events

    def to_json(self) -> dict[str, Any]:
        d = {"model": self.model, "hw": self.hw, "cards": self.cards,
             "prompt_len": self.prompt_len, "gen_len": self.gen_len, "events": self.events,
             "prefill": self.prefill.to_json(),
             "decode": self.decode.to_json() if self.decode else None,
             "constants": self.constants}
        if self.decode:
            d["decode_j_per_token"] = self.decode.j_per_token.to_json()
            d["decode_tokens_per_j"] = self.decode.tokens_per_j.to_json()
            d["decode_avg_power_w"] = self.decode.avg_power_w.to_json()
        return d


def energy_of(result: Any, hw: HardwareConfig | None = None, *,
              spec: "ModelSpec | None" = None) -> EnergyResult:
    """Energy of a :class:`~fpgpt.sim.results.SimResult` (or its ``to_dict()``).

    Uses the streams' simulated events; when they have none and ``spec`` is given, estimated
    events (:func:`estimate_events`), marked as such.
    """
    hw = hw if hw is not None else _get(result, "hw")
    if not isinstance(hw, HardwareConfig):
        raise EnergyError("energy_of needs the HardwareConfig of the run (pass hw=...)")
    streams = _get(result, "streams")
    if isinstance(streams, Mapping):          # SimResult.to_dict()
        prefill, decode = streams.get("prefill"), streams.get("decode")
    else:
        prefill, decode = _get(result, "prefill"), _get(result, "decode")
    prompt_len, gen_len = int(_get(result, "prompt_len")), int(_get(result, "gen_len"))
    out = {}
    for name, s, tokens in (("prefill", prefill, prompt_len), ("decode", decode, gen_len - 1)):
        if s is None or tokens < 1:
            out[name] = None
            continue
        ev = _get(s, "events_per_device") or _get(s, "events")
        if ev:
            out[name] = stream_energy(s, hw, tokens=tokens, events=ev)
        elif spec is not None:
            est = estimate_events(spec, hw, name, prompt_len=prompt_len, gen_len=gen_len,
                                  hbm_bytes=_get(s, "hbm_bytes"))
            out[name] = stream_energy(s, hw, tokens=tokens, events=est, estimated=True)
        else:
            raise EnergyError(f"the {name} stream has no event counts (an older simulator or "
                              "JSON); give the model spec to estimate them")
    constants = {k: {"value": getattr(hw.power, k), "range": list(hw.power.range_of(k)),
                     "source": hw.sources.get(f"power.{k}", hw.sources.get("power", ""))}
                 for k in POWER_CONSTANTS}
    return EnergyResult(model=str(_get(result, "model")), hw=hw.name, cards=hw.devices,
                        prompt_len=prompt_len, gen_len=gen_len, prefill=out["prefill"],
                        decode=out["decode"], constants=constants)


def estimate_events(spec: "ModelSpec", hw: HardwareConfig, stream: str, *, prompt_len: int,
                    gen_len: int, hbm_bytes: float | None = None) -> dict[str, float]:
    """One card's event counts estimated from the model's shapes (when the simulator gave none).

    MACs are the matrix products of :meth:`ModelSpec.flops_per_token` at each position; VPU
    element operations follow the GPT-2 block (two LayerNorms, GELU over ``d_ff``, softmax over
    the context per head, two residual adds, the LM head's argmax); HBM bytes are the
    simulator's ``hbm_bytes`` when given (else the weights per token plus the KV cache), one
    page activation per ``hbm.page_bytes`` (1 KiB when the config has none); scratchpad traffic
    is every HBM byte written once and read once plus each product's activations (an estimate:
    the simulator's own counts replace all of this). Split evenly over ``hw.devices`` cards.
    """
    if stream == "prefill":
        positions = range(1, prompt_len + 1)
    elif stream == "decode":
        positions = range(prompt_len + 1, prompt_len + gen_len)
    else:
        raise EnergyError(f"unknown stream {stream!r}")
    n = len(positions)
    d, f, L, h = spec.d_model, spec.d_ff, spec.n_layer, spec.n_head
    macs = sum(spec.flops_per_token(min(p, spec.n_ctx)) for p in positions) / 2
    if stream == "prefill":   # the LM head runs for the last prompt position only
        macs -= (n - 1) * spec.vocab * d
    ctx_sum = sum(min(p, spec.n_ctx) for p in positions)
    ops = {"LAYERNORM": (2 * L + 1) * d * n, "GELU": L * f * n, "SOFTMAX": L * h * ctx_sum,
           "VADD": 2 * L * d * n, "ARGMAX": spec.vocab * (1 if stream == "prefill" else n)}
    if hbm_bytes is None:
        kv = sum(2 * L * d * 2 * min(p, spec.n_ctx) for p in positions)
        hbm_bytes = spec.weight_bytes_per_token() * n + kv
    page = getattr(hw.hbm, "page_bytes", 1024)
    cards = hw.devices
    ev = {"mpu_macs": macs, "hbm_read_bytes": float(hbm_bytes), "hbm_write_bytes": 0.0,
          "hbm_activations": float(hbm_bytes) / page,
          "spad_write_bytes": float(hbm_bytes), "spad_read_bytes": float(hbm_bytes) + 2 * d * 2 * L * 6 * n,
          "link_bytes": (4 * L * d * 2 * n * (cards - 1) / cards) if cards > 1 else 0.0}
    ev.update({f"vpu_ops.{k}": float(v) for k, v in ops.items()})
    return {k: v / cards if k != "link_bytes" else v for k, v in ev.items()}
