"""The MPU lane in Amaranth's simulator, bit for bit with numerics.mpu_dot / mpu_matmul, its dot
products interleaved over the accumulator's slots (cocotb_mpu.slot_schedule)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator
from cocotb_mpu import slot_schedule

from fpgpt.config import load_preset
from fpgpt.hw.mpu import MPULane
from fpgpt.isa import numerics as nx


def _vec_bits(x: np.ndarray) -> int:
    return int.from_bytes(x.astype(np.float16).tobytes(), "little")


def run_lane(hw, jobs, go=None):
    """Feeds every job's chunks by :func:`slot_schedule` (every cycle unless ``go`` says
    otherwise); returns the lane, (acc bits, y bits) per job in job order, the cycle of each
    output, the schedule and the jobs in output order."""
    lane = MPULane(hw=hw)
    w = hw.mpu.width
    chunks = []
    for a, b, bias in jobs:
        n = max(1, -(-len(a) // w))
        ap = np.zeros(n * w, np.float16); ap[:len(a)] = a
        bp = np.zeros(n * w, np.float16); bp[:len(b)] = b
        chunks.append([dict(a=_vec_bits(ap[c * w:(c + 1) * w]), b=_vec_bits(bp[c * w:(c + 1) * w]),
                            first=c == 0, last=c == n - 1,
                            bias=0 if bias is None else int(np.float16(bias).view(np.uint16)),
                            has_bias=bias is not None) for c in range(n)])
    sched, order = slot_schedule([len(c) for c in chunks], lane.slots,
                                 go if go is not None else itertools.repeat(1))
    outs, out_cycles = [], []

    async def feed(ctx):
        for item in sched:
            if item is None:
                ctx.set(lane.valid, 0)
            else:
                for k, v in chunks[item[0]][item[1]].items():
                    ctx.set(getattr(lane, k), int(v))
                ctx.set(lane.valid, 1)
            await ctx.tick()
        ctx.set(lane.valid, 0)

    async def collect(ctx):
        cycle = 0
        while len(outs) < len(jobs):
            if ctx.get(lane.y_valid):
                outs.append((ctx.get(lane.acc), ctx.get(lane.y)))
                out_cycles.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(lane)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(collect)
    sim.run()
    by_job = [None] * len(jobs)
    for j, o in zip(order, outs):
        by_job[j] = o
    return lane, by_job, out_cycles, sched, order


def test_lane_matches_numerics_tiny():
    hw = load_preset("tiny")
    rng = np.random.default_rng(3)
    jobs = []
    for k in (1, 5, 8, 13, 16, 37, 0):
        a = (rng.standard_normal(k) * 2).astype(np.float16)
        b = (rng.standard_normal(k) * 2).astype(np.float16)
        bias = None if k % 2 else np.float16(rng.standard_normal())
        jobs.append((a, b, bias))
    # Cancellation to a signed zero and large magnitudes that overflow FP16 at write-back.
    jobs.append((np.array([1, -1, 2, -2, 0.5, -0.5], np.float16), np.ones(6, np.float16), None))
    jobs.append((np.full(9, 60000, np.float16), np.full(9, 2, np.float16), np.float16(-3)))
    # more dot products than slots, so that slots are reused; one idle cycle in five
    jobs = jobs * 2
    lane, outs, cycles, sched, order = run_lane(hw, jobs, itertools.cycle([1, 1, 1, 1, 0]))
    for (a, b, bias), (acc, y) in zip(jobs, outs):
        bias_arr = None if bias is None else np.array([bias], np.float16)
        want_acc = nx.mpu_matmul_f32(a[None], b[None], bias_arr, width=hw.mpu.width)[0, 0]
        want_y = nx.mpu_matmul(a[None], b[None], bias_arr, width=hw.mpu.width)[0, 0]
        assert acc == int(want_acc.view(np.uint32)), (len(a), hex(acc), want_acc)
        assert y == int(want_y.view(np.uint16)), (len(a), hex(y), want_y)
        if bias is None:
            assert acc == int(nx.mpu_dot(a, b, width=hw.mpu.width).view(np.uint32))
    # The last result leaves `latency` cycles after its last chunk went in; a dot product's
    # chunks went in a multiple of `slots` cycles apart.
    assert lane.slots == hw.mpu.acc_latency
    assert lane.latency == hw.mpu.pipeline_cycles
    last_in = max(t for t, item in enumerate(sched) if item is not None)
    assert cycles[-1] == last_in + lane.latency
    assert sched[last_in][0] == order[-1]


def test_lane_takes_a_chunk_every_cycle_with_its_slots_full():
    """``slots`` interleaved dot products of several chunks: one chunk every cycle, results
    one per cycle in the order their last chunks went in."""
    hw = load_preset("tiny")
    rng = np.random.default_rng(5)
    d, w = hw.mpu.acc_latency, hw.mpu.width
    jobs = [((rng.standard_normal(3 * w)).astype(np.float16),
             (rng.standard_normal(3 * w)).astype(np.float16), None) for _ in range(2 * d)]
    lane, outs, cycles, sched, order = run_lane(hw, jobs)
    assert all(item is not None for item in sched) and len(sched) == 3 * len(jobs)
    assert order == list(range(len(jobs)))
    assert cycles[-d:] == [len(sched) - d + x + lane.latency for x in range(d)]
    assert cycles == sorted(cycles) and len(set(cycles)) == len(jobs)
    for (a, b, _), (acc, _y) in zip(jobs, outs):
        assert acc == int(nx.mpu_dot(a, b, width=w).view(np.uint32))


def test_lane_checks_hw(quiet_unused):
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not 'tiny'$"):
        MPULane(hw="tiny")


def test_lane_verilator_tiny(tmp_path, rtl_build):
    """The same lane in Verilator via cocotb, with idle input cycles (one build, ~40 s cold)."""
    import json
    from pathlib import Path

    from fpgpt.hw.cosim import run_cocotb, write_verilog

    hw = load_preset("tiny")
    d = rtl_build(f"mpu_lane_{hw.artifact_name}")
    v = write_verilog(MPULane(hw=hw), "mpu_lane", d / "mpu_lane.v")
    stats = tmp_path / "stats.json"
    run_cocotb([v], "mpu_lane", "cocotb_mpu", d / "sim", test_dir=Path(__file__).parent,
               cxx_opt=False,   # -O0: the build dominates (docs/rtl.md)
               env={"MPU_PRESET": "tiny", "MPU_JOBS": "300", "MPU_SEED": "2",
                    "MPU_STATS": str(stats)})
    s = json.loads(stats.read_text())
    assert s["jobs"] == 300 and s["mismatches"] == 0
