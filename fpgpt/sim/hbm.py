"""HBM timing model: how a transfer spreads over pseudo-channels and when its bytes arrive.

Address interleaving is docs/execution.md's: byte ``a`` lives in pseudo-channel
``(a // interleave) % channels``. Within one channel, consecutive granules of that channel are
contiguous in the channel's own address space, so a contiguous range of HBM bytes is *one*
contiguous run in each channel it touches.

A transfer is described as *segments*: ``batch × n`` contiguous byte ranges of equal length
``L`` starting at ``a0 + b*bstride + i*stride`` (a DMA row, a transposed column, a gather row).
Its per-channel demand is computed in closed form per distinct start residue modulo the
interleave period ``P = interleave × channels``, never per byte (:func:`channel_demand`).

Burst efficiency: the controller moves whole bursts of ``hbm.min_burst_bytes``. A channel run is
charged the bytes from its first byte rounded *down* to its run's burst boundary to its last
byte rounded *up* (channel-local addresses), so a 2-byte run costs a full burst and a long
aligned run costs exactly its bytes.

Rate, efficiency and refresh, without double counting. ``hbm.efficiency`` is the sustained
fraction of peak *measured with refresh included* (Shuhai: 425 of 460 GB/s). The model blocks
every channel for ``refresh_ns`` at the start of every ``refresh_interval_ns`` (all channels on
one schedule: when every channel streams, they stall together, which is what a sustained
measurement sees) and, between refreshes, serves bytes at the *streaming* efficiency::

    e_stream = min(1, efficiency / (1 - refresh_ns / refresh_interval_ns))

so that long transfers sustain ``e_stream × (1 - refresh fraction) = efficiency`` of the memory
peak: the loss is counted once. (Where the configured efficiency is below what refresh alone
costs, ``e_stream`` is capped at 1 and the long-run figure is the refresh bound, slightly below
``efficiency``.) When the AXI port, not the memory, is the bottleneck (``port <= memory ×
efficiency``, e.g. the tiny preset's 64-bit ports), the controller has the headroom to hide
refreshes and the channel serves at the port rate with no refresh stalls.

Pipelining: each channel keeps a busy-until time; a transfer issued at ``s`` finishes on channel
``c`` at ``max(busy_c, s) + work_c`` (in refresh-free "work time"), so the DMA unit can issue the
next transfer while earlier bytes still stream. Completion is the latest finish over the channels
the transfer touches plus ``hbm.latency_ns`` (one more latency for a gather's dependent index
read). Transfers that load every channel equally, or nearly (a weight tile whose size is not a
multiple of the interleave period: see :meth:`HBMModel.plan`), update the state in O(1) through a
lazy ``busy_c = max(base_c, lo) + shift`` representation; others cost O(channels) with numpy.

All times here are in core clock cycles (floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..isa.operands import operands

if TYPE_CHECKING:
    from ..config import HardwareConfig

__all__ = ["HBMModel", "Demand", "channel_demand", "dma_segments", "dma_bytes",
           "streaming_efficiency"]

_CACHE_LIMIT = 1 << 16
_DIRECT_LIMIT = 1 << 14   # segment count handled without folding residues


def streaming_efficiency(hw: "HardwareConfig") -> tuple[float, bool]:
    """Efficiency between refreshes, and whether refresh stalls are modelled (module docstring)."""
    h = hw.hbm
    mem = h.channel_gbps * 1e9
    if hw.hbm_port_bytes_per_s <= mem * h.efficiency:
        return 1.0, False
    frac = h.refresh_ns / h.refresh_interval_ns
    return min(1.0, h.efficiency / (1.0 - frac)), h.refresh_ns > 0


@dataclass(frozen=True)
class Demand:
    """What one transfer asks of the channels.

    Attributes
    ----------
    nbytes : int
        Bytes the transfer moves (useful bytes).
    charged : numpy.ndarray
        Bytes charged per channel (burst-rounded), int64, length ``channels``.
    """
    nbytes: int
    charged: np.ndarray

    @property
    def channels_used(self) -> int:
        return int(np.count_nonzero(self.charged))


def _fold(a0: int, n: int, stride: int, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct residues mod ``period`` of ``a0 + i*stride`` (i < n), with multiplicities."""
    s = stride % period
    q = period // math.gcd(s, period) if s else 1
    m = min(n, q)
    res = (a0 + np.arange(m, dtype=np.int64) * s) % period
    w = np.full(m, n // q if n >= q else 1, dtype=np.int64)
    if n >= q:
        w[: n % q] += 1
    return res, w


def channel_demand(hw: "HardwareConfig", a0: int, length: int, n: int = 1, stride: int = 0,
                   batch: int = 1, bstride: int = 0, burst: int | None = None) -> np.ndarray:
    """Burst-charged bytes per channel of ``batch × n`` segments of ``length`` bytes.

    Segment ``(b, i)`` covers HBM bytes ``[a0 + b*bstride + i*stride, +length)``. Cost is
    O(distinct start residues × channels), at most O(n × channels), never per byte.
    ``burst`` is the charging granule (default ``hbm.min_burst_bytes``; the AXI beat gives
    what the port carries).

    Returns
    -------
    numpy.ndarray
        int64 charged bytes per channel.
    """
    C, G = hw.hbm.channels, hw.hbm.interleave_bytes
    B = hw.hbm.min_burst_bytes if burst is None else burst
    P = G * C
    out = np.zeros(C, dtype=np.int64)
    if length <= 0 or n <= 0 or batch <= 0:
        return out
    # Contiguous rows (and batches) are one segment: one run per channel, no extra bursts.
    if n > 1 and stride == length:
        length, n = length * n, 1
    if n == 1 and batch > 1:
        n, stride, batch, bstride = batch, bstride, 1, 0
        if stride == length:
            length, n = length * n, 1
    res, w = _fold(a0, n, stride, P)
    if batch > 1:
        rb, wb = _fold(0, batch, bstride, P)
        res = ((res[None, :] + rb[:, None]) % P).ravel()
        w = (w[None, :] * wb[:, None]).ravel()
    if res.size > _DIRECT_LIMIT:
        res, inv = np.unique(res, return_inverse=True)
        w = np.bincount(inv.ravel(), weights=w).astype(np.int64)
    # Bytes of channel ch in [0, x): F(x) = (x // P)*G + clip(x % P - ch*G, 0, G); a segment's
    # bytes are F(r + length) - F(r), which depends only on r = start mod P.
    ch_lo = np.arange(C, dtype=np.int64) * G
    end = res + length

    def F(x: np.ndarray) -> np.ndarray:
        return (x // P)[:, None] * G + np.clip((x % P)[:, None] - ch_lo[None, :], 0, G)

    per = F(end) - F(res)                       # (segments, channels) bytes per run
    if B <= G:
        out += w @ per
        # Round each run out to burst boundaries: only the run holding the segment's first
        # byte (resp. last byte) can start (end) off a burst boundary, at offset start % B.
        head = res % B
        tail = (-end) % B
        out += np.bincount((res // G) % C, weights=w * head, minlength=C).astype(np.int64)
        out += np.bincount(((end - 1) // G) % C, weights=w * tail, minlength=C).astype(np.int64)
    else:
        # Bursts larger than a granule: approximate each run as whole bursts of its length.
        out += w @ (np.where(per > 0, -(-per // B) * B, 0))
    return out


_DMA_OPS = ("LOAD", "STORE", "GATHER", "STR")


def dma_segments(op: str, f: dict[str, int]) -> list[tuple[int, int, int, int, int, int]]:
    """The HBM segments ``(a0, length, n, stride, batch, bstride)`` a captured DMA touches.

    ``f`` holds the instruction's fields with register fields already replaced by register
    values (fpgpt.sim.control.capture). A gather's table rows are unknown to a timing model (the
    indices are data): row ``r`` is assumed to be table row ``r + R[ra]``.
    """
    if op not in _DMA_OPS:
        raise ValueError(f"{op} is not a DMA instruction")
    # The one definition of what an instruction touches lives in the ISA (fpgpt/isa/operands.py).
    return [(o.base, o.length, o.rows, o.row_stride, o.batch, o.batch_stride)
            for o in operands(op, f) if o.space == "H"]


def dma_bytes(op: str, f: dict[str, int]) -> int:
    """Useful bytes a captured DMA instruction moves."""
    return sum(seg[1] * seg[2] * max(seg[4], 1) for seg in dma_segments(op, f)
               if seg[1] > 0 and seg[2] > 0)


class HBMModel:
    """Per-channel busy state of one device's HBM, plus a cache of transfer demands.

    Parameters
    ----------
    hw : HardwareConfig
        Channel count, interleave, rates, burst size, latency and refresh come from here.
    exact : bool
        Track every channel exactly, also for balanced transfers (see :meth:`plan`); slower.
    """

    def __init__(self, hw: "HardwareConfig", *, exact: bool = False) -> None:
        self.hw = hw
        self.exact = exact
        h = hw.hbm
        hz = hw.clock_mhz * 1e6
        self.channels = h.channels
        self.period = h.interleave_bytes * h.channels
        eff, self.refresh = streaming_efficiency(hw)
        if self.refresh:
            rate = min(hw.hbm_port_bytes_per_s, h.channel_gbps * 1e9 * eff)
        else:
            rate = hw.hbm_port_bytes_per_s
        #: bytes one channel serves per cycle of work time (between refreshes)
        self.bytes_per_cycle = rate / hz
        # An AXI beat narrower than the memory's burst (tiny's 8-byte ports): the port carries
        # beats and the memory serves bursts, each at its own rate, so a scattered transfer is
        # charged the slower of the two, not a whole burst at the port's rate.
        self.beat_bytes = h.port_bits // 8
        self._split = self.beat_bytes < h.min_burst_bytes
        self.port_bytes_per_cycle = hw.hbm_port_bytes_per_s / hz
        self.mem_bytes_per_cycle = h.channel_gbps * 1e9 * (eff if self.refresh else h.efficiency) / hz
        self.latency_cycles = h.latency_ns * hw.clock_mhz / 1e3
        self.interval_cycles = h.refresh_interval_ns * hw.clock_mhz / 1e3
        self.refresh_cycles = h.refresh_ns * hw.clock_mhz / 1e3
        self._avail = self.interval_cycles - self.refresh_cycles
        self._balanced_slack = h.interleave_bytes + 2 * h.min_burst_bytes
        self._cache: dict[tuple, np.ndarray] = {}
        self.reset()

    # -- wall time <-> work time (time a channel can serve bytes) -------------------------------
    def work_time(self, t: float) -> float:
        """Serving time available in [0, t): t minus the refresh windows before t."""
        if not self.refresh:
            return t
        k = math.floor(t / self.interval_cycles)
        return k * self._avail + max(0.0, t - k * self.interval_cycles - self.refresh_cycles)

    def wall_time(self, w: float) -> float:
        """The earliest wall time by which ``w`` cycles of serving time have elapsed."""
        if not self.refresh:
            return w
        k = math.floor(w / self._avail)
        rem = w - k * self._avail
        return k * self.interval_cycles + (self.refresh_cycles + rem if rem > 0 else 0.0)

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """All channels idle at time 0."""
        self._base = np.zeros(self.channels)
        self._lo = -math.inf
        self._shift = 0.0
        self._maxbase = 0.0

    def busy_until(self) -> np.ndarray:
        """Per-channel busy-until times (work time, cycles)."""
        return np.maximum(self._base, self._lo) + self._shift

    def demand(self, a0: int, length: int, n: int = 1, stride: int = 0, batch: int = 1,
               bstride: int = 0, burst: int | None = None) -> np.ndarray:
        """Cached :func:`channel_demand` (keyed on the start residue, not the address)."""
        P = self.period
        key = (a0 % P, length, n, stride % P, stride == length, batch, bstride % P,
               bstride == length * n, burst)
        d = self._cache.get(key)
        if d is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            d = self._cache[key] = channel_demand(self.hw, a0, length, n, stride, batch, bstride,
                                                  burst)
        return d

    def plan(self, segments: list[tuple[int, int, int, int, int, int]]) -> tuple:
        """Turn segments into what :meth:`issue` consumes: ``(kind, work, idx, extra)``.

        kind 0: nothing to move. kind 1: every channel does the same ``work`` cycles (O(1)).
        kind 2: ``work`` is a per-channel array, ``idx`` the channels that take part (None: all).
        kind 1 with ``extra > 0`` is a *balanced* transfer (every channel, loads differing by at
        most one granule plus two bursts): every channel advances by the mean work and the
        completion waits ``extra`` more for the most loaded channel. This keeps the common
        weight tile O(1); the error is under one granule's time per transfer and does not
        accumulate for consecutive tiles of one tensor (their extra granules rotate over the
        channels). ``exact=True`` on the model turns it off.
        """
        return self._plan(self._charged(segments), segments)

    def plan_tally(self, segments: list[tuple[int, int, int, int, int, int]]) -> tuple:
        """:meth:`plan`, with the transfer's page activations (:meth:`activations`) and the
        channel-cycles of work it asks (summed over the channels), from one demand sum."""
        charged = self._charged(segments)
        p = self._plan(charged, segments)
        if p[0] == 0:
            return p, 0, 0.0
        page = self.hw.hbm.page_bytes
        act = int(((charged + (page - 1)) // page).sum())
        return p, act, (p[1] * self.channels if p[0] == 1 else float(p[1].sum()))

    def _charged(self, segments: list[tuple[int, int, int, int, int, int]]):
        charged = None
        for seg in segments:
            d = self.demand(*seg)
            charged = d if charged is None else charged + d
        return charged

    def _plan(self, charged, segments: list[tuple[int, int, int, int, int, int]]) -> tuple:
        if charged is None or not charged.any():
            return (0, 0.0, None, 0.0)
        if not self._split:
            work = charged / self.bytes_per_cycle
        else:
            beats = sum(self.demand(*seg, burst=self.beat_bytes) for seg in segments)
            work = np.maximum(beats / self.port_bytes_per_cycle,
                              charged / self.mem_bytes_per_cycle)
            charged = np.round(work * self.bytes_per_cycle).astype(np.int64)
        lo, hi = int(charged.min()), int(charged.max())
        if lo == hi:
            return (1, float(work[0]), None, 0.0)
        if not self.exact and lo > 0 and hi - lo <= self._balanced_slack:
            mean = float(work.mean())
            return (1, mean, None, float(work.max()) - mean)
        nz = np.flatnonzero(charged)
        return (2, work, None if nz.size == self.channels else nz, 0.0)

    def activations(self, segments: list[tuple[int, int, int, int, int, int]]) -> int:
        """HBM row (page) activations of one transfer: per channel, the burst-charged bytes it
        asks of that channel (what :meth:`plan` charges) over ``hbm.page_bytes``, rounded up,
        summed over the channels. An estimate for the energy model: a transfer is assumed to
        open each page it streams through once, and to find none open."""
        charged = self._charged(segments)
        if charged is None:
            return 0
        page = self.hw.hbm.page_bytes
        return int(((charged + (page - 1)) // page).sum())

    def issue(self, start: float, kind: int, work, idx, extra: float = 0.0) -> float:
        """Issue a planned transfer at cycle ``start``; returns the cycle its data is complete."""
        if kind == 0:
            return start + 1.0
        refresh = self.refresh
        if refresh:   # wall -> work time, inlined (hot path)
            iv = self.interval_cycles
            k = (start // iv)
            s = start - k * iv - self.refresh_cycles
            s = k * self._avail + (s if s > 0.0 else 0.0)
        else:
            s = start
        if kind == 1:
            shift = self._shift
            lo = s - shift
            cur = self._lo
            if lo > cur:
                self._lo = cur = lo
            self._shift = shift = shift + work
            mb = self._maxbase
            fin = (mb if mb > cur else cur) + shift + extra
        else:
            busy = np.maximum(self._base, self._lo)
            busy += self._shift
            np.maximum(busy, s, out=busy)
            busy += work
            self._base = busy
            self._lo, self._shift = -math.inf, 0.0
            self._maxbase = float(busy.max())
            fin = self._maxbase if idx is None else float(busy[idx].max())
        if refresh:   # work -> wall time
            k = fin // self._avail
            rem = fin - k * self._avail
            fin = k * self.interval_cycles + (self.refresh_cycles + rem if rem > 0 else 0.0)
        return fin + self.latency_cycles
