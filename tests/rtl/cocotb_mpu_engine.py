"""cocotb test module: the MPU engine (fpgpt.hw.mpu_engine.MPUEngine for preset MPU_PRESET) on a
Python wide scratchpad (cocotb_util.line_port / bank_port), against fpgpt.sim's executor, MM by
MM, bit for bit; and, while the line port grants every request, cycle for cycle against
fpgpt.hw.mpu_engine.engine_cycles; every MM's granted line-port accesses are recorded beside
fpgpt.sim.costs.port_b_accesses, what the timing model charges the DMA for them.

Cases: compiler-like MMs on the fast B path (weights: b chunk-aligned, ldb = K padded to the
fast rule; attention: small K/N, batch, mask, R[rk]/R[rn]) and random MMs (K not a multiple of
width and K = 0, N not a multiple of lanes, R[rk] / R[rn], bias, causal mask, batch with
strides, ldb = 0, any alignment). The first MPU_EXACT MMs run with every grant; the rest with
the line port refusing one cycle in five at random (bit-exactness only). Commands arrive after idle
cycles.

Environment: MPU_PRESET (a preset or a .toml file), MPU_SEED, MPU_N (random MMs), MPU_EXACT, MPU_STATS (JSON written here).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from cocotb_util import bank_port, issue_and_wait, line_geometry, line_port
from fpgpt.config import load_config, load_preset
from fpgpt.hw.decoder import Opcode
from fpgpt.hw.decoder import captured_layout
from fpgpt.hw.mpu_engine import engine_cycles, engine_issue_cycles, fast_b_layout
from fpgpt.isa import Instr, Program, Unit
from fpgpt.sim.control import capture
from fpgpt.sim.costs import mpu_cycles, port_b_accesses
from fpgpt.sim.executor import run_stream
from fpgpt.sim.machine import Machine

REG_RK, REG_RN = 5, 6
REGION = 32768           # elements per operand region (A, B, bias, C are disjoint)


def pack(fields: dict[str, int], op: str, unit: Unit) -> int:
    word = 0
    for name, fl in captured_layout(unit):
        v = Opcode[op].value if name == "op" else fields.get(name, 0)
        word |= (v & ((1 << fl.width) - 1)) << fl.offset
    return word


def fast_ld(hw, k: int) -> int:
    """The smallest row stride >= k that the rotation takes: whole chunks, = 1 mod banks."""
    c, nb, _ = line_geometry(hw)
    q = max(1, -(-k // c))
    return (q + (1 - q) % nb) * c


def odd_ld(hw, k: int) -> int:
    """The smallest row stride >= k that the fast path takes and is not 1 mod banks (session
    19: 1 + banks/2 mod banks, the odd lanes' rotation apart from the even lanes')."""
    c, nb, _ = line_geometry(hw)
    q = max(1, -(-k // c))
    while not (q % 2 == 1 and (nb <= 2 or q % (nb // 2) == 1) and (nb <= 2 or q % nb != 1)):
        q += 1
    return q * c


def compiler_mms(hw, regs) -> list[tuple[Instr, dict[int, int]]]:
    """MMs shaped like the compiler's: weight MMs and attention MMs on the fast path."""
    c, nb, _ = line_geometry(hw)
    R = REGION
    out = []

    def mm(rk=0, rn=0, **kw):
        base = dict(a=0, b=R, bias=2 * R, dst=3 * R, batch=1, rk=REG_RK, rn=REG_RN,
                    has_bias=0, mask=0)
        base.update(kw)
        out.append((Instr.make("MM", **base), {REG_RK: rk, REG_RN: rn}))

    for m_, k, n, bias in ((1, 64, 257, 0), (2, 64, 192, 1), (2, 256, 64, 0), (1, 64, 40, 1)):
        mm(m=m_, k=k, n=n, lda=k, ldb=fast_ld(hw, k), ldc=n, has_bias=bias)
    # weights whose rows are an odd number of chunks apart, not 1 mod banks (GPT-2 XL's 25)
    for m_, k, n, bias in ((1, 3 * c, 40, 1), (2, 7 * c, 3 * nb + 1, 0)):
        mm(m=m_, k=k, n=n, lda=k, ldb=odd_ld(hw, k), ldc=n, has_bias=bias)
    # attention: scores = Q K^T (batch = heads, mask, kv length from R[rn]) and P V (k from R[rk])
    hd, heads, t = 2 * c, 2, 3
    ldk = fast_ld(hw, hd)
    mm(m=t, k=hd, n=1, rn=t - 1, lda=hd * heads, ldb=ldk, ldc=16, batch=heads, bsa=hd,
       bsb=ldk * 8, bsc=t * 16, mask=1)
    ldv = fast_ld(hw, 13)
    mm(m=t, k=10, n=hd, rk=3, lda=16, ldb=ldv, ldc=hd * heads, batch=heads, bsa=t * 16,
       bsb=ldv * hd, bsc=hd)
    mm(m=2, k=20, n=nb + 1, lda=21, ldb=fast_ld(hw, 20), ldc=nb + 3, has_bias=1, mask=1,
       a=3, bias=2 * R + 5, dst=3 * R + 7)
    mm(m=2, k=8, n=0, lda=8, ldb=8, ldc=8, has_bias=1)      # N = 0: completes at once
    return out


def random_mm(rng, hw, regs) -> Instr:
    """An MM whose operands and result lie in disjoint regions of the first 5*REGION elements."""
    w, lanes = hw.mpu.width, hw.mpu.lanes
    rk, rn = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    regs[REG_RK], regs[REG_RN] = rk, rn
    m = int(rng.integers(1, 5))
    k = int(rng.choice([0, 1, w - 1, w, w + 3, 2 * w + 5, int(rng.integers(0, 3 * w))]))
    k = max(0, k - rk) if rng.random() < 0.8 else k
    n = int(rng.integers(1, 2 * lanes + 3))
    K, N = k + rk, n + rn
    batch = int(rng.integers(1, 4))
    lda = K + int(rng.integers(0, 4))
    r = rng.random()
    if r < 0.1:
        ldb = 0
    elif r < 0.25:
        ldb = fast_ld(hw, K) + w * lanes * int(rng.integers(0, 2))
    elif r < 0.4:
        ldb = odd_ld(hw, K) + 2 * w * int(rng.integers(0, 3))
    else:
        ldb = K + int(rng.integers(0, 4))
    ldc = N + int(rng.integers(0, 4))
    bsa = m * lda + int(rng.integers(0, 8))
    bsb = max(N * ldb, 1) + int(rng.integers(0, 8))
    if r < 0.4 and rng.random() < 0.7:
        bsb = -(-bsb // w) * w
    bsc = m * ldc + int(rng.integers(0, 8))
    b = REGION + (int(rng.integers(0, 8)) * w if rng.random() < 0.5 else int(rng.integers(0, 64)))
    for used in (batch * bsa, batch * (bsb + K), N, batch * bsc):
        if used > REGION - 64:
            raise AssertionError(f"bench bug: region of {used} elements")
    return Instr.make("MM", a=int(rng.integers(0, 64)), b=b,
                      bias=2 * REGION + int(rng.integers(0, 64)),
                      dst=3 * REGION + int(rng.integers(0, 64)),
                      m=m, k=k, n=n, lda=lda, ldb=ldb, ldc=ldc, batch=batch,
                      bsa=bsa, bsb=bsb, bsc=bsc, rk=REG_RK, rn=REG_RN,
                      has_bias=int(rng.random() < 0.6), mask=int(rng.random() < 0.4))


def random_f16(rng, size) -> np.ndarray:
    """Mostly moderate values (long sums stay finite), some arbitrary bit patterns."""
    x = (rng.standard_normal(size) * 2.0).astype(np.float16).view(np.uint16)
    wild = rng.random(size) < 0.02
    x[wild] = rng.integers(0, 1 << 16, int(wild.sum()), dtype=np.uint16)
    return x


async def issue_back_to_back(dut, payloads: list[int], *, limit: int) -> tuple[list[int], list[int]]:
    """Hand ``payloads`` to ``dut.cmd`` one after the other, each as soon as the previous one is
    taken; the cycles (from the first handshake) of every handshake and every ``done`` pulse."""
    hs, dones = [], []
    dut.cmd__payload.value = payloads[0]
    dut.cmd__valid.value = 1
    while True:
        await RisingEdge(dut.clk)
        if int(dut.cmd__ready.value):
            break
    hs.append(0)
    cycle = 0
    nxt = 1
    if nxt < len(payloads):
        dut.cmd__payload.value = payloads[nxt]
    else:
        dut.cmd__valid.value = 0
    while len(dones) < len(payloads):
        await RisingEdge(dut.clk)
        cycle += 1
        if int(dut.done.value):
            dones.append(cycle)
        if nxt < len(payloads) and int(dut.cmd__ready.value):
            hs.append(cycle)
            nxt += 1
            if nxt < len(payloads):
                dut.cmd__payload.value = payloads[nxt]
            else:
                dut.cmd__valid.value = 0
        if cycle > limit:
            raise AssertionError(f"back-to-back MMs did not complete within {limit} cycles")
    return hs, dones


class Grants:
    """The line port's grants: all while ``exact``, else one refusal in five at random cycles.

    Not a fixed period: a slow-path lane may read only at its accumulator slot (cycle mod
    ``mpu.acc_latency``), so refusals every 5th cycle with ``acc_latency`` = 5 would refuse one
    slot forever (fpgpt/hw/mpu_engine.py, "Liveness")."""

    def __init__(self, seed: int):
        self.exact = True
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        return self

    def __next__(self) -> int:
        return 1 if self.exact else int(self.rng.random() >= 0.2)


@cocotb.test()
async def mpu_engine_matches_executor(dut):
    name = os.environ["MPU_PRESET"]       # a preset, or a HardwareConfig TOML file
    hw = load_config(name) if name.endswith(".toml") else load_preset(name)
    rng = np.random.default_rng(int(os.environ.get("MPU_SEED", "1")))
    n_rand = int(os.environ.get("MPU_N", "30"))
    n_exact = int(os.environ.get("MPU_EXACT", "20"))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.cmd__valid.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    sram = np.zeros(hw.buffers.sram_elements, np.uint16)
    grants = Grants(int(os.environ.get("MPU_SEED", "1")) + 1)
    counts = {"access": 0}
    cocotb.start_soon(line_port(dut, "line", sram, hw, grants, counts))
    cocotb.start_soon(bank_port(dut, "bank", sram, hw))

    machine = Machine(hw, 0)
    fixed = compiler_mms(hw, machine.regs)
    records, bad = [], []
    for t in range(len(fixed) + n_rand):
        grants.exact = t < len(fixed) + n_exact
        init = random_f16(rng, 5 * REGION)
        sram[:5 * REGION] = init
        machine.sram.view(np.uint16)[:5 * REGION] = init
        if t < len(fixed):
            ins, regs = fixed[t]
            for r, v in regs.items():
                machine.regs[r] = v
        else:
            ins = random_mm(rng, hw, machine.regs)
        f = capture(ins, machine.regs)
        run_stream(machine, Program(streams={"s": [ins, Instr.make("HALT")]}), "s")
        a0 = counts["access"]
        cycles = await issue_and_wait(dut, pack(f, "MM", Unit.MPU), idle=int(rng.integers(0, 3)),
                                      limit=500_000, what=f"MM {t}")
        accesses = counts["access"] - a0
        got, want = sram[:5 * REGION], machine.sram.view(np.uint16)[:5 * REGION]
        if not np.array_equal(got, want):
            diff = np.flatnonzero(got != want)
            bad.append({"i": t, "fields": f, "differ": int(diff.size),
                        "first": [int(diff[0]), int(got[diff[0]]), int(want[diff[0]])]})
        expect = engine_cycles(hw, f)
        if grants.exact and cycles != expect:
            bad.append({"i": t, "fields": f, "rtl_cycles": cycles, "engine_cycles": expect})
        records.append({"m": f["m"], "k": f["k"] + f["rk"], "n": f["n"] + f["rn"],
                        "batch": f["batch"], "has_bias": f["has_bias"], "mask": f["mask"],
                        "ldb": f["ldb"], "fast": fast_b_layout(hw, f), "exact": grants.exact,
                        "compiler": t < len(fixed), "rtl_cycles": cycles,
                        "engine_cycles": expect, "model_cycles": mpu_cycles(hw, f),
                        "line_accesses": accesses,
                        "model_line_accesses": port_b_accesses(hw, "MM", f)})
    # Back to back: independent MMs handed over as soon as the engine takes them (every grant):
    # the next one starts engine_issue_cycles after the previous one, each completes (done, in
    # order) engine_cycles after its own handshake, and both results are exact.
    grants.exact = True
    pairs = []
    n_pairs = int(os.environ.get("MPU_PAIRS", "0"))
    for t in range(n_pairs):
        init = random_f16(rng, 5 * REGION)
        sram[:5 * REGION] = init
        machine.sram.view(np.uint16)[:5 * REGION] = init
        seq = []
        for x in range(3):
            if t < len(fixed) and x == 1:
                ins, regs = fixed[(t + 3) % len(fixed)]
                for r, v in regs.items():
                    machine.regs[r] = v
            else:
                ins = random_mm(rng, hw, machine.regs)
            # the three write disjoint regions and none reads another's result
            ins = ins.replace(dst=ins["dst"] + x * (REGION // 3)) if x else ins
            f = capture(ins, machine.regs)
            run_stream(machine, Program(streams={"s": [ins, Instr.make("HALT")]}), "s")
            seq.append(f)
        hs, dones = await issue_back_to_back(dut, [pack(f, "MM", Unit.MPU) for f in seq],
                                             limit=500_000)
        got, want = sram[:5 * REGION], machine.sram.view(np.uint16)[:5 * REGION]
        rec = {"i": t, "fields": seq, "handshakes": hs, "dones": dones,
               "issue": [engine_issue_cycles(hw, f) for f in seq],
               "cycles": [engine_cycles(hw, f) for f in seq],
               "fast": [fast_b_layout(hw, f) for f in seq], "exact": bool(np.array_equal(got, want))}
        pairs.append(rec)
        if not rec["exact"]:
            bad.append({"pair": t, "differ": int(np.count_nonzero(got != want))})
        # (an empty MM waits for the earlier MMs' writes: its start says nothing of its issue;
        # done pulses a cycle before the dispatcher counts it, as in issue_and_wait; an earlier
        # MM's writes may wait for the next one's line reads)
        for x in range(len(seq)):
            late = dones[x] + 1 - hs[x] - rec["cycles"][x]
            if (x + 1 < len(seq) and rec["cycles"][x] != 3
                    and hs[x + 1] - hs[x] != rec["issue"][x]) or late < 0 \
                    or (x + 1 == len(seq) and late):
                bad.append({"pair": t, "handshakes": hs, "dones": dones, "issue": rec["issue"],
                            "cycles": rec["cycles"]})
                break
    if os.environ.get("MPU_STATS"):
        with open(os.environ["MPU_STATS"], "w") as fh:
            json.dump({"instructions": len(records), "mismatches": bad, "records": records,
                       "pairs": pairs}, fh)
    assert not bad, f"{len(bad)} of {len(records)} MMs differ: {bad[:3]}"
