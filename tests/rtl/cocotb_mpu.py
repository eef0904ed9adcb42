"""cocotb test module: one MPU lane (fpgpt.hw.mpu.MPULane for preset MPU_PRESET) against
numerics.mpu_matmul_f32 / mpu_matmul on random dot products, interleaved over the accumulator's
``acc_latency`` slots (:func:`slot_schedule`), with idle cycles in the input.

Environment: MPU_PRESET, MPU_JOBS (dot products), MPU_SEED, MPU_STATS (JSON written here).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from fpgpt.config import load_preset
from fpgpt.hw.mpu import MPULane
from fpgpt.isa import numerics as nx


def slot_schedule(chunks: Sequence[int], slots: int, go: Iterator[int]
                  ) -> tuple[list[tuple[int, int] | None], list[int]]:
    """The lane's input, cycle by cycle, for dot products of ``chunks[j]`` chunks: slot
    ``t mod slots`` takes the next chunk of its dot product on a cycle where ``go`` says 1 (a
    free slot starts the next waiting dot product), so a dot product's chunks enter a multiple
    of ``slots`` cycles apart (MPULane's contract). Returns ``(job, chunk)`` or None per cycle,
    and the jobs in the order their results leave (the order of their last chunks)."""
    waiting, held = deque(range(len(chunks))), [None] * slots
    sched, order = [], []
    while waiting or any(h is not None for h in held):
        s = len(sched) % slots
        item = None
        if next(go):
            if held[s] is None and waiting:
                held[s] = (waiting.popleft(), 0)
            if held[s] is not None:
                item = held[s]
                j, c = item
                held[s] = (j, c + 1) if c + 1 < chunks[j] else None
                if c + 1 == chunks[j]:
                    order.append(j)
        sched.append(item)
    return sched, order


@cocotb.test()
async def lane_matches_numerics(dut):
    hw = load_preset(os.environ["MPU_PRESET"])
    w = hw.mpu.width
    rng = np.random.default_rng(int(os.environ.get("MPU_SEED", "1")))
    jobs = []
    for _ in range(int(os.environ["MPU_JOBS"])):
        k = int(rng.integers(0, 5 * w))
        a = (rng.standard_normal(k) * rng.choice([0.01, 1, 30])).astype(np.float16)
        b = (rng.standard_normal(k) * rng.choice([0.01, 1, 30])).astype(np.float16)
        bias = np.float16(rng.standard_normal()) if rng.random() < 0.5 else None
        jobs.append((a, b, bias))
    chunks = []
    for a, b, bias in jobs:
        n = max(1, -(-len(a) // w))
        ap = np.zeros(n * w, np.float16); ap[:len(a)] = a
        bp = np.zeros(n * w, np.float16); bp[:len(b)] = b
        chunks.append([(int.from_bytes(ap[c * w:(c + 1) * w].tobytes(), "little"),
                        int.from_bytes(bp[c * w:(c + 1) * w].tobytes(), "little"),
                        c == 0, c == n - 1,
                        0 if bias is None else int(bias.view(np.uint16)), bias is not None)
                       for c in range(n)])
    # an idle input cycle in every four (a dot product then waits a whole turn of the ring)
    sched, order = slot_schedule([len(c) for c in chunks], MPULane(hw=hw).slots,
                                 itertools.cycle([1, 1, 1, 0]))

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.valid.value = 0
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    outs = []

    async def collect():
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.y_valid.value:
                outs.append((int(dut.acc.value), int(dut.y.value)))

    cocotb.start_soon(collect())
    t0 = time.perf_counter()
    cycles = 0
    for item in sched:
        await RisingEdge(dut.clk)
        cycles += 1
        if item is not None:
            a, b, first, last, bias, has_bias = chunks[item[0]][item[1]]
            dut.a.value, dut.b.value = a, b
            dut.first.value, dut.last.value = int(first), int(last)
            dut.bias.value, dut.has_bias.value, dut.valid.value = bias, int(has_bias), 1
        else:
            dut.valid.value = 0
    await RisingEdge(dut.clk)
    dut.valid.value = 0
    lane = MPULane(hw=hw)
    for _ in range(lane.latency + 2):
        await RisingEdge(dut.clk)
        cycles += 1
    wall = time.perf_counter() - t0
    assert len(outs) == len(jobs), (len(outs), len(jobs))
    bad = 0
    for j, (acc, y) in zip(order, outs):
        a, b, bias = jobs[j]
        bias_arr = None if bias is None else np.array([bias], np.float16)
        want_acc = int(nx.mpu_matmul_f32(a[None], b[None], bias_arr, width=w)[0, 0].view(np.uint32))
        want_y = int(nx.mpu_matmul(a[None], b[None], bias_arr, width=w)[0, 0].view(np.uint16))
        bad += (acc != want_acc) or (y != want_y)
    if os.environ.get("MPU_STATS"):
        with open(os.environ["MPU_STATS"], "w") as f:
            json.dump({"jobs": len(jobs), "chunks": sum(map(len, chunks)), "mismatches": bad,
                       "cycles": cycles, "cycles_per_s": cycles / wall}, f)
    assert bad == 0, f"{bad} of {len(jobs)} dot products differ from numerics"
