"""Chrome / Perfetto trace export of a timing simulation.

The JSON is the Trace Event Format (``{"traceEvents": [...]}``; open it in ui.perfetto.dev or
chrome://tracing): one process per device, one thread (track) per unit (``dma``, ``mpu``, ``vpu``,
``net``), an aggregate ``hbm`` track with each transfer's streaming interval, and a counter
track ``hbm GB/s``. Complete events (``ph: "X"``) carry ``ts`` and ``dur`` in microseconds; an
MM whose drain the next MM overlaps ends where the next starts, its completion in
``args["done_us"]``.
Recording stops at ``max_events`` so that a long run stays openable; the number dropped is
written to ``otherData``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .results import UNITS

__all__ = ["TraceRecorder", "HBM_TID", "COUNTER_NAME"]

HBM_TID = len(UNITS)
COUNTER_NAME = "hbm GB/s"


class TraceRecorder:
    """Collects trace events while :func:`fpgpt.sim.timing.simulate` runs.

    Parameters
    ----------
    max_events : int
        Events kept at most (metadata excluded); later ones are counted, not stored.
    pid : int
        Process id of the device's tracks (one per device in multi-device runs).
    name : str
        Process name shown in the viewer.
    """

    def __init__(self, *, max_events: int = 200_000, pid: int = 0, name: str = "device 0") -> None:
        if not isinstance(max_events, int) or max_events < 1:
            raise ValueError(f"max_events must be a positive integer, not {max_events!r}")
        self.max_events = max_events
        self.pid = pid
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self._meta: list[dict[str, Any]] = [
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}}]
        for tid, unit in enumerate(UNITS + ("hbm",)):
            self._meta.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                               "args": {"name": unit}})
            self._meta.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                               "args": {"sort_index": tid}})
        self._us_per_cycle = 1.0
        self._offset_us = 0.0
        self._stream = ""
        self._hbm_end = None   # end (µs) of the last hbm interval, for the counter's zeroes

    @property
    def full(self) -> bool:
        return len(self.events) >= self.max_events

    def begin_stream(self, name: str, offset_cycles: float, clock_mhz: float) -> None:
        """Events that follow belong to stream ``name``, whose cycle 0 is ``offset_cycles``."""
        self._close_counter()
        self._us_per_cycle = 1.0 / clock_mhz
        self._offset_us = offset_cycles * self._us_per_cycle
        self._stream = name

    def _add(self, ev: dict[str, Any]) -> None:
        if len(self.events) < self.max_events:
            self.events.append(ev)
        else:
            self.dropped += 1

    def instr(self, unit: int, op: str, index: int, start: float, end: float) -> dict[str, Any]:
        """One instruction on a unit track, ``start``/``end`` in cycles of the current stream;
        returns the event, for :meth:`retime` (events stay in dispatch order)."""
        k = self._us_per_cycle
        ev = {"name": op, "ph": "X", "pid": self.pid, "tid": unit,
              "ts": self._offset_us + start * k, "dur": (end - start) * k,
              "args": {"index": index, "stream": self._stream}}
        self._add(ev)
        return ev

    def retime(self, ev: dict[str, Any], start: float, end: float) -> None:
        """Move an event :meth:`instr` returned to ``[start, end)`` (cycles of the stream)."""
        k = self._us_per_cycle
        ev["ts"], ev["dur"] = self._offset_us + start * k, (end - start) * k

    def overlapped(self, ev: dict[str, Any], start: float) -> None:
        """An event :meth:`instr` returned whose unit started its next instruction at ``start``
        (cycles of the stream) before it completed (an MM's drain under the next MM): its slice
        ends there, as a track's slices must not overlap, and ``args["done_us"]`` keeps its
        completion (:meth:`completion_us`)."""
        k = self._us_per_cycle
        ev["args"]["done_us"] = ev["ts"] + ev["dur"]
        ev["dur"] = self._offset_us + start * k - ev["ts"]

    @staticmethod
    def completion_us(ev: dict[str, Any]) -> float:
        """When an instruction's event completed, µs (past its slice when :meth:`overlapped`)."""
        return ev["args"].get("done_us", ev["ts"] + ev["dur"])

    def transfer(self, op: str, index: int, start: float, end: float, nbytes: int) -> None:
        """A transfer's streaming interval on the ``hbm`` track and the ``hbm GB/s`` counter."""
        k = self._us_per_cycle
        ts, dur = self._offset_us + start * k, (end - start) * k
        self._add({"name": op, "ph": "X", "pid": self.pid, "tid": HBM_TID, "ts": ts, "dur": dur,
                   "args": {"index": index, "bytes": nbytes, "stream": self._stream}})
        if self._hbm_end is not None and ts > self._hbm_end:
            self._counter(self._hbm_end, 0.0)
        self._counter(ts, nbytes / (dur * 1e3) if dur > 0 else 0.0)   # bytes/ns = GB/s
        self._hbm_end = ts + dur

    def _counter(self, ts: float, gbps: float) -> None:
        self._add({"name": COUNTER_NAME, "ph": "C", "pid": self.pid, "ts": ts,
                   "args": {"GB/s": gbps}})

    def _close_counter(self) -> None:
        if self._hbm_end is not None:
            self._counter(self._hbm_end, 0.0)
            self._hbm_end = None

    def to_json(self) -> dict[str, Any]:
        """The trace as a Trace Event Format dict."""
        self._close_counter()
        return {"traceEvents": self._meta + self.events, "displayTimeUnit": "ns",
                "otherData": {"max_events": self.max_events, "dropped_events": self.dropped}}

    def write_trace(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the trace JSON to ``path`` (refuses an existing file unless ``overwrite``)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
        path.write_text(json.dumps(self.to_json()))
        return path
