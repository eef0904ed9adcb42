"""The simulated accelerator generates the same greedy tokens as fpgpt's numpy reference and as
Hugging Face transformers, for the shipped models."""

import numpy as np
import pytest

from fpgpt.compiler import compile_model
from fpgpt.config import load_preset
from fpgpt.models import ByteTokenizer, Reference, load_model, shipped_model_path
from fpgpt.sim import generate, simulate

PROMPTS = ["The assert statement", "A class definition"]
NEW = 24


def hf_greedy(folder, ids, n):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    return out[0, len(ids):].tolist()


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_simulated_u280_matches_reference_and_hf(tiny, prompt):
    ids = ByteTokenizer().encode(prompt)
    hw = load_preset("u280")
    program = compile_model(tiny, hw, prompt_len=len(ids))
    sim = generate(program, ids, NEW, mode="exact").tokens
    ref16 = Reference(tiny, dtype="fp16").generate(ids, NEW)
    ref32 = Reference(tiny).generate(ids, NEW)
    hf = hf_greedy(shipped_model_path("tiny"), ids, NEW)
    assert ref32 == hf
    assert sim == ref16
    assert sim == hf


def test_query_halves_and_shared_vt_rows_match_the_reference(tiny):
    """A 9-token prompt on the tiny preset: the prefill tile goes by query halves (R6 the
    second half's mask offset) and two heads share each row of the V^T staging
    (buffers.vt_heads_per_row); the tokens are the FP16 reference's."""
    from fpgpt.compiler.buffers import vt_heads_per_row
    ids = ByteTokenizer().encode("def f(x):")
    hw = load_preset("tiny")
    assert vt_heads_per_row(len(ids), hw) == 2
    program = compile_model(tiny, hw, prompt_len=len(ids))
    pre = program.streams["prefill"]
    assert any(i.op == "ADDI" and i["rd"] == 6 for i in pre)
    assert sum(i.op == "MM" and "P V" in i.comment for i in pre) == 2 * 2 * tiny.spec.n_layer
    assert generate(program, ids, NEW, mode="exact").tokens == \
        Reference(tiny, dtype="fp16").generate(ids, NEW)


def test_exact_and_fast_modes_agree_on_tokens(tiny):
    ids = ByteTokenizer().encode(PROMPTS[0])
    program = compile_model(tiny, load_preset("u280"), prompt_len=len(ids))
    assert generate(program, ids, NEW, mode="exact").tokens == generate(program, ids, NEW, mode="fast").tokens


def test_micro_on_the_tiny_preset(tmp_path):
    """The RTL test vehicle: the micro model on the tiny preset, through a saved .fpx file."""
    from fpgpt.isa import Program
    w = load_model("micro")
    ids = ByteTokenizer().encode("def f(x):")
    hw = load_preset("tiny")
    program = compile_model(w, hw, prompt_len=len(ids))
    program.save(tmp_path / "m.fpx")
    again = Program.load(tmp_path / "m.fpx")
    assert generate(again, ids, 16).tokens == Reference(w, dtype="fp16").generate(ids, 16)
    r = simulate(again, hw, prompt_len=len(ids), gen_len=16)
    assert r.ms_per_token > 0 and r.ttft_ms > 0


def test_compiled_program_waits_are_hazard_free(tiny):
    ids = ByteTokenizer().encode(PROMPTS[1])
    hw = load_preset("u280")
    program = compile_model(tiny, hw, prompt_len=len(ids))
    simulate(program, hw, prompt_len=len(ids), gen_len=3, check_hazards=True)
