"""cocotb test module: one card of a ring of Verilog cores (fpgpt.hw.ring runs ``D`` of these).

Each card is the emitted ``fpgpt_top`` (the one-card build of test_hw_program.py) with its own
HBM (``Card`` of cocotb_core.py: four AxiRams, an ideal memory) and host. Its four ring ports are
driven by :class:`RingLinks`, a model of the two links to each neighbour:

- a beat accepted on ``tx_next`` / ``tx_prev`` at edge ``t`` is offered on the far card's
  ``rx_prev`` / ``rx_next`` from edge ``t + L`` on (``L`` = ``RING_LATENCY`` cycles, one hop of
  ``hw.link``), in order;
- the receiving side holds up to ``RING_CREDITS`` beats per link; the sender's ``tready`` is its
  count of free places, returned ``L`` cycles after the receiver takes a beat (credit flow
  control, as Aurora's native flow control or a FIFO with a back-pressure channel would do);
- the link is never slower than the port: ``tdata`` is at most as wide as the link carries per
  cycle (fpgpt.hw.net.stream_bits), so a beat per cycle fits.

Every ``L`` cycles the cards swap what crossed their links (named pipes, fpgpt.hw.ring); so the
run is the same cycle for cycle however fast each process is. The hosts agree on the cycle at
which every card starts a stream (``RingLinks.barrier``): all start it on the same edge, as one
host would start a system's cards, after a first start that only loads each card's program.

Environment: RING_INDEX, RING_COUNT, RING_PIPES (fpgpt.hw.ring.run_ring); RING_CASE (JSON, one
card's case: ring_case.py), RING_STATS (output JSON), RING_LATENCY, RING_CREDITS.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import struct
import time
from collections import deque
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import Event, RisingEdge

from cocotb_core import Card
from fpgpt.config import load_preset
from fpgpt.hw.ring import pipe_name

#: How long a card waits for another card's message before it gives up (the other crashed).
PIPE_TIMEOUT_S = 600.0

OUT_PORTS = ("tx_next", "tx_prev")
IN_PORTS = ("rx_prev", "rx_next")


class RingAbort(RuntimeError):
    """Another card of the ring failed (its message says why)."""


class RingLinks:
    """This card's side of the ring: drives the four ring ports every cycle and swaps the
    crossings with the other cards every ``latency`` cycles (module docstring).

    Links are named by direction and source card: ``("f", s)`` runs ``s.tx_next ->
    (s+1).rx_prev``, ``("r", s)`` runs ``s.tx_prev -> (s-1).rx_next``.
    """

    def __init__(self, dut, clock, index: int, count: int, latency: int, pipes: Path, *,
                 credits: int = 1024):
        self.dut, self.clock = dut, clock
        self.d, self.D, self.L = index, count, latency
        d, D = index, count
        self.out = {("f", d): "tx_next", ("r", d): "tx_prev"}
        self.inn = {("f", (d - 1) % D): "rx_prev", ("r", (d + 1) % D): "rx_next"}
        self.peers = [p for p in range(D) if p != d]
        self.wfd = {p: os.open(pipes / pipe_name(d, p), os.O_RDWR) for p in self.peers}
        self.rfd = {p: os.open(pipes / pipe_name(p, d), os.O_RDWR) for p in self.peers}
        self.credits = {k: credits for k in self.out}
        self.credit_back = {k: deque() for k in self.out}       # arrival edges of credits
        self.rxq = {k: deque() for k in self.inn}               # (arrival, data, keep, last)
        self.outbox = {p: [] for p in self.peers}
        self.beats = {f"{k[0]}{k[1]}": 0 for k in self.out}     # beats this card sent per link
        self.edge = 0
        self.ready = {p: -1 for p in range(D)}
        self.go_at: dict[int, int] = {}
        self.go: dict[int, Event] = {}
        self.sync_wait_s = 0.0
        self.finished = False
        self.final: int | None = None
        self.task = cocotb.start_soon(self._run())

    def _dest(self, link) -> int:
        kind, s = link
        return (s + 1) % self.D if kind == "f" else (s - 1) % self.D

    # ---- pipes ------------------------------------------------------------------------------
    def _send(self, p: int, obj) -> None:
        data = pickle.dumps(obj)
        data = struct.pack("<I", len(data)) + data
        while data:
            n = os.write(self.wfd[p], data)
            data = data[n:]

    def _read_exact(self, fd: int, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            r, _, _ = select.select([fd], [], [], PIPE_TIMEOUT_S)
            if not r:
                raise RingAbort(f"card {self.d}: no message from a peer in {PIPE_TIMEOUT_S:.0f} s "
                                f"(at edge {self.edge})")
            buf += os.read(fd, n - len(buf))
        return buf

    def _recv(self, p: int):
        (n,) = struct.unpack("<I", self._read_exact(self.rfd[p], 4))
        return pickle.loads(self._read_exact(self.rfd[p], n))

    def abort(self, why: str) -> None:
        """Tell the other cards that this one failed (they raise :class:`RingAbort`)."""
        for p in self.peers:
            try:
                self._send(p, {"abort": f"card {self.d}: {why}"})
            except OSError:
                pass

    def _exchange(self, e: int) -> None:
        """End of the window of edges ``e - L + 1 .. e``: send, receive, plan the next."""
        t0 = time.perf_counter()
        mine = self.ready[self.d]
        for p in self.peers:
            self._send(p, {"ev": self.outbox[p], "ready": mine})
            self.outbox[p] = []
        for p in self.peers:
            msg = self._recv(p)
            if "abort" in msg:
                raise RingAbort(msg["abort"])
            self.ready[p] = msg["ready"]
            for ev in msg["ev"]:
                if ev[0] == "b":
                    _, link, t, data, keep, last = ev
                    self.rxq[link].append((t + self.L, data, keep, last))
                else:
                    _, link, t = ev
                    self.credit_back[link].append(t + self.L)
        self.sync_wait_s += time.perf_counter() - t0
        agreed = min(self.ready.values())
        for phase in range(agreed + 1):
            if phase not in self.go_at:
                self.go_at[phase] = e + 1 + self.L     # every card computes the same edge
        if self.final is not None and agreed >= self.final:
            self.finished = True

    # ---- the ports, every cycle ------------------------------------------------------------
    async def _run(self) -> None:
        dut = self.dut
        sig = {name: {m: getattr(dut, f"{name}_{m}") for m in
                      ("tdata", "tkeep", "tlast", "tvalid", "tready")}
               for name in OUT_PORTS + IN_PORTS}
        drv_ready = {k: True for k in self.out}
        drv_valid = {k: False for k in self.inn}
        shown = {k: None for k in self.inn}
        for k, name in self.out.items():
            sig[name]["tready"].value = 1
        for k, name in self.inn.items():
            for m in ("tdata", "tkeep", "tlast", "tvalid"):
                sig[name][m].value = 0
        edge = RisingEdge(self.clock)
        e = 0
        while True:
            await edge
            # handshakes at edge e (values as they were before the edge)
            for k, name in self.out.items():
                s = sig[name]
                if drv_ready[k] and s["tvalid"].value:
                    self.outbox[self._dest(k)].append(
                        ("b", k, e, int(s["tdata"].value), int(s["tkeep"].value),
                         int(s["tlast"].value)))
                    self.credits[k] -= 1
                    self.beats[f"{k[0]}{k[1]}"] += 1
            for k, name in self.inn.items():
                if drv_valid[k] and sig[name]["tready"].value:
                    self.rxq[k].popleft()
                    self.outbox[k[1]].append(("c", k, e))
            if (e + 1) % self.L == 0:
                self._exchange(e)
                if self.finished:
                    return
            e += 1
            self.edge = e
            # what the ports show up to edge e
            for k, name in self.out.items():
                back = self.credit_back[k]
                while back and back[0] <= e:
                    back.popleft()
                    self.credits[k] += 1
                r = self.credits[k] > 0
                if r != drv_ready[k]:
                    sig[name]["tready"].value = int(r)
                    drv_ready[k] = r
            for k, name in self.inn.items():
                q = self.rxq[k]
                v = bool(q) and q[0][0] <= e
                if v and shown[k] is not q[0]:
                    _, data, keep, last = q[0]
                    s = sig[name]
                    s["tdata"].value, s["tkeep"].value, s["tlast"].value = data, keep, last
                    shown[k] = q[0]
                if v != drv_valid[k]:
                    sig[name]["tvalid"].value = int(v)
                    drv_valid[k] = v
            for phase, at in self.go_at.items():
                if at == e and phase in self.go:
                    self.go[phase].set()

    async def barrier(self, phase: int, *, final: bool = False) -> int:
        """Wait until every card reached ``phase`` (0, 1, 2, ... in order); returns on the same
        edge on every card (that edge). ``final``: the last barrier, after which the links stop."""
        self.ready[self.d] = phase
        if final:
            self.final = phase
            await self.task
            return self.edge
        ev = self.go.setdefault(phase, Event())
        await ev.wait()
        return self.edge


@cocotb.test()
async def ring_card_matches_simulator(dut):
    case = json.loads(open(os.environ["RING_CASE"]).read())
    d, D = int(os.environ["RING_INDEX"]), int(os.environ["RING_COUNT"])
    hw = load_preset(case["preset"])
    image = np.frombuffer(bytes.fromhex(case["hbm_in"]), np.uint8)
    program = bytes.fromhex(case["program"])
    card = Card(dut, hw, len(image), program, pauses=False)
    ring = RingLinks(dut, dut.ap_clk, d, D, int(os.environ["RING_LATENCY"]),
                     Path(os.environ["RING_PIPES"]),
                     credits=int(os.environ.get("RING_CREDITS", "1024")))
    from fpgpt.hw.control import REG_RING
    t_wall = time.perf_counter()
    try:
        await card.reset()
        await card.host.write_dword(REG_RING, d | (D << 8))
        card.hbm.write(image)
        load = await card.run(case["load_entry"])       # loads the program, runs one HALT
        runs = []
        for i, run in enumerate(case["runs"]):
            await card.set_regs(run["regs"])
            at = await ring.barrier(i)
            t0 = time.perf_counter()
            counters = await card.run(case["entries"][run["stream"]], poll_every=50)
            runs.append({"stream": run["stream"], "start_edge": at, **counters,
                         "wall_s": time.perf_counter() - t0})
        got = card.hbm.read()
        await ring.barrier(len(case["runs"]), final=True)
    except BaseException as e:
        ring.abort(repr(e))
        raise
    want = np.frombuffer(bytes.fromhex(case["hbm_out"]), np.uint8)
    diff = np.flatnonzero(got != want)
    tokens = None
    if case.get("tokens_out"):
        addr, n = case["tokens_out"]
        tokens = got[addr:addr + 4 * n].view("<i4").tolist()
    with open(os.environ["RING_STATS"], "w") as fh:
        json.dump({"card": d, "cards": D, "differ": int(diff.size),
                   "first_diff": diff[:8].tolist(), "tokens": tokens, "runs": runs,
                   "load_cycles": load["load_cycles"], "beats": ring.beats,
                   "edges": ring.edge, "sync_wait_s": ring.sync_wait_s,
                   "wall_s": time.perf_counter() - t_wall}, fh)
    assert diff.size == 0, f"card {d}: {diff.size} HBM bytes differ, first at {diff[:8]}"
    if tokens is not None and case.get("tokens") is not None:
        assert tokens == case["tokens"], f"card {d}: tokens {tokens} != {case['tokens']}"
