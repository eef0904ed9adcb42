"""How long each unit is busy with one instruction: durations from its shape and the config.

Every number comes from :class:`~fpgpt.config.HardwareConfig`; the only structure stated here is
*which* pipelines an operation passes through (docs/timing.md). DMA time is not here: it comes
from the HBM model (:mod:`fpgpt.sim.hbm`) and, as a lower bound, from the DMA engine's own
cycles (:func:`dma_cycles`). All results are in core clock cycles; each
instruction costs at least one cycle.

Functions take ``f``, an instruction's fields with register fields replaced by register values
(:func:`fpgpt.sim.control.capture`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..geometry import (VPU_CONVERT_LATENCY, VPU_GROUPED_REDUCING_PASSES, VPU_SPECIAL_PASSES,
                        VPU_SUMMING_PASSES,
                        allgather_steps, dma_stripe_aligned,
                        line_elements, mm_entries, mm_fast_b, net_allreduce_pipe,
                        ring_group_elements, stripe_elements,
                        vpu_group_rows, vpu_window_chunks)
from ..isa.operands import operands

if TYPE_CHECKING:
    from ..config import HardwareConfig

__all__ = ["mpu_cycles", "mpu_issue_cycles", "vpu_cycles", "net_cycles", "net_engine_cycles",
           "dma_cycles",
           "VPU_PASSES", "port_b_accesses", "dma_port_b", "EVENT_KEYS", "instr_events",
           "link_bytes", "net_allreduce_pipe"]

#: Passes over the data each VPU operation makes (one element per lane per cycle per pass):
#: LayerNorm sums, then accumulates squared deviations, then normalises; softmax finds the
#: maximum, then sums exponentials, then normalises.
VPU_PASSES = {"VADD": 1, "VMUL": 1, "VCOPY": 1, "GELU": 1, "LAYERNORM": 3, "SOFTMAX": 3,
              "ARGMAX": 1}
#: Cycles a row boundary inside a group of LAYERNORM / SOFTMAX rows costs with one-register
#: accumulators: one in each reducing pass (geometry.VPU_GROUPED_REDUCING_PASSES), where the VPU
#: leaves a cycle free after a row's last beat to capture and reset its lane accumulators
#: (fpgpt/hw/vpu.py); a summing pass leaves ``vpu.acc_latency`` (its rings drain), so
#: :func:`vpu_cycles` adds ``acc_latency - 1`` for each of VPU_SUMMING_PASSES.
VPU_ROW_GAP = dict(VPU_GROUPED_REDUCING_PASSES)


def mpu_cycles(hw: "HardwareConfig", f: dict[str, int]) -> float:
    """MM on the MPU engine (fpgpt/hw/mpu_engine.py), cycle for cycle.

    Per row of A (``rows = batch·m``): its ``nA`` line reads into the A-row buffer plus one
    cycle, then the ``G = ⌈N/lanes⌉`` lane groups over the ``nk = ⌈K/width⌉`` chunk steps.
    Each lane's accumulator is pipelined over ``D = mpu.acc_latency`` registers: a column's
    next chunk enters ``D`` cycles (or a multiple) after its previous one, so the engine
    interleaves up to ``D`` groups (a *super-group*), one chunk step per cycle when B's layout
    is bank-conflict-free (``geometry.mm_fast_b``; the compiler lays B out so): ``(nk-1)·D +
    g`` cycles per super-group of ``g`` groups (with fewer than ``D`` groups the steps are
    padded to ``D``); with ``nk = 1`` one cycle per group, and one per bias line read (one per
    :func:`~fpgpt.geometry.mm_entry_groups` groups of a super-group: :func:`mm_entries`).
    Otherwise B reaches one lane per cycle: per group ``nl`` lanes per chunk step, each step but
    the last rounded up to a multiple of ``D``, plus a bias read and a write cycle. Then the
    lanes' pipeline (``mpu.pipeline_cycles``) once, and start/finish cycles. Measured equal to
    the RTL for every MM of the Verilator bench (tests/rtl/test_hw_mpu_engine.py);
    tests/rtl/test_hw_calibration.py checks this function against the engine's own formula.
    """
    p = hw.mpu
    k, n, rows, nk = _mm_shape(hw, f)
    if rows == 0 or n == 0:
        return 3.0
    d = p.acc_latency
    groups = -(-n // p.lanes)
    hb = 1 if f["has_bias"] else 0
    load = max(_a_lines(hw, f, k), 1) + 1
    if mm_fast_b(hw, f):
        steps = (groups + hb * mm_entries(hw, groups) if nk == 1
                 else (nk - 1) * d * -(-groups // d) + groups)
        per_row, last = load + steps, 0
    else:
        nl_last = n - (groups - 1) * p.lanes
        pad = ((groups - 1) * -(-p.lanes // d) + -(-nl_last // d)) * (nk - 1) * d
        per_row, last = load + groups * (hb + 1) + n + pad, -1
    return float(2 + rows * per_row + last + p.pipeline_cycles + 3)


def mpu_issue_cycles(hw: "HardwareConfig", f: dict[str, int]) -> float:
    """Cycles after an MM's start at which the MPU engine takes the next MM: once its last
    group's last chunk has issued, before the lanes' pipeline and the result writer have drained
    (fpgpt/hw/mpu_engine.py ``engine_issue_cycles``, measured on the RTL): :func:`mpu_cycles`
    less ``mpu.pipeline_cycles + 3`` on the fast B path, ``+ 2`` on the slow one; all of it for
    an empty MM (it completes after the earlier MMs, in order). The MM still completes
    :func:`mpu_cycles` after its start, so a dependent instruction waits for the drain; an
    independent MM overlaps it (docs/timing.md)."""
    cyc = mpu_cycles(hw, f)
    _, n, rows, _ = _mm_shape(hw, f)
    if rows == 0 or n == 0:
        return cyc
    return cyc - hw.mpu.pipeline_cycles - (3 if mm_fast_b(hw, f) else 2)


def _mm_shape(hw: "HardwareConfig", f: dict[str, int]) -> tuple[int, int, int, int]:
    """An MM's reduction length K, output width N, rows of A (``batch·m``) and chunk steps
    ``⌈K/width⌉`` (at least one), with the register-extended sizes."""
    k, n = f["k"] + f["rk"], f["n"] + f["rn"]
    return k, n, max(f["batch"], 1) * f["m"], max(1, -(-k // hw.mpu.width))


def _a_lines(hw: "HardwareConfig", f: dict[str, int], k: int) -> int:
    """Line reads of one A row of an MM: enough for any row offset unless A is chunk-aligned."""
    c, line = hw.mpu.width, hw.mpu.width * hw.mpu.lanes
    aligned = f["a"] % c == 0 and f["lda"] % c == 0 and (max(f["batch"], 1) <= 1
                                                          or f["bsa"] % c == 0)
    return -(-(k + (0 if aligned else c - 1)) // line) if k else 0


def _vpu_fill(hw: "HardwareConfig", op: str) -> int:
    """Cycles one VPU command costs beyond its beats: pipeline fill and its scalar phases (a row;
    LAYERNORM and SOFTMAX: a group of rows, the fill paid once per group).

    Calibrated from the RTL VPU (fpgpt/hw/vpu.py; tests/rtl/test_hw_vpu.py asserts these
    formulas on the tiny preset): a = add, mu = mul, s = the exp's latency, rc = the reciprocal's
    and rsqrt's (``vpu.recip_stages``), tree = the
    pairwise lane tree, cv = ``geometry.VPU_CONVERT_LATENCY``. LAYERNORM's first pass and
    ARGMAX have cv registers in the lanes' chains (their FP16 -> FP32 conversion's result). Every reducing pass's
    result then goes through one more lane register (``ysum`` for the sums, ``ymax`` for the
    maxima; ``vpu.mode_latency``), so that the VPU's adder rings and compares start at a
    register (docs/rtl-clock.md, "The VPU"): a cycle a pass row, LAYERNORM 2 (its sum and
    variance), SOFTMAX 2 (its maximum and exp-sum), ARGMAX 1. Each summing pass (LAYERNORM 2,
    SOFTMAX 1) adds ``k - 1`` cycles for its last row's drain beyond one and ``(k - 1) · a`` for
    the scalar phase's fold of the partials (``k = vpu.acc_latency``).
    """
    v = hw.vpu
    a, mu, s, cv = v.add_latency, v.mul_latency, v.special_latency, VPU_CONVERT_LATENCY
    rc = v.recip_stages                  # the reciprocal's and rsqrt's registers
    tree = (v.width.bit_length() - 1) * a
    fold = VPU_SUMMING_PASSES.get(op, 0) * (v.acc_latency - 1) * (1 + a)
    return fold + {
        "VADD": a + 2,
        "VMUL": mu + 2,
        "VCOPY": 2,
        "GELU": 5 * mu + 2 * a + s + rc + 2,
        "LAYERNORM": 2 * tree + 4 * a + 5 * mu + rc + cv + 10,
        "SOFTMAX": 2 * tree + 3 * mu + a + s + rc + 10,
        "ARGMAX": tree + cv + 5,
    }[op]


#: Cycles from the VPU engine's taking a LAYERNORM row's next-to-last operand window to its
#: having the next row's first windows of all three operands (a, gamma, beta: three reads and
#: their grants), which the VPU's last window of 1 or 2 beats and its rings' drain do not
#: cover: fitted to the engine's cycle model (tests/rtl/test_hw_calibration.py) on tiny, u280,
#: u55c and dfx, chunk-aligned rows.
LN_REFETCH = 6


def vpu_cycles(hw: "HardwareConfig", op: str, f: dict[str, int]) -> float:
    """A VPU instruction on the VPU engine (fpgpt/hw/vpu_engine.py), operands row-aligned.

    Per row: ``passes · ⌈cols/width⌉`` beats, a beat a cycle (the passes that need the special
    functions, geometry.VPU_SPECIAL_PASSES, a beat in ``vpu.special_ratio`` cycles); each
    summing pass's row (LAYERNORM's first two, SOFTMAX's second) then drains its lane accumulators, rings of
    ``k = vpu.acc_latency`` registers holding ``k`` partial sums, in ``k`` cycles
    (fpgpt/hw/vpu.py), and its scalar phase folds the partials (``k - 1`` adders). Per VPU
    command, the op's fill
    (:func:`_vpu_fill`) plus the two cycles the VPU takes after its last output before its next
    command: the element-wise ops and ARGMAX run one row a command; LAYERNORM and SOFTMAX a
    group of ``g = geometry.vpu_group_rows`` rows pass by pass (the last group the rest), whose
    row boundaries cost :data:`VPU_ROW_GAP` each (``k`` in a summing pass), and a LAYERNORM
    boundary ``LN_REFETCH - r - k`` more when the row's last operand window holds ``r`` = 1 or 2
    beats (the engine's reader then fetches the next row's first windows of its three operands,
    a, gamma, beta in that order, while the VPU has only those beats and its rings' drain to
    take; computed from row 0's alignment). Then one cycle of start and final line write,
    and the operands' first window reads that the VPU waits for (VADD/VMUL one, LAYERNORM two;
    one more each when there are several rows or the row is longer than one window of ``K·C``
    elements, ``K`` = the engine's window chunks). ARGMAX writes its register instead of a line
    (one cycle less).

    With every operand row starting at a multiple of ``vpu.width`` (the compiler's layouts) this
    equals the engine's own cycle model (asserted equal to the RTL in tests/rtl/
    test_hw_vpu_engine*.py) or falls one cycle short (about one shape in six: a window
    boundary inside a row); tests/rtl/test_hw_calibration.py checks that bound.
    """
    v = hw.vpu
    cols = f["cols"] + (0 if op == "LAYERNORM" else f.get("rc", 0))
    rows = 1 if op == "ARGMAX" else f.get("rows", 1)
    beats = -(-cols // v.width)
    if rows <= 0 or beats <= 0:
        return 1.0
    c = hw.mpu.width
    window = vpu_window_chunks(hw) * c
    first = {"VADD": 1, "VMUL": 1, "LAYERNORM": 2, "ARGMAX": -1}.get(op, 0)
    if op in ("VADD", "VMUL", "LAYERNORM") and (rows > 1 or cols > window):
        first += 2 if op == "LAYERNORM" else 1
    summing = VPU_SUMMING_PASSES.get(op, 0)
    per_row = (VPU_PASSES[op] + (v.special_ratio - 1) * VPU_SPECIAL_PASSES.get(op, 0)) * beats
    gap = VPU_ROW_GAP.get(op)
    if gap is None:
        return float(rows * (per_row + _vpu_fill(hw, op) + 2) + 1 + first)
    gap += (v.acc_latency - 1) * summing
    cmds = -(-rows // vpu_group_rows(hw, beats))
    if op == "LAYERNORM":
        a = f.get("a", 0)
        in_first = ((a // c + vpu_window_chunks(hw)) * c - a) // v.width   # beats, 1st window
        last = (beats - in_first) % (window // v.width) if beats > in_first else 0
        if last in (1, 2):          # the row's last window holds 1 or 2 beats
            gap += max(0, LN_REFETCH - last - v.acc_latency)
    return float(rows * per_row + (rows - cmds) * gap + cmds * (_vpu_fill(hw, op) + 2) + 1
                 + first)


def _link_busy_ns(hw: "HardwareConfig", nbytes: int) -> float:
    """Nanoseconds a link spends transferring ``nbytes``: payload rate plus per-packet cost
    (the hop latency is not busy time; ``fpgpt.sim.system.link_busy_ns``)."""
    lk = hw.link
    if nbytes <= 0:
        return 0.0
    packets = -(-nbytes // lk.packet_bytes)
    return nbytes / lk.payload_bytes_per_s * 1e9 + packets * lk.packet_overhead_ns


def _net_blocks(hw: "HardwareConfig", a: int, n: int) -> int:
    """G-aligned blocks a transfer of ``n`` elements at scratchpad address ``a`` touches."""
    g = ring_group_elements(hw)
    return (a % g + n + g - 1) // g


def _allgather_steps(hw: "HardwareConfig",
                     f: dict[str, int]) -> list[list[tuple[int, int, int, int]]]:
    """Per step of a bidirectional ALLGATHER (``floor(D/2)`` = ``ceil((D-1)/2)`` steps), per
    device ``(R, W, k_rw, k_w)``: the blocks it reads and writes (both directions together) and
    the step's constants, its port time ``R + W + k_rw`` and its writes' ``W + k_w`` (after the
    hop's latency on a ring).

    Step ``s`` sends chunk ``(d-s) mod D`` on ``tx_next`` and writes ``(d-s-1) mod D``; while
    ``s < floor((D-1)/2)`` it also sends ``(d+s) mod D`` on ``tx_prev`` and writes
    ``(d+s+1) mod D``: ``k_rw, k_w = 8, 9``. A step on ``tx_next`` alone: ``k_rw, k_w = 6, 8`` on
    two devices, ``8, 10`` after a step with both directions (the RTL's bounds,
    tests/rtl/test_hw_net.py ``test_cycle_cost``; ``k_w`` with link latency: the Verilog ring
    of tests/rtl/test_hw_ring.py)."""
    d, n, a = hw.devices, int(f["count"]), int(f.get("sram", 0))
    out = []
    for s in range(allgather_steps(d)):
        rw = []
        for i in range(d):
            r = _net_blocks(hw, a + ((i - s) % d) * n, n)
            w = _net_blocks(hw, a + ((i - s - 1) % d) * n, n)
            if s < (d - 1) // 2:
                r += _net_blocks(hw, a + ((i + s) % d) * n, n)
                w += _net_blocks(hw, a + ((i + s + 1) % d) * n, n)
                rw.append((r, w, 8, 9))
            else:
                rw.append((r, w, 8, 10) if d > 2 else (r, w, 6, 8))
        out.append(rw)
    return out


def net_engine_cycles(hw: "HardwareConfig", op: str, f: dict[str, int]) -> float:
    """The NET unit's own cycles on an idle ring of zero-latency links (fpgpt/hw/net.py
    ``engine_cycles``, the same formula; tests/rtl/test_hw_calibration.py compares them).

    SEND, RECV, ALLGATHER move ``G`` elements per scratchpad access
    (:func:`~fpgpt.geometry.ring_group_elements`); a transfer of ``n`` elements at ``a`` touches
    ``B(a, n) = ⌈(a mod G + n)/G⌉`` G-aligned blocks. SEND ``8 + ⌈n/G⌉``; RECV ``9 + B``;
    ALLGATHER ``1 + Σ_steps max_devices max(W + k_w, R + W + k_rw)`` over its ``floor(D/2)``
    steps (``R``/``W`` blocks read and written in both directions, the constants of
    :func:`_allgather_steps`); ALLREDUCE (an element per cycle, through a pipeline of
    :func:`net_allreduce_pipe` registers on each device) ``3n + (10 + pipe)·D - 4``, at most
    16 cycles above the RTL; empty collectives 1."""
    d = hw.devices
    n = int(f["count"])
    if op in ("ALLGATHER", "ALLREDUCE") and (n == 0 or d <= 1):
        return 1.0
    if op == "SEND":
        return float(8 + -(-n // ring_group_elements(hw)))
    if op == "RECV":
        return float(9 + _net_blocks(hw, int(f.get("sram", 0)), n))
    if op == "ALLGATHER":
        return float(1 + sum(max(max(w + kw, r + w + krw) for r, w, krw, kw in step)
                             for step in _allgather_steps(hw, f)))
    if op == "ALLREDUCE":
        return float(3 * n + (10 + net_allreduce_pipe(hw)) * d - 4)
    raise ValueError(f"{op} is not a NET instruction")


def net_cycles(hw: "HardwareConfig", op: str, f: dict[str, int]) -> float:
    """NET on an idle ring (the partner is assumed ready; the multi-device system model adds
    waiting for it): the NET unit's own work and the links' time, concurrent
    (docs/multi-device.md, "The NET unit's rate").

    Data cannot leave faster than the unit reads them nor faster than the link carries them,
    and every hop's data wait ``L`` = ``link.latency_ns`` on the wire before the receiver can
    write them; ``busy`` = :func:`_link_busy_ns` in cycles (payload rate and packet cost),
    ``R``/``W`` blocks read/written (:func:`net_engine_cycles`):

    - SEND ``L + max(⌈n/G⌉, busy(2n)) + 8``; RECV ``L + max(W, busy(2n)) + 9`` (the system
      model completes a pair at the later of the two);
    - ALLGATHER (``floor(D/2)`` steps, both directions while ``s < floor((D-1)/2)``):
      ``1 + Σ_steps max_devices max(R + W + k_rw, L + max(W, busy(2n)) + k_w)`` (the port's work
      for both directions, or the hop's latency then the later of the receiver's writes and one
      link's transfer; the two links carry their hops at once; :func:`_allgather_steps`);
    - ALLREDUCE (the RTL's chain in device order, FP32 partial sums ``0 -> D-1`` then the FP16
      result ``D-1 -> 0 -> .. -> D-2``): ``2(D-1)·L + max(E, busy(4n) + busy(2n))``.

    With ``L = 0`` and idle links this is :func:`net_engine_cycles`.
    """
    if op not in ("SEND", "RECV", "ALLGATHER", "ALLREDUCE"):
        raise ValueError(f"{op} is not a NET instruction")
    n = int(f["count"])
    d = hw.devices
    eng = net_engine_cycles(hw, op, f)
    cyc = hw.clock_mhz / 1e3                        # cycles per ns
    lat = hw.link.latency_ns * cyc
    busy = _link_busy_ns(hw, 2 * n) * cyc
    if n == 0 or (d <= 1 and op in ("ALLGATHER", "ALLREDUCE")):
        total = eng
    elif op == "SEND":
        total = lat + max(eng - 8, busy) + 8
    elif op == "RECV":
        total = lat + max(eng - 9, busy) + 9
    elif op == "ALLGATHER":
        total = 1 + sum(max(max(r + w + krw, lat + max(w, busy) + kw) for r, w, krw, kw in step)
                        for step in _allgather_steps(hw, f))
    else:
        chain = (_link_busy_ns(hw, 4 * n) + _link_busy_ns(hw, 2 * n)) * cyc
        total = 2 * (d - 1) * lat + max(eng, chain)
    return max(1.0, math.ceil(total - 1e-9))


def dma_cycles(hw: "HardwareConfig", op: str, f: dict[str, int]) -> float:
    """The DMA engine's own cycles for one instruction (fpgpt/hw/dma.py ``engine_cycles``) with
    the memory answering ``hbm.latency_ns`` after a request and one beat per cycle per channel.

    Stripe path (LOAD/STORE/GATHER rows aligned as the compiler lays them out): one stripe of
    ``channels × beat`` bytes per cycle; element path (transposed transfers, other alignments):
    one element per cycle, plus one cycle per interleave piece for LOAD (a STORE overlaps its
    pieces: a transposed STORE's one-element pieces cost a cycle each). The timing model
    charges the later of this and the HBM model's completion (:mod:`fpgpt.sim.timing`). A
    GATHER is costed as if every index gave the first row's alignment (the timing model does not
    read data).

    The stripe and piece counts are summed in closed form over the rows' start addresses (an
    arithmetic progression, :func:`_spans`), so the cost of this function does not grow with
    the rows of a transfer; tests/test_sim_speed_golden.py checks it against the row-by-row walk.
    """
    lat = round(hw.hbm.latency_ns * hw.clock_mhz / 1e3)
    sb = 2 * stripe_elements(hw)         # bytes of a stripe
    g = hw.hbm.interleave_bytes          # bytes of an interleave piece

    def stripes(a: int, n: int) -> int:
        return (a + 2 * n - 1) // sb - a // sb + 1

    def pieces(a: int, n: int) -> int:
        return (a + 2 * n - 1) // g - a // g + 1

    if op == "STR":
        return float(lat + 8)
    if op == "GATHER":
        rows, n = f["rows"] + f["rr"], f["cols"]
        if rows == 0 or n == 0:
            return 3.0
        a = f["hbm"]
        if dma_stripe_aligned(hw, op, f):
            return float(3 + rows * (stripes(a, n) + 2 * lat + 6))
        return float(3 + rows * (n + pieces(a, n) + 2 * lat + 5))
    re, ce, batch = f["rows"] + f["rr"], f["cols"] + f["rc"], f["batch"]
    if re == 0 or ce == 0 or batch == 0:
        return 3.0
    # Runs: row r (column c when transposed) of block b starts at hb + b*hbatch + r*hstride
    # (+ 2*ra, resp. ra*hstride) and holds n elements: an arithmetic progression of starts.
    if f.get("transpose"):
        a0, n, count = f["hbm"] + 2 * f["ra"], re, ce
    else:
        a0, n, count = f["hbm"] + f["ra"] * f["hstride"], ce, re
    if dma_stripe_aligned(hw, op, f):
        s = _spans(a0, 2 * n, count, f["hstride"], batch, f["hbatch"], sb)
        return float(s + (lat + 4 if op == "LOAD" else lat + 7))
    e = n * count * batch
    if op == "STORE":
        return float(e + lat + 7)
    return float(e + _spans(a0, 2 * n, count, f["hstride"], batch, f["hbatch"], g) + lat + 3)


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*i + b) / m) for i in range(n))`` for ``a, b >= 0``, ``m >= 1``, in
    O(log m) steps (the Euclid-like reduction of the AtCoder Library's ``floor_sum``)."""
    total = 0
    while True:
        if a >= m:
            total += (n - 1) * n // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b, m, a = y_max // m, y_max % m, a, m


def _spans(a0: int, length: int, n: int, stride: int, batch: int, bstride: int, unit: int) -> int:
    """Aligned ``unit``-byte blocks touched, summed over runs of ``length`` bytes starting at
    ``a0 + b*bstride + i*stride`` (``i < n``, ``b < batch``): ``Σ (end-1)//unit - start//unit + 1``.

    Closed form per block (:func:`_floor_sum`), and blocks whose starts agree modulo ``unit``
    touch the same count, so at most ``min(batch, unit / gcd(bstride, unit))`` distinct
    residues are summed: the cost grows with neither rows nor bytes.
    """
    q = unit // math.gcd(bstride % unit, unit) if bstride % unit else 1
    total = 0
    step = stride % unit
    for b in range(min(batch, q)):
        reps = batch // q + (1 if b < batch % q else 0)
        start = (a0 + b * bstride) % unit
        total += reps * (_floor_sum(n, unit, step, start + length - 1)
                         - _floor_sum(n, unit, step, start) + n)
    return total


def port_b_accesses(hw: "HardwareConfig", op: str, f: dict[str, int]) -> int:
    """Scratchpad port-B accesses of one MPU, VPU or NET instruction (docs/timing.md, "Port B").

    The engines come before the DMA on port B (fpgpt/hw/top.py), so these never wait behind a
    transfer; each one that falls inside a DMA stripe transfer delays it by a cycle. MM: the
    A rows' line reads, then a bias line read and a result line write per entry of a row
    (:func:`~fpgpt.geometry.mm_entries`: up to a super-group's ``D`` lane groups each, all of it
    on u280; the slow B path: per lane group, plus its ``nk·N`` B line reads per row). VPU: per row, one line read per
    operand window of ``K·C`` elements and one masked line write per window of results. NET:
    one access per G-aligned block a SEND reads or a RECV writes, per step of an ALLGATHER the
    worst device's blocks read and written in both directions (:func:`net_engine_cycles`);
    ALLREDUCE one per
    element (``3·count``: the last device's read, write-back and re-read).
    """
    if op == "MM":
        p = hw.mpu
        k, n, rows, nk = _mm_shape(hw, f)
        if rows == 0 or n == 0:
            return 0
        groups, per = -(-n // p.lanes), 2 if f["has_bias"] else 1
        if mm_fast_b(hw, f):
            per_row = _a_lines(hw, f, k) + mm_entries(hw, groups) * per
        else:
            per_row = _a_lines(hw, f, k) + groups * per + nk * n
        return rows * per_row
    if op in VPU_PASSES:
        cols = f["cols"] + (0 if op == "LAYERNORM" else f.get("rc", 0))
        rows = 1 if op == "ARGMAX" else f.get("rows", 1)
        if rows <= 0 or cols <= 0:
            return 0
        windows = -(-cols // (vpu_window_chunks(hw) * hw.mpu.width))
        reads = {"VADD": 2, "VMUL": 2, "LAYERNORM": 3}.get(op, 1)
        writes = 0 if op == "ARGMAX" else 1
        return rows * windows * (reads + writes)
    n = int(f.get("count", 0))
    if n == 0:
        return 0
    if op == "ALLGATHER":
        return sum(r + w for r, w, _, _ in (max(step, key=lambda x: max(x[1] + x[3],
                                                                      x[0] + x[1] + x[2]))
                                             for step in _allgather_steps(hw, f)))
    if op == "ALLREDUCE":
        return 3 * n if hw.devices > 1 else 0
    return _net_blocks(hw, int(f.get("sram", 0)), n)


def dma_port_b(hw: "HardwareConfig", op: str, f: dict[str, int]) -> int:
    """Port-B accesses of one DMA instruction: a stripe each on the stripe path, an element
    each on the element path (what :func:`dma_cycles` counts)."""
    if op == "STR":
        return 0
    se = stripe_elements(hw)
    if op == "GATHER":
        rows, n = f["rows"] + f["rr"], f["cols"]
        per = -(-n // se) + 1 if dma_stripe_aligned(hw, op, f) else n + 1
        return rows * per
    re, ce, batch = f["rows"] + f["rr"], f["cols"] + f["rc"], f["batch"]
    n = re * ce * batch
    return -(-n // se) if dma_stripe_aligned(hw, op, f) else n


#: The events the timing model counts for the energy model (StreamTiming.events), in the order of
#: the vectors :func:`instr_events` returns. Definitions: :func:`instr_events`.
EVENT_KEYS = ("mpu_macs", "vpu_ops.VADD", "vpu_ops.VMUL", "vpu_ops.VCOPY", "vpu_ops.GELU",
              "vpu_ops.LAYERNORM", "vpu_ops.SOFTMAX", "vpu_ops.ARGMAX", "spad_read_bytes",
              "spad_write_bytes", "hbm_read_bytes", "hbm_write_bytes", "hbm_activations",
              "link_bytes")


def link_bytes(hw: "HardwareConfig", op: str, f: dict[str, int]) -> int:
    """Bytes one device sends onto its links for a NET instruction, as :func:`net_cycles` models
    the ring: SEND ``2·count``; ALLGATHER ``D-1`` hops of ``2·count`` (``ceil((D-1)/2)`` on
    ``tx_next``, the rest on ``tx_prev``); ALLREDUCE ``2(D-1)`` hops
    of ``2·⌈count/D⌉``; RECV sends nothing."""
    count, d = f["count"], hw.devices
    if op == "SEND":
        return 2 * count
    if op == "ALLGATHER":
        return (d - 1) * 2 * count
    if op == "ALLREDUCE":
        return 2 * (d - 1) * 2 * -(-count // d)
    return 0


def instr_events(hw: "HardwareConfig", op: str, f: dict[str, int],
                 ops: list | None = None) -> dict[str, float]:
    """Energy-relevant events of one MPU, VPU, NET or DMA instruction, the nonzero ones of
    :data:`EVENT_KEYS` (``f``: captured fields; ``ops``: its :func:`~fpgpt.isa.operands.operands`
    when the caller has them). ``hbm_activations`` is not here: it needs the HBM model's
    per-channel charge (:meth:`fpgpt.sim.hbm.HBMModel.activations`).

    - ``mpu_macs``: the multiply-accumulates the MPU engine performs, with the *padded* sizes it
      computes: ``rows × ⌈K/C⌉·C × ⌈N/lanes⌉·lanes`` on the fast B path (every lane of a group
      computes every chunk step, ``C`` = ``mpu.width``), ``rows × ⌈K/C⌉·C × N`` on the slow path
      (only the valid lanes are fed); ``rows = batch·m``.
    - ``vpu_ops.<OP>``: element operations, ``rows × cols × VPU_PASSES[OP]`` (unpadded; ARGMAX
      one row).
    - ``spad_read_bytes`` / ``spad_write_bytes``: scratchpad bytes read and written. Reads count
      whole accesses as the engines make them (docs/timing.md, "Scratchpad port B"): an MM's A-row line
      reads (``P = C·lanes`` elements each), its B chunks (one per lane and chunk step: two bytes
      per MAC) and a bias line per row and entry (:func:`~fpgpt.geometry.mm_entries`; slow B
      path: per lane group); a VPU row's operand windows
      (``vpu_window_chunks·C`` elements each, per operand: VADD/VMUL two, LAYERNORM three with
      gamma and beta, others one). Writes count the elements written (masked line writes): an
      MM's ``rows × N``, a VPU's ``rows × cols`` (ARGMAX writes a register). A LOAD/GATHER writes
      and a STORE reads its useful elements; NET reads and writes its scratchpad operands
      (:func:`fpgpt.isa.operands.operands`).
    - ``hbm_read_bytes`` / ``hbm_write_bytes``: useful HBM bytes each way (a GATHER's index
      words included; STR writes 4 bytes).
    - ``link_bytes``: :func:`link_bytes`.
    """
    if op == "MM":
        p = hw.mpu
        c = p.width
        k, n, rows, nk = _mm_shape(hw, f)
        if rows == 0 or n == 0:
            return {}
        groups = -(-n // p.lanes)
        cols = groups * p.lanes if mm_fast_b(hw, f) else n
        macs = rows * nk * c * cols
        line = line_elements(hw)
        bias_lines = mm_entries(hw, groups) if mm_fast_b(hw, f) else groups
        reads = rows * (_a_lines(hw, f, k) + (bias_lines if f["has_bias"] else 0)) * line
        return {"mpu_macs": macs, "spad_read_bytes": 2 * (reads + macs),
                "spad_write_bytes": 2 * rows * n}
    if op in VPU_PASSES:
        cols = f["cols"] + (0 if op == "LAYERNORM" else f.get("rc", 0))
        rows = 1 if op == "ARGMAX" else f.get("rows", 1)
        if rows <= 0 or cols <= 0:
            return {}
        wc = vpu_window_chunks(hw) * hw.mpu.width
        windows = -(-cols // wc)
        reads = {"VADD": 2, "VMUL": 2, "LAYERNORM": 3}.get(op, 1)
        ev = {"vpu_ops." + op: rows * cols * VPU_PASSES[op],
              "spad_read_bytes": 2 * rows * windows * reads * wc}
        if op != "ARGMAX":
            ev["spad_write_bytes"] = 2 * rows * cols
        return ev
    ev: dict[str, float] = {}
    for o in operands(op, f, devices=hw.devices) if ops is None else ops:
        if o.length <= 0 or o.rows <= 0:
            continue
        size = o.length * o.rows * max(o.batch, 1)
        if o.space == "H":
            key = "hbm_write_bytes" if o.write else "hbm_read_bytes"
        else:
            key, size = "spad_write_bytes" if o.write else "spad_read_bytes", 2 * size
        ev[key] = ev.get(key, 0) + size
    if op in ("SEND", "ALLGATHER", "ALLREDUCE"):
        ev["link_bytes"] = link_bytes(hw, op, f)
    return ev
