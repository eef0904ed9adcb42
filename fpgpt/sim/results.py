"""Results of a timing simulation: per stream (:class:`StreamTiming`) and per run (:class:`SimResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import HardwareConfig

__all__ = ["UNITS", "CAUSES", "StreamTiming", "SimResult"]

#: Units in wait-field order (fpgpt.isa.WAIT_UNITS).
UNITS = ("dma", "mpu", "vpu", "net")
#: What a unit's instruction can wait on (StreamTiming.waits): another unit's completion, or the
#: in-order dispatcher (one instruction per cycle, CTRL instructions).
CAUSES = UNITS + ("dispatch",)


@dataclass
class StreamTiming:
    """Timing of one stream run.

    Attributes
    ----------
    name : str
        Stream name (``"prefill"``, ``"decode"``).
    cycles : float
        Core clock cycles from the first dispatch until HALT found every unit drained.
    clock_mhz : float
        Core clock, to turn cycles into time.
    instructions : int
        Instructions dispatched (CTRL included; a loop body counts once per iteration).
    counts : dict[str, int]
        Instructions dispatched per mnemonic.
    busy_cycles : dict[str, float]
        Per unit, cycles with at least one of its instructions executing. For DMA that is the
        union of [issue, data complete] intervals (transfers overlap while they stream).
    breakdown : dict[str, dict[str, float]]
        Per unit, busy cycles per mnemonic (sums to ``busy_cycles``).
    hbm_bytes : int
        Useful bytes moved between HBM and the device.
    events : dict[str, float]
        Energy-relevant events summed over every dispatched instruction (a loop body counts once
        per iteration), keys :data:`fpgpt.sim.costs.EVENT_KEYS`, definitions
        :func:`fpgpt.sim.costs.instr_events` and :meth:`fpgpt.sim.hbm.HBMModel.activations`.
    waits : dict[str, dict[str, float]]
        Per unit, cycles it was free while its next instruction had not started, by what that
        instruction waited for (:data:`CAUSES`): the unit whose completion held it (a wait
        count, a queue slot, the scoreboard, SYNC) or the dispatcher (docs/sim-speed-events.md).
    hbm_channel_busy_cycles : float
        Mean over the HBM channels of the cycles each spent serving bytes (burst-charged bytes
        over its rate; refresh stalls not included).
    """
    name: str
    cycles: float
    clock_mhz: float
    instructions: int
    counts: dict[str, int] = field(default_factory=dict)
    busy_cycles: dict[str, float] = field(default_factory=dict)
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    hbm_bytes: int = 0
    events: dict[str, float] = field(default_factory=dict)
    waits: dict[str, dict[str, float]] = field(default_factory=dict)
    hbm_channel_busy_cycles: float = 0.0

    @property
    def ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def utilization(self) -> dict[str, float]:
        """Busy time / stream time per unit."""
        return {u: (self.busy_cycles.get(u, 0.0) / self.cycles if self.cycles else 0.0) for u in UNITS}

    @property
    def hbm_idle_cycles(self) -> float:
        """Cycles with no DMA transfer in flight (the DMA runs one at a time, so the stream's
        cycles less the DMA's busy cycles)."""
        return max(0.0, self.cycles - self.busy_cycles.get("dma", 0.0))

    @property
    def unit_breakdown(self) -> dict[str, dict[str, float]]:
        """Per unit, where the stream's cycles went: ``busy``, ``wait.<cause>`` for each cause it
        waited on (:attr:`waits`) and ``idle`` (the rest: before its first and after its last
        instruction's wait, i.e. nothing left for it to do); they sum to :attr:`cycles`. Plus
        ``hbm``: ``idle`` (no transfer in flight) and ``channel_idle`` (the mean channel not
        serving bytes)."""
        out: dict[str, dict[str, float]] = {}
        for u in UNITS:
            busy = self.busy_cycles.get(u, 0.0)
            w = self.waits.get(u, {})
            row = {"busy": busy}
            row.update({f"wait.{c}": v for c, v in w.items()})
            row["idle"] = max(0.0, self.cycles - busy - sum(w.values()))
            out[u] = row
        out["hbm"] = {"idle": self.hbm_idle_cycles,
                      "channel_idle": max(0.0, self.cycles - self.hbm_channel_busy_cycles)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cycles": self.cycles, "ms": self.ms,
                "instructions": self.instructions, "counts": dict(self.counts),
                "busy_cycles": dict(self.busy_cycles), "utilization": self.utilization,
                "breakdown_cycles": {u: dict(d) for u, d in self.breakdown.items()},
                "hbm_bytes": self.hbm_bytes, "events": dict(self.events),
                "waits_cycles": {u: dict(d) for u, d in self.waits.items()},
                "unit_breakdown_cycles": self.unit_breakdown,
                "hbm_channel_busy_cycles": self.hbm_channel_busy_cycles}


@dataclass
class SimResult:
    """What :func:`fpgpt.sim.timing.simulate` measured.

    ``decode`` is absent when only one token was generated (the host does not start it).
    Decode figures divide by ``gen_len - 1``: the first generated token comes from prefill.
    """
    model: str
    hw: "HardwareConfig"
    prompt_len: int
    gen_len: int
    prefill: StreamTiming
    decode: StreamTiming | None = None
    wall_s: float = 0.0

    # -- headline figures -------------------------------------------------------------------
    @property
    def streams(self) -> list[StreamTiming]:
        return [s for s in (self.prefill, self.decode) if s is not None]

    @property
    def devices(self) -> int:
        return self.hw.devices

    @property
    def ttft_ms(self) -> float:
        """Time to first token: the prefill stream."""
        return self.prefill.ms

    @property
    def tokens_decoded(self) -> int:
        return self.gen_len - 1 if self.decode is not None else 0

    @property
    def ms_per_token(self) -> float:
        """Decode stream time per token it produced (0.0 when there was no decode)."""
        return self.decode.ms / self.tokens_decoded if self.tokens_decoded else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Decode throughput; without a decode stream, generated tokens over total time."""
        if self.ms_per_token > 0:
            return 1e3 / self.ms_per_token
        return self.gen_len / (self.total_ms / 1e3) if self.total_ms else 0.0

    @property
    def total_ms(self) -> float:
        return sum(s.ms for s in self.streams)

    @property
    def cycles(self) -> dict[str, float]:
        d = {s.name: s.cycles for s in self.streams}
        d["total"] = sum(s.cycles for s in self.streams)
        return d

    @property
    def unit_utilization(self) -> dict[str, float]:
        """Busy time / total time per unit, over both streams."""
        tot = sum(s.cycles for s in self.streams)
        return {u: (sum(s.busy_cycles.get(u, 0.0) for s in self.streams) / tot if tot else 0.0)
                for u in ("dma", "mpu", "vpu", "net")}

    @property
    def hbm_bytes(self) -> int:
        return sum(s.hbm_bytes for s in self.streams)

    @property
    def hbm_bytes_per_token(self) -> float:
        """HBM bytes the decode stream moved per token it produced."""
        return self.decode.hbm_bytes / self.tokens_decoded if self.tokens_decoded else 0.0

    @property
    def decode_bytes_per_s(self) -> float:
        """Achieved HBM bandwidth over the decode stream."""
        if not self.tokens_decoded or not self.decode.ms:
            return 0.0
        return self.decode.hbm_bytes / (self.decode.ms / 1e3)

    @property
    def hbm_bw_utilization(self) -> float:
        """Achieved decode bandwidth / the device's peak HBM bandwidth."""
        return self.decode_bytes_per_s / self.hw.hbm_peak_bytes_per_s

    @property
    def breakdown_ms(self) -> dict[str, dict[str, float]]:
        """Busy milliseconds per unit per mnemonic, both streams together."""
        out: dict[str, dict[str, float]] = {}
        for s in self.streams:
            for u, ops in s.breakdown.items():
                d = out.setdefault(u, {})
                for op, cyc in ops.items():
                    d[op] = d.get(op, 0.0) + cyc / (self.hw.clock_mhz * 1e3)
        return out

    @property
    def instruction_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.streams:
            for op, n in s.counts.items():
                out[op] = out.get(op, 0) + n
        return out

    # -- output -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The headline figures as a JSON-ready dict (``fpgpt simulate --json``)."""
        u = self.unit_utilization
        return {
            "model": self.model, "hw": self.hw.name, "devices": self.devices,
            "clock_mhz": self.hw.clock_mhz, "prompt_len": self.prompt_len, "gen_len": self.gen_len,
            "ttft_ms": self.ttft_ms, "ms_per_token": self.ms_per_token,
            "tokens_per_s": self.tokens_per_s, "total_ms": self.total_ms,
            "hbm_bytes_per_token": self.hbm_bytes_per_token,
            "hbm_bw_utilization": self.hbm_bw_utilization,
            "unit_utilization": {k: u[k] for k in ("dma", "mpu", "vpu")},
            "cycles": self.cycles,
        }

    def breakdown_json(self) -> dict[str, Any]:
        """Where each stream's time went (``fpgpt simulate --json``, per card with
        ``--devices``): ``breakdown_cycles`` (:attr:`StreamTiming.unit_breakdown`) and
        ``busy_by_instruction_cycles`` (:attr:`StreamTiming.breakdown`), by stream."""
        return {"breakdown_cycles": {s.name: s.unit_breakdown for s in self.streams},
                "busy_by_instruction_cycles": {s.name: s.breakdown for s in self.streams}}

    def to_dict(self) -> dict[str, Any]:
        """Everything: :meth:`to_json` plus per-stream detail, breakdown and counts."""
        d = self.to_json()
        d.update({"hw_artifact": self.hw.artifact_name, "hbm_bytes": self.hbm_bytes,
                  "decode_gb_per_s": self.decode_bytes_per_s / 1e9,
                  "unit_utilization_all": self.unit_utilization,
                  "breakdown_ms": self.breakdown_ms, "instruction_counts": self.instruction_counts,
                  "streams": {s.name: s.to_dict() for s in self.streams}, "wall_s": self.wall_s})
        return d
