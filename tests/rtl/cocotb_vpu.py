"""cocotb test module: the VPU (fpgpt.hw.vpu.VPU for preset VPU_PRESET) against numerics, bit for
bit, with back-pressure on both streams; also measures cycles per command at full throughput.

Environment: VPU_PRESET, VPU_MAX_COLS, VPU_ROWS (random rows per operation), VPU_SEED,
VPU_STATS (a JSON file the counts and cycle figures are written to).
"""

from __future__ import annotations

import itertools
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from fpgpt.config import load_preset
from fpgpt.hw.decoder import Opcode
from fpgpt.isa import numerics as nx

OPS = ("VADD", "VMUL", "GELU", "VCOPY", "LAYERNORM", "SOFTMAX", "ARGMAX")


def _bits32(v) -> int:
    return int(np.asarray(v, np.float32).reshape(()).view(np.uint32))


def _pack(v: np.ndarray) -> int:
    return int.from_bytes(np.ascontiguousarray(v, np.float16).tobytes(), "little")


def reference(op, x, b, c, scale, eps, w, k=1, sw=None):
    """The numerics result: FP16 bit patterns of the row, or the ARGMAX index (``sw``: the
    lanes with the special functions, SOFTMAX's exp-sum width)."""
    if op == "VADD":
        return nx.f16_bits(nx.vadd(x, b))
    if op == "VMUL":
        return nx.f16_bits(nx.vmul(x, b))
    if op == "GELU":
        return nx.f16_bits(nx.gelu(x))
    if op == "VCOPY":
        return x.view(np.uint16)
    if op == "LAYERNORM":
        return np.stack([nx.f16_bits(nx.layernorm(xr[None], br, cr, eps=eps, width=w,
                                                          partials=k)[0])
                         for xr, br, cr in zip(np.atleast_2d(x), np.atleast_2d(b),
                                               np.atleast_2d(c))]).reshape(np.shape(x))
    if op == "SOFTMAX":
        return nx.f16_bits(nx.softmax(np.atleast_2d(x), scale=scale, width=w,
                                      partials=k, sum_width=sw)).reshape(np.shape(x))
    return nx.argmax(x)


class Bench:
    def __init__(self, dut, w: int):
        self.dut, self.w, self.cycle = dut, w, 0

    async def clock(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def run(self, op, x, b, c, scale, eps, in_pattern, out_pattern):
        """One command; returns (result words, cycle of cmd handshake, cycle of last output).
        A 2-D ``x`` (LAYERNORM / SOFTMAX; ``b``, ``c`` each row's) is a group of rows in one
        command, its result 2-D."""
        dut, w = self.dut, self.w
        xs, bs, cs = (np.atleast_2d(v) for v in (x, b, c))
        rows, n = xs.shape
        beats = -(-n // w)
        # lanes past the row's end carry +inf, which every pass must ignore
        pad = lambda v: np.concatenate([v, np.full(beats * w - n, np.inf, np.float16)])
        payloads = []
        for xr, br, cr in zip(xs, bs, cs):
            xp, bp, cp = pad(xr), pad(br), pad(cr)
            payloads += [_pack(xp[k * w:(k + 1) * w]) | (_pack(bp[k * w:(k + 1) * w]) << (16 * w))
                         | (_pack(cp[k * w:(k + 1) * w]) << (32 * w)) for k in range(beats)]
        await FallingEdge(dut.clk)
        dut.cmd__payload.value = (Opcode[op].value | (n << 8) | (_bits32(scale) << 24)
                                  | (_bits32(eps) << 56) | (rows << 88))
        dut.cmd__valid.value = 1
        await ReadOnly()
        while not dut.cmd__ready.value:
            await FallingEdge(dut.clk)
            await ReadOnly()
        start = self.cycle               # the command is taken at the next rising edge
        await FallingEdge(dut.clk)
        dut.cmd__valid.value = 0
        n_out = 1 if op == "ARGMAX" else beats * rows
        outs, last = [], None
        pending = list(payloads)
        # Inputs change at falling edges; ReadOnly then shows the ready/valid each handshake
        # sees at the following rising edge.
        while True:
            give = bool(pending) and next(in_pattern)
            if give:
                dut.i__payload.value = pending[0]
            dut.i__valid.value = int(give)
            ready = next(out_pattern)
            dut.o__ready.value = int(ready)
            await ReadOnly()
            if give and dut.i__ready.value:
                pending.pop(0)
            if ready and dut.o__valid.value:
                outs.append(int(dut.o__payload.value))
                last = self.cycle
            await FallingEdge(dut.clk)
            if len(outs) == n_out:
                break
        dut.i__valid.value = 0
        if op == "ARGMAX":
            return outs[0] & 0xFFFFFFFF, start, last
        words = b"".join(o.to_bytes(2 * w, "little") for o in outs)
        got = np.frombuffer(words, np.uint16).reshape(rows, beats * w)[:, :n]
        return got.reshape(np.shape(x)), start, last


@cocotb.test()
async def vpu_matches_numerics(dut):
    hw = load_preset(os.environ["VPU_PRESET"])
    w = hw.vpu.width
    max_cols = int(os.environ["VPU_MAX_COLS"])
    rows = int(os.environ.get("VPU_ROWS", "10"))
    rng = np.random.default_rng(int(os.environ.get("VPU_SEED", "1")))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.cmd__valid.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    bench = Bench(dut, w)
    cocotb.start_soon(bench.clock())

    def row(n, op):
        x = (rng.standard_normal(n) * rng.choice([0.1, 1, 4, 40])).astype(np.float16)
        b = (rng.standard_normal(n) * rng.choice([0.5, 1, 3])).astype(np.float16)
        c = rng.standard_normal(n).astype(np.float16)
        if op == "SOFTMAX" and rng.random() < 0.5:
            x[rng.random(n) < 0.3] = -np.inf                # masked entries
            x[rng.integers(0, n)] = rng.standard_normal()   # keep a finite maximum
        if op in ("ARGMAX", "VADD", "VMUL", "GELU") and rng.random() < 0.3:
            x[rng.integers(0, n, 2)] = rng.choice([np.inf, -np.inf, np.nan, 0.0, -0.0], 2)
        if op == "ARGMAX" and rng.random() < 0.5:
            x[rng.integers(0, n, 3)] = x.max() if not np.isnan(x).all() else 0   # ties
        return x, b, c

    # Full-throughput cycle counts per command (inputs always valid, output always ready).
    cycles = {}
    for op in OPS:
        for n in (w, 8 * w, max_cols):
            x, b, c = row(n, op)
            _, start, last = await bench.run(op, x, b, c, 0.125, 1e-5, itertools.repeat(1),
                                             itertools.repeat(1))
            cycles[f"{op}/{n}"] = last - start
            for _ in range(3):
                await RisingEdge(dut.clk)
    # Groups of LAYERNORM / SOFTMAX rows in one command: 3 rows of one beat, of a short last
    # beat, of max_cols.
    for op in ("LAYERNORM", "SOFTMAX"):
        for n in (w, w + 3, max_cols):
            rws = [row(n, op) for _ in range(3)]
            x, b, c = (np.stack(v) for v in zip(*rws))
            _, start, last = await bench.run(op, x, b, c, 0.125, 1e-5, itertools.repeat(1),
                                             itertools.repeat(1))
            cycles[f"{op}/3x{n}"] = last - start
            for _ in range(3):
                await RisingEdge(dut.clk)

    # Random rows with back-pressure on both streams.
    checked, bad, first = 0, 0, None
    in_pat = itertools.cycle([1, 1, 0, 1, 1])
    out_pat = itertools.cycle([1, 1, 1, 0])
    for k in range(rows):
        for op in OPS:
            n = int(rng.integers(1, max_cols + 1))
            x, b, c = row(n, op)
            if op in ("LAYERNORM", "SOFTMAX") and k % 2:     # a group of 2..4 rows
                rws = [(x, b, c)] + [row(n, op) for _ in range(int(rng.integers(1, 4)))]
                x, b, c = (np.stack(v) for v in zip(*rws))
            scale = np.float32(rng.choice([0.125, 1.0, 0.0883883476]))
            eps = np.float32(rng.choice([1e-5, 1e-3]))
            got, _, _ = await bench.run(op, x, b, c, scale, eps, in_pat, out_pat)
            want = reference(op, x, b, c, scale, eps, w, hw.vpu.acc_latency,
                             hw.vpu.special_lanes)
            ok = (got == want) if op == "ARGMAX" else np.array_equal(got, want)
            checked += 1
            if not ok:
                bad += 1
                first = first or f"{op} n={n}: got {got} want {want}"
    stats = {"rows": checked, "mismatches": bad, "first": first, "cycles": cycles,
             "total_cycles": bench.cycle}
    if os.environ.get("VPU_STATS"):
        with open(os.environ["VPU_STATS"], "w") as f:
            json.dump(stats, f, indent=1)
    assert bad == 0, f"{bad} of {checked} rows differ; first: {first}"
