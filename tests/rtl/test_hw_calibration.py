"""The timing model charges what the RTL engines do: fpgpt.sim.costs against each engine's own
closed-form cycle count (which its Verilator / amaranth.sim bench asserts equal to the RTL), on
random and compiler-like instructions. fpgpt.sim never imports fpgpt.hw (DESIGN.md), so the two
formulas are written twice and compared here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpgpt.config import load_preset
from fpgpt.hw import mpu_engine
from fpgpt.sim import costs


def _random_mm(rng, hw) -> dict[str, int]:
    c = hw.mpu.width
    aligned = rng.random() < 0.5
    k = int(rng.integers(0, 300))
    ldb = int(rng.choice([0, k, k + int(rng.integers(1, 9))]))
    if aligned:
        ldb = -(-max(ldb, 1) // c) * c
        ldb += ((1 - ldb // c) % hw.mpu.lanes) * c
    return {"k": k, "rk": int(rng.integers(0, 3)), "n": int(rng.integers(0, 300)),
            "rn": int(rng.integers(0, 3)), "m": int(rng.integers(0, 5)),
            "batch": int(rng.integers(1, 4)), "has_bias": int(rng.integers(0, 2)),
            "a": int(rng.integers(0, 4)) * (c if aligned else 1),
            "lda": int(rng.integers(1, 400)) * (c if aligned else 1),
            "bsa": int(rng.integers(0, 9)) * (c if aligned else 3),
            "b": int(rng.integers(0, 4)) * (c if aligned else 1), "ldb": ldb,
            "bsb": int(rng.integers(0, 9)) * (c if aligned else 5)}


@pytest.mark.parametrize("preset", ["tiny", "u280"])
def test_mpu_model_is_the_engine(preset):
    hw = load_preset(preset)
    rng = np.random.default_rng(7)
    fast = 0
    for _ in range(2000):
        f = _random_mm(rng, hw)
        assert costs.mpu_cycles(hw, f) == mpu_engine.engine_cycles(hw, f), f
        assert costs.mpu_issue_cycles(hw, f) == mpu_engine.engine_issue_cycles(hw, f), f
        fast += mpu_engine.fast_b_layout(hw, f)
    assert 200 < fast < 1800        # both paths were compared


@pytest.mark.parametrize("preset,buffer_beats", [("tiny", None), ("u280", None),
                                                  ("tiny", 64)])
def test_vpu_model_is_the_engine(preset, buffer_beats):
    """Row-aligned operands (the compiler's; LAYERNORM's chunk-aligned): the model equals the
    engine's cycle model or is one cycle short, never more, and exact for most shapes (69 % on
    tiny when written).
    LAYERNORM / SOFTMAX take up to 12 rows: one group, or (a row buffer of 64 beats) several."""
    from fpgpt.hw import vpu_engine

    hw = load_preset(preset)
    if buffer_beats is not None:
        hw = dataclasses.replace(hw, vpu=dataclasses.replace(hw.vpu, buffer_beats=buffer_beats))
    w = hw.vpu.width
    rng = np.random.default_rng(11)
    exact = total = 0
    for op in ("VADD", "VMUL", "GELU", "VCOPY", "LAYERNORM", "SOFTMAX", "ARGMAX"):
        for _ in range(40):
            n = int(rng.choice([1, 2, 7, 8, 9, 33, 64, 100, 257, int(rng.integers(1, 1100))]))
            # (LAYERNORM's rows chunk-aligned, as the compiler lays them out: the model's row
            # boundary follows row 0's window alignment)
            al = hw.mpu.width if op == "LAYERNORM" else w
            ld = -(-n // al) * al + al * int(rng.integers(0, 3))
            most = 13 if op in ("LAYERNORM", "SOFTMAX") else 6
            f = {"rows": 1 if op == "ARGMAX" else int(rng.integers(1, most)), "cols": n, "rc": 0,
                 "a": al * int(rng.integers(0, 99)), "b": w * int(rng.integers(2000, 2100)),
                 "dst": w * int(rng.integers(4000, 4100)), "gamma": al * 6000,
                 "beta": al * 6200, "lda": ld, "ldb": ld, "ldd": ld}
            got, want = costs.vpu_cycles(hw, op, f), vpu_engine.engine_cycles(hw, op, f)
            assert 0 <= want - got <= 1, (op, f, want, got)
            exact += got == want
            total += 1
    assert exact >= 0.6 * total


def test_dma_model_is_the_engine():
    """costs.dma_cycles (tiny: 2-cycle memory) equals the DMA's own formula on compiler-like and
    random transfers, both paths."""
    from fpgpt.hw import dma

    hw = load_preset("tiny")
    lat = round(hw.hbm.latency_ns * hw.clock_mhz / 1e3)
    rng = np.random.default_rng(5)
    paths = set()
    for _ in range(400):
        op = str(rng.choice(["LOAD", "STORE", "GATHER"]))
        cols, rows = int(rng.integers(1, 70)), int(rng.integers(1, 5))
        hs = 2 * cols + 16 * int(rng.integers(0, 4))
        f = {"hbm": 16 * int(rng.integers(0, 99)), "sram": 8 * int(rng.integers(0, 99)),
             "rows": rows, "cols": cols, "rr": 0, "rc": 0, "ra": 0, "hstride": hs,
             "sstride": hs // 2 if rng.random() < 0.6 else cols + 1, "batch": 1, "hbatch": 0,
             "sbatch": 0, "transpose": int(op != "GATHER" and rng.random() < 0.3)}
        if op == "GATHER":
            f["hstride"] = -(-hs // 32) * 32
            f["sstride"] = -(-cols // 8) * 8
        want = dma.engine_cycles(hw, op, f, latency=lat, indices=[0] * rows)
        assert costs.dma_cycles(hw, op, f) == want, (op, f)
        paths.add(dma.dma_path(hw, op, f))
    assert {"stripe", "element"} <= paths


@pytest.mark.parametrize("preset", ["tiny", "u280"])
def test_net_model_is_the_engine(preset):
    """costs.net_engine_cycles equals the NET unit's own formula (fpgpt.hw.net.engine_cycles,
    which tests/rtl/test_hw_net.py test_cycle_cost compares with the RTL's cycles) for every
    NET op, ring size and count; costs.net_cycles is never below either it or the link's
    time (bytes at the payload rate plus the hop latency)."""
    import dataclasses

    from fpgpt.hw import net

    base = load_preset(preset)
    rng = np.random.default_rng(13)
    for d in (1, 2, 3, 4, 8):
        hw = dataclasses.replace(base, devices=d)
        lat = hw.link.latency_ns * hw.clock_mhz / 1e3
        for n in [0, 1, 2, 3, 4, 5, 31, 32, 33] + [int(x) for x in rng.integers(1, 20000, 12)]:
            for op in ("SEND", "RECV", "ALLGATHER", "ALLREDUCE"):
                f = {"count": n, "sram": int(rng.integers(0, 4096))}
                eng = net.engine_cycles(hw, op, f)
                assert costs.net_engine_cycles(hw, op, f) == eng, (op, d, n)
                got = costs.net_cycles(hw, op, f)
                assert got >= eng, (op, d, n)
                if n and (d > 1 or op in ("SEND", "RECV")):
                    # bytes the busiest link carries: a hop per step (ALLGATHER: tx_next's
                    # ceil((d-1)/2), the rest go on tx_prev at once); ALLREDUCE's chain FP32
                    # then FP16
                    hops = {"ALLGATHER": d // 2, "ALLREDUCE": 2 * (d - 1)}.get(op, 1)
                    nbytes = 6 * n if op == "ALLREDUCE" else 2 * n * hops
                    link = nbytes / hw.link.payload_bytes_per_s * hw.clock_mhz * 1e6
                    assert got >= hops * lat + link, (op, d, n)
