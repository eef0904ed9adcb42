"""The timing model's figures are pinned: cycles to the last digit, bytes and instruction counts.

GOLDEN was recorded from the timing model at commit 68094fb (before the DMA engine's cycles
became closed forms, issue 10 part 3): compile the model for the preset at the prompt length,
``simulate`` with the generation length, keep ``(prefill cycles, decode cycles, prefill
hbm_bytes, decode hbm_bytes, prefill instructions, decode instructions)``. The programs that
commit compiled and its presets are stored in tests/data/sim_golden/ (``<case>.fpgpt.gz``,
``<preset>.toml``), so that compiler and preset changes do not move these figures: only a change
of the timing model does, and that must be made on purpose (re-record, saying why).

Re-recorded for the MPU's pipelined accumulator (issue 10 part 1, a hardware change): each lane's
accumulator is C-slow over ``mpu.acc_latency`` = 5 registers, so an MM with fewer than 5 lane
groups left pads its chunk steps, and the lane pipeline is 4 cycles longer (e.g. gpt2@u280:32:16
prefill 5,085,260 -> 5,147,369 cycles, decode 4,316,411 -> 4,315,821; tiny@tiny:16:8 prefill
518,359 -> 540,559); bytes and instruction counts unchanged.

Re-recorded for the VPU's pipelined lane accumulators (issue 10 part 1, a hardware change): a
summing pass (LAYERNORM's sum and variance, SOFTMAX's exp-sum) took one beat every
``vpu.acc_latency`` cycles, the stored presets' default 2 (fpgpt/hw/vpu.py), so it costs 2 cycles
a beat where it cost 1 (e.g. gpt2@u280:32:16 prefill 5,147,369 -> 5,479,529 cycles, decode
4,315,821 -> 4,315,295; tiny@tiny:16:8 prefill 540,559 -> 545,199, decode 412,402 -> 412,626);
bytes and instruction counts unchanged.

Re-recorded for the VPU's LN_SUM and ARGMAX lane register (a hardware change, 2026-12-06): the
FP16 -> FP32 conversion of LAYERNORM's first pass and of ARGMAX now has a register in the lane
(``mode_latency`` 0 -> 1, fpgpt/hw/vpu.py), so that no path runs from a lane's input into the
VPU's adder ring or compare in one cycle; each LAYERNORM row and each ARGMAX costs one cycle more
(``costs._vpu_fill``) (e.g. gpt2@u280:32:16 prefill 5,479,529 -> 5,480,299 cycles, decode
4,315,295 -> 4,315,310; tiny@tiny:16:8 prefill 545,199 -> 545,329, decode 412,626 -> 412,640);
bytes and instruction counts unchanged.

And for the DMA's registered GATHER index (the same session, recorded again on both changes) (a hardware change, for the clock: the index
word, selected from every channel's beat, goes into a register before it is multiplied by
``hstride``, docs/rtl-clock.md): each GATHER row costs one cycle more (``costs.dma_cycles``:
``2·Lr + 5`` a stripe row, ``2·Lr + 4`` an element row). GATHER is only prefill's token
embedding, one row per prompt token: prefill grows by the prompt length (e.g. gpt2@u280:32:16
5,479,529 -> 5,479,561 cycles, tiny@tiny:16:8 545,199 -> 545,215; odd@u55c:13:9 by 0.14 only,
the 13 cycles mostly hidden there); decode has no GATHER and is unchanged; bytes and
instruction counts unchanged. Recorded on both changes together: gpt2@u280:32:16
prefill 5,480,299 -> 5,480,362.39 (the two interact there through the HBM model's timeline),
the other cases by exactly their prompt length.

Re-recorded for the VPU lanes' reducing-result registers (a hardware change, for the clock,
2026-12-06): a reducing pass's lane result goes through one more lane register after its chain,
``ysum`` (LAYERNORM's sum and variance, SOFTMAX's exp-sum, into the adder rings) or ``ymax``
(SOFTMAX's maximum and ARGMAX, into the compares), each loaded by its own select, so that the
paths from the lanes into the VPU's adders and compares start at a register (``mode_latency``
+1 for those passes, fpgpt/hw/vpu.py; docs/rtl-clock.md). Each LAYERNORM row and each SOFTMAX
row costs 2 cycles more, each ARGMAX 1 (``costs._vpu_fill``) (e.g. gpt2@u280:32:16 prefill
5,480,362.39 -> 5,491,085.72 cycles, decode 4,315,309.79 -> 4,316,515.04; tiny@tiny:16:8 prefill
545,345 -> 546,116, decode 412,640.00 -> 412,661.10; gpt2@u55c:32:16 decode 4,135,619.47 ->
4,135,535.19, 84 cycles fewer: the HBM model's timeline shifts); bytes and instruction counts
unchanged. The stored presets pin ``special_latency`` 24, so the presets' new latency does not
move these figures.

Re-recorded for the VPU's groups of rows (a hardware change, 2026-12-06): LAYERNORM and SOFTMAX
run up to ``geometry.vpu_group_rows`` rows per VPU command pass by pass (fpgpt/hw/vpu.py), so
the pipeline fill and scalar phases (``costs._vpu_fill``) are paid once a group instead of once
a row, and each row boundary inside a group costs 2 cycles (``costs.VPU_ROW_GAP``; LAYERNORM 2
more where a row's last operand window holds one beat). The stored presets take the default
``vpu.buffer_beats`` = 4096. E.g. gpt2@u280:32:16 prefill 5,491,085.72 -> 4,590,413.72 cycles,
decode 4,316,515.04 -> 4,316,460.61 (HBM-bound there); tiny@tiny:16:8 prefill 546,116 ->
476,228, decode 412,661.10 -> 412,635.99; toy@u280:7:9 decode 80,573.39 -> 72,304.39;
gpt2@u55c:32:16 decode 4,135,535.19 -> 4,136,780.09, 1,245 cycles more: the HBM model's
timeline shifts as the VPU finishes earlier; bytes and instruction counts unchanged.

Re-recorded for the VPU's C-slow sums (a hardware change, 2026-12-06, session 12): each lane's
adder ring of ``vpu.acc_latency`` registers holds that many interleaved partial sums, so a
summing pass takes a beat a cycle instead of one every ``acc_latency`` cycles; a summing row then
drains its rings (``acc_latency`` cycles at its end) and the scalar phase folds the partials
(``acc_latency - 1`` adders, ``costs._vpu_fill``) (numerics.vsum's ``partials``: the sums' bits
change, docs/numerics.md). E.g. gpt2@u280:32:16 prefill 4,590,413.72 -> 4,265,609.72 cycles
(decode unchanged, HBM-bound); tiny@u280:16:8 decode 150,325.78 -> 147,579.78; tiny@tiny:16:8
prefill 476,228 -> 472,344. Short rows pay more than they save where the stored preset's ring is
3 (dfx: toy@dfx:7:9 decode 67,800.89 -> 68,776.89, +1.4 %: the fold's two adders on rows of a few
beats) and on tiny's micro decode (71,383.34 -> 71,551.37, +0.24 %); bytes and instruction counts
unchanged.

Re-recorded for the MPU engine's overlapping MMs (a hardware change, 2026-12-06, session 13): the
engine takes its next MM once the previous one's last chunk has issued, its lanes' pipeline and
result writer draining under the next one, which completes in order
(``costs.mpu_issue_cycles``; a dependent instruction still waits for the completion). E.g.
tiny@tiny:16:8 prefill 472,344 -> 472,285 cycles, decode 412,580.41 -> 412,167.41;
toy@dfx:7:9 decode 68,776.89 -> 67,304.89; gpt2@u280:32:16 decode 4,316,460.61 ->
4,315,677.27 (HBM-bound); gpt2@dfx:32:16 decode 3,969,892.52 -> 3,970,019.17, 127 cycles more: the
HBM model's timeline shifts as the MMs start earlier; micro@tiny and the u280 toy / odd / tiny
programs unchanged (no two independent MMs back to back there); bytes and instruction counts
unchanged.

Re-recorded for the MPU engine's result entries (a hardware change, 2026-12-07, session 19): the
engine writes a super-group's results (``mpu.acc_latency`` lane groups, ``geometry.mm_entry_groups``)
with one masked line write and reads their biases with one line read, where it took the line
port (port B) twice per lane group; a DMA transfer beside an MM waits for fewer port-B cycles
(``costs.port_b_accesses``), and an MM of one chunk step with a bias saves a cycle per group but
one a super-group (``costs.mpu_cycles``). E.g. gpt2@u280:32:16 decode 4,315,677.27 ->
4,244,955.61 cycles (-1.6 %), gpt2@dfx:32:16 3,970,019.17 -> 3,884,356.42 (-2.2 %),
tiny@tiny:16:8 412,167.41 -> 398,525.77 (-3.3 %); micro@u280:16:8 prefill 26,214.39 ->
25,446.39; the toy programs and tiny@u280 unchanged (no MM beside a transfer); bytes and
instruction counts unchanged.

Re-recorded for the VPU's second conversion register (a hardware change, for the 165 MHz
clock, 2026-12-07, session 23; measured in session 22): LAYERNORM's first pass and ARGMAX
convert FP16 -> FP32 over ``geometry.VPU_CONVERT_LATENCY`` = 2 lane registers instead of 1, so
that the path from the VPU's row buffer (a BRAM read) through the operand select and the
conversion has two stages (u280 with the lanes stitched in 204.1 -> 211.2 MHz, docs/rtl-clock.md
"Session 22"). Each LAYERNORM command (a group of rows) and each ARGMAX costs one cycle more
(``costs._vpu_fill``), e.g. gpt2@u280:32:16 prefill 4,264,347.07 -> 4,264,397.07 cycles, decode
4,244,955.61 -> 4,244,956.61; tiny@tiny:16:8 prefill 472,285 -> 472,295, decode 398,525.77 ->
398,539.76; odd@u280:13:9 prefill unchanged (hidden); bytes and instruction counts unchanged.
(The golden presets in tests/data/sim_golden/ are frozen copies, so the u280 preset's own 165
MHz and VPU latencies do not move these figures.)

Re-recorded for the DMA's second GATHER product register (a hardware change, for the 170 MHz
clock, 2026-12-08, session 24): a GATHER row's ``index * hstride`` goes through two registers
instead of one, so that retiming may spread the multiply (u280 DMA 210.1 -> 223.3 MHz retimed,
docs/rtl-clock.md "Session 24"), and each GATHER row costs one cycle more (``costs.dma_cycles``:
``2·Lr + 6`` a stripe row, ``2·Lr + 5`` an element row). GATHER is only prefill's token
embedding, one row per prompt token: prefill grows by the prompt length (e.g. gpt2@u280:32:16
4,264,397.07 -> 4,264,429.07 cycles, tiny@tiny:16:8 472,295 -> 472,311, odd@u55c:13:9 by 13;
odd@u280 unchanged, hidden); decode, bytes and instruction counts unchanged.

Re-recorded for the VPU's exp buffer (a hardware change, 2026-12-08, session 25): SOFTMAX's
exp-sum pass keeps each exponential it adds, and the output pass multiplies those by 1/sum on
every lane at a beat a cycle instead of computing each exp again on the special lanes at
``vpu.special_ratio`` cycles a beat (``geometry.VPU_SPECIAL_PASSES`` SOFTMAX 2 -> 1; the fill
``a + s`` shorter, ``costs._vpu_fill``; the same bits). Every SOFTMAX is shorter: e.g.
gpt2@u280:32:16 prefill 4,264,429.07 -> 4,263,937.07 cycles; tiny@tiny:16:8 prefill 472,311 ->
472,147, decode 398,539.76 -> 398,533.56 (gpt2@u280's decode unchanged: its softmax is
hidden); bytes and instruction counts unchanged.

The programs cover the DMA engine's stripe path (u280/dfx/u55c/tiny weight and K/V loads), the
element path (the ``odd`` shapes: rows not a whole number of chunks), transposed stores (V^T),
GATHER (token embeddings, on both paths), register-dependent shapes (K/V lengths that grow
every token) and balanced and unbalanced HBM demands. ``toy`` and ``odd`` are
``ModelSpec("toy", n_layer=2, n_head=4, d_model=128, d_ff=512, vocab=300, n_ctx=64)`` and
``ModelSpec("odd", n_layer=2, n_head=5, d_model=200, d_ff=808, vocab=333, n_ctx=80)``; micro
and tiny the shipped models.
"""

import gzip
from pathlib import Path

import pytest

from fpgpt.config import load_config, load_preset
from fpgpt.isa import Program
from fpgpt.sim.timing import simulate

DATA = Path(__file__).resolve().parent / "data" / "sim_golden"

# "model@preset:prompt:gen": (prefill cycles, decode cycles, prefill HBM bytes, decode HBM bytes,
#                             prefill instructions, decode instructions)
GOLDEN = {
    'gpt2@u280:32:16': (4263937.066361956, 4244956.613802807,
                      249764484, 3732318780, 536, 8071),
    'gpt2@dfx:32:16': (3336689.2113277656, 3884371.42486411,
                     249764484, 3732318780, 832, 12511),
    'gpt2@u55c:32:16': (3318726.0663619745, 4064911.2395998873,
                      249764484, 3732318780, 536, 8071),
    'toy@u280:7:9': (21151.784469972372, 70157.39223498618,
                   888352, 7069728, 54, 449),
    'toy@u280:13:9': (36877.78446997237, 83099.78446997236,
                    903736, 7118880, 54, 449),
    'toy@dfx:7:9': (16130.0, 66696.88888888888,
                  888352, 7069728, 58, 481),
    'toy@dfx:13:9': (26480.0, 79408.88888888888,
                   903736, 7118880, 58, 481),
    'toy@u55c:7:9': (16233.784469972372, 67889.62907709145,
                   888352, 7069728, 54, 449),
    'toy@u55c:13:9': (26691.784469972372, 80561.10025944607,
                    903736, 7118880, 54, 449),
    'toy@tiny:7:9': (107061.0, 243020.55912332336,
                   888352, 7069728, 76, 625),
    'toy@tiny:13:9': (194967.0, 245056.77258795666,
                    903736, 7118880, 76, 625),
    'odd@u280:7:9': (1090522.3922349862, 8689419.127593467,
                   2105264, 16784288, 54, 449),
    'odd@u280:13:9': (1103392.3922349862, 8729839.171663206,
                    2129288, 16861088, 54, 449),
    'odd@dfx:7:9': (1089848.0628314984, 8687206.295519419,
                  2105264, 16784288, 62, 513),
    'odd@dfx:13:9': (1102386.2721864362, 8727570.582171177,
                   2129288, 16861088, 62, 513),
    'odd@u55c:7:9': (1090115.8657875243, 8688439.436269632,
                   2105264, 16784288, 54, 449),
    'odd@u55c:13:9': (1102763.0621873834, 8728789.96590686,
                    2129288, 16861088, 54, 449),
    'odd@tiny:7:9': (237229.0, 579767.7115654383,
                   2105264, 16784288, 110, 897),
    'odd@tiny:13:9': (435199.0, 581672.903468175,
                    2129288, 16861088, 110, 897),
    'micro@tiny:16:8': (72780.0, 69424.28353410291,
                      253636, 1708700, 54, 393),
    'tiny@tiny:16:8': (472147.0, 398533.55758102913,
                     1726276, 11872028, 138, 981),
    'micro@u280:16:8': (25386.392234986186, 49682.39223498618,
                      253636, 1708700, 54, 393),
    'tiny@u280:16:8': (86047.78446997236, 146597.78446997236,
                     1726276, 11872028, 96, 687),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_timing_figures_equal_the_recorded_ones(case):
    model, rest = case.split("@")
    preset, prompt, gen = rest.split(":")
    hw = load_config(str(DATA / f"{preset}.toml"))
    name = case.replace("@", "_").replace(":", "_")
    program = Program.from_bytes(gzip.decompress((DATA / f"{name}.fpgpt.gz").read_bytes()))
    r = simulate(program, hw, prompt_len=int(prompt), gen_len=int(gen))
    got = (r.prefill.cycles, r.decode.cycles, r.prefill.hbm_bytes, r.decode.hbm_bytes,
           r.prefill.instructions, r.decode.instructions)
    assert got == GOLDEN[case]


# -- the DMA engine's closed-form cycles against the row-by-row walk they replaced --------------
def _walk_dma_cycles(hw, op, f):
    """The row-by-row definition (fpgpt.sim.costs.dma_cycles before issue 10 part 3)."""
    from fpgpt.geometry import dma_stripe_aligned, stripe_elements
    lat = round(hw.hbm.latency_ns * hw.clock_mhz / 1e3)
    sb, g = 2 * stripe_elements(hw), hw.hbm.interleave_bytes
    re, ce, batch = f["rows"] + f["rr"], f["cols"] + f["rc"], f["batch"]
    if re == 0 or ce == 0 or batch == 0:
        return 3.0
    runs = []
    for b in range(batch):
        hb = f["hbm"] + b * f["hbatch"]
        if f.get("transpose"):
            runs += [(hb + c * f["hstride"] + 2 * f["ra"], re) for c in range(ce)]
        else:
            runs += [(hb + (r + f["ra"]) * f["hstride"], ce) for r in range(re)]
    if dma_stripe_aligned(hw, op, f):
        s = sum((a + 2 * n - 1) // sb - a // sb + 1 for a, n in runs)
        return float(s + (lat + 4 if op == "LOAD" else lat + 7))
    e = sum(n for _, n in runs)
    if op == "STORE":
        return float(e + lat + 7)
    return float(e + sum((a + 2 * n - 1) // g - a // g + 1 for a, n in runs) + lat + 3)


@pytest.mark.parametrize("preset", ["u280", "dfx", "tiny"])
def test_dma_cycles_closed_form_equals_the_row_walk(preset):
    import random

    from fpgpt.sim.costs import _floor_sum, dma_cycles
    hw = load_preset(preset)
    rng = random.Random(10)
    for _ in range(300):
        # Half the shapes aligned as the compiler lays them out (stripe path), half anything.
        c = hw.mpu.width
        aligned = rng.random() < 0.5
        unit = 2 * c if aligned else rng.choice([1, 2, 6, 64])
        f = {"hbm": rng.randrange(0, 1 << 20) // unit * unit, "sram": 0, "ra": rng.randrange(0, 5),
             "rows": rng.randrange(0, 70), "rr": rng.randrange(0, 3), "cols": rng.randrange(0, 300),
             "rc": rng.randrange(0, 3), "batch": rng.choice([1, 1, 2, 3, 7, 40]),
             "hstride": rng.randrange(0, 9000) // unit * unit,
             "hbatch": rng.randrange(0, 1 << 17) // unit * unit,
             "transpose": int(rng.random() < 0.25)}
        f["sstride"], f["sbatch"] = f["hstride"] // 2, f["hbatch"] // 2
        f["sram"] = (f["hbm"] + f["ra"] * f["hstride"]) // 2 % c
        for op in ("LOAD", "STORE"):
            assert dma_cycles(hw, op, f) == _walk_dma_cycles(hw, op, f), (op, f)
    # _floor_sum itself, against the definition.
    for _ in range(200):
        n, m, a, b = (rng.randrange(0, 50), rng.randrange(1, 70), rng.randrange(0, 200),
                      rng.randrange(0, 200))
        assert _floor_sum(n, m, a, b) == sum((a * i + b) // m for i in range(n))
