"""The decode schedule of docs/decode.md: K loads as one run per head, the V^T store behind the
first K load, the GELU in pieces, five weight slots. Functional checks (generated tokens equal to
the FP16 reference, the hazard check, R5 = d_head·R1) on small models that take each path, and
the structure of the GPT-2 medium decode step on u280."""

import numpy as np
import pytest

from fpgpt.compiler import compile_model
from fpgpt.compiler.buffers import WEIGHT_SLOTS
from fpgpt.compiler.codegen import KPOS, POS
from fpgpt.config import load_preset
from fpgpt.models import ByteTokenizer, Reference, load_model
from fpgpt.models.spec import ModelSpec
from fpgpt.sim import generate, simulate

#: d_head = mpu.width on each preset, so the K rows are contiguous (and three fc chunks on tiny).
CASES = [
    ("tiny", ModelSpec(name="floor8", n_layer=2, n_head=4, d_model=32, d_ff=2048, vocab=257,
                       n_ctx=64, ln_eps=1e-5)),
    ("u280", ModelSpec(name="floor64", n_layer=2, n_head=2, d_model=128, d_ff=512, vocab=257,
                       n_ctx=64, ln_eps=1e-5)),
]


def _k_loads(program, stream):
    return [i for i in program.stream(stream) if i.op == "LOAD" and "K[" in i.comment]


@pytest.mark.parametrize("preset,spec", CASES, ids=[c[0] for c in CASES])
def test_generation_equals_the_fp16_reference(preset, spec):
    w = load_model(spec, seed=1)
    hw = load_preset(preset)
    ids = ByteTokenizer().encode("ab")
    program = compile_model(w, hw, prompt_len=len(ids))
    assert _k_loads(program, "decode")[0]["rc"] == KPOS
    assert generate(program, ids, 6, mode="exact").tokens == \
        Reference(w, dtype="fp16").generate(ids, 6)


@pytest.mark.parametrize("preset,spec", CASES, ids=[c[0] for c in CASES])
def test_waits_pass_the_hazard_check(preset, spec):
    hw = load_preset(preset)
    program = compile_model(spec, hw, prompt_len=3)
    simulate(program, hw, prompt_len=3, gen_len=4, check_hazards=True)


def test_r5_follows_r1():
    """R5 (KPOS) = d_head·R1 after prefill and after the decode steps, whatever R5 held before."""
    from fpgpt.sim.machine import I32, Machine
    from fpgpt.sim.executor import run_stream
    from fpgpt.sim.runner import REG_COUNT
    preset, spec = CASES[0]
    hw = load_preset(preset)
    w = load_model(spec, seed=1)
    ids = ByteTokenizer().encode("abcde")
    program = compile_model(w, hw, prompt_len=len(ids))
    m = Machine.for_program(hw, program)
    m.write_array(program.regions["tokens_in"].addr, np.asarray(ids), I32)
    m.regs[POS] = 0
    m.regs[KPOS] = 12345                      # whatever the host left: prefill sets it
    run_stream(m, program, "prefill")
    assert (m.regs[POS], m.regs[KPOS]) == (len(ids), spec.d_head * len(ids))
    m.regs[REG_COUNT] = 3
    run_stream(m, program, "decode")
    assert (m.regs[POS], m.regs[KPOS]) == (len(ids) + 3, spec.d_head * (len(ids) + 3))


def test_gpt2_medium_decode_step_shape():
    """One K load per layer (all heads, one run each), the V^T store after it, three GELUs per
    layer, the residual add after fc2 in three pieces behind its chunks (after the one-chunk
    projection whole), five weight slots."""
    program = compile_model("gpt2-medium", load_preset("u280"), prompt_len=8, verify=False)
    dec = program.stream("decode")
    ks = _k_loads(program, "decode")
    assert len(ks) == 24 and all(i["rows"] == 1 and i["cols"] == 64 and i["batch"] == 16
                                 for i in ks)
    comments = [i.comment for i in dec]
    k0 = comments.index("layer0.attn heads 0..15: K[0:R1+1]")
    assert comments[k0 + 1] == "layer0.attn V -> V^T cache[:, R1:]"
    assert sum(i.op == "GELU" for i in dec) == 3 * 24
    res2 = [i for i in dec if i.op == "VADD" and i.comment.startswith("layer0.res2")]
    fc2 = [i for i in dec if i.op == "MM" and i.comment.startswith("layer0.fc2[")]
    assert len(res2) == 3 and len(fc2) > 2
    assert [i["cols"] for i in res2] == [sum(m["n"] for m in fc2[:-2]),
                                         fc2[-2]["n"], fc2[-1]["n"]]
    assert sum(i["cols"] for i in res2) == 1024
    res1 = [i for i in dec if i.op == "VADD" and i.comment.startswith("layer0.res1")]
    assert [i["cols"] for i in res1] == [1024]
    assert WEIGHT_SLOTS == 5


def test_gpt2_medium_decode_is_faster_than_before(u280_target):
    """The timing model's decode figure for GPT-2 medium 128:128 on the u280 design at 300 MHz
    (docs/decode.md): 2.507 ms/token before this schedule; 2.09 after (a model figure, not a
    wall-clock time)."""
    hw = u280_target
    program = compile_model("gpt2-medium", hw, prompt_len=128, verify=False)
    r = simulate(program, hw, prompt_len=128, gen_len=16)
    ms = r.decode.cycles / 15 / hw.clock_mhz / 1e3
    assert ms < 2.2
