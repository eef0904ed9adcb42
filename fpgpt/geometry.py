"""The scratchpad and HBM geometry every part of fpgpt shares, derived from HardwareConfig.

The compiler lays data out by these rules, the RTL (fpgpt.hw) builds its fast paths on them and
the timing model (fpgpt.sim.costs) charges by them; they are written here once (docs/rtl.md, "The
wide scratchpad"). A *chunk* is ``mpu.width`` consecutive scratchpad elements, one bank per MPU
lane holds every ``mpu.lanes``-th chunk, a *line* is ``mpu.lanes`` chunks; a *stripe* is one AXI
beat from every HBM channel at one channel-local address.
"""

from __future__ import annotations

import math

from .config import HardwareConfig

__all__ = ["allgather_steps", "chunk_elements", "bank_count", "line_elements", "b_stride",
           "mm_fast_b", "mm_entry_groups", "mm_entries", "weight_stride", "weight_run_rows",
           "vpu_window_chunks", "stripe_elements", "stripes_ok", "dma_stripe_aligned",
           "ring_stream_bits", "ring_group_elements", "VPU_SUMMING_PASSES", "VPU_GROUPED_REDUCING_PASSES",
           "VPU_SPECIAL_PASSES", "VPU_CONVERT_LATENCY", "vpu_group_rows"]


#: Passes per row in which the VPU's lanes sum their results, by op (LAYERNORM: the sum and
#: the variance; SOFTMAX: the exp-sum): fpgpt/hw/vpu.py's ``SUMMING_MODES``, whose rows drain
#: the lanes' accumulator rings in ``vpu.acc_latency`` cycles; fpgpt.sim.costs charges them.
VPU_SUMMING_PASSES = {"LAYERNORM": 2, "SOFTMAX": 1}

#: Passes per row that need the special functions, by op (GELU; SOFTMAX: the exp-sum, whose
#: exponentials the output pass reads back from the VPU's exp buffer): only
#: ``vpu.special_lanes`` lanes have them, so these passes take each beat in
#: ``vpu.special_ratio`` sub-beats (fpgpt/hw/vpu.py, "Special lanes"); fpgpt.sim.costs charges
#: them.
VPU_SPECIAL_PASSES = {"GELU": 1, "SOFTMAX": 1}

#: Registers in the VPU lane's chain of LAYERNORM's first pass and of ARGMAX, which only
#: convert FP16 -> FP32 (fpgpt/hw/vpu_lane.py ``chain_latency``): 2, so that the path from
#: the VPU's row buffer (a BRAM read) through the operand select and the conversion has two
#: stages to retime over (u280 with the lanes stitched in: 204.1 MHz with 1, 211.2 with 2;
#: docs/rtl-clock.md, "Session 22"); fpgpt.sim.costs charges them.
VPU_CONVERT_LATENCY = 2

#: The ops whose VPU command runs a group of rows pass by pass (``vpu_group_rows``), with the
#: passes per row that reduce the lanes' results (LAYERNORM: sum, variance; SOFTMAX: maximum,
#: exp-sum): fpgpt/hw/vpu.py leaves one cycle free after a row's last beat in each of them to
#: capture and reset the accumulators, which fpgpt.sim.costs charges per row boundary.
VPU_GROUPED_REDUCING_PASSES = {"LAYERNORM": 2, "SOFTMAX": 2}


def chunk_elements(hw: HardwareConfig) -> int:
    """``C``: elements of one chunk, what one MPU lane reduces per cycle (``mpu.width``)."""
    return hw.mpu.width


def bank_count(hw: HardwareConfig) -> int:
    """``NB``: scratchpad banks, one per MPU lane (``mpu.lanes``)."""
    return hw.mpu.lanes


def line_elements(hw: HardwareConfig) -> int:
    """``P = C·NB``: elements one line access of the scratchpad moves."""
    return chunk_elements(hw) * bank_count(hw)


def mm_entry_groups(hw: HardwareConfig) -> int:
    """``Q``: lane groups of an MM whose results the MPU engine writes with one masked line write,
    and whose biases it reads with one line read: the groups of a super-group (``D =
    mpu.acc_latency``, the groups that take a chunk step together), as many as fit a line from
    any element offset of a chunk (``Q·lanes + C - 1 <= P``; u280 and tiny: all 5)."""
    c, p, lanes = chunk_elements(hw), line_elements(hw), hw.mpu.lanes
    return max(1, min(hw.mpu.acc_latency, (p - c + 1) // lanes))


def mm_entries(hw: HardwareConfig, groups: int) -> int:
    """Result line writes (and bias line reads) of one row of ``groups`` lane groups on the MPU
    engine's fast B path: super-groups of ``D = mpu.acc_latency`` groups, each written (and its
    biases read) :func:`mm_entry_groups` groups at a time."""
    d, q = hw.mpu.acc_latency, mm_entry_groups(hw)
    return groups // d * -(-d // q) + -(-(groups % d) // q)


def b_stride(n: int, hw: HardwareConfig) -> int:
    """A row stride ``>= n`` that :func:`mm_fast_b` accepts: the smallest multiple of ``C``
    whose chunk count is 1 mod ``NB`` (what the compiler gives the attention's B operands; the
    weights take :func:`weight_stride`, the smallest chunk count that is 1 mod ``NB/2``)."""
    c, nb = chunk_elements(hw), bank_count(hw)
    chunks = -(-n // c)
    chunks += (1 - chunks) % nb
    return chunks * c


def weight_stride(k: int, hw: HardwareConfig) -> int:
    """Row stride of a weight chunk's ``K``-element rows in its scratchpad slot: the smallest
    multiple of ``C`` ``>= k`` whose chunk count :func:`mm_fast_b` accepts, 1 mod ``NB/2``
    (session 19: the MPU engine rotates its odd lanes' chunks apart from its even lanes').
    GPT-2 XL's ``K = 1,600`` (25 chunks, 9 mod 16) is its own stride on u280, so a chunk of its
    rows is one contiguous run in HBM and in the slot (:func:`weight_run_rows`); with
    :func:`b_stride`'s rule (1 mod ``NB``) the rows were 2,112 elements apart."""
    c = chunk_elements(hw)
    chunks = max(1, -(-k // c))
    while not _fast_stride(chunks, bank_count(hw)):
        chunks += 1
    return chunks * c


def _fast_stride(s: int, nb: int) -> bool:
    """Whether lanes ``l = 0..nb-1`` at chunks ``q0 + l·s`` lie in distinct banks the way the
    MPU engine reads them: one rotation for the even lanes, one for the odd, so ``s = 1 (mod
    nb/2)`` (odd, for two banks; anything, for one)."""
    if nb == 1:
        return s > 0
    if nb == 2:
        return s % 2 == 1
    return s % (nb // 2) == 1


def weight_run_rows(k: int, hw: HardwareConfig) -> int:
    """Rows of a weight ``W^T [N, K]`` that the DMA moves as one run of whole stripes: the
    fewest rows whose ``2K`` bytes each add up to a whole number of stripes, when the rows are
    dense in HBM (pitch ``2K``) and in the slot (:func:`weight_stride` ``== K``) and the run
    fits a LOAD's 16-bit ``cols``; 0 otherwise (rows of whole stripes already, or a padded
    slot stride, or no stripe path). GPT-2 XL: 16 rows of 1,600 = 25 stripes on u280, where
    one row at a time touched 2 stripes for 1.56 of data (docs/compiler.md, session 19)."""
    if not stripes_ok(hw) or k <= 0 or weight_stride(k, hw) != k:
        return 0
    s = 2 * stripe_elements(hw)                 # bytes of a stripe
    if (2 * k) % s == 0:
        return 0
    rows = s // math.gcd(2 * k, s)
    return rows if rows * k < 1 << 16 else 0


def mm_fast_b(hw: HardwareConfig, f: dict[str, int]) -> bool:
    """Whether an MM's B lanes' chunks lie in distinct banks, one bank read per chunk step:
    ``b``, ``ldb`` (and ``bsb`` when ``batch > 1``) multiples of ``C`` and ``ldb / C = 1 (mod
    NB/2)`` (lane ``l``'s bank ``q0 + l·ldb/C``: the even lanes one rotation of the banks, the
    odd lanes another, ``NB/2`` apart when ``ldb/C = 1 + NB/2``; :func:`_fast_stride`).
    ``f``: captured fields."""
    c, nb = chunk_elements(hw), bank_count(hw)
    ldb = f["ldb"]
    return (f["b"] % c == 0 and ldb % c == 0 and ldb > 0 and _fast_stride(ldb // c, nb)
            and (max(f["batch"], 1) <= 1 or f["bsb"] % c == 0))


def vpu_group_rows(hw: HardwareConfig, beats: int) -> int:
    """Rows of ``beats`` beats each that one VPU command of LAYERNORM / SOFTMAX runs pass by pass
    (a *group*): ``vpu.buffer_beats >> ceil(log2 beats)``, at least 1. A power of two rather
    than ``buffer_beats // beats`` so that the VPU engine needs no divider (a priority test on
    ``beats``); it fills at least half the buffer."""
    b = hw.vpu.buffer_beats
    return max(1, b >> max(0, int(beats) - 1).bit_length())


def vpu_window_chunks(hw: HardwareConfig) -> int:
    """``K``: chunks of one VPU-engine operand window: four beats, at least two chunks (a beat
    may straddle two), at most a line."""
    c = chunk_elements(hw)
    return min(bank_count(hw), max(2, 4 * hw.vpu.width // c))


def stripe_elements(hw: HardwareConfig) -> int:
    """FP16 elements of one stripe (``channels × port_bits/8`` bytes)."""
    return hw.hbm.channels * hw.hbm.port_bits // 16


def stripes_ok(hw: HardwareConfig) -> bool:
    """Whether the DMA can move a stripe per cycle: HBM interleaved by one AXI beat, a stripe a
    whole number of chunks and at most a line."""
    h = hw.hbm
    e = stripe_elements(hw)
    return (h.interleave_bytes == h.port_bits // 8 and e % chunk_elements(hw) == 0
            and e <= line_elements(hw))


def dma_stripe_aligned(hw: HardwareConfig, op: str, f: dict[str, int]) -> bool:
    """Whether a captured LOAD/STORE/GATHER takes the DMA's stripe path: :func:`stripes_ok`, not
    transposed, every HBM byte address even and every row's HBM element address congruent to
    its scratchpad address mod ``C`` (LOAD/STORE: ``(hbm + ra·hstride)/2 ≡ sram``,
    ``hstride/2 ≡ sstride``, ``hbatch/2 ≡ sbatch`` when ``batch > 1``; GATHER: ``hbm/2 ≡ sram``,
    ``hstride/2 ≡ 0``, ``sstride ≡ 0``)."""
    if not stripes_ok(hw) or f.get("transpose"):
        return False
    c = chunk_elements(hw)
    if op == "GATHER":
        return (f["hbm"] % 2 == 0 and f["hstride"] % 2 == 0 and (f["hbm"] // 2 - f["sram"]) % c == 0
                and (f["hstride"] // 2) % c == 0 and f["sstride"] % c == 0)
    h0 = f["hbm"] + f["ra"] * f["hstride"]     # (the RTL wraps at 2**48: same residues)
    ok = h0 % 2 == 0 and f["hstride"] % 2 == 0 and (h0 // 2 - f["sram"]) % c == 0
    ok = ok and (f["hstride"] // 2 - f["sstride"]) % c == 0
    if f["batch"] > 1:
        ok = ok and f["hbatch"] % 2 == 0 and (f["hbatch"] // 2 - f["sbatch"]) % c == 0
    return ok


def ring_stream_bits(hw: HardwareConfig) -> int:
    """``tdata`` width of the NET unit's AXI4-Stream ring ports (fpgpt/hw/net.py).

    The smallest power of two that carries the link's payload rate (``link.payload_bytes_per_s``)
    in one core cycle (``clock_mhz``), at least 32 bits (one FP32 partial sum) and at most 512
    (the user interface of a 100G MAC / Aurora core, CMAC: 512 bits).
    """
    import math

    per_cycle = hw.link.payload_bytes_per_s * 8 / (hw.clock_mhz * 1e6)
    bits = 1 << max(0, math.ceil(math.log2(max(per_cycle, 1.0))))
    return min(512, max(32, bits))


def ring_group_elements(hw: HardwareConfig) -> int:
    """``G``: scratchpad elements the NET unit moves per port access on SEND / RECV / ALLGATHER:
    the slots of a ring beat (:func:`ring_stream_bits` / 16) or a line, whichever is fewer (both
    powers of two, so ``G`` divides ``C`` or ``C`` divides ``G``)."""
    return min(ring_stream_bits(hw) // 16, line_elements(hw))


def net_allreduce_add_stages(hw: HardwareConfig) -> int:
    """Registers after ALLREDUCE's FP32 adder in the NET unit: the configuration's latency of
    that operator (``f32_add``, the VPU's adder: ``vpu.add_latency``), at least 4 (its 10.47 ns
    between two registers, 11.25 ns, over 4 retimed stages is 2.8 ns: docs/rtl-clock.md)."""
    return max(4, hw.vpu.add_latency)


def net_allreduce_pipe(hw: HardwareConfig) -> int:
    """Registers an element crosses in ALLREDUCE's phase-1 pipeline (fpgpt/hw/net.py, derived
    from the RTL): the read queue's output and the partial sum (2), the adder's
    :func:`net_allreduce_add_stages`, the FP32 -> FP16 rounding's 2."""
    return 2 + net_allreduce_add_stages(hw) + 2


def allgather_steps(devices: int) -> int:
    """Steps of an ``ALLGATHER`` on a ring of ``devices`` cards, both directions at once:
    ``floor(D/2)`` = ``ceil((D-1)/2)`` (fpgpt/hw/net.py's ``nsteps``; ``costs`` charges each)."""
    return devices // 2
