"""A ring of N simulated cards run as one system (DESIGN.md contract 6, docs/multi-device.md).

Functional run (:class:`System`, :func:`generate_system`): every card is a
:class:`~fpgpt.sim.machine.Machine` running its own Program with the executor's handlers, one
instruction at a time, and the cards meet at their NET instructions:

- ``ALLGATHER`` / ``ALLREDUCE`` complete when every card has reached one, all with the same
  mnemonic and ``count`` (each card with its own ``sram``): the ISA semantics
  (fpgpt/isa/table.py), the all-reduce with :func:`fpgpt.isa.numerics.allreduce_sum` in device
  order, as the RTL's chain (fpgpt/hw/net.py) computes it;
- ``SEND`` on card ``d`` queues its data on the link to ``d+1`` (``prev=0``) or ``d-1``
  (``prev=1``); the partner's ``RECV`` with the same direction takes the oldest queued transfer
  (a ``count`` mismatch is an error, as the RTL's sticky ``error``).

A card that waits for partners that can never come (one finished, one at another collective)
stops the run with a one-line :class:`SimError` naming every card's instruction. Cards run in a
round until each blocks, so the order in which their instructions execute never changes a
result: a card's state is touched by the others only at NET instructions.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pathlib import Path

from ..config import HardwareConfig
from ..geometry import allgather_steps
from ..isa import ISAError, Program, numerics
from ..models import ModelSpec
from .control import MAX_STEPS_DEFAULT, Captured, Registers, walk
from .executor import HANDLERS, MODES, ExecStats, _Exec
from .machine import I32, Machine, SimError
from .results import SimResult
from .runner import REG_COUNT, GenerationError, _check_request, _region, program_hardware
from .timing import TimingError, _check_len, stream_timeline
from .trace import TraceRecorder

__all__ = ["System", "SystemResult", "generate_system", "check_programs", "NET_OPS",
           "simulate_system", "SystemSimResult", "Collective", "write_system_trace",
           "link_busy_ns"]

NET_OPS = ("SEND", "RECV", "ALLGATHER", "ALLREDUCE")
_COLLECTIVES = ("ALLGATHER", "ALLREDUCE")


def check_programs(programs: Sequence[Program]) -> int:
    """The ring size of ``programs`` (card ``d``'s at index ``d``), or :class:`GenerationError`."""
    if not programs:
        raise GenerationError("no programs: a system needs one Program per card")
    n = len(programs)
    for d, p in enumerate(programs):
        want_d, want_n = p.meta.get("device", 0), p.meta.get("devices", 1)
        if want_n != n or want_d != d:
            raise GenerationError(f"program {d} was compiled as card {want_d} of {want_n}, but it "
                                  f"is given as card {d} of {n}; pass every card's program in "
                                  f"device order")
    return n


@dataclass
class SystemResult:
    """Tokens generated on the ring and what each card executed.

    Attributes
    ----------
    tokens, prompt : list of int
    cards : list of list of ExecStats
        Per card, one entry per stream run.
    net : dict
        ``collectives`` (NET instructions completed per card), ``elements_sent`` per card.
    wall_s : float
    mode : str
    """
    tokens: list[int]
    prompt: list[int]
    cards: list[list[ExecStats]] = field(default_factory=list)
    net: dict = field(default_factory=dict)
    wall_s: float = 0.0
    mode: str = "exact"

    @property
    def devices(self) -> int:
        return len(self.cards)

    @property
    def instructions(self) -> int:
        return sum(s.instructions for c in self.cards for s in c)


class _Card:
    __slots__ = ("d", "gen", "blocked", "done", "ops", "x", "stream")

    def __init__(self, d: int, machine: Machine, program: Program, stream: str, mode: str,
                 max_steps: int) -> None:
        self.d, self.stream = d, stream
        self.gen = walk(program.stream(stream), machine.regs, max_steps=max_steps)
        self.blocked: Captured | None = None
        self.done = False
        self.ops: Counter[str] = Counter()
        self.x = _Exec(machine, mode)

    def where(self) -> str:
        if self.done:
            return f"card {self.d}: halted"
        c = self.blocked
        return f"card {self.d}: {c.op} at {c.index} (count {c.f['count']})"

    def advance(self) -> bool:
        """Run until a NET instruction (left in ``blocked``) or HALT; True if anything ran."""
        ran = False
        while True:
            try:
                cap = next(self.gen)
            except StopIteration:
                self.done = True
                return ran
            except ISAError as e:
                raise SimError(f"card {self.d}, stream {self.stream!r}: {e}") from None
            ran = True
            self.ops[cap.op] += 1
            if cap.op in NET_OPS:
                self.blocked = cap
                return ran
            handler = HANDLERS.get(cap.op)
            if handler is not None:
                try:
                    handler(self.x, cap)
                except (SimError, numerics.NumericsError) as e:
                    raise SimError(f"card {self.d}, stream {self.stream!r}, instruction "
                                   f"{cap.index} ({cap.op}): {e}") from None


class System:
    """N cards, each with its Program loaded into its own Machine.

    Parameters
    ----------
    programs : sequence of Program
        Card ``d``'s Program at index ``d`` (:func:`fpgpt.compiler.compile_devices`).
    hw : HardwareConfig, optional
        One card's design; default: the config stored in the programs.
    """

    def __init__(self, programs: Sequence[Program], hw: HardwareConfig | None = None) -> None:
        self.devices = check_programs(programs)
        self.programs = list(programs)
        self.hw = hw if hw is not None else program_hardware(self.programs[0])
        self.machines = [Machine.for_program(self.hw, p) for p in self.programs]
        self.elements_sent = [0] * self.devices
        self.collectives = [0] * self.devices

    def hbm_images(self) -> list[bytes]:
        """Every card's whole modelled HBM, as bytes."""
        return [m.hbm.tobytes() for m in self.machines]

    # -- running ----------------------------------------------------------------------------
    def run_stream(self, stream: str, *, mode: str = "exact",
                   max_steps: int = MAX_STEPS_DEFAULT) -> list[ExecStats]:
        """Run ``stream`` on every card as one system (module docstring); per-card stats."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        t0 = time.perf_counter()
        cards = [_Card(d, m, p, stream, mode, max_steps)
                 for d, (m, p) in enumerate(zip(self.machines, self.programs))]
        links: dict[tuple[int, int], deque] = {}       # (from, to) -> queued SEND data
        while not all(c.done for c in cards):
            progress = False
            for c in cards:
                if not c.done and c.blocked is None:
                    progress |= c.advance()
            progress |= self._point_to_point(cards, links)
            waiting = [c for c in cards if not c.done]
            if waiting and all(c.blocked is not None and c.blocked.op in _COLLECTIVES
                               for c in cards):
                self._collective(cards)
                progress = True
            if not progress:
                raise SimError(f"stream {stream!r}: the ring is deadlocked ("
                               + "; ".join(c.where() for c in cards) + "): every card must run "
                               "the same collectives in the same order, and each RECV needs its "
                               "SEND")
        wall = time.perf_counter() - t0
        return [ExecStats(stream, sum(c.ops.values()), dict(c.ops), c.x.macs, wall) for c in cards]

    def _neighbour(self, d: int, prev: int) -> int:
        return (d - 1) % self.devices if prev else (d + 1) % self.devices

    def _point_to_point(self, cards: list[_Card], links: dict) -> bool:
        progress = False
        for c in cards:
            cap = c.blocked
            if cap is None or cap.op != "SEND":
                continue
            if self.devices < 2:
                raise SimError(f"card {c.d}: SEND at {cap.index} on a system of one card")
            data = np.array(self._view(c, cap, cap.f["count"]))
            links.setdefault((c.d, self._neighbour(c.d, cap.f["prev"])), deque()).append(data)
            self.elements_sent[c.d] += data.size
            self.collectives[c.d] += 1
            c.blocked, progress = None, True
        for c in cards:
            cap = c.blocked
            if cap is None or cap.op != "RECV":
                continue
            # RECV prev=0 on d pairs with SEND prev=0 on d-1
            src = (c.d - 1) % self.devices if not cap.f["prev"] else (c.d + 1) % self.devices
            q = links.get((src, c.d))
            if not q:
                continue
            data = q.popleft()
            if data.size != cap.f["count"]:
                raise SimError(f"card {c.d}: RECV at {cap.index} expects {cap.f['count']} elements "
                               f"but card {src} sent {data.size}")
            self._view(c, cap, data.size)[...] = data
            self.collectives[c.d] += 1
            c.blocked, progress = None, True
        return progress

    @staticmethod
    def _view(c: _Card, cap: Captured, n: int) -> np.ndarray:
        try:
            return c.x.m.sram_view("buffer (sram)", cap.f["sram"], (n,), (1,))
        except SimError as e:
            raise SimError(f"card {c.d}, instruction {cap.index} ({cap.op}): {e}") from None

    def _collective(self, cards: list[_Card]) -> None:
        first = cards[0].blocked
        for c in cards[1:]:
            b = c.blocked
            if b.op != first.op or b.f["count"] != first.f["count"]:
                raise SimError("the ring's cards disagree at a collective ("
                               + "; ".join(x.where() for x in cards) + ")")
        n, count = self.devices, first.f["count"]
        if first.op == "ALLGATHER":
            views = [self._view(c, c.blocked, n * count) for c in cards]
            chunks = [np.array(v[d * count:(d + 1) * count]) for d, v in enumerate(views)]
            whole = np.concatenate(chunks) if chunks else np.empty(0, np.float16)
            for v in views:
                v[...] = whole
            sent = (n - 1) * count
        else:
            views = [self._view(c, c.blocked, count) for c in cards]
            total = numerics.allreduce_sum(np.stack(views)) if count else np.empty(0, np.float16)
            for v in views:
                v[...] = total
            sent = 2 * (n - 1) * count // max(n, 1)
        for c in cards:
            self.elements_sent[c.d] += sent if n > 1 else 0
            self.collectives[c.d] += 1
            c.blocked = None


def generate_system(programs: Sequence[Program], prompt_ids: Sequence[int], max_new_tokens: int,
                    *, mode: str = "exact", hw: HardwareConfig | None = None,
                    system: System | None = None) -> SystemResult:
    """Greedy generation on a ring of simulated cards (the host protocol of docs/execution.md on
    every card: the same prompt, registers and streams).

    Parameters
    ----------
    programs : sequence of Program
        One per card, in device order (:func:`fpgpt.compiler.compile_devices`).
    prompt_ids, max_new_tokens, mode, hw
        As for :func:`fpgpt.sim.generate`.
    system : System, optional
        A fresh :class:`System` of these programs to run on (to read its cards' HBM afterwards).

    Returns
    -------
    SystemResult

    Raises
    ------
    GenerationError
        A request the programs cannot serve, or cards that disagree on the tokens.
    SimError
        A program fails on its card, or the ring deadlocks.
    """
    t0 = time.perf_counter()
    prompt = [int(t) for t in prompt_ids]
    sysm = system if system is not None else System(programs, hw)
    for p in sysm.programs:
        _check_request(p, prompt, max_new_tokens)
    for p, m in zip(sysm.programs, sysm.machines):
        m.write_array(_region(p, "tokens_in").addr, np.asarray(prompt, dtype=np.int64), I32,
                      what="prompt (tokens_in)")
        for reg, value in p.registers.get("prefill", {}).items():
            m.regs[int(reg)] = int(value)
    stats = [[s] for s in sysm.run_stream("prefill", mode=mode)]
    if max_new_tokens > 1:
        for p, m in zip(sysm.programs, sysm.machines):
            for reg, value in p.registers.get("decode", {}).items():
                m.regs[int(reg)] = int(value)
            m.regs[REG_COUNT] = max_new_tokens - 1
        for c, s in zip(stats, sysm.run_stream("decode", mode=mode)):
            c.append(s)
    outs = [[int(t) for t in m.read_array(_region(p, "tokens_out").addr, max_new_tokens, I32,
                                          what="tokens_out")]
            for p, m in zip(sysm.programs, sysm.machines)]
    for d, o in enumerate(outs[1:], 1):
        if o != outs[0]:
            raise GenerationError(f"card {d} generated {o} but card 0 generated {outs[0]}: the "
                                  f"cards' programs disagree")
    net = {"collectives": list(sysm.collectives), "elements_sent": list(sysm.elements_sent)}
    return SystemResult(outs[0], prompt, stats, net, time.perf_counter() - t0, mode)


# ---------------------------------------------------------------------------------- timing
#: Trace tracks of a card's two ring links (after the unit and hbm tracks of trace.py).
LINK_TIDS = {"next": 10, "prev": 11}


def link_busy_ns(hw: HardwareConfig, nbytes: int) -> float:
    """Nanoseconds one link spends transferring ``nbytes`` (payload at the line rate less the
    Aurora 64b/66b overhead, plus the per-packet cost; the hop latency is not busy time)."""
    lk = hw.link
    if nbytes <= 0:
        return 0.0
    return nbytes / lk.payload_bytes_per_s * 1e9 + -(-nbytes // lk.packet_bytes) * lk.packet_overhead_ns


@dataclass
class Collective:
    """One NET instruction of every card (a collective), or a SEND and its RECV, as the system
    model timed it (cycles of its stream).

    ``cards`` are the cards taking part (every card, or the sender then the receiver);
    ``arrive`` each one's earliest start (its own dependencies met), ``start`` the last arrival
    (the transfer needs all of them), ``end`` each one's completion, ``links`` the transmitters
    it uses (``(card, "next" | "prev")``), ``per_link`` each one's ``(bytes, busy cycles)`` (in
    the order of ``links``; the hop latency is not busy time), ``link_bytes`` and ``link_busy``
    the busiest link's (an ALLGATHER on ``D`` cards sends ``ceil((D-1)/2)`` hops on each
    ``tx_next`` and ``floor((D-1)/2)`` on each ``tx_prev``)."""
    stream: str
    op: str
    count: int
    arrive: list[float]
    start: float
    end: list[float]
    link_bytes: int
    link_busy: float
    cards: tuple[int, ...] = ()
    links: tuple[tuple[int, str], ...] = ()
    per_link: tuple[tuple[int, float], ...] = ()


@dataclass
class SystemSimResult:
    """:func:`simulate_system`'s result: the system's figures and every card's.

    Attributes
    ----------
    result : SimResult
        The system as one: each stream's time is its slowest card's (what the host sees).
    cards : list of SimResult
        Per card.
    collectives : list of Collective
    """
    result: SimResult
    cards: list[SimResult]
    collectives: list[Collective]
    wall_s: float = 0.0
    spec: ModelSpec | None = None
    traces: list = field(default_factory=list, repr=False)

    @property
    def devices(self) -> int:
        return len(self.cards)

    def _stream_cycles(self, stream: str) -> float:
        s = getattr(self.result, stream)
        return s.cycles if s is not None else 0.0

    def link_bytes(self, stream: str = "decode") -> int:
        """Bytes sent on all the ring's links during ``stream``."""
        return sum(b for c in self.collectives if c.stream == stream for b, _ in c.per_link)

    @property
    def link_bytes_per_token(self) -> float:
        """Bytes sent over all links of the ring per decoded token."""
        n = self.result.tokens_decoded
        return self.link_bytes("decode") / n if n else 0.0

    @property
    def link_utilization(self) -> float:
        """Busy cycles / decode cycles of the busiest link (a card's transmitter; the compiled
        programs' all-gathers load every ``tx_next`` link alike, and each ``tx_prev`` with
        ``floor((D-1)/2)`` of their ``ceil((D-1)/2)`` hops)."""
        cyc = self._stream_cycles("decode")
        busy: dict[tuple[int, str], float] = {}
        for c in self.collectives:
            if c.stream == "decode":
                for link, (_, b) in zip(c.links, c.per_link):
                    busy[link] = busy.get(link, 0.0) + b
        return max(busy.values(), default=0.0) / cyc if cyc else 0.0

    def ring_wait_share(self, stream: str = "decode") -> list[float]:
        """Per card, the share of ``stream``'s time its NET unit is occupied (from the cycle the
        card could start a collective until the data arrived: transfers and waiting)."""
        cyc = self._stream_cycles(stream)
        out = [0.0] * self.devices
        for c in self.collectives:
            if c.stream == stream:
                for d, a, e in zip(c.cards, c.arrive, c.end):
                    out[d] += e - a
        return [x / cyc if cyc else 0.0 for x in out]

    def partner_wait_share(self, stream: str = "decode") -> list[float]:
        """Per card, the share of ``stream``'s time it waited for slower partners to arrive."""
        cyc = self._stream_cycles(stream)
        out = [0.0] * self.devices
        for c in self.collectives:
            if c.stream == stream:
                for d, a in zip(c.cards, c.arrive):
                    out[d] += c.start - a
        return [x / cyc if cyc else 0.0 for x in out]

    def hbm_floor_ms(self) -> float | None:
        """Decode floor of the ring: the model's weight bytes per token over every card's peak
        HBM bandwidth together (None when the model spec is unknown)."""
        if self.spec is None:
            return None
        return (self.spec.weight_bytes_per_token()
                / (self.result.hw.hbm_peak_bytes_per_s * self.devices) * 1e3)

    def to_json(self) -> dict:
        d = self.result.to_json()
        d.update({
            "devices": self.devices,
            "link_bytes_per_token": self.link_bytes_per_token,
            "link_utilization": self.link_utilization,
            "ring_wait_share": self.ring_wait_share(),
            "partner_wait_share": self.partner_wait_share(),
            "prefill_ring_wait_share": self.ring_wait_share("prefill"),
            "hbm_floor_ms_per_token": self.hbm_floor_ms(),
            "collectives_per_token": (sum(1 for c in self.collectives if c.stream == "decode")
                                      / self.result.tokens_decoded
                                      if self.result.tokens_decoded else 0.0),
            "cards": [{"device": i, "ttft_ms": c.ttft_ms, "ms_per_token": c.ms_per_token,
                       "hbm_bytes_per_token": c.hbm_bytes_per_token,
                       "unit_utilization": c.unit_utilization, **c.breakdown_json(),
                       "events": {s.name: s.events for s in c.streams}}
                      for i, c in enumerate(self.cards)],
            "wall_s": self.wall_s,
        })
        return d


def _time_system_stream(programs, stream: str, hw: HardwareConfig, regs: list, *,
                        traces, collectives: list[Collective], offset: float,
                        exact_hbm: bool, progress) -> list:
    n = len(programs)
    gens = [stream_timeline(p, stream, hw, r, trace=t, coupled=True, offset_cycles=offset,
                            exact_hbm=exact_hbm, progress=progress if d == 0 else None)
            for d, (p, r, t) in enumerate(zip(programs, regs, traces))]
    at: list = [None] * n
    done: list = [None] * n

    def step(d: int, value) -> None:
        try:
            at[d] = gens[d].send(value)
        except StopIteration as stop:
            at[d], done[d] = None, stop.value

    for d in range(n):
        step(d, None)
    lat_cycles = hw.link.latency_ns * hw.clock_mhz / 1e3
    instr = [programs[d].streams[stream] for d in range(n)]

    def record(op: str, count: int, cards: tuple, per_hop: int,
               links: tuple[tuple[tuple[int, str], int], ...]) -> None:
        """Time one transfer among ``cards`` (all at their NET instruction) and resume them;
        ``links``: each transmitter used and its hops of ``per_hop`` bytes."""
        arrive = [at[d][1] for d in cards]
        start = max(arrive)
        cost = max(at[d][2] for d in cards)
        loads = tuple((hops * per_hop if count else 0,
                       hops * link_busy_ns(hw, per_hop) * hw.clock_mhz / 1e3 if count else 0.0)
                      for _, hops in links)
        end = [start + cost] * len(cards)
        top = max(loads, key=lambda x: x[1])
        collectives.append(Collective(stream, op, count, arrive, start, end, top[0], top[1],
                                      cards, tuple(link for link, _ in links), loads))
        for ((card, direction), _), (nbytes, busy) in zip(links, loads):
            t = traces[card]
            if t is not None and busy > 0:
                k = t._us_per_cycle
                to = (card + 1) % n if direction == "next" else (card - 1) % n
                t._add({"name": op, "ph": "X", "pid": t.pid, "tid": LINK_TIDS[direction],
                        "ts": t._offset_us + start * k,
                        "dur": max(busy, cost - lat_cycles) * k,
                        "args": {"bytes": nbytes, "to": to, "stream": stream}})
        for d, e in zip(cards, end):
            step(d, e)

    while any(a is not None for a in at):
        ops = [instr[d][a[0]] if a is not None else None for d, a in enumerate(at)]
        progressed = False
        # a SEND and its partner's RECV (prev=0: d -> d+1; prev=1: d -> d-1), same count
        for d, ins in enumerate(ops):
            if ins is None or ins.op != "SEND" or at[d] is None:
                continue
            to = (d - 1) % n if ins["prev"] else (d + 1) % n
            peer = ops[to]
            if (at[to] is not None and peer is not None and peer.op == "RECV"
                    and peer["prev"] == ins["prev"] and to != d):
                if peer["count"] != ins["count"]:
                    raise TimingError(f"stream {stream!r}: card {d} SENDs {ins['count']} elements "
                                      f"but card {to} RECVs {peer['count']}")
                record("SEND", ins["count"], (d, to), 2 * ins["count"],
                       (((d, "prev" if ins["prev"] else "next"), 1),))
                ops[d] = ops[to] = None
                progressed = True
        if all(a is not None for a in at) and all(
                o is not None and o.op in _COLLECTIVES for o in ops):
            op, count = ops[0].op, ops[0]["count"]
            if any(o.op != op or o["count"] != count for o in ops):
                raise TimingError(f"stream {stream!r}: the cards disagree at a collective ("
                                  + "; ".join(f"card {d}: {o.op} count {o['count']}"
                                              for d, o in enumerate(ops)) + ")")
            per_hop = 2 * (count if op == "ALLGATHER" else -(-count // n))
            if op == "ALLGATHER":       # both directions: ceil((n-1)/2) hops on tx_next, the
                links = (tuple(((d, "next"), allgather_steps(n)) for d in range(n))  # rest: prev
                         + tuple(((d, "prev"), (n - 1) // 2) for d in range(n) if n > 2))
            else:                       # the FP32 chain then the FP16 result, on tx_next
                links = tuple(((d, "next"), 2 * (n - 1)) for d in range(n))
            record(op, count, tuple(range(n)), per_hop, links)
            progressed = True
        if not progressed:
            where = "; ".join(f"card {d}: " + ("halted" if a is None else
                                               f"{instr[d][a[0]].op} at {a[0]}")
                              for d, a in enumerate(at))
            raise TimingError(f"stream {stream!r}: the ring is deadlocked ({where})")
    return done


def simulate_system(programs: Sequence[Program], *, prompt_len: int, gen_len: int,
                    hw: HardwareConfig | None = None, trace: bool = False,
                    progress=None, exact_hbm: bool = False) -> SystemSimResult:
    """Time a generation on the ring: every card's timeline simulated together, each NET
    instruction completing when every partner's data have arrived (docs/multi-device.md).

    Parameters
    ----------
    programs : sequence of Program
        One per card, in device order.
    prompt_len, gen_len, progress, exact_hbm
        As for :func:`fpgpt.sim.simulate`.
    hw : HardwareConfig, optional
        One card's design (default: the programs' config, whose ``devices`` is the ring size).
    trace : bool
        Record a Perfetto timeline: one process per card, a track per link
        (:func:`write_system_trace`).

    Returns
    -------
    SystemSimResult
    """
    _check_len("prompt_len", prompt_len, 1)
    _check_len("gen_len", gen_len, 1)
    n = check_programs(programs)
    hw = hw if hw is not None else program_hardware(programs[0])
    meta = programs[0].meta or {}
    if isinstance(meta.get("prompt_len"), int) and meta["prompt_len"] != prompt_len:
        raise TimingError(f"prompt_len={prompt_len} but the programs were compiled for a "
                          f"{meta['prompt_len']}-token prompt; recompile with --prompt-len {prompt_len}")
    if isinstance(meta.get("n_ctx"), int) and prompt_len + gen_len - 1 > meta["n_ctx"]:
        raise TimingError(f"prompt_len + gen_len - 1 = {prompt_len + gen_len - 1} exceeds the "
                          f"model's context of {meta['n_ctx']} positions; generate fewer tokens")
    t0 = time.perf_counter()
    traces = [TraceRecorder(pid=d, name=f"card {d}") if trace else None for d in range(n)]
    for t in traces:
        if t is not None:
            for name, tid in LINK_TIDS.items():
                t._meta.append({"ph": "M", "name": "thread_name", "pid": t.pid, "tid": tid,
                                "args": {"name": f"link {name} (tx)"}})
    regs = [Registers(p.registers.get("prefill", {})) for p in programs]
    colls: list[Collective] = []
    pre = _time_system_stream(programs, "prefill", hw, regs, traces=traces, collectives=colls,
                              offset=0.0, exact_hbm=exact_hbm, progress=progress)
    dec = [None] * n
    if gen_len > 1:
        for r in regs:
            r[REG_COUNT] = gen_len - 1
        off = max(s.cycles for s in pre)
        dec = _time_system_stream(programs, "decode", hw, regs, traces=traces, collectives=colls,
                                  offset=off, exact_hbm=exact_hbm, progress=progress)
    model = str(meta.get("model", "?"))
    wall = time.perf_counter() - t0
    cards = [SimResult(model, hw, prompt_len, gen_len, p, d, wall) for p, d in zip(pre, dec)]
    slow_pre = max(pre, key=lambda s: s.cycles)
    slow_dec = max(dec, key=lambda s: s.cycles) if gen_len > 1 else None
    spec = None
    if isinstance(meta.get("spec"), dict):
        try:
            spec = ModelSpec(**meta["spec"])
        except (TypeError, ValueError):
            spec = None
    return SystemSimResult(SimResult(model, hw, prompt_len, gen_len, slow_pre, slow_dec, wall),
                           cards, colls, wall, spec, traces)


def write_system_trace(result: SystemSimResult, path, *, overwrite: bool = False):
    """Write the Perfetto trace of a :func:`simulate_system` run made with ``trace=True``."""
    traces = [t for t in result.traces if t is not None]
    if not traces:
        raise ValueError("the run recorded no trace; call simulate_system(..., trace=True)")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    events, meta, dropped = [], [], 0
    for t in traces:
        j = t.to_json()
        dropped += j["otherData"]["dropped_events"]
        events.extend(j["traceEvents"])
    path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ns",
                                "otherData": {"dropped_events": dropped}}))
    return path
